package model

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/luminaweb/lumina/model/internal/dit"
	"github.com/luminaweb/lumina/model/internal/gemma2"
	"github.com/luminaweb/lumina/model/internal/nn"
	"github.com/luminaweb/lumina/model/internal/tokenizer"
	"github.com/luminaweb/lumina/model/internal/vae"
	"github.com/luminaweb/lumina/model/weights"
)

// The embedded default model: the tiny demo of the exact architecture,
// trained on coloured shapes (demo/README.md), with a tokenizer reduced to
// what its caption grammar uses (demo/tokenizer.json, see Subset in the
// tokenizer package).
//
//go:embed demo/config.json demo/dit.safetensors demo/text_encoder.safetensors demo/vae_decoder.safetensors demo/tokenizer.json
var demoFS embed.FS

// Open loads a pipeline. source is "" for the embedded demo model, or the
// folder of a Hugging Face snapshot of Lumina-Image-2.0 as downloaded
// (model_index.json, transformer/, text_encoder/, vae/, tokenizer/): the
// configs found there decide the architecture.
func Open(ctx context.Context, source string, cfg Config) (*Pipeline, error) {
	start := time.Now()
	b, dev, own, err := backend(ctx, cfg)
	if err != nil {
		return nil, err
	}
	p := &Pipeline{cfg: cfg, b: b, dev: dev, ownDev: own}
	if dev != nil {
		// Check the memory plan against the device before loading
		// anything: a model that cannot fit fails here, with what to lower.
		if p.planner, err = newPlanner(source); err == nil {
			var mp *MemoryPlan
			if mp, err = p.planner.plan(ctx, PlanRequest{Source: source}); err == nil {
				err = mp.Check(dev.Limits())
			}
		}
		if err != nil {
			p.Close()
			return nil, err
		}
	}
	p.progress(StageLoad, 0, 3, start)
	switch {
	case source == "" || source == "demo":
		err = p.loadDemo(ctx, start)
	default:
		err = p.loadHF(ctx, source, start)
	}
	if err == nil {
		err = b.Sync(ctx)
	}
	if err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
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

func (p *Pipeline) loadDemo(ctx context.Context, start time.Time) error {
	raw, err := demoFS.ReadFile("demo/config.json")
	if err != nil {
		return err
	}
	var dc demoConfig
	if err := json.Unmarshal(raw, &dc); err != nil {
		return fmt.Errorf("model: demo config: %w", err)
	}
	open := func(name string) (weights.Source, error) {
		b, err := demoFS.ReadFile("demo/" + name)
		if err != nil {
			return nil, err
		}
		return weights.NewSafetensors(bytes.NewReader(b), int64(len(b)), "demo/"+name)
	}
	tokRaw, err := demoFS.ReadFile("demo/tokenizer.json")
	if err != nil {
		return err
	}
	if p.tok, err = tokenizer.FromHFJSON(bytes.NewReader(tokRaw)); err != nil {
		return fmt.Errorf("model: demo tokenizer: %w", err)
	}
	gcfg, err := gemma2.ParseConfig(dc.TextEncoder.Config)
	if err != nil {
		return fmt.Errorf("model: demo text encoder config: %w", err)
	}
	dcfg, err := dit.ParseConfig(dc.Transformer.Config)
	if err != nil {
		return fmt.Errorf("model: demo transformer config: %w", err)
	}
	// The demo was trained without apex: QK-norm eps 1e-6 (demo README).
	dcfg.QKNormEps = 1e-6
	vcfg, err := vae.ParseConfig(dc.VAE.Config)
	if err != nil {
		return fmt.Errorf("model: demo VAE config: %w", err)
	}
	srcs := [3]weights.Source{}
	for i, name := range []string{"text_encoder.safetensors", "dit.safetensors", "vae_decoder.safetensors"} {
		if srcs[i], err = open(name); err != nil {
			return fmt.Errorf("model: demo %s: %w", name, err)
		}
	}
	if err := p.load(srcs, gcfg, dcfg, vcfg, start); err != nil {
		return err
	}
	r := dc.Sampler.Recommended
	p.def = defaults{width: dc.Pipeline.ImageSize[1], height: dc.Pipeline.ImageSize[0],
		steps: r.Steps - 1, solver: r.Method, shift: r.Shift, guidance: r.CFG,
		vaeScale: vcfg.ScalingFactor, vaeShift: vcfg.ShiftFactor}
	p.name = "Lumina-Image 2.0 demo (embedded, 64×64 coloured shapes)"
	return nil
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
	gl := &nn.Loader{B: p.b, Src: gsrc}
	p.loaders = append(p.loaders, gl)
	p.textN = gcfg.NumHiddenLayers - 1 // hidden_states[-2] (spec §1.4)
	if p.text, err = gemma2.LoadStreamed(gl, gcfg, p.textN); err != nil {
		return fmt.Errorf("model: text encoder: %w", err)
	}
	p.progress(StageLoad, 1, 3, start)
	dsrc, err := detect(weights.DetectDiT, srcs[1])
	if err != nil {
		return fmt.Errorf("model: transformer: %w", err)
	}
	dl := &nn.Loader{B: p.b, Src: dsrc}
	p.loaders = append(p.loaders, dl)
	if p.dit, err = dit.Load(dl, dcfg); err != nil {
		return fmt.Errorf("model: transformer: %w", err)
	}
	p.progress(StageLoad, 2, 3, start)
	vsrc, err := detect(weights.DetectVAE, srcs[2])
	if err != nil {
		return fmt.Errorf("model: VAE: %w", err)
	}
	vl := &nn.Loader{B: p.b, Src: vsrc}
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

// loadHF loads a Hugging Face snapshot folder of Lumina-Image-2.0.
func (p *Pipeline) loadHF(ctx context.Context, dir string, start time.Time) error {
	if _, err := os.Stat(filepath.Join(dir, "model_index.json")); err != nil {
		return fmt.Errorf("model: %s is not a Lumina-Image-2.0 folder (no model_index.json): %w", dir, err)
	}
	readConfig := func(sub string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(dir, sub, "config.json"))
		if err != nil {
			return nil, fmt.Errorf("model: %w", err)
		}
		return b, nil
	}
	var gcfg gemma2.Config
	var dcfg dit.Config
	var vcfg vae.Config
	if raw, err := readConfig("text_encoder"); err != nil {
		return err
	} else if gcfg, err = gemma2.ParseConfig(raw); err != nil {
		return fmt.Errorf("model: text_encoder/config.json: %w", err)
	}
	if raw, err := readConfig("transformer"); err != nil {
		return err
	} else if dcfg, err = dit.ParseConfig(raw); err != nil {
		return fmt.Errorf("model: transformer/config.json: %w", err)
	}
	if raw, err := readConfig("vae"); err != nil {
		return err
	} else if vcfg, err = vae.ParseConfig(raw); err != nil {
		return fmt.Errorf("model: vae/config.json: %w", err)
	}
	var err error
	if p.tok, err = openTokenizer(filepath.Join(dir, "tokenizer")); err != nil {
		return err
	}
	var srcs [3]weights.Source
	for i, sub := range []string{"text_encoder", "transformer", "vae"} {
		if srcs[i], err = openWeights(filepath.Join(dir, sub)); err != nil {
			return err
		}
	}
	if err := p.load(srcs, gcfg, dcfg, vcfg, start); err != nil {
		return err
	}
	p.def = defaults{width: 1024, height: 1024, steps: 17, solver: "midpoint", shift: 6, guidance: 4,
		vaeScale: vcfg.ScalingFactor, vaeShift: vcfg.ShiftFactor}
	p.name = "Lumina-Image 2.0 (" + dir + ")"
	return nil
}

// openTokenizer reads tokenizer.json, or else tokenizer.model, in dir.
func openTokenizer(dir string) (*tokenizer.Tokenizer, error) {
	if f, err := os.Open(filepath.Join(dir, "tokenizer.json")); err == nil {
		defer f.Close()
		return tokenizer.FromHFJSON(f)
	}
	f, err := os.Open(filepath.Join(dir, "tokenizer.model"))
	if err != nil {
		return nil, fmt.Errorf("model: no tokenizer.json or tokenizer.model in %s", dir)
	}
	defer f.Close()
	return tokenizer.FromSentencePiece(f)
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

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
