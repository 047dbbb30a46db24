package opstest

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/luminaweb/lumina/model/tensor"
	"github.com/luminaweb/lumina/shaders/ref"
)

// u is the unit roundoff of float32.
const u = 1.0 / (1 << 24)

// Add: one correctly rounded f32 addition per element, so the result must
// equal the float64 sum rounded to f32 within one ulp (double rounding can
// differ by one ulp in rare ties).
var addTol = Tolerance{Rel: 2 * u, NMSE: 1e-12, Why: "one f32 rounding per element"}

func addCase(rows, cols int, rowBcast bool, random bool) Case {
	p := fmt.Sprintf("rows=%d,cols=%d", rows, cols)
	if rowBcast {
		p += ",b=row"
	}
	return Case{Op: "Add", Params: p, Random: random, run: func(h *harness) error {
		a, err := h.input(-1, 1, rows, cols)
		if err != nil {
			return err
		}
		bshape := []int{rows, cols}
		if rowBcast {
			bshape = []int{cols}
		}
		b, err := h.input(-1, 1, bshape...)
		if err != nil {
			return err
		}
		out, err := h.output(rows, cols)
		if err != nil {
			return err
		}
		h.b.Add(out.view, a.view, b.view)
		want := make([]float32, rows*cols)
		ref.Add(want, a.host, b.host)
		return h.result(out, want, nil, addTol)
	}}
}

func addCases(cfg Config, rng *rand.Rand) []Case {
	cs := []Case{
		addCase(1, 1, false, false),
		addCase(1, 7919, false, false), // prime
		addCase(1, 255, false, false),  // workgroup size 256 − 1, 0, + 1
		addCase(1, 256, false, false),
		addCase(1, 257, false, false),
		addCase(3, 1023, true, false), // row not a multiple of 4, broadcast
		addCase(5, 1, true, false),
	}
	if !cfg.Short {
		cs = append(cs,
			addCase(1, 65535*256+257, false, false), // > 65,535 workgroups
			addCase(4352, 2304, true, false),        // Next-DiT tokens × dim, bias row
		)
	}
	for range cfg.Random {
		cs = append(cs, addCase(1+rng.IntN(300), 1+rng.IntN(3000), rng.IntN(2) == 0, true))
	}
	return cs
}

// MatMul: each output is a K-term f32 dot product. Whatever the summation
// order, |fl(x·w) − x·w| ≤ γ_K Σ|x_k w_k| with γ_K ≈ K·u (Higham, Accuracy
// and Stability of Numerical Algorithms, §3.1); the per-element bound uses
// that with a factor 2 of headroom, plus the bias add. A missing or extra
// term is of size |x_k w_k|, far above this bound for K ≪ 1/u, and moves the
// NMSE by about 1/K, far above 1e-7 (ggml's default).
func matmulCase(M, K, N int, bias, random bool) Case {
	return matmulCaseOf(tensor.F32, M, K, N, bias, random)
}

// matmulCaseOf is matmulCase with weights of type wdt (f32, f16, bf16).
// 16-bit weights are exact in f32, so the bound is the same.
func matmulCaseOf(wdt tensor.DType, M, K, N int, bias, random bool) Case {
	p := fmt.Sprintf("M=%d,K=%d,N=%d", M, K, N)
	if wdt != tensor.F32 {
		p = "w=" + wdt.String() + "," + p
	}
	if bias {
		p += ",bias"
	}
	return Case{Op: "MatMul", Params: p, Random: random, run: func(h *harness) error {
		x, err := h.input(-1, 1, M, K)
		if err != nil {
			return err
		}
		w, err := h.inputOf(wdt, -1, 1, N, K)
		if err != nil {
			return err
		}
		var bt *operand
		var bhost []float32
		if bias {
			if bt, err = h.input(-1, 1, N); err != nil {
				return err
			}
			bhost = bt.host
		}
		out, err := h.output(M, N)
		if err != nil {
			return err
		}
		if bias {
			h.b.MatMul(out.view, x.view, w.view, bt.view)
		} else {
			h.b.MatMul(out.view, x.view, w.view, nil)
		}
		want := make([]float32, M*N)
		ref.MatMul(want, x.host, w.host, bhost, M, N, K)
		scale := make([]float64, M*N)
		for m := range M {
			for n := range N {
				s := 0.0
				for k := range K {
					s += math.Abs(float64(x.host[m*K+k]) * float64(w.host[n*K+k]))
				}
				if bias {
					s += math.Abs(float64(bhost[n]))
				}
				scale[m*N+n] = s
			}
		}
		tol := Tolerance{Abs: 1e-30, Rel: 2 * float64(K+1) * u, NMSE: 1e-7, Why: "γ_K·Σ|x·w| dot-product bound ×2; NMSE as ggml"}
		return h.result(out, want, scale, tol)
	}}
}

// MatMulCase is one MatMul case of the given shape, for backend-specific
// tests (such as binding-limit splits) that need a shape of their own.
func MatMulCase(M, K, N int, bias bool) Case { return matmulCase(M, K, N, bias, false) }

func matmulCases(cfg Config, rng *rand.Rand) []Case {
	t := cfg.Tile
	cs := []Case{
		matmulCase(1, 1, 1, false, false),
		matmulCase(1, 1, 1, true, false),
		matmulCase(7, 13, 11, true, false), // primes
		matmulCase(t-1, 64, t+1, true, false),
		matmulCase(t, 64, t, false, false),
		matmulCase(t+1, 64, t-1, true, false),
		matmulCase(5, 1023, 3, false, false), // K not a multiple of 4
		matmulCase(1030, 3, 1030, false, false),
	}
	if !cfg.Short {
		cs = append(cs,
			matmulCase(77, 2304, 2304, true, false),  // caption tokens × Next-DiT / Gemma hidden
			matmulCase(32, 2304, 9216, false, false), // Gemma FFN up-projection, 32 tokens
			matmulCase(24, 9216, 2304, false, false), // FFN down-projection, K = 9216
		)
	}
	for range cfg.Random {
		cs = append(cs, matmulCase(1+rng.IntN(100), 1+rng.IntN(600), 1+rng.IntN(200), rng.IntN(2) == 0, true))
	}
	// 16-bit weights: even K takes the shader's word-pair path, odd K the
	// per-element path.
	for _, wdt := range []tensor.DType{tensor.F16, tensor.BF16} {
		cs = append(cs,
			matmulCaseOf(wdt, 1, 1, 1, false, false),
			matmulCaseOf(wdt, 7, 13, 11, true, false),
			matmulCaseOf(wdt, t+1, 64, t-1, true, false),
			matmulCaseOf(wdt, 5, 1023, 3, false, false),
			matmulCaseOf(wdt, 1+rng.IntN(100), 2*(1+rng.IntN(300)), 1+rng.IntN(200), rng.IntN(2) == 0, true),
		)
		if !cfg.Short {
			cs = append(cs, matmulCaseOf(wdt, 77, 2304, 2304, true, false))
		}
	}
	return cs
}
