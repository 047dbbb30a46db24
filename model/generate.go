package model

import (
	"context"
	"fmt"
	"image"
	"math"
	"strings"
	"time"

	"github.com/luminaweb/lumina/model/internal/gemma2"
	"github.com/luminaweb/lumina/model/internal/sched"
	"github.com/luminaweb/lumina/model/internal/tokenizer"
	"github.com/luminaweb/lumina/model/internal/vae"
	"github.com/luminaweb/lumina/model/ops"
	"github.com/luminaweb/lumina/model/tensor"
)

// resolved is a Request with every default filled in and checked.
type resolved struct {
	Request
	solver sched.Solver
}

// MaxSteps bounds Request.Steps.
const MaxSteps = 1000

// resolve applies the documented defaults and validates the request; the
// errors say what to change.
func (p *Pipeline) resolve(req Request) (resolved, error) {
	r := resolved{Request: req}
	d := p.def
	if r.Width == 0 {
		r.Width = d.width
	}
	if r.Height == 0 {
		r.Height = d.height
	}
	if _, err := p.latentShape(r.Width, r.Height); err != nil {
		return r, err
	}
	if r.Solver == "" {
		r.Solver = d.solver
	}
	switch strings.ToLower(r.Solver) {
	case "midpoint":
		r.solver = &sched.Midpoint{}
	case "euler":
		r.solver = sched.Euler{}
	case "dpm":
		r.solver = &sched.DPM{}
	default:
		return r, fmt.Errorf("model: unknown solver %q (want midpoint, euler or dpm)", r.Solver)
	}
	if r.Steps == 0 {
		r.Steps = d.steps
	}
	if r.Steps < 1 || r.Steps > MaxSteps {
		return r, fmt.Errorf("model: %d steps: want 1 to %d", r.Steps, MaxSteps)
	}
	if r.Shift == 0 {
		r.Shift = d.shift
	}
	if r.Diffusers && r.DynamicShift {
		if shape, err := p.latentShape(r.Width, r.Height); err == nil {
			pt := p.dit.Cfg.PatchSize
			r.Shift = sched.DynamicShift(shape[1] / pt * shape[2] / pt)
		}
	}
	if r.CFGTruncRatio < 0 || r.CFGTruncRatio > 1 || math.IsNaN(r.CFGTruncRatio) {
		return r, fmt.Errorf("model: cfg-trunc-ratio %g: want 0 to 1", r.CFGTruncRatio)
	}
	if r.Shift < 0 || math.IsNaN(r.Shift) || math.IsInf(r.Shift, 0) {
		return r, fmt.Errorf("model: shift %g: want a positive number", r.Shift)
	}
	if r.Guidance == 0 {
		r.Guidance = d.guidance
	}
	if r.Guidance < 0 || math.IsNaN(r.Guidance) || math.IsInf(r.Guidance, 0) {
		return r, fmt.Errorf("model: guidance %g: want ≥ 0", r.Guidance)
	}
	switch {
	case r.Renorm == 0:
		r.Renorm = 1
	case r.Renorm < 0:
		r.Renorm = 0 // off
	}
	if r.Cache < 0 || math.IsNaN(r.Cache) || math.IsInf(r.Cache, 0) {
		return r, fmt.Errorf("model: cache threshold %g: want ≥ 0 (0 turns it off)", r.Cache)
	}
	if r.CFGTrunc < 0 || math.IsNaN(r.CFGTrunc) {
		return r, fmt.Errorf("model: cfg-trunc %g: want ≥ 0", r.CFGTrunc)
	}
	if err := validSystem(r.System); err != nil {
		return r, err
	}
	return r, nil
}

func validSystem(s tokenizer.SystemPrompt) error {
	if _, err := tokenizer.ParseSystemPrompt(s.String()); err != nil {
		return fmt.Errorf("model: unknown system prompt %d", int(s))
	}
	return nil
}

// latentShape is the latent (C, H/f, W/f) of an image, f the VAE's
// upscale (8 for FLUX); each latent side must be a multiple of the DiT's
// patch size and the image at most sched.MaxSide (spec §4.8).
func (p *Pipeline) latentShape(width, height int) (tensor.Shape, error) {
	f, patch := p.vae.Cfg.Upscale(), p.dit.Cfg.PatchSize
	for _, d := range [2]int{width, height} {
		if d <= 0 || d%(f*patch) != 0 || d > sched.MaxSide {
			return nil, fmt.Errorf("model: image size %d×%d: each side must be a positive multiple of %d up to %d", width, height, f*patch, sched.MaxSide)
		}
	}
	return tensor.Shape{p.dit.Cfg.InChannels, height / f, width / f}, nil
}

// grid is the solver's time grid: the original's shifted linspace for the
// ODE solvers (steps intervals), its flow DPM grid for dpm.
func (r resolved) grid() []float64 {
	if _, ok := r.solver.(*sched.DPM); ok {
		return sched.DPMGrid(r.Steps, r.Shift)
	}
	return sched.Grid(r.Steps+1, r.Shift)
}

func (p *Pipeline) generate(ctx context.Context, r resolved) (*image.NRGBA, error) {
	p.stats = Stats{}
	if g, ok := p.b.(*ops.GPU); ok {
		defer g.WithContext(ctx)() // cancel between dispatches, not only between evaluations
	}
	cfgOn := r.Guidance != 1

	// 1. Text features: [positive, negative] in one batch (spec §1).
	t0 := time.Now()
	p.progress(StageEncode, 0, 1, t0)
	prompts := []string{tokenizer.Prompt(r.System, r.Prompt)}
	if cfgOn {
		neg := ""
		if r.Negative != "" {
			// The original prepends the system prompt to a non-empty
			// negative prompt (spec §1.2, §10.3).
			neg = tokenizer.Prompt(r.System, r.Negative)
		}
		prompts = append(prompts, neg)
	}
	feats, lens, err := p.encode(ctx, prompts)
	if err != nil {
		return nil, err
	}
	defer p.b.Release(feats)
	p.stats.Encode = time.Since(t0)
	p.progress(StageEncode, 1, 1, t0)

	// 2. Denoise from seeded noise (spec §4).
	t1 := time.Now()
	shape, _ := p.latentShape(r.Width, r.Height)
	x := make([]float32, shape.Numel())
	sched.Noise(x, r.Seed, 0)
	grid := r.grid()
	total := r.solver.NFE(len(grid) - 1)
	v, release, err := p.velocity(ctx, r, shape, feats, lens, total, func(done int) {
		p.progress(StageDenoise, done, total, t1)
	})
	if err != nil {
		return nil, err
	}
	defer release()
	// The DiT keeps per-geometry tables (RoPE, masks, cache residuals) for
	// the steps of this image; free them after, so that a long session of
	// prompts of every length does not accumulate them.
	defer p.dit.Release()
	p.dit.ResetCache()
	if r.Cache > 0 {
		tc := &teaCache{ctx: ctx, b: p.b, steps: total, thresh: r.Cache}
		p.dit.Cache = tc
		defer func() { p.dit.Cache = nil; p.stats.Reused = tc.reused }()
	}
	p.progress(StageDenoise, 0, total, t1)
	nfe, err := sched.Integrate(r.solver, x, grid, v)
	if err != nil {
		return nil, fmt.Errorf("model: denoise: %w", err)
	}
	p.stats.Evals = nfe
	p.stats.Denoise = time.Since(t1)
	p.lastLatent = append(p.lastLatent[:0], x...)

	// 3. Decode (spec §4.9, §5.6).
	t2 := time.Now()
	p.progress(StageDecode, 0, 1, t2)
	for i, z := range x {
		x[i] = float32(float64(z)/p.def.vaeScale + p.def.vaeShift)
	}
	img, err := p.decode(ctx, x, shape)
	if err != nil {
		return nil, err
	}
	p.stats.Decode = time.Since(t2)
	if p.dev != nil {
		p.stats.PeakGPUBytes = p.dev.Stats().PeakBufferBytes
	}
	p.progress(StageDecode, 1, 1, t2)
	return img, nil
}

// encode runs the text encoder on a batch of prompts, right-padded, and
// returns the features (B, L, D) and each prompt's length.
func (p *Pipeline) encode(ctx context.Context, prompts []string) (*ops.Tensor, []int, error) {
	ids := make([][]int, len(prompts))
	for i, s := range prompts {
		ids[i] = p.tok.Encode(s)
	}
	return p.encodeIDs(ctx, ids)
}

// encodeIDs is encode for token ids. The embedding rows come from the
// checkpoint (only the prompt's tokens are read), never from a table on the
// device. With LowMemory the text encoder's weights are loaded for the
// call and freed after.
func (p *Pipeline) encodeIDs(ctx context.Context, ids [][]int) (*ops.Tensor, []int, error) {
	gl := p.loaders[0]
	if p.text == nil {
		var err error
		if p.text, err = gemma2.LoadStreamed(gl, p.textCfg, p.textN); err != nil {
			return nil, nil, fmt.Errorf("model: reload the text encoder: %w", err)
		}
	}
	if p.cfg.LowMemory {
		defer func() {
			gl.Release()
			p.text = nil
			if t, ok := p.b.(interface{ Trim() }); ok {
				t.Trim()
			}
		}()
	}
	feats, lens, err := p.text.EncodeTokens(ids, p.textN)
	if err != nil {
		return nil, nil, fmt.Errorf("model: encode: %w", err)
	}
	if err := p.b.Sync(ctx); err != nil {
		p.b.Release(feats)
		return nil, nil, fmt.Errorf("model: encode: %w", err)
	}
	return feats, lens, nil
}

// velocity returns the guided velocity the solver integrates: the DiT on
// [x, x] with [positive, negative] features, combined by CFG with
// renormalisation (spec §4.6), or the positive branch alone where CFG is
// off or truncated. It runs the batch of two in one forward.
func (p *Pipeline) velocity(ctx context.Context, r resolved, shape tensor.Shape, feats *ops.Tensor, lens []int, total int, done func(int)) (sched.Velocity, func(), error) {
	n := shape.Numel()
	B := len(lens)
	xt, err := p.b.New(tensor.F32, B, shape[0], shape[1], shape[2])
	if err != nil {
		return nil, nil, err
	}
	tt, err := p.b.New(tensor.F32, B)
	if err != nil {
		p.b.Release(xt)
		return nil, nil, err
	}
	release := func() { p.b.Release(xt); p.b.Release(tt) }
	in := make([]float32, B*n)
	ts := make([]float32, B)
	guided := make([]float32, n)
	evals := 0
	v := func(x []float32, t float64) ([]float32, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		for b := range B {
			copy(in[b*n:], x)
			ts[b] = float32(t)
		}
		if err := p.b.Write(xt, in); err != nil {
			return nil, err
		}
		if err := p.b.Write(tt, ts); err != nil {
			return nil, err
		}
		out, err := p.dit.Forward(xt, tt, feats, lens)
		if err != nil {
			return nil, err
		}
		vals, err := p.b.Read(ctx, out)
		p.b.Release(out)
		if err != nil {
			return nil, fmt.Errorf("model: transformer: %w", err)
		}
		evals++
		trunc := sched.Trunc{Time: r.CFGTrunc}
		if r.Diffusers {
			trunc = sched.Trunc{Ratio: r.CFGTruncRatio}
		}
		steps := max(1, total/perStep(r.solver))
		step := (evals - 1) / perStep(r.solver)
		switch {
		case B == 1 || !trunc.Guided(t, step, steps):
			copy(guided, vals[:n])
		case r.Diffusers:
			sched.GuideRows(guided, vals[:n], vals[n:2*n], r.Guidance, shape[2])
		default:
			sched.Guide(guided, vals[:n], vals[n:2*n], r.Guidance, r.Renorm)
		}
		if p.cfg.Preview != nil {
			if err := p.preview(ctx, evals, total, x, guided, t, shape); err != nil {
				return nil, err
			}
		}
		done(evals)
		return guided, nil
	}
	return v, release, nil
}

// decode runs the VAE decoder on one latent already scaled for it.
func (p *Pipeline) decode(ctx context.Context, z []float32, shape tensor.Shape) (*image.NRGBA, error) {
	vals, h, w, err := p.decodeValues(ctx, z, shape)
	if err != nil {
		return nil, err
	}
	return vae.Image(vals, h, w)
}

// decodeValues returns the decoded (3, h, w) values in about [-1, 1].
func (p *Pipeline) decodeValues(ctx context.Context, z []float32, shape tensor.Shape) ([]float32, int, int, error) {
	zt, err := p.b.New(tensor.F32, 1, shape[0], shape[1], shape[2])
	if err != nil {
		return nil, 0, 0, err
	}
	defer p.b.Release(zt)
	if err := p.b.Write(zt, z); err != nil {
		return nil, 0, 0, err
	}
	out, err := p.vae.Decode(zt)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("model: decode: %w", err)
	}
	defer p.b.Release(out)
	vals, err := p.b.Read(ctx, out)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("model: decode: %w", err)
	}
	sh := out.Shape()
	return vals[:3*sh[2]*sh[3]], sh[2], sh[3], nil
}

// teaCache decides, per batch entry (positive and negative branch), whether
// a model evaluation may reuse the joint layers' residual (spec §6). Step
// indices count model evaluations.
type teaCache struct {
	ctx      context.Context
	b        ops.Backend
	steps    int
	thresh   float64
	branches []*sched.TeaCache
	prev     [][]float32
	step     int
	reused   int
}

func (c *teaCache) Decide(mod *ops.Tensor) ([]bool, error) {
	vals, err := c.b.Read(c.ctx, mod)
	if err != nil {
		return nil, err
	}
	B := mod.Shape()[0]
	if c.branches == nil {
		for range B {
			c.branches = append(c.branches, sched.NewTeaCache(c.thresh, c.steps, sched.Poly{}))
		}
		c.prev = make([][]float32, B)
	}
	per := len(vals) / B
	reuse := make([]bool, B)
	for e := range B {
		m := vals[e*per : (e+1)*per]
		delta := 0.0
		if c.prev[e] != nil {
			delta = sched.RelL1(m, c.prev[e])
		}
		c.prev[e] = append(c.prev[e][:0], m...)
		reuse[e] = !c.branches[e].Decide(c.step, delta)
		if reuse[e] {
			c.reused++
		}
	}
	c.step++
	return reuse, nil
}

// preview decodes the data the model predicts at time t, x + (1 − t)·v
// (spec §3.11: the velocity points from noise to data), for Config.Preview.
func (p *Pipeline) preview(ctx context.Context, eval, total int, x, v []float32, t float64, shape tensor.Shape) error {
	z := make([]float32, len(x))
	for i := range x {
		z[i] = float32((float64(x[i])+(1-t)*float64(v[i]))/p.def.vaeScale + p.def.vaeShift)
	}
	img, err := p.decode(ctx, z, shape)
	if err != nil {
		return err
	}
	p.cfg.Preview(eval, total, img)
	return nil
}

// perStep is the model evaluations one solver step makes.
func perStep(s sched.Solver) int { return max(1, s.NFE(1)) }
