package opstest

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/luminaweb/lumina/model/ops"
	"github.com/luminaweb/lumina/model/tensor"
	"github.com/luminaweb/lumina/shaders/ref"
)

// Tolerances of the pointwise family.
var (
	// Mul, Scale: one correctly rounded f32 product per element.
	mulTol = Tolerance{Rel: 2 * u, NMSE: 1e-12, Why: "one f32 rounding per element"}
	// Modulate: fl(x·fl(1+s)) is two f32 roundings, each relative to the
	// result (fl(1+s) = (1+s)(1+δ)), plus the reference's own rounding:
	// 3u and second-order terms.
	modulateTol = Tolerance{Rel: 4 * u, NMSE: 1e-12, Why: "two f32 roundings per element"}
	// Act, Gate: both activations are x·sigmoid(y) = x/(1+exp(−y)) on the
	// GPU. WGSL's exp is within 3+2|y| ULP and its division 2.5 ULP; the
	// result inherits exp's relative error times 1−σ(y) plus that of y
	// (≈4u·|y|), at most ≈50 ULP ≈ 3e-6 for |y| ≤ 20. Beyond that the result
	// is either below Abs or x·1 exactly. Rel 1e-5 is that bound with a
	// factor 3 of headroom, tighter than STYLE's 1e-3 so that a wrong GELU
	// coefficient (0.04471 for 0.044715 moves results by ~2e-4) fails.
	// lavapipe measured within 1e-8 + 1e-6·|ref|.
	actTol = Tolerance{Abs: 1e-6, Rel: 1e-5, Why: "x·sigmoid(y) from WGSL exp (3+2|y| ULP) and division: atol 1e-6, rtol 1e-5"}
	// GatedAdd: tanh(g)·y + x. WGSL's tanh inherits sinh/cosh's accuracy,
	// a few tens of ULP for |g| ≤ 15 (the kernel clamps beyond, where f32
	// tanh is ±1), relative to the product; with the sum's own roundings
	// the bound is Rel·(|x| + |tanh(g)·y|), the sum's condition, since the
	// sum may cancel. lavapipe measured within 2 ULP of that scale.
	gatedAddTol = Tolerance{Abs: 1e-6, Rel: 1e-5, Why: "tanh within tens of ULP, relative to |x|+|tanh(g)·y|: atol 1e-6, rtol 1e-5"}
	// Timestep: WGSL specifies sin and cos only to 2^-11 absolute on
	// [−π, π]; real implementations are far better, so STYLE's
	// transcendental default stands (tinygrad's). cos(t·f) ≥ cos 1 here, so
	// rtol 1e-3 still catches a wrong frequency or order.
	transTol = Tolerance{Abs: 1e-6, Rel: 1e-3, Why: "sin, cos: STYLE transcendental default atol 1e-6, rtol 1e-3"}
	// Data movement copies bits.
	exactTol = Tolerance{Why: "data movement is bit-exact"}
)

func pointwiseOf(h *harness) (ops.Pointwise, error) {
	pb, ok := h.b.(ops.Pointwise)
	if !ok {
		return nil, fmt.Errorf("backend %s lacks the Pointwise family", h.b.Name())
	}
	return pb, nil
}

// inputs makes one input per shape, uniform in [lo, hi).
func (h *harness) inputN(lo, hi float64, shapes ...[]int) ([]*operand, error) {
	os := make([]*operand, len(shapes))
	for i, s := range shapes {
		o, err := h.input(lo, hi, s...)
		if err != nil {
			return nil, err
		}
		os[i] = o
	}
	return os, nil
}

func mulCase(rows, cols int, rowBcast, random bool) Case {
	p := fmt.Sprintf("rows=%d,cols=%d", rows, cols)
	bshape := []int{rows, cols}
	if rowBcast {
		p += ",b=row"
		bshape = []int{cols}
	}
	return Case{Op: "Mul", Params: p, Random: random, run: func(h *harness) error {
		pb, err := pointwiseOf(h)
		if err != nil {
			return err
		}
		in, err := h.inputN(-2, 2, []int{rows, cols}, bshape)
		if err != nil {
			return err
		}
		out, err := h.output(rows, cols)
		if err != nil {
			return err
		}
		pb.Mul(out.view, in[0].view, in[1].view)
		want := make([]float32, rows*cols)
		ref.Mul(want, in[0].host, in[1].host)
		return h.result(out, want, nil, mulTol)
	}}
}

func scaleCase(rows, cols int, s float32, random bool) Case {
	return Case{Op: "Scale", Params: fmt.Sprintf("rows=%d,cols=%d,s=%g", rows, cols, s), Random: random, run: func(h *harness) error {
		pb, err := pointwiseOf(h)
		if err != nil {
			return err
		}
		x, err := h.input(-2, 2, rows, cols)
		if err != nil {
			return err
		}
		out, err := h.output(rows, cols)
		if err != nil {
			return err
		}
		pb.Scale(out.view, x.view, s)
		want := make([]float32, rows*cols)
		ref.Scale(want, x.host, s)
		return h.result(out, want, nil, mulTol)
	}}
}

func actRef(act ops.Activation) func(float64) float64 {
	if act == ops.GELUTanh {
		return ref.GELUTanh64
	}
	return ref.SiLU64
}

// actCase draws x from [-r, r); r = 150 probes the overflow of exp and
// tanh (ggml tests GELU on [-150, 150] for the same reason).
func actCase(act ops.Activation, rows, cols int, r float64, random bool) Case {
	p := fmt.Sprintf("%v,rows=%d,cols=%d,range=%g", act, rows, cols, r)
	return Case{Op: "Act", Params: p, Random: random, run: func(h *harness) error {
		pb, err := pointwiseOf(h)
		if err != nil {
			return err
		}
		x, err := h.input(-r, r, rows, cols)
		if err != nil {
			return err
		}
		out, err := h.output(rows, cols)
		if err != nil {
			return err
		}
		pb.Act(out.view, x.view, act)
		want := make([]float32, rows*cols)
		ref.Act(want, x.host, actRef(act))
		return h.result(out, want, nil, actTol)
	}}
}

func gateCase(act ops.Activation, rows, cols int, r float64, random bool) Case {
	p := fmt.Sprintf("%v,rows=%d,cols=%d,range=%g", act, rows, cols, r)
	return Case{Op: "Gate", Params: p, Random: random, run: func(h *harness) error {
		pb, err := pointwiseOf(h)
		if err != nil {
			return err
		}
		in, err := h.inputN(-r, r, []int{rows, cols}, []int{rows, cols})
		if err != nil {
			return err
		}
		out, err := h.output(rows, cols)
		if err != nil {
			return err
		}
		pb.Gate(out.view, in[0].view, in[1].view, act)
		want := make([]float32, rows*cols)
		ref.Gate(want, in[0].host, in[1].host, actRef(act))
		return h.result(out, want, nil, actTol)
	}}
}

func modulateCase(B, L, D int, random bool) Case {
	return Case{Op: "Modulate", Params: fmt.Sprintf("B=%d,L=%d,D=%d", B, L, D), Random: random, run: func(h *harness) error {
		pb, err := pointwiseOf(h)
		if err != nil {
			return err
		}
		in, err := h.inputN(-2, 2, []int{B, L, D}, []int{B, D})
		if err != nil {
			return err
		}
		out, err := h.output(B, L, D)
		if err != nil {
			return err
		}
		pb.Modulate(out.view, in[0].view, in[1].view)
		want := make([]float32, B*L*D)
		ref.Modulate(want, in[0].host, in[1].host, B, L, D)
		return h.result(out, want, nil, modulateTol)
	}}
}

// gatedAddCase draws the gate from [-g, g); g = 100 probes tanh's
// saturation (and overflow in implementations that use exp).
func gatedAddCase(B, L, D int, g float64, random bool) Case {
	return Case{Op: "GatedAdd", Params: fmt.Sprintf("B=%d,L=%d,D=%d,gate=%g", B, L, D, g), Random: random, run: func(h *harness) error {
		pb, err := pointwiseOf(h)
		if err != nil {
			return err
		}
		in, err := h.inputN(-2, 2, []int{B, L, D}, []int{B, L, D})
		if err != nil {
			return err
		}
		gt, err := h.input(-g, g, B, D)
		if err != nil {
			return err
		}
		in = append(in, gt)
		out, err := h.output(B, L, D)
		if err != nil {
			return err
		}
		pb.GatedAdd(out.view, in[0].view, in[1].view, in[2].view)
		x, y, g := in[0].host, in[1].host, in[2].host
		want := make([]float32, B*L*D)
		ref.GatedAdd(want, x, y, g, B, L, D)
		scale := make([]float64, len(want))
		for i := range scale {
			gi := (i/(L*D))*D + i%D
			scale[i] = math.Abs(float64(x[i])) + math.Abs(math.Tanh(float64(g[gi]))*float64(y[i]))
		}
		return h.result(out, want, scale, gatedAddTol)
	}}
}

// Timestep: t is model time in [0, 1] (spec §3.3), so every phase t·f_k
// is in [0, 1].
func timestepCase(B, F int, random bool) Case {
	return Case{Op: "Timestep", Params: fmt.Sprintf("B=%d,F=%d", B, F), Random: random, run: func(h *harness) error {
		pb, err := pointwiseOf(h)
		if err != nil {
			return err
		}
		t, err := h.input(0, 1, B)
		if err != nil {
			return err
		}
		out, err := h.output(B, F)
		if err != nil {
			return err
		}
		pb.Timestep(out.view, t.view)
		want := make([]float32, B*F)
		ref.Timestep(want, t.host, F)
		return h.result(out, want, nil, transTol)
	}}
}

func patchCase(B, C, H, W, p int, random bool) Case {
	return Case{Op: "Patchify", Params: fmt.Sprintf("B=%d,C=%d,H=%d,W=%d,p=%d", B, C, H, W, p), Random: random, run: func(h *harness) error {
		pb, err := pointwiseOf(h)
		if err != nil {
			return err
		}
		x, err := h.input(-1, 1, B, C, H, W)
		if err != nil {
			return err
		}
		out, err := h.output(B, (H/p)*(W/p), p*p*C)
		if err != nil {
			return err
		}
		pb.Patchify(out.view, x.view, p)
		want := make([]float32, len(x.host))
		ref.Patchify(want, x.host, B, C, H, W, p)
		return h.result(out, want, nil, exactTol)
	}}
}

func unpatchCase(B, C, H, W, p int, random bool) Case {
	return Case{Op: "Unpatchify", Params: fmt.Sprintf("B=%d,C=%d,H=%d,W=%d,p=%d", B, C, H, W, p), Random: random, run: func(h *harness) error {
		pb, err := pointwiseOf(h)
		if err != nil {
			return err
		}
		x, err := h.input(-1, 1, B, (H/p)*(W/p), p*p*C)
		if err != nil {
			return err
		}
		out, err := h.output(B, C, H, W)
		if err != nil {
			return err
		}
		pb.Unpatchify(out.view, x.view, p)
		want := make([]float32, len(x.host))
		ref.Unpatchify(want, x.host, B, C, H, W, p)
		return h.result(out, want, nil, exactTol)
	}}
}

func upsampleCase(B, C, H, W int, random bool) Case {
	return Case{Op: "Upsample2x", Params: fmt.Sprintf("B=%d,C=%d,H=%d,W=%d", B, C, H, W), Random: random, run: func(h *harness) error {
		pb, err := pointwiseOf(h)
		if err != nil {
			return err
		}
		x, err := h.input(-1, 1, B, C, H, W)
		if err != nil {
			return err
		}
		out, err := h.output(B, C, 2*H, 2*W)
		if err != nil {
			return err
		}
		pb.Upsample2x(out.view, x.view)
		want := make([]float32, 4*len(x.host))
		ref.Upsample2x(want, x.host, B, C, H, W)
		return h.result(out, want, nil, exactTol)
	}}
}

// transposeCase with B = 0 uses a 2-D x (R, C).
func transposeCase(B, R, C int, random bool) Case {
	xs, os := []int{B, R, C}, []int{B, C, R}
	p := fmt.Sprintf("B=%d,R=%d,C=%d", B, R, C)
	if B == 0 {
		xs, os, B = []int{R, C}, []int{C, R}, 1
		p = fmt.Sprintf("R=%d,C=%d", R, C)
	}
	return Case{Op: "Transpose", Params: p, Random: random, run: func(h *harness) error {
		pb, err := pointwiseOf(h)
		if err != nil {
			return err
		}
		x, err := h.input(-1, 1, xs...)
		if err != nil {
			return err
		}
		out, err := h.output(os...)
		if err != nil {
			return err
		}
		pb.Transpose(out.view, x.view)
		want := make([]float32, len(x.host))
		ref.Transpose(want, x.host, B, R, C)
		return h.result(out, want, nil, exactTol)
	}}
}

// copyCase concatenates inputs (r_k, cols) along rows into one output
// through views; with one input whose rows differ from the output's it
// reshapes. skip > 0 copies the input from a view that starts skip rows
// in (a slice).
func copyCase(cols, skip int, rows ...int) Case {
	p := fmt.Sprintf("rows=%v,cols=%d", rows, cols)
	if skip > 0 {
		p += fmt.Sprintf(",skip=%d", skip)
	}
	return Case{Op: "Copy", Params: p, run: func(h *harness) error {
		pb, err := pointwiseOf(h)
		if err != nil {
			return err
		}
		total := 0
		var want []float32
		var parts []*ops.Tensor
		for _, r := range rows {
			x, err := h.input(-1, 1, r+skip, cols)
			if err != nil {
				return err
			}
			total += r
			want = append(want, x.host[skip*cols:]...)
			parts = append(parts, h.b.View(x.view, skip*cols, r*cols)) // flattened slice
		}
		out, err := h.output(total, cols)
		if err != nil {
			return err
		}
		at := 0
		for k, r := range rows {
			pb.Copy(h.b.View(out.view, at*cols, r, cols), parts[k])
			at += r
		}
		return h.result(out, want, nil, exactTol)
	}}
}

// copyWithinCase copies the first rows of a tensor over its last rows:
// source and destination are views of one tensor (on the GPU one buffer,
// which WebGPU cannot copy within).
func copyWithinCase(rows, cols int) Case {
	return Case{Op: "Copy", Params: fmt.Sprintf("within,rows=%d,cols=%d", rows, cols), run: func(h *harness) error {
		pb, err := pointwiseOf(h)
		if err != nil {
			return err
		}
		out, err := h.alloc(tensor.F32, []int{2 * rows, cols}, func(int) float32 { return float32(2*h.rng.Float64() - 1) })
		if err != nil {
			return err
		}
		pb.Copy(h.b.View(out.view, rows*cols, rows, cols), h.b.View(out.view, 0, rows, cols))
		want := append(append([]float32(nil), out.host[:rows*cols]...), out.host[:rows*cols]...)
		return h.result(out, want, nil, exactTol)
	}}
}

func pointwiseCases(cfg Config, rng *rand.Rand) []Case {
	var cs []Case
	// Elementwise: size 1, a prime, workgroup size 256 −1/0/+1, rows not a
	// multiple of 4, real shapes.
	for _, rc := range [][2]int{{1, 1}, {1, 7919}, {1, 255}, {1, 256}, {1, 257}} {
		cs = append(cs, mulCase(rc[0], rc[1], false, false))
	}
	cs = append(cs,
		mulCase(3, 1023, true, false),
		mulCase(5, 1, true, false),
		scaleCase(1, 1, 0.125, false),
		scaleCase(1, 257, -3.5, false),
		scaleCase(7, 1023, 1.0/48, false),
	)
	for _, act := range []ops.Activation{ops.SiLU, ops.GELUTanh} {
		cs = append(cs,
			actCase(act, 1, 1, 8, false),
			actCase(act, 1, 255, 8, false),
			actCase(act, 1, 257, 8, false),
			actCase(act, 3, 1023, 8, false),
			actCase(act, 1, 4099, 150, false),
			gateCase(act, 1, 1, 8, false),
			gateCase(act, 1, 256, 8, false),
			gateCase(act, 5, 1021, 8, false),
			gateCase(act, 2, 2049, 150, false),
			gateCase(act, 77, 9216, 4, false), // caption tokens × FFN dim
		)
	}
	// Per-sample broadcasts: D not a multiple of 4, B = 2 (CFG).
	for _, s := range [][3]int{{1, 1, 1}, {2, 3, 5}, {1, 257, 7}, {2, 17, 1023}} {
		cs = append(cs, modulateCase(s[0], s[1], s[2], false), gatedAddCase(s[0], s[1], s[2], 2, false))
	}
	cs = append(cs, gatedAddCase(2, 5, 301, 100, false))
	if !cfg.Short {
		// Next-DiT joint tokens × dim under CFG: 20M elements, more than
		// 65,535 workgroups.
		cs = append(cs, modulateCase(2, 4352, 2304, false), gatedAddCase(2, 4352, 2304, 2, false))
	}
	cs = append(cs,
		timestepCase(1, 2, false),
		timestepCase(1, 6, false),
		timestepCase(3, 258, false),
		timestepCase(2, 256, false), // the model's
	)
	// Layout: p = 1 and 3 besides the model's 2, odd patch grids.
	for _, s := range [][5]int{{1, 1, 2, 2, 2}, {1, 16, 6, 10, 2}, {2, 3, 4, 6, 2}, {1, 5, 9, 6, 3}, {1, 3, 5, 7, 1}} {
		cs = append(cs, patchCase(s[0], s[1], s[2], s[3], s[4], false), unpatchCase(s[0], s[1], s[2], s[3], s[4], false))
	}
	if !cfg.Short {
		cs = append(cs, patchCase(1, 16, 128, 128, 2, false), unpatchCase(1, 16, 128, 128, 2, false)) // 1024² latent
	}
	cs = append(cs,
		upsampleCase(1, 1, 1, 1, false),
		upsampleCase(1, 3, 5, 7, false),
		upsampleCase(2, 2, 9, 4, false),
		upsampleCase(1, 512, 16, 16, false), // VAE channels
		transposeCase(0, 1, 1, false),
		transposeCase(0, 3, 5, false),
		transposeCase(0, 7, 1023, false),
		transposeCase(2, 17, 33, false),
		transposeCase(2, 257, 3, false),
		copyCase(1, 0, 1),
		copyCase(257, 0, 1),
		copyCase(1023, 0, 3, 5), // concat
		copyCase(7, 2, 4, 1, 3), // concat of slices
		copyCase(2304, 11, 77),  // caption rows out of a padded buffer
		copyWithinCase(1, 1),
		copyWithinCase(5, 1023), // two views of one tensor
	)
	for range cfg.Random {
		r, c := 1+rng.IntN(100), 1+rng.IntN(2000)
		B, L, D := 1+rng.IntN(2), 1+rng.IntN(60), 1+rng.IntN(500)
		act := ops.Activation(rng.IntN(2))
		p := 1 + rng.IntN(3)
		pB, pC, pH, pW := 1+rng.IntN(2), 1+rng.IntN(16), p*(1+rng.IntN(12)), p*(1+rng.IntN(12))
		cs = append(cs,
			mulCase(r, c, rng.IntN(2) == 0, true),
			scaleCase(r, c, float32(rng.Float64()*4-2), true),
			actCase(act, r, c, 10, true),
			gateCase(act, r, c, 10, true),
			modulateCase(B, L, D, true),
			gatedAddCase(B, L, D, 2, true),
			timestepCase(1+rng.IntN(4), 2*(1+rng.IntN(300)), true),
			patchCase(pB, pC, pH, pW, p, true),
			unpatchCase(pB, pC, pH, pW, p, true),
			upsampleCase(pB, pC, 1+rng.IntN(20), 1+rng.IntN(20), true),
			transposeCase(rng.IntN(3), 1+rng.IntN(100), 1+rng.IntN(300), true),
		)
	}
	return cs
}
