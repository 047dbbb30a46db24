package opstest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"

	"github.com/luminaweb/lumina/model/ops"
	"github.com/luminaweb/lumina/model/tensor"
	"github.com/luminaweb/lumina/shaders/ref"
)

// Tolerances of the norm family. Every op here rests on a sum of n terms
// per row. The worst-case bound of an f32 sum, γ_n·Σ|terms| with γ_n ≈ n·u
// (Higham §4.2), is far above what any summation order achieves; rounding
// errors behave as independent zero-mean variables, so the error is
// λ√n·u·Σ|terms| with overwhelming probability (Higham & Mary, "A new
// approach to probabilistic rounding error analysis", 2019). The bound used
// is 4√n·u on the sum, which still catches a dropped or doubled term: that
// moves a statistic by about 1/n, and 1/n > 4√n·u for n up to 2.6·10⁴,
// which covers every row length here. A fixed 16u covers the few roundings
// after the sum (divide by n, + eps, inverseSqrt at 2 ulp, the products,
// 1 + w). The NMSE bound 1e-10 (an rms relative error of 1e-5) sits a
// thousand times above what a correct f32 kernel gives on these lengths.
func sumRel(n int) float64 { return (4*math.Sqrt(float64(n)) + 16) * u }

// normDenorm is the absolute slack for results at or below the smallest
// normal f32 (2^-126), which a GPU may flush to zero.
const normDenorm = 0x1p-125

func normsOf(h *harness) (ops.Norms, error) {
	nb, ok := h.b.(ops.Norms)
	if !ok {
		return nil, fmt.Errorf("backend %s lacks the norm family (ops.Norms)", h.b.Name())
	}
	return nb, nil
}

// RMSNorm: out = x·r·g with r = 1/sqrt(mean(x²) + eps). The sum of
// squares has positive terms, so its relative error is sumRel(D); the
// square root halves it, and the result is relative to |ref|.
func rmsNormCase(rows, dim int, eps float32, plusOne, random bool) Case {
	p := fmt.Sprintf("rows=%d,dim=%d,eps=%g", rows, dim, eps)
	if plusOne {
		p += ",plus1"
	}
	return Case{Op: "RMSNorm", Params: p, Random: random, run: func(h *harness) error {
		nb, err := normsOf(h)
		if err != nil {
			return err
		}
		x, err := h.input(-2, 2, rows, dim)
		if err != nil {
			return err
		}
		w, err := h.input(-1, 1, dim)
		if err != nil {
			return err
		}
		out, err := h.output(rows, dim)
		if err != nil {
			return err
		}
		nb.RMSNorm(out.view, x.view, w.view, eps, plusOne)
		want := make([]float32, rows*dim)
		ref.RMSNorm(want, x.host, w.host, dim, eps, plusOne)
		tol := Tolerance{Abs: normDenorm, Rel: sumRel(dim), NMSE: 1e-10,
			Why: "probabilistic 4√n·u sum bound + 16u, relative to |ref|"}
		return h.result(out, want, nil, tol)
	}}
}

// centredScale is the error scale of (x − mean)·rstd·w + b per element:
// an error δ in the mean moves every output by rstd·δ·|w|, and δ is
// bounded relative to mean|x| (the terms of the sum), not to |mean|, which
// may be near zero; an error in the variance moves the output relative to
// |(x − mean)·rstd·w|. w and b nil: no affine.
func centredScale(x, w, b []float32, rows, n, S int, eps float32) []float64 {
	scale := make([]float64, len(x))
	for r := range rows {
		row := x[r*n : (r+1)*n]
		var mean, mabs, q float64
		for _, v := range row {
			mean += float64(v)
			mabs += math.Abs(float64(v))
		}
		mean /= float64(n)
		mabs /= float64(n)
		for _, v := range row {
			q += (float64(v) - mean) * (float64(v) - mean)
		}
		rstd := 1 / math.Sqrt(q/float64(n)+float64(eps))
		for i, v := range row {
			s := (math.Abs(float64(v)-mean) + mabs) * rstd
			if w != nil {
				// rows are (batch, group) pairs of cpg channels × S
				cpg := n / S
				c := r%(len(w)/cpg)*cpg + i/S
				s = s*math.Abs(float64(w[c])) + math.Abs(float64(b[c]))
			}
			scale[r*n+i] = s
		}
	}
	return scale
}

func layerNormCase(rows, dim int, eps float32, random bool) Case {
	p := fmt.Sprintf("rows=%d,dim=%d,eps=%g", rows, dim, eps)
	return Case{Op: "LayerNorm", Params: p, Random: random, run: func(h *harness) error {
		nb, err := normsOf(h)
		if err != nil {
			return err
		}
		// Offset inputs: a mean of 1 against a spread of 2 makes the
		// one-pass E[x²] − E[x]² lose bits that the two-pass form keeps.
		x, err := h.input(-1, 3, rows, dim)
		if err != nil {
			return err
		}
		out, err := h.output(rows, dim)
		if err != nil {
			return err
		}
		nb.LayerNorm(out.view, x.view, eps)
		want := make([]float32, rows*dim)
		ref.LayerNorm(want, x.host, dim, eps)
		tol := Tolerance{Abs: normDenorm, Rel: sumRel(dim), NMSE: 1e-10,
			Why: "probabilistic 4√n·u sum bound + 16u, scaled by (|x − mean| + mean|x|)·rstd"}
		return h.result(out, want, centredScale(x.host, nil, nil, rows, dim, 1, eps), tol)
	}}
}

func groupNormCase(B, C int, spatial []int, groups int, eps float32, random bool) Case {
	S := 1
	sp := make([]string, len(spatial))
	for i, d := range spatial {
		S *= d
		sp[i] = fmt.Sprint(d)
	}
	p := fmt.Sprintf("B=%d,C=%d,spatial=%s,groups=%d,eps=%g", B, C, strings.Join(sp, "x"), groups, eps)
	if len(spatial) == 0 {
		p = fmt.Sprintf("B=%d,C=%d,groups=%d,eps=%g", B, C, groups, eps)
	}
	shape := append([]int{B, C}, spatial...)
	return Case{Op: "GroupNorm", Params: p, Random: random, run: func(h *harness) error {
		nb, err := normsOf(h)
		if err != nil {
			return err
		}
		x, err := h.input(-1, 3, shape...)
		if err != nil {
			return err
		}
		w, err := h.input(-1, 1, C)
		if err != nil {
			return err
		}
		b, err := h.input(-1, 1, C)
		if err != nil {
			return err
		}
		out, err := h.output(shape...)
		if err != nil {
			return err
		}
		nb.GroupNorm(out.view, x.view, w.view, b.view, groups, eps)
		want := make([]float32, B*C*S)
		ref.GroupNorm(want, x.host, w.host, b.host, B, C, S, groups, eps)
		n := C / groups * S
		tol := Tolerance{Abs: normDenorm, Rel: sumRel(n), NMSE: 1e-10,
			Why: "probabilistic 4√n·u sum bound + 16u, scaled by (|x − mean| + mean|x|)·rstd·|w| + |b|"}
		return h.result(out, want, centredScale(x.host, w.host, b.host, B*groups, n, S, eps), tol)
	}}
}

// Softmax: exp(t) is within (3 + 2|t|) ulp (WGSL's bound) and t = x − max
// carries a rounding of u·|t|, so each term is within (4 + 3R)·u for a row
// spread R; the sum adds sumRel(n) and the divide 2.5 ulp. Results are
// relative to |ref|, with normDenorm for terms that underflow.
//
// Softmax is invariant to the value subtracted, so only overflow and
// underflow reveal a wrong row maximum: spike ≠ 0 sets one element of each
// row (never the first) to spike, 92 above the other values' bound, so an
// exponent taken against any smaller maximum overflows; rows wholly below
// −88 underflow unless the maximum is subtracted.
func softmaxCase(rows, dim int, lo, hi, spike float64, random bool) Case {
	p := fmt.Sprintf("rows=%d,dim=%d,range=[%g,%g]", rows, dim, lo, hi)
	spread := hi - lo
	if spike != 0 {
		p += fmt.Sprintf(",spike=%g", spike)
		spread = max(hi, spike) - min(lo, spike)
	}
	return Case{Op: "Softmax", Params: p, Random: random, run: func(h *harness) error {
		nb, err := normsOf(h)
		if err != nil {
			return err
		}
		x, err := h.alloc(tensor.F32, []int{rows, dim}, func(i int) float32 {
			if spike != 0 && dim > 1 && i%dim == 1+(i/dim*37)%(dim-1) {
				return float32(spike)
			}
			return float32(lo + (hi-lo)*h.rng.Float64())
		})
		if err != nil {
			return err
		}
		h.inputs = append(h.inputs, x)
		out, err := h.output(rows, dim)
		if err != nil {
			return err
		}
		nb.Softmax(out.view, x.view)
		want := make([]float32, rows*dim)
		ref.Softmax(want, x.host, dim)
		tol := Tolerance{Abs: normDenorm, Rel: sumRel(dim) + (8+6*spread)*u, NMSE: 1e-10,
			Why: "exp (3 + 2|t|) ulp on the term and the sum, 4√n·u sum bound, divide"}
		return h.result(out, want, nil, tol)
	}}
}

func normCases(cfg Config, rng *rand.Rand) []Case {
	const eDiT, eGemma, eLN = float32(1e-5), float32(1e-6), float32(1e-6)
	cs := []Case{
		rmsNormCase(1, 1, eDiT, false, false),
		rmsNormCase(3, 7, eDiT, true, false),    // primes, D not a multiple of 4
		rmsNormCase(5, 255, eDiT, false, false), // workgroup size 256 − 1, 0, + 1
		rmsNormCase(5, 256, eDiT, true, false),
		rmsNormCase(5, 257, eDiT, false, false),
		rmsNormCase(8*24, 96, eDiT, false, false),   // Next-DiT QK-norm: 8 tokens × 24 heads × 96
		rmsNormCase(8*8, 256, eGemma, false, false), // per-head norm over 256-dim heads
		rmsNormCase(77, 2304, eGemma, true, false),  // Gemma-2 layer norm, caption of 77 tokens
		rmsNormCase(2, 7919, eDiT, true, false),     // a row of 31 strides

		layerNormCase(1, 1, eLN, false),
		layerNormCase(3, 7, eLN, false),
		layerNormCase(4, 255, eLN, false),
		layerNormCase(4, 256, eLN, false),
		layerNormCase(4, 257, eLN, false),
		layerNormCase(64, 2304, eLN, false), // Next-DiT final layer, 64 tokens

		groupNormCase(1, 1, []int{1}, 1, eLN, false),
		groupNormCase(2, 6, nil, 3, eLN, false),              // 2-D x: one position per channel
		groupNormCase(2, 6, []int{5, 7}, 2, eLN, false),      // primes, batch > 1
		groupNormCase(1, 4, []int{255}, 4, eLN, false),       // rows of 255, 256, 257
		groupNormCase(1, 4, []int{16, 16}, 4, eLN, false),    //
		groupNormCase(1, 4, []int{257}, 4, eLN, false),       //
		groupNormCase(1, 512, []int{16, 16}, 32, eLN, false), // VAE mid block at a 128² image

		softmaxCase(5, 1, -8, 8, 0, false),
		softmaxCase(5, 7, -8, 8, 0, false),
		softmaxCase(3, 255, -8, 8, 0, false),
		softmaxCase(3, 256, -8, 8, 0, false),
		softmaxCase(3, 257, -8, 8, 0, false),
		softmaxCase(24, 4352, -8, 8, 0, false),    // attention rows over S = 4352 keys
		softmaxCase(3, 1000, -8, 8, 100, false),   // exp(100) overflows f32: needs the true maximum
		softmaxCase(3, 1000, -100, -90, 0, false), // exp(−90) underflows: needs the maximum subtracted
	}
	if !cfg.Short {
		cs = append(cs,
			rmsNormCase(4352, 2304, eDiT, false, false),          // Next-DiT tokens × dim at 1024²
			groupNormCase(1, 128, []int{64, 64}, 32, eLN, false), // VAE, 16,384 elements per group
			rmsNormCase(65536+7, 3, eDiT, false, false),          // > 65,535 workgroups: 2-D grid
		)
	}
	for range cfg.Random {
		eps := []float32{eDiT, eGemma}[rng.IntN(2)]
		cs = append(cs,
			rmsNormCase(1+rng.IntN(64), 1+rng.IntN(2000), eps, rng.IntN(2) == 0, true),
			layerNormCase(1+rng.IntN(64), 1+rng.IntN(2000), eps, true),
			softmaxCase(1+rng.IntN(64), 1+rng.IntN(2000), -8, 8, 0, true))
		groups := 1 + rng.IntN(8)
		cs = append(cs, groupNormCase(1+rng.IntN(2), groups*(1+rng.IntN(8)),
			[]int{1 + rng.IntN(24), 1 + rng.IntN(24)}, groups, eps, true))
	}
	return cs
}
