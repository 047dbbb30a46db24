package model

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/luminaweb/lumina/model/internal/dit"
	"github.com/luminaweb/lumina/model/internal/gemma2"
	"github.com/luminaweb/lumina/model/internal/nn"
	"github.com/luminaweb/lumina/model/internal/tokenizer"
	"github.com/luminaweb/lumina/model/internal/vae"
	"github.com/luminaweb/lumina/model/tensor"
	"github.com/luminaweb/lumina/model/weights"
)

// The embedded default model: the tiny demo of the exact architecture,
// trained on coloured shapes (demo/README.md), with a tokenizer reduced to
// what its caption grammar uses (demo/tokenizer.json, see Subset in the
// tokenizer package).
//
//go:embed demo/config.json demo/dit.safetensors demo/text_encoder.safetensors demo/vae_decoder.safetensors demo/tokenizer.json
var demoFS embed.FS

// Open loads a pipeline. source is one of:
//   - "" (or "demo"): the embedded demo model;
//   - the folder of a Hugging Face snapshot of Lumina-Image-2.0 as
//     downloaded (model_index.json, transformer/, text_encoder/, vae/,
//     tokenizer/): the configs found there decide the architecture;
//   - a lumina pack: the folder or URL of its manifest.json (lumina pack
//     writes them), read by range, each shard checked before use.
func Open(ctx context.Context, source string, cfg Config) (*Pipeline, error) {
	start := time.Now()
	c, err := openComponents(ctx, source, cfg)
	if err != nil {
		return nil, err
	}
	b, dev, own, err := backend(ctx, cfg)
	if err != nil {
		c.close()
		return nil, err
	}
	p := &Pipeline{cfg: cfg, b: b, dev: dev, ownDev: own, comps: c, tok: c.tok, def: c.def, name: c.name}
	if dev != nil {
		// Check the memory plan against the device before loading
		// anything: a model that cannot fit fails here, with what to lower.
		if p.planner, err = newPlanner(c.gcfg, c.dcfg, c.vcfg, c.name, c.matrixDType()); err == nil {
			p.planner.p.cfg.LowMemory = cfg.LowMemory
			var mp *MemoryPlan
			if mp, err = p.planner.plan(ctx, PlanRequest{Width: c.def.width, Height: c.def.height}); err == nil {
				err = mp.Check(dev.Limits())
			}
		}
		if err != nil {
			p.Close()
			return nil, err
		}
	}
	p.progress(StageLoad, 0, 3, start)
	err = p.load(c.srcs, c.gcfg, c.dcfg, c.vcfg, start)
	if err == nil {
		err = b.Sync(ctx)
	}
	if err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// components is a model found at a source: its configs, weight sources
// (not yet read), tokenizer and defaults.
type components struct {
	srcs       [3]weights.Source // text encoder, transformer, VAE
	gcfg       gemma2.Config
	dcfg       dit.Config
	vcfg       vae.Config
	tok        *tokenizer.Tokenizer
	tokName    string // "tokenizer.json" or "tokenizer.model"
	tokBytes   []byte // the tokenizer file, for packing
	def        defaults
	name       string
	rawConfigs map[string]json.RawMessage // as found, for packing
	closers    []interface{ Close() error }
}

func (c *components) close() {
	for _, cl := range c.closers {
		cl.Close()
	}
}

func openComponents(ctx context.Context, source string, cfg Config) (*components, error) {
	client := cfg.HTTPClient
	switch {
	case source == "" || source == "demo":
		return openDemo()
	case strings.HasPrefix(source, "http://") || strings.HasPrefix(source, "https://"):
		base, file := splitManifest(source)
		return openPack(&weights.HTTPFiles{Base: base, Client: client, Ctx: ctx}, file, source)
	}
	if st, err := os.Stat(source); err == nil && !st.IsDir() && strings.HasSuffix(source, ".json") {
		return openPack(&weights.Dir{Path: filepath.Dir(source)}, filepath.Base(source), source)
	}
	if st, err := os.Stat(source); err == nil && !st.IsDir() && (strings.HasSuffix(source, ".safetensors") || strings.HasSuffix(source, ".gguf")) {
		return openFiles(source, cfg)
	}
	if _, err := os.Stat(filepath.Join(source, packManifest)); err == nil {
		return openPack(&weights.Dir{Path: source}, packManifest, source)
	}
	return openHF(source)
}

// splitManifest splits a pack URL into its base and manifest file name; a
// URL that does not end in .json names the folder of a manifest.json.
func splitManifest(u string) (base, file string) {
	if strings.HasSuffix(u, ".json") {
		i := strings.LastIndex(u, "/")
		return u[:i], u[i+1:]
	}
	return strings.TrimSuffix(u, "/"), packManifest
}

// demoConfig is the part of demo/config.json the pipeline reads.
type demoConfig struct {
	Transformer struct {
		Config json.RawMessage `json:"config"`
	} `json:"transformer"`
	TextEncoder struct {
		Config json.RawMessage `json:"config_hf_equivalent"`
	} `json:"text_encoder"`
	VAE struct {
		Config json.RawMessage `json:"config_diffusers_equivalent"`
	} `json:"vae"`
	Sampler struct {
		Recommended struct {
			Method string  `json:"method"`
			Steps  int     `json:"steps"` // grid points
			Shift  float64 `json:"tshift"`
			CFG    float64 `json:"cfg"`
		} `json:"recommended"`
	} `json:"sampler"`
	Pipeline struct {
		ImageSize []int `json:"image_size"`
	} `json:"pipeline"`
}

func openDemo() (*components, error) {
	raw, err := demoFS.ReadFile("demo/config.json")
	if err != nil {
		return nil, err
	}
	var dc demoConfig
	if err := json.Unmarshal(raw, &dc); err != nil {
		return nil, fmt.Errorf("model: demo config: %w", err)
	}
	c := &components{tokName: "tokenizer.json", name: "Lumina-Image 2.0 demo (embedded, 64×64 coloured shapes)"}
	if c.tokBytes, err = demoFS.ReadFile("demo/tokenizer.json"); err != nil {
		return nil, err
	}
	if c.tok, err = tokenizer.FromHFJSON(bytes.NewReader(c.tokBytes)); err != nil {
		return nil, fmt.Errorf("model: demo tokenizer: %w", err)
	}
	// The demo was trained without apex: QK-norm eps 1e-6 (demo README).
	var dm map[string]any
	json.Unmarshal(dc.Transformer.Config, &dm)
	dm["qk_norm_eps"] = 1e-6
	ditRaw, _ := json.Marshal(dm)
	c.rawConfigs = map[string]json.RawMessage{"text_encoder": dc.TextEncoder.Config, "transformer": ditRaw, "vae": dc.VAE.Config}
	if err := c.parseConfigs(); err != nil {
		return nil, fmt.Errorf("model: demo %w", err)
	}
	for i, name := range []string{"text_encoder.safetensors", "dit.safetensors", "vae_decoder.safetensors"} {
		b, err := demoFS.ReadFile("demo/" + name)
		if err != nil {
			return nil, err
		}
		if c.srcs[i], err = weights.NewSafetensors(bytes.NewReader(b), int64(len(b)), "demo/"+name); err != nil {
			return nil, fmt.Errorf("model: demo %s: %w", name, err)
		}
	}
	r := dc.Sampler.Recommended
	c.def = defaults{width: dc.Pipeline.ImageSize[1], height: dc.Pipeline.ImageSize[0],
		steps: r.Steps - 1, solver: r.Method, shift: r.Shift, guidance: r.CFG,
		vaeScale: c.vcfg.ScalingFactor, vaeShift: c.vcfg.ShiftFactor}
	return c, nil
}

// parseConfigs parses rawConfigs into the three configs.
func (c *components) parseConfigs() error {
	var err error
	if c.gcfg, err = gemma2.ParseConfig(c.rawConfigs["text_encoder"]); err != nil {
		return fmt.Errorf("text encoder config: %w", err)
	}
	if c.dcfg, err = dit.ParseConfig(c.rawConfigs["transformer"]); err != nil {
		return fmt.Errorf("transformer config: %w", err)
	}
	if c.vcfg, err = vae.ParseConfig(c.rawConfigs["vae"]); err != nil {
		return fmt.Errorf("VAE config: %w", err)
	}
	return nil
}

// realDefaults are the original sample.sh settings (spec §4.7).
func realDefaults(v vae.Config) defaults {
	return defaults{width: 1024, height: 1024, steps: 17, solver: "midpoint", shift: 6, guidance: 4,
		vaeScale: v.ScalingFactor, vaeShift: v.ShiftFactor}
}

// load builds the three networks from their weight sources.
func (p *Pipeline) load(srcs [3]weights.Source, gcfg gemma2.Config, dcfg dit.Config, vcfg vae.Config, start time.Time) error {
	if dcfg.CapFeatDim != gcfg.HiddenSize {
		return fmt.Errorf("model: the transformer takes %d-wide caption features but the text encoder makes %d: the components do not belong together", dcfg.CapFeatDim, gcfg.HiddenSize)
	}
	if p.tok != nil && p.tok.VocabSize() > gcfg.VocabSize {
		return fmt.Errorf("model: the tokenizer has %d ids but the text encoder only %d: they do not belong together", p.tok.VocabSize(), gcfg.VocabSize)
	}
	if dcfg.InChannels != vcfg.LatentChannels {
		return fmt.Errorf("model: the transformer makes %d latent channels but the VAE decodes %d: the components do not belong together", dcfg.InChannels, vcfg.LatentChannels)
	}
	var err error
	gsrc, err := detect(weights.DetectGemma, srcs[0])
	if err != nil {
		return fmt.Errorf("model: text encoder: %w", err)
	}
	gl := &nn.Loader{B: p.b, Src: gsrc, Packed: true, PlanDType: p.planDType}
	p.loaders = append(p.loaders, gl)
	p.textN = gcfg.NumHiddenLayers - 1 // hidden_states[-2] (spec §1.4)
	p.textCfg = gcfg
	if p.text, err = gemma2.LoadStreamed(gl, gcfg, p.textN); err != nil {
		return fmt.Errorf("model: text encoder: %w", err)
	}
	p.progress(StageLoad, 1, 3, start)
	dsrc, err := detect(weights.DetectDiT, srcs[1])
	if err != nil {
		return fmt.Errorf("model: transformer: %w", err)
	}
	dl := &nn.Loader{B: p.b, Src: dsrc, Packed: true, PlanDType: p.planDType}
	p.loaders = append(p.loaders, dl)
	if p.dit, err = dit.Load(dl, dcfg); err != nil {
		return fmt.Errorf("model: transformer: %w", err)
	}
	p.progress(StageLoad, 2, 3, start)
	vsrc, err := detect(weights.DetectVAE, srcs[2])
	if err != nil {
		return fmt.Errorf("model: VAE: %w", err)
	}
	vl := &nn.Loader{B: p.b, Src: vsrc, Packed: true, PlanDType: p.planDType}
	p.loaders = append(p.loaders, vl)
	if p.vae, err = vae.Load(vl, vcfg); err != nil {
		return fmt.Errorf("model: VAE: %w", err)
	}
	p.progress(StageLoad, 3, 3, start)
	return nil
}

// detect maps a source to canonical names; no source (a memory plan) stays
// none.
func detect(f func(weights.Source) (*weights.Mapped, error), src weights.Source) (weights.Source, error) {
	if src == nil {
		return nil, nil
	}
	m, err := f(src)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// openHF reads a Hugging Face snapshot folder of Lumina-Image-2.0.
func openHF(dir string) (*components, error) {
	if _, err := os.Stat(filepath.Join(dir, "model_index.json")); err != nil {
		return nil, fmt.Errorf("model: %s is neither a Lumina-Image-2.0 folder (no model_index.json) nor a pack (no %s): %w", dir, packManifest, err)
	}
	c := &components{name: "Lumina-Image 2.0 (" + dir + ")", rawConfigs: map[string]json.RawMessage{}}
	for _, sub := range []string{"text_encoder", "transformer", "vae"} {
		b, err := os.ReadFile(filepath.Join(dir, sub, "config.json"))
		if err != nil {
			return nil, fmt.Errorf("model: %w", err)
		}
		c.rawConfigs[sub] = b
	}
	if err := c.parseConfigs(); err != nil {
		return nil, fmt.Errorf("model: %s: %w", dir, err)
	}
	var err error
	if c.tok, c.tokName, c.tokBytes, err = openTokenizer(filepath.Join(dir, "tokenizer")); err != nil {
		return nil, err
	}
	for i, sub := range []string{"text_encoder", "transformer", "vae"} {
		if c.srcs[i], err = openWeights(filepath.Join(dir, sub)); err != nil {
			c.close()
			return nil, err
		}
		if cl, ok := c.srcs[i].(interface{ Close() error }); ok {
			c.closers = append(c.closers, cl)
		}
	}
	c.def = realDefaults(c.vcfg)
	return c, nil
}

// openTokenizer reads tokenizer.json, or else tokenizer.model, in dir.
func openTokenizer(dir string) (*tokenizer.Tokenizer, string, []byte, error) {
	for _, name := range []string{"tokenizer.json", "tokenizer.model"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			continue
		}
		t, err := parseTokenizer(name, b)
		return t, name, b, err
	}
	return nil, "", nil, fmt.Errorf("model: no tokenizer.json or tokenizer.model in %s", dir)
}

func parseTokenizer(name string, b []byte) (*tokenizer.Tokenizer, error) {
	var t *tokenizer.Tokenizer
	var err error
	if name == "tokenizer.model" {
		t, err = tokenizer.FromSentencePiece(bytes.NewReader(b))
	} else {
		t, err = tokenizer.FromHFJSON(bytes.NewReader(b))
	}
	if err != nil {
		return nil, fmt.Errorf("model: %s: %w", name, err)
	}
	return t, nil
}

// openWeights opens the safetensors of a component folder: an index file
// if there is one, else the single *.safetensors file.
func openWeights(dir string) (weights.Source, error) {
	idx, _ := filepath.Glob(filepath.Join(dir, "*.safetensors.index.json"))
	if len(idx) == 1 {
		return weights.OpenIndex(idx[0])
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.safetensors"))
	switch len(files) {
	case 1:
		return weights.OpenSafetensors(files[0])
	case 0:
		return nil, fmt.Errorf("model: no .safetensors weights in %s", dir)
	}
	return nil, fmt.Errorf("model: %d .safetensors files and no index in %s", len(files), dir)
}

func writeFile(dir, name string, b []byte) error {
	return os.WriteFile(filepath.Join(dir, name), b, 0o644)
}

// openFiles reads a model given as separate files: a transformer
// safetensors (ComfyUI's single file or any Next-DiT naming), the Gemma-2
// and VAE files named in cfg, with the configs of cfg.Configs or the real
// Lumina-Image-2.0 configuration.
func openFiles(ditPath string, cfg Config) (*components, error) {
	if cfg.TextEncoder == "" || cfg.VAE == "" {
		return nil, fmt.Errorf("model: %s is a single transformer file: also give the text encoder (e.g. gemma_2_2b_fp16.safetensors) and the VAE (e.g. ae.safetensors) files", ditPath)
	}
	c := &components{name: "Lumina-Image 2.0 (" + filepath.Base(ditPath) + ")", rawConfigs: map[string]json.RawMessage{}}
	for _, sub := range []string{"text_encoder", "transformer", "vae"} {
		var b []byte
		var err error
		if cfg.Configs != "" {
			b, err = os.ReadFile(filepath.Join(cfg.Configs, sub, "config.json"))
		} else {
			b, err = presetFS.ReadFile("presets/lumina2/" + sub + ".json")
		}
		if err != nil {
			return nil, fmt.Errorf("model: %w", err)
		}
		c.rawConfigs[sub] = b
	}
	if err := c.parseConfigs(); err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	for i, path := range []string{cfg.TextEncoder, ditPath, cfg.VAE} {
		var f interface {
			weights.Source
			Close() error
		}
		var err error
		if strings.HasSuffix(path, ".gguf") {
			// The community GGUF quants of Lumina-2 keep the original
			// names; they are read through ggml's block formats.
			f, err = weights.OpenGGUF(path)
		} else {
			f, err = weights.OpenSafetensors(path)
		}
		if err != nil {
			c.close()
			return nil, fmt.Errorf("model: %w", err)
		}
		c.srcs[i] = f
		c.closers = append(c.closers, f)
	}
	var err error
	switch {
	case cfg.Tokenizer != "":
		b, rerr := os.ReadFile(cfg.Tokenizer)
		if rerr != nil {
			c.close()
			return nil, fmt.Errorf("model: %w", rerr)
		}
		c.tokName, c.tokBytes = filepath.Base(cfg.Tokenizer), b
		if !strings.HasSuffix(c.tokName, ".model") {
			c.tokName = "tokenizer.json"
		} else {
			c.tokName = "tokenizer.model"
		}
	default:
		// ComfyUI's Gemma file carries the SentencePiece model as a U8
		// tensor.
		g, derr := weights.DetectGemma(c.srcs[0])
		if derr == nil {
			c.tokBytes, derr = g.SentencePiece()
		}
		if derr != nil {
			c.close()
			return nil, fmt.Errorf("model: no tokenizer: %s carries none (%v); give one with the tokenizer option", cfg.TextEncoder, derr)
		}
		c.tokName = "tokenizer.model"
	}
	if c.tok, err = parseTokenizer(c.tokName, c.tokBytes); err != nil {
		c.close()
		return nil, err
	}
	c.def = realDefaults(c.vcfg)
	return c, nil
}

// matrixDType is the format most of the source's matrices will have on the
// device (for the memory plan): a pack's, f16/bf16 for a 16-bit
// checkpoint, else f32.
func (c *components) matrixDType() tensor.DType {
	m, err := weights.DetectDiT(c.srcs[1])
	if err != nil {
		return tensor.F32
	}
	_, dt, ok, _ := m.Packed("layers.0.feed_forward.w1.weight")
	if !ok {
		return tensor.F32
	}
	return dt
}
