package opstest

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/luminaweb/lumina/model/ops"
	"github.com/luminaweb/lumina/model/tensor"
	"github.com/luminaweb/lumina/shaders/ref"
)

func convBackend(h *harness) (ops.Conv, error) {
	cb, ok := h.b.(ops.Conv)
	if !ok {
		return nil, fmt.Errorf("backend %s lacks the Conv family", h.b.Name())
	}
	return cb, nil
}

// Conv2D: each output is a K-term dot product (K = Ci·k·k, the zero
// padding contributes nothing) plus the bias, so MatMul's bound applies:
// |fl − exact| ≤ 2(K+1)u·Σ|x·w| (γ_K with a factor 2 of headroom, Higham
// §3.1), Σ|x·w| computed as the same convolution of |x| and |w| plus |bias|.
// A missing, extra or shifted tap is of size |x·w|, far above that bound,
// and moves the NMSE by about 1/K, far above 1e-7 (ggml's default).
func convCase(B, Ci, Co, H, W, k int, bias, random bool) Case {
	p := fmt.Sprintf("B=%d,Ci=%d,Co=%d,H=%d,W=%d,k=%d,pad=%d", B, Ci, Co, H, W, k, (k-1)/2)
	if bias {
		p += ",bias"
	}
	return Case{Op: "Conv2D", Params: p, Random: random, run: func(h *harness) error {
		cb, err := convBackend(h)
		if err != nil {
			return err
		}
		pad := (k - 1) / 2
		x, err := h.input(-1, 1, B, Ci, H, W)
		if err != nil {
			return err
		}
		w, err := h.input(-1, 1, Co, Ci, k, k)
		if err != nil {
			return err
		}
		var bt *operand
		var bhost []float32
		if bias {
			if bt, err = h.input(-1, 1, Co); err != nil {
				return err
			}
			bhost = bt.host
		}
		out, err := h.output(B, Co, H, W)
		if err != nil {
			return err
		}
		if bias {
			cb.Conv2D(out.view, x.view, w.view, bt.view, pad)
		} else {
			cb.Conv2D(out.view, x.view, w.view, nil, pad)
		}
		want := make([]float32, B*Co*H*W)
		ref.Conv2D(want, x.host, w.host, bhost, B, Ci, Co, H, W, k, pad)
		absOut := make([]float32, len(want))
		ref.Conv2D(absOut, convAbs(x.host), convAbs(w.host), convAbs(bhost), B, Ci, Co, H, W, k, pad)
		scale := make([]float64, len(want))
		for i, s := range absOut {
			scale[i] = float64(s) * (1 + 4*u) // the f32 rounding of the bound itself
		}
		K := Ci * k * k
		tol := Tolerance{Abs: 1e-30, Rel: 2 * float64(K+1) * u, NMSE: 1e-7, Why: "γ_K·Σ|x·w| dot-product bound ×2, K=Ci·k·k; NMSE as ggml"}
		return h.result(out, want, scale, tol)
	}}
}

func convAbs(v []float32) []float32 {
	if v == nil {
		return nil
	}
	a := make([]float32, len(v))
	for i, x := range v {
		a[i] = float32(math.Abs(float64(x)))
	}
	return a
}

// Conv2D's GPU tile is 16 output channels × 64 blocks of 4 pixels of a row
// (conv.wgsl's defaults); the edge cases probe channel counts 15, 16, 17,
// widths that are not a multiple of 4, odd H ≠ W, k = 1 and 3 with and
// without a bias, and two batches.
func convCases(cfg Config, rng *rand.Rand) []Case {
	cs := []Case{
		convCase(1, 1, 1, 1, 1, 3, true, false),
		convCase(1, 1, 1, 1, 1, 1, false, false),
		convCase(1, 1, 1, 7, 5, 3, false, false),
		convCase(1, 3, 5, 7, 13, 3, true, false), // primes, H ≠ W
		convCase(1, 5, 3, 13, 7, 1, true, false),
		convCase(1, 4, 15, 9, 9, 3, false, false), // output-channel tile − 1, 0, + 1
		convCase(1, 4, 16, 9, 9, 3, true, false),
		convCase(1, 4, 17, 9, 9, 1, false, false),
		convCase(2, 6, 7, 11, 63, 3, true, false),  // batch 2, W mod 4 = 3
		convCase(1, 2, 3, 17, 65, 3, false, false), // W mod 4 = 1, several pixel tiles per row
		convCase(1, 9, 2, 1, 31, 3, true, false),   // a single row: every vertical tap but one padded
	}
	if !cfg.Short {
		cs = append(cs,
			convCase(1, 16, 512, 16, 16, 3, true, false),  // VAE conv_in (latent 16 channels)
			convCase(1, 512, 512, 8, 8, 3, true, false),   // VAE 512→512 resnet conv, K = 4608
			convCase(1, 256, 128, 32, 32, 1, true, false), // VAE conv_shortcut 256→128
			convCase(1, 128, 3, 64, 64, 3, true, false),   // VAE conv_out
		)
	}
	for range cfg.Random {
		k := 1 + 2*rng.IntN(2)
		cs = append(cs, convCase(1+rng.IntN(2), 1+rng.IntN(40), 1+rng.IntN(40), 1+rng.IntN(40), 1+rng.IntN(40), k, rng.IntN(2) == 0, true))
	}
	return append(cs, gatherCases(cfg, rng)...)
}

// Gather copies, so it must be bit-exact: zero tolerance (Abs = Rel = 0).
var gatherTol = Tolerance{Why: "a copy is exact"}

// gatherCase gathers N rows of a (V, D) table; ids come from pick (nil:
// uniform in [0, V)).
func gatherCase(V, D, N int, what string, pick func(i int, rng *rand.Rand) float32, random bool) Case {
	p := fmt.Sprintf("V=%d,D=%d,N=%d", V, D, N)
	if what != "" {
		p += "," + what
	}
	return Case{Op: "Gather", Params: p, Random: random, run: func(h *harness) error {
		cb, err := convBackend(h)
		if err != nil {
			return err
		}
		table, err := h.input(-1, 1, V, D)
		if err != nil {
			return err
		}
		ids, err := h.alloc(tensor.F32, []int{N}, func(i int) float32 {
			if pick != nil {
				return pick(i, h.rng)
			}
			return float32(h.rng.IntN(V))
		})
		if err != nil {
			return err
		}
		h.inputs = append(h.inputs, ids)
		out, err := h.output(N, D)
		if err != nil {
			return err
		}
		cb.Gather(out.view, table.view, ids.view)
		want := make([]float32, N*D)
		ref.Gather(want, table.host, ids.host, V, D)
		return h.result(out, want, nil, gatherTol)
	}}
}

func gatherCases(cfg Config, rng *rand.Rand) []Case {
	repeats := func(i int, rng *rand.Rand) float32 { return float32([]int{2, 999, 2, 0, 17, 17, 17}[rng.IntN(7)]) }
	invalid := func(V int) func(int, *rand.Rand) float32 {
		bad := []float32{-1, float32(V), float32(V) + 5, 1e9, -0.5, 2.5, float32(math.NaN())}
		return func(i int, rng *rand.Rand) float32 {
			if i%2 == 1 {
				return bad[(i/2)%len(bad)]
			}
			return float32(rng.IntN(V))
		}
	}
	cs := []Case{
		gatherCase(1, 1, 1, "", nil, false),
		gatherCase(1000, 2304, 77, "", nil, false), // Gemma hidden size, 77 caption tokens
		gatherCase(1000, 2304, 77, "repeats", repeats, false),
		gatherCase(1000, 2304, 1, "", nil, false),
		gatherCase(50, 257, 15, "invalid=-1,V,V+5,1e9,-0.5,2.5,NaN", invalid(50), false), // zero rows
		gatherCase(3, 1, 255, "", nil, false),                                            // workgroup size 256 − 1, 0, + 1 elements
		gatherCase(3, 1, 256, "", nil, false),
		gatherCase(3, 1, 257, "", nil, false),
	}
	for range cfg.Random {
		cs = append(cs, gatherCase(1+rng.IntN(500), 1+rng.IntN(600), 1+rng.IntN(100), "", nil, true))
	}
	return cs
}
