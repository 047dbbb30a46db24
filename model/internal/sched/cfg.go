package sched

import "math"

// Guide is ORIG's classifier-free guidance (NextDiT.forward_with_cfg, spec
// §4.6) for one sample: dst = u + g·(c − u), then, when renorm > 0 and
// ‖dst‖ ≥ renorm·‖c‖ (L2 norms over ALL values of the sample, C·H·W), dst
// is scaled down to renorm·‖c‖. It never scales up; renorm ≤ 0 turns the
// clamp off. ORIG's default is renorm = 1. It reports whether the clamp
// fired. dst may alias cond or uncond.
//
// The guided value is computed in float32 as torch does
// (u + float32(g)·(c − u), each operation rounded); the norms and the
// rescale factor in float64.
func Guide(dst, cond, uncond []float32, scale, renorm float64) (clamped bool) {
	n := len(dst)
	if len(cond) != n || len(uncond) != n {
		panic("sched: Guide length mismatch")
	}
	g := float32(scale)
	var nc, ng float64
	for i := range dst {
		c, u := cond[i], uncond[i]
		v := u + float32(g*(c-u))
		nc += float64(c) * float64(c)
		ng += float64(v) * float64(v)
	}
	k := 1.0
	if renorm > 0 {
		nc, ng = math.Sqrt(nc), math.Sqrt(ng)
		if lim := renorm * nc; ng >= lim && ng > 0 {
			k, clamped = lim/ng, true
		}
	}
	for i := range dst {
		c, u := cond[i], uncond[i]
		v := u + float32(g*(c-u))
		if clamped {
			v = float32(float64(v) * k)
		}
		dst[i] = v
	}
	return clamped
}

// GuideRows is DIFF's guidance with cfg_normalization (Lumina2Pipeline,
// spec §4.6): dst = u + g·(c − u), then every row of `width` consecutive
// values (the last axis, W, of a [C, H, W] sample) is rescaled,
// unconditionally, to the L2 norm of the same row of c. A guided row of
// norm 0 is left as it is (diffusers would produce NaN). dst may alias cond
// or uncond.
func GuideRows(dst, cond, uncond []float32, scale float64, width int) {
	n := len(dst)
	if len(cond) != n || len(uncond) != n || width <= 0 || n%width != 0 {
		panic("sched: GuideRows length mismatch")
	}
	g := float32(scale)
	for r := 0; r < n; r += width {
		var nc, ng float64
		for i := r; i < r+width; i++ {
			c, u := cond[i], uncond[i]
			v := u + float32(g*(c-u))
			dst[i] = v
			nc += float64(c) * float64(c)
			ng += float64(v) * float64(v)
		}
		if ng == 0 {
			continue
		}
		k := math.Sqrt(nc) / math.Sqrt(ng)
		for i := r; i < r+width; i++ {
			dst[i] = float32(float64(dst[i]) * k)
		}
	}
}

// Trunc is CFG truncation (spec §4.6), in either of the two references'
// semantics; the zero value never truncates. Where CFG is off for an
// evaluation, only the conditional branch runs and its velocity is used
// as it is (no renormalisation).
type Trunc struct {
	// Time is ORIG's cfg_trunc, the default semantics: CFG runs on a velocity
	// evaluation at model time t only while t < Time. It is checked per
	// evaluation, midpoints included. demo.py uses 0.25 (with shift 6: the
	// first 2/3 of the unshifted grid); sample.py 100 (always on). Values
	// ≤ 0 mean unset.
	Time float64
	// Ratio is DIFF's cfg_trunc_ratio: at 0-based step i of N, CFG is
	// skipped when (i+1)/N > Ratio. The ORIG README's diffusers example uses
	// 0.25 with 50 steps (CFG on the first 12 steps); the default 1.0 and
	// values ≤ 0 mean unset.
	Ratio float64
}

// Guided reports whether CFG runs for an evaluation at model time t during
// 0-based step `step` of `steps`. When both fields are set, both must allow
// it.
func (tr Trunc) Guided(t float64, step, steps int) bool {
	if tr.Time > 0 && !(t < tr.Time) {
		return false
	}
	if tr.Ratio > 0 && steps > 0 && float64(step+1)/float64(steps) > tr.Ratio {
		return false
	}
	return true
}

// GuidedVelocity is ORIG's forward_with_cfg as a Velocity (spec §4.6): at
// model time t < trunc it evaluates both branches and returns Guide(cond,
// uncond, scale, renorm); otherwise only the conditional branch, as it is.
// trunc ≤ 0 means no truncation (sample.py's 100 has the same effect).
// DIFF's step-fraction truncation needs the step index, which a Velocity
// does not see; the pipeline applies Trunc.Ratio itself.
func GuidedVelocity(cond, uncond Velocity, scale, renorm, trunc float64) Velocity {
	var c, out []float32
	return func(x []float32, t float64) ([]float32, error) {
		vc, err := eval(cond, x, t)
		if err != nil {
			return nil, err
		}
		if trunc > 0 && !(t < trunc) {
			return vc, nil
		}
		c = append(c[:0], vc...) // uncond may reuse cond's buffer
		vu, err := eval(uncond, x, t)
		if err != nil {
			return nil, err
		}
		out = grow(out, len(x))
		Guide(out, c, vu, scale, renorm)
		return out, nil
	}
}
