package model

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"time"

	"github.com/luminaweb/lumina/model/internal/dit"
	"github.com/luminaweb/lumina/model/internal/gemma2"
	"github.com/luminaweb/lumina/model/internal/sched"
	"github.com/luminaweb/lumina/model/internal/vae"
	"github.com/luminaweb/lumina/model/ops"
	"github.com/luminaweb/lumina/model/tensor"
	"github.com/luminaweb/lumina/model/weights"
	"github.com/luminaweb/lumina/wgpu"
)

// The real Lumina-Image-2.0 configuration (the Hugging Face repository's
// transformer/, text_encoder/ and vae/ config.json), for plans made
// without the model at hand.
//
//go:embed presets/lumina2/*.json
var presetFS embed.FS

// StagePlan is the GPU memory of one stage.
type StagePlan struct {
	Stage Stage
	// Peak is the most GPU bytes alive during the stage (weights
	// included), as the GPU backend would allocate them.
	Peak uint64
}

// MemoryPlan is what generating an image needs from a GPU.
type MemoryPlan struct {
	Model         string
	Width, Height int
	CaptionTokens int
	Weights       uint64 // bytes of weights on the device
	Stages        []StagePlan
	Peak          uint64 // the largest stage peak
	LargestTensor uint64 // the largest single buffer
	LargestShape  string
	Tensors       int
}

// PlanRequest says what to plan for.
type PlanRequest struct {
	// Source is "" for the real Lumina-Image-2.0 configuration, "demo" for
	// the embedded demo, or a Hugging Face folder (only its configs are
	// read: no weights are needed).
	Source        string
	Width, Height int // 0: the model's native size
	// CaptionTokens is the prompt length in tokens (0: 256, the most the
	// tokenizer gives, the worst case).
	CaptionTokens int
	// Weights is the format of the matrices: "f32" (default), "f16",
	// "bf16", "q8" or "q4", as a pack of that format uploads them.
	Weights string
	// LowMemory plans Config.LowMemory: the text encoder's weights leave
	// the device after encoding.
	LowMemory bool
}

// Plan runs the pipeline's code on a backend that allocates and computes
// nothing, and reports the GPU memory each stage would hold: the plan comes
// from the same code that allocates, for any configuration, without any
// weights present.
func Plan(ctx context.Context, pr PlanRequest) (*MemoryPlan, error) {
	var gcfg gemma2.Config
	var dcfg dit.Config
	var vcfg vae.Config
	name, native := "Lumina-Image 2.0 (2.6B)", 1024
	if pr.Source == "" {
		raw := map[string]json.RawMessage{}
		for _, c := range []string{"text_encoder", "transformer", "vae"} {
			b, err := presetFS.ReadFile("presets/lumina2/" + c + ".json")
			if err != nil {
				return nil, err
			}
			raw[c] = b
		}
		c := &components{rawConfigs: raw}
		if err := c.parseConfigs(); err != nil {
			return nil, fmt.Errorf("model: plan: %w", err)
		}
		gcfg, dcfg, vcfg = c.gcfg, c.dcfg, c.vcfg
	} else {
		c, err := openComponents(ctx, pr.Source, Config{})
		if err != nil {
			return nil, err
		}
		c.close()
		gcfg, dcfg, vcfg, name, native = c.gcfg, c.dcfg, c.vcfg, c.name, c.def.width
	}
	if pr.Width == 0 {
		pr.Width = native
	}
	if pr.Height == 0 {
		pr.Height = pr.Width
	}
	dt, err := planDType(pr.Weights)
	if err != nil {
		return nil, err
	}
	pl, err := newPlanner(gcfg, dcfg, vcfg, name, dt)
	if err != nil {
		return nil, err
	}
	pl.p.cfg.LowMemory = pr.LowMemory
	defer pl.p.Close()
	return pl.plan(ctx, pr)
}

func planDType(s string) (tensor.DType, error) {
	switch s {
	case "", "f32":
		return tensor.F32, nil
	case "f16":
		return tensor.F16, nil
	case "bf16":
		return tensor.BF16, nil
	case "q8":
		return tensor.Q8, nil
	case "q4":
		return tensor.Q4, nil
	}
	return 0, fmt.Errorf("model: plan: weight format %q: want f32, f16, bf16, q8 or q4", s)
}

// planner is a pipeline on the plan backend, kept to check requests.
type planner struct {
	p    *Pipeline
	b    *ops.CPU
	name string
}

func newPlanner(gcfg gemma2.Config, dcfg dit.Config, vcfg vae.Config, name string, dt tensor.DType) (*planner, error) {
	b := ops.NewPlan()
	p := &Pipeline{b: b, planDType: dt}
	if err := p.load([3]weights.Source{}, gcfg, dcfg, vcfg, time.Now()); err != nil {
		p.Close()
		return nil, err
	}
	return &planner{p: p, b: b, name: name}, nil
}

// plan measures the stages of one generation.
func (pl *planner) plan(ctx context.Context, pr PlanRequest) (*MemoryPlan, error) {
	p, b, name := pl.p, pl.b, pl.name
	w, h := pr.Width, pr.Height
	if w == 0 || h == 0 {
		return nil, fmt.Errorf("model: plan: no image size")
	}
	shape, err := p.latentShape(w, h)
	if err != nil {
		return nil, err
	}
	L := pr.CaptionTokens
	if L == 0 {
		L = 256
	}
	mp := &MemoryPlan{Model: name, Width: w, Height: h, CaptionTokens: L}
	mp.Weights = b.PlanStats().Live
	live := mp.Weights
	defer func() { // leave only the weights, for the next plan
		p.dit.Release() // the geometry's RoPE tables and masks
		if st := b.PlanStats(); st.Live > live {
			panic(fmt.Sprintf("model: plan leaked %d bytes", st.Live-live))
		}
	}()
	ids := make([][]int, 2) // [prompt, negative], both padded to L
	for i := range ids {
		ids[i] = make([]int, L)
		ids[i][0] = 2
	}
	stage := func(s Stage, run func() error) error {
		b.ResetPeak()
		if err := run(); err != nil {
			return err
		}
		mp.Stages = append(mp.Stages, StagePlan{Stage: s, Peak: b.PlanStats().Peak})
		return nil
	}
	var feats *ops.Tensor
	var lens []int
	err = stage(StageEncode, func() error {
		var err error
		feats, lens, err = p.encodeIDs(ctx, ids)
		return err
	})
	if err == nil {
		err = stage(StageDenoise, func() error {
			r := resolved{Request: Request{Guidance: 4, Renorm: 1}, solver: sched.Euler{}}
			v, release, err := p.velocity(ctx, r, shape, feats, lens, 1, func(int) {})
			if err != nil {
				return err
			}
			defer release()
			_, err = v(make([]float32, shape.Numel()), 0.5)
			return err
		})
	}
	if feats != nil {
		b.Release(feats)
	}
	if err == nil {
		err = stage(StageDecode, func() error {
			_, _, _, err := p.decodeValues(ctx, make([]float32, shape.Numel()), shape)
			return err
		})
	}
	if err != nil {
		return nil, fmt.Errorf("model: plan: %w", err)
	}
	st := b.PlanStats()
	for _, s := range mp.Stages {
		mp.Peak = max(mp.Peak, s.Peak)
	}
	mp.LargestTensor, mp.LargestShape, mp.Tensors = st.Largest, st.LargestShape.String(), st.Tensors
	return mp, nil
}

// Check compares the plan with a device's limits: a buffer above
// maxBufferSize is a *wgpu.LimitError that says what to lower.
func (mp *MemoryPlan) Check(lim wgpu.Limits) error {
	if mp.LargestTensor > lim.MaxBufferSize {
		return &wgpu.LimitError{Name: "maxBufferSize", Need: mp.LargestTensor, Have: lim.MaxBufferSize,
			What: fmt.Sprintf("a %dx%d image with %s (its largest tensor, %s)", mp.Width, mp.Height, mp.Model, mp.LargestShape)}
	}
	return nil
}
