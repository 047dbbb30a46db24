package model

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/luminaweb/lumina/model/weights"
)

// packManifest is the manifest's file name in a pack folder.
const packManifest = "manifest.json"

// packKind marks a pack of a whole Lumina-Image 2.0 pipeline.
const packKind = "lumina2-pipeline"

// packConfig is the model config a pipeline pack carries: the three
// components' configs as found, the tokenizer's file name, defaults.
type packConfig struct {
	TextEncoder json.RawMessage `json:"text_encoder"`
	Transformer json.RawMessage `json:"transformer"`
	VAE         json.RawMessage `json:"vae"`
	Tokenizer   string          `json:"tokenizer"` // a file beside the manifest
	Name        string          `json:"name"`
	Defaults    struct {
		Width, Height, Steps int
		Solver               string
		Shift, Guidance      float64
	} `json:"defaults"`
}

// openPack reads a pipeline pack: its manifest (configs), tokenizer and
// shards, all through files (a folder or HTTP range requests). Tensors are
// read when loaded, each shard checked against its sha256 first.
func openPack(files weights.Files, manifest, where string) (*components, error) {
	pk, err := weights.OpenPack(files, manifest)
	if err != nil {
		return nil, fmt.Errorf("model: %s: %w", where, err)
	}
	m := pk.Manifest()
	if m.Model.Kind != packKind {
		pk.Close()
		return nil, fmt.Errorf("model: %s holds a %q pack, not a Lumina-Image 2.0 pipeline (%s)", where, m.Model.Kind, packKind)
	}
	var pc packConfig
	if err := json.Unmarshal(m.Model.Config, &pc); err != nil {
		pk.Close()
		return nil, fmt.Errorf("model: %s: pack config: %w", where, err)
	}
	c := &components{name: pc.Name + " (pack " + where + ")", closers: []interface{ Close() error }{pk},
		rawConfigs: map[string]json.RawMessage{"text_encoder": pc.TextEncoder, "transformer": pc.Transformer, "vae": pc.VAE}}
	if err := c.parseConfigs(); err != nil {
		c.close()
		return nil, fmt.Errorf("model: %s: %w", where, err)
	}
	tf, err := files.Open(pc.Tokenizer)
	if err == nil {
		c.tokBytes = make([]byte, tf.Size())
		_, err = tf.ReadAt(c.tokBytes, 0)
		if err == io.EOF {
			err = nil
		}
		if cl, ok := tf.(io.Closer); ok {
			cl.Close()
		}
	}
	if err != nil {
		c.close()
		return nil, fmt.Errorf("model: %s: tokenizer %s: %w", where, pc.Tokenizer, err)
	}
	c.tokName = pc.Tokenizer
	if c.tok, err = parseTokenizer(pc.Tokenizer, c.tokBytes); err != nil {
		c.close()
		return nil, err
	}
	c.srcs = [3]weights.Source{pk, pk, pk} // Detect finds each component's prefix
	d := pc.Defaults
	c.def = defaults{width: d.Width, height: d.Height, steps: d.Steps, solver: d.Solver, shift: d.Shift, guidance: d.Guidance,
		vaeScale: c.vcfg.ScalingFactor, vaeShift: c.vcfg.ShiftFactor}
	return c, nil
}

// PackOptions configures Pack.
type PackOptions struct {
	// DType is the format of the large matrices: "f16" (default), "bf16",
	// "f32", "q8" or "q4". Vectors (norms, biases) and small tensors stay
	// f32; the VAE's convolutions stay f16 at most.
	DType string
	// ShardLimit caps each shard (0: 64 MiB; never above 128 MiB).
	ShardLimit int64
	// Progress, when set, is called after each tensor.
	Progress func(done, total int, name string)
	// Model holds the extra files of a source given as separate files
	// (Config.TextEncoder, VAE, Tokenizer, Configs); other fields unused.
	Model Config
}

// PackReport says what Pack wrote: bytes per component and the error of
// every tensor against its source.
type PackReport struct {
	Tensors    []PackedTensor
	Bytes      map[string]int64 // per component: "text_encoder", "transformer", "vae"
	Shards     int
	TotalBytes int64
}

// PackedTensor is one tensor's format and error.
type PackedTensor struct {
	Name           string
	DType          string
	Bytes          int64
	MaxAbs, RelRMS float64 // of the stored values against the source's
}

// Pack writes the model at source (any source Open takes) as a pipeline
// pack in dir: manifest.json, shards, and the tokenizer file. It holds one
// tensor at a time in memory.
func Pack(ctx context.Context, source, dir string, opt PackOptions) (*PackReport, error) {
	c, err := openComponents(ctx, source, opt.Model)
	if err != nil {
		return nil, err
	}
	defer c.close()
	dt := weights.PackDType(opt.DType)
	if opt.DType == "" {
		dt = weights.PackF16
	}
	if !dt.Valid() {
		return nil, fmt.Errorf("model: pack format %q: want f32, f16, bf16, q8 or q4", opt.DType)
	}
	var pc packConfig
	pc.TextEncoder, pc.Transformer, pc.VAE = c.rawConfigs["text_encoder"], c.rawConfigs["transformer"], c.rawConfigs["vae"]
	pc.Tokenizer, pc.Name = c.tokName, strings.TrimSuffix(c.name, ")")
	if i := strings.Index(pc.Name, " ("); i > 0 {
		pc.Name = pc.Name[:i]
	}
	pc.Defaults.Width, pc.Defaults.Height, pc.Defaults.Steps = c.def.width, c.def.height, c.def.steps
	pc.Defaults.Solver, pc.Defaults.Shift, pc.Defaults.Guidance = c.def.solver, c.def.shift, c.def.guidance
	raw, _ := json.Marshal(pc)

	// Canonical names per component, under a prefix each.
	comps := []struct {
		prefix string
		detect func(weights.Source) (*weights.Mapped, error)
	}{{"text_encoder.", weights.DetectGemma}, {"transformer.", weights.DetectDiT}, {"vae.", weights.DetectVAE}}
	mapped := make([]*weights.Mapped, 3)
	total := 0
	for i, cp := range comps {
		if mapped[i], err = cp.detect(c.srcs[i]); err != nil {
			return nil, fmt.Errorf("model: pack %s: %w", strings.TrimSuffix(cp.prefix, "."), err)
		}
		total += len(mapped[i].Names())
	}
	embed := "text_encoder.embed_tokens.weight"
	w, err := weights.NewPackWriter(dir, weights.PackOptions{Kind: packKind, Config: raw, ShardLimit: opt.ShardLimit, HostOnly: []string{embed}})
	if err != nil {
		return nil, err
	}
	rep := &PackReport{Bytes: map[string]int64{}}
	done := 0
	for i, cp := range comps {
		for _, name := range mapped[i].Names() {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			info, _ := mapped[i].Info(name)
			v, err := mapped[i].Float32(name)
			if err != nil {
				return nil, fmt.Errorf("model: pack: %w", err)
			}
			tdt := packDType(dt, cp.prefix, info)
			b, err := weights.Encode(tdt, info.Shape, v)
			if err != nil {
				return nil, fmt.Errorf("model: pack %s%s: %w", cp.prefix, name, err)
			}
			back, err := weights.Dequantize(tdt, info.Shape, b)
			if err != nil {
				return nil, err
			}
			if err := w.AddEncoded(cp.prefix+name, info.Shape, tdt, b); err != nil {
				return nil, fmt.Errorf("model: pack: %w", err)
			}
			pt := PackedTensor{Name: cp.prefix + name, DType: string(tdt), Bytes: int64(len(b))}
			pt.MaxAbs, pt.RelRMS = packError(v, back)
			rep.Tensors = append(rep.Tensors, pt)
			rep.Bytes[strings.TrimSuffix(cp.prefix, ".")] += int64(len(b))
			done++
			if opt.Progress != nil {
				opt.Progress(done, total, cp.prefix+name)
			}
		}
	}
	m, err := w.Finish(packManifest)
	if err != nil {
		return nil, err
	}
	if err := writeFile(dir, c.tokName, c.tokBytes); err != nil {
		return nil, err
	}
	rep.Shards = len(m.Shards)
	for _, s := range m.Shards {
		rep.TotalBytes += s.Size
	}
	return rep, nil
}

// packDType picks a tensor's format: the requested one for the large
// matrices the GPU multiplies by, f16 at most for the VAE's convolutions
// (no quantized conv kernel), f32 for vectors and small tensors.
func packDType(want weights.PackDType, prefix string, info weights.Info) weights.PackDType {
	sh := info.Shape
	switch {
	case len(sh) == 1 || sh.Numel() < 4096:
		return weights.PackF32
	case len(sh) == 4:
		if want == weights.PackF32 {
			return want
		}
		return weights.PackF16
	case want.Quantized() && sh[len(sh)-1] < 32:
		return weights.PackF16 // groups of 32 along the input dimension
	}
	return want
}

func packError(src []float32, back []float64) (maxAbs, relRMS float64) {
	var se, sr float64
	for i, v := range src {
		d := back[i] - float64(v)
		if d < 0 {
			d = -d
		}
		maxAbs = max(maxAbs, d)
		se += d * d
		sr += float64(v) * float64(v)
	}
	if sr > 0 {
		relRMS = math.Sqrt(se / sr)
	}
	return maxAbs, relRMS
}
