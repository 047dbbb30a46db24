// Package model is lumina's one entry point: Open a text-to-image pipeline
// (Gemma-2 text encoder, Unified Next-DiT, FLUX VAE decoder) from a
// checkpoint, Generate images from prompts, Close it.
//
//	p, err := model.Open(ctx, "", model.Config{})        // "" = the embedded demo model
//	img, err := p.Generate(ctx, model.Request{Prompt: "a red circle on a blue background", Seed: 1})
//	png.Encode(f, img)
//
// Sampling follows the original repository's sample.py (spec §4): flow
// matching from noise (t = 0) to data (t = 1) on a shifted time grid, CFG
// with renormalisation and optional truncation. Zero values in Config and
// Request mean the documented defaults.
package model

import (
	"context"
	"errors"
	"fmt"
	"image"
	"net/http"
	"time"

	"github.com/luminaweb/lumina/model/internal/dit"
	"github.com/luminaweb/lumina/model/internal/gemma2"
	"github.com/luminaweb/lumina/model/internal/nn"
	"github.com/luminaweb/lumina/model/internal/tokenizer"
	"github.com/luminaweb/lumina/model/internal/vae"
	"github.com/luminaweb/lumina/model/ops"
	"github.com/luminaweb/lumina/model/tensor"
	"github.com/luminaweb/lumina/wgpu"
)

// Config configures Open. The zero value runs on the first WebGPU adapter
// with its own limits and reports no progress.
type Config struct {
	// CPU runs on the float64 reference backend instead of a GPU: slow,
	// exact, and available on every build (wasm included).
	CPU bool
	// GPUBackend, when set, requires this WebGPU backend ("vulkan",
	// "metal", "d3d12", ...).
	GPUBackend string
	// MaxStorageBinding, when set, caps the device's storage binding size
	// (to rehearse smaller GPUs).
	MaxStorageBinding uint64
	// Device, when set, is used instead of opening one; the pipeline does
	// not close it.
	Device *wgpu.Device
	// Progress, when set, is called at every stage and step.
	Progress func(Progress)
	// LowMemory frees the text encoder's weights on the device once the
	// prompts are encoded, and loads them again for the next image, so the
	// transformer never shares the device with them (about 2 GiB less at
	// the real model's q4, 7 GiB at f32), at the cost of reading them each
	// image.
	LowMemory bool
	// Preview, when set, receives after every model evaluation the image
	// the model currently predicts (the velocity carried to t = 1, x +
	// (1 − t)·v, decoded). Each preview is a full VAE decode: cheap for
	// small images, a real cost at 1024².
	Preview func(eval, total int, img *image.NRGBA)
	// HTTPClient fetches packs given by URL (nil: http.DefaultClient).
	HTTPClient *http.Client

	// For a source that is a single transformer file (ComfyUI's
	// lumina_2_model_bf16.safetensors, or any Next-DiT safetensors):
	// TextEncoder is the Gemma-2 file (ComfyUI's gemma_2_2b_fp16.safetensors,
	// whose embedded SentencePiece model serves as the tokenizer), VAE the
	// decoder file (ae.safetensors or diffusers'), Tokenizer an optional
	// tokenizer.json or tokenizer.model, and Configs an optional folder with
	// transformer/, text_encoder/ and vae/ config.json (default: the real
	// Lumina-Image-2.0 configuration).
	TextEncoder, VAE, Tokenizer, Configs string
}

// Stage names a part of the work, for progress reports.
type Stage string

// The stages, in order.
const (
	StageLoad    Stage = "load"
	StageEncode  Stage = "encode"
	StageDenoise Stage = "denoise"
	StageDecode  Stage = "decode"
)

// Progress reports how far a stage has come.
type Progress struct {
	Stage       Stage
	Done, Total int           // units of the stage (model evaluations while denoising)
	Elapsed     time.Duration // since the stage began
}

// Request describes one image. Zero values mean the model's defaults:
// its native size, the original sampler (midpoint on 18 grid points, 34
// model evaluations, shift 6 for the real model; the demo model's own
// recommendation for the demo), guidance 4, renorm 1, no truncation, the
// "real" system prompt.
type Request struct {
	Prompt   string
	Negative string // "" is the empty negative prompt (just <bos>)
	Width    int    // pixels, a multiple of 16
	Height   int
	Steps    int     // solver steps (grid intervals)
	Guidance float64 // CFG scale; 1 turns CFG off
	// CFGTrunc is the original's cfg_trunc: CFG runs while the model time
	// t < CFGTrunc. 0 means never truncate.
	CFGTrunc float64
	// Renorm is the original's renorm_cfg: the guided velocity's global L2
	// norm is clamped to Renorm·‖cond‖. 0 means 1; a negative value turns
	// it off.
	Renorm float64
	Solver string  // "midpoint" (default), "euler" or "dpm"
	Shift  float64 // time shift s; 0 means the model's default
	Seed   uint64
	// System picks the system prompt written before Prompt.
	System SystemPrompt
	// Diffusers switches the sampler to the diffusers references'
	// semantics where they differ from the original (spec §10): guidance
	// renormalised per row to the conditional row's norm (cfg_normalization,
	// Renorm is then ignored), CFGTruncRatio as the truncation, and with
	// DynamicShift the shift computed from the image's token count
	// (use_dynamic_shifting).
	Diffusers bool
	// CFGTruncRatio is diffusers' cfg_trunc_ratio: with Diffusers, CFG is
	// skipped at step i of N when (i+1)/N > CFGTruncRatio. 0 means 1 (never).
	CFGTruncRatio float64
	// DynamicShift (with Diffusers) sets the shift from the image's token
	// count instead of Shift.
	DynamicShift bool
	// Cache is TeaCache's threshold (spec §6; the published script uses
	// 0.3): model evaluations judged redundant reuse the joint layers'
	// previous residual, separately for the positive and negative
	// branches. 0 turns it off.
	Cache float64
}

// SystemPrompt picks the system prompt written before the user's prompt
// (spec §1.2); the zero value is the original's default, "real".
type SystemPrompt = tokenizer.SystemPrompt

// ParseSystemPrompt maps a name (real, align, base, aesthetics, 4grid,
// empty) to a SystemPrompt.
func ParseSystemPrompt(name string) (SystemPrompt, error) { return tokenizer.ParseSystemPrompt(name) }

// Stats describes the last Generate call.
type Stats struct {
	Encode, Denoise, Decode time.Duration
	Evals                   int    // model (DiT) evaluations, CFG branches counted once per batch
	Reused                  int    // branch evaluations that reused the joint layers' residual (Request.Cache)
	PeakGPUBytes            uint64 // largest total of live GPU buffers so far (0 on the CPU)
}

// Pipeline generates images. It is not safe for concurrent use.
type Pipeline struct {
	cfg     Config
	b       ops.Backend
	dev     *wgpu.Device
	ownDev  bool
	tok     *tokenizer.Tokenizer
	text    *gemma2.Model
	textN   int // Gemma layers run (hidden_states[-2])
	dit     *dit.Model
	vae     *vae.Model
	loaders []*nn.Loader
	def     defaults
	name    string
	stats   Stats
	planner *planner    // the memory plan of this model, to check requests (GPU only)
	comps   *components // where the weights come from
	// lastLatent is the last image's denoised latent (for tests).
	lastLatent []float32
	// planDType is the matrices' format in a memory plan (zero: f32).
	planDType tensor.DType
	textCfg   gemma2.Config // to load the text encoder again (LowMemory)
}

// defaults are a model's sampler and size defaults.
type defaults struct {
	width, height int
	steps         int
	solver        string
	shift         float64
	guidance      float64
	vaeScale      float64
	vaeShift      float64
}

// ErrClosed is returned by a closed pipeline.
var ErrClosed = errors.New("model: the pipeline is closed")

// Name describes the loaded model.
func (p *Pipeline) Name() string { return p.name }

// Backend describes where the pipeline runs.
func (p *Pipeline) Backend() string { return p.b.Name() }

// Stats returns the figures of the last Generate.
func (p *Pipeline) Stats() Stats { return p.stats }

// Close releases the weights and the device (if the pipeline opened it).
func (p *Pipeline) Close() {
	if p == nil || p.b == nil {
		return
	}
	if p.planner != nil {
		p.planner.p.Close()
		p.planner = nil
	}
	if p.dit != nil {
		p.dit.Release()
	}
	for _, l := range p.loaders {
		l.Release()
	}
	if p.comps != nil {
		p.comps.close()
	}
	p.b.Close()
	if p.ownDev && p.dev != nil {
		p.dev.Close()
	}
	p.b = nil
}

func (p *Pipeline) progress(s Stage, done, total int, start time.Time) {
	if p.cfg.Progress != nil {
		p.cfg.Progress(Progress{Stage: s, Done: done, Total: total, Elapsed: time.Since(start)})
	}
}

// backend opens the device and backend cfg asks for.
func backend(ctx context.Context, cfg Config) (ops.Backend, *wgpu.Device, bool, error) {
	if cfg.CPU {
		return ops.NewCPU(), nil, false, nil
	}
	dev, own := cfg.Device, false
	if dev == nil {
		d, err := wgpu.Open(ctx, wgpu.Options{Backend: cfg.GPUBackend, MaxStorageBinding: cfg.MaxStorageBinding, Label: "lumina"})
		if err != nil {
			return nil, nil, false, fmt.Errorf("model: %w (Config.CPU runs without a GPU)", err)
		}
		dev, own = d, true
	}
	g, err := ops.NewGPU(dev, ops.GPUOptions{})
	if err != nil {
		if own {
			dev.Close()
		}
		return nil, nil, false, err
	}
	return g, dev, own, nil
}

// Generate makes one image.
func (p *Pipeline) Generate(ctx context.Context, req Request) (*image.NRGBA, error) {
	if p.b == nil {
		return nil, ErrClosed
	}
	r, err := p.resolve(req)
	if err != nil {
		return nil, err
	}
	if p.planner != nil {
		mp, err := p.planner.plan(ctx, PlanRequest{Width: r.Width, Height: r.Height})
		if err == nil {
			err = mp.Check(p.dev.Limits())
		}
		if err != nil {
			return nil, err
		}
	}
	return p.generate(ctx, r)
}
