package opstest

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/luminaweb/lumina/model/tensor"
	"github.com/luminaweb/lumina/shaders/ref"
)

// MatMul on packed weights (q8, q4), against ref.MatMulQ8/Q4: the float64
// product with the exactly dequantized weights.
//
// Tolerance, from the f32 dot-product bound (matmulCaseOf): a q8 weight
// q·d is exact in f32 (8-bit × 11-bit significands), so the kernel computes
// an f32 dot product of exact terms, |fl(x·w) − x·w| ≤ γ_K Σ|x_k w_k|, plus
// the bias add: Rel 2·(K+1)·u, exactly the f32 case. A q4 weight q·d + m is
// rounded once to f32 (q·d is exact; the add rounds), ŵ = w(1+δ), |δ| ≤ u,
// which adds u·Σ|x_k w_k|: Rel 2·(K+2)·u. A wrong scale, a lost sign
// extension or a swapped nibble changes a term by about |x_k w_k| and the
// NMSE by about 1/K, far outside both.
func matmulQCase(wdt tensor.DType, M, K, N int, bias, random bool) Case {
	return matmulQRowsCase(wdt, M, K, N, N, 0, bias, random)
}

// matmulQRowsCase multiplies by rows row0 … row0+N−1 of a packed weight of
// R rows, through a view of whole rows (the transformer's q/k/v and adaLN
// chunks are such views).
func matmulQRowsCase(wdt tensor.DType, M, K, N, R, row0 int, bias, random bool) Case {
	p := fmt.Sprintf("w=%s,M=%d,K=%d,N=%d", wdt, M, K, N)
	if R != N {
		p += fmt.Sprintf(",rows=%d+%d/%d", row0, N, R)
	}
	if bias {
		p += ",bias"
	}
	return Case{Op: "MatMul", Params: p, Random: random, run: func(h *harness) error {
		x, err := h.input(-1, 1, M, K)
		if err != nil {
			return err
		}
		w, err := h.inputPacked(wdt, R, K)
		if err != nil {
			return err
		}
		wview := w.view
		if R != N {
			wview = h.b.View(w.view, row0*K, N, K)
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
			h.b.MatMul(out.view, x.view, wview, bt.view)
		} else {
			h.b.MatMul(out.view, x.view, wview, nil)
		}
		want := make([]float32, M*N)
		terms := 2 * float64(K+1)
		if wdt == tensor.Q4 {
			terms = 2 * float64(K+2)
		}
		ref.MatMulQRows(want, x.host, w.raw, bhost, M, N, K, R, row0, wdt == tensor.Q4)
		wv := dequant(wdt, w.raw, R, K)[row0*K:]
		scale := make([]float64, M*N)
		for m := range M {
			for n := range N {
				s := 0.0
				for k := range K {
					s += math.Abs(float64(x.host[m*K+k]) * wv[n*K+k])
				}
				if bias {
					s += math.Abs(float64(bhost[n]))
				}
				scale[m*N+n] = s
			}
		}
		tol := Tolerance{Abs: 1e-30, Rel: terms * u, NMSE: 1e-7,
			Why: "γ_K·Σ|x·w| dot-product bound ×2 (q4: + u for the weight's rounding); NMSE as ggml"}
		return h.result(out, want, scale, tol)
	}}
}

func matmulQCases(cfg Config) []Case {
	rng := rand.New(rand.NewPCG(seedOf(cfg), 0x0a84))
	t := cfg.Tile
	var cs []Case
	for _, wdt := range []tensor.DType{tensor.Q8, tensor.Q4} {
		cs = append(cs,
			matmulQCase(wdt, 1, 1, 1, false, false),              // K = 1: one value, 31 of padding
			matmulQRowsCase(wdt, 5, 70, 12, 40, 17, true, false), // a view of rows 17-28 of 40
			matmulQCase(wdt, 7, 31, 11, true, false),             // one ragged group
			matmulQCase(wdt, 5, 32, 3, false, false),             // one whole group
			matmulQCase(wdt, t+1, 33, t-1, true, false),          // a group and one value; tile edges
			matmulQCase(wdt, t-1, 64, t+1, false, false),         // two groups
			matmulQCase(wdt, t, 70, t, true, false),              // K % 32 = 6: a quad and two single values
			matmulQCase(wdt, 3, 1023, 5, false, false),           // K % 32 = 31, K odd
			matmulQCase(wdt, 1030, 40, 1030, false, false),       // many workgroups
		)
		if !cfg.Short {
			cs = append(cs,
				matmulQCase(wdt, 77, 2304, 2304, true, false),  // caption tokens × Next-DiT / Gemma hidden
				matmulQCase(wdt, 32, 2304, 9216, false, false), // Gemma FFN up-projection, 32 tokens
			)
		}
		for range 2 {
			cs = append(cs, matmulQCase(wdt, 1+rng.IntN(100), 1+rng.IntN(600), 1+rng.IntN(200), rng.IntN(2) == 0, true))
		}
	}
	return cs
}

// inputPacked makes a q8 or q4 weight (N, K) from random bytes and uploads
// it with WriteRaw: the values section is uniform random (every int8 and
// every nibble, -128 and the padding of a ragged last group included, which
// no kernel may read), the second section random normal binary16 scales d
// in [2⁻⁸, 2⁻⁵) and, for q4, offsets m of either sign with |m| in [2⁻⁴, 1).
// Normal halves keep every weight a value that f32 and any device's
// unpack2x16float represent exactly. host is the dequantized weight rounded
// to f32 (what Read returns), raw the bytes.
func (h *harness) inputPacked(dt tensor.DType, N, K int) (*operand, error) {
	l := dt.Layout(tensor.Shape{N, K})
	raw := make([]byte, l.Length)
	for i := range raw[:l.Second] {
		raw[i] = byte(h.rng.Uint32())
	}
	for i := l.Second; i < l.Length; i += 2 {
		mant := uint16(h.rng.IntN(1 << 10))
		hb := uint16(7+h.rng.IntN(3))<<10 | mant // d: exponent −8 .. −6
		if dt == tensor.Q4 && (i-l.Second)%4 == 2 {
			hb = uint16(11+h.rng.IntN(4))<<10 | mant | uint16(h.rng.IntN(2))<<15 // m: ±[2⁻⁴, 1)
		}
		binary.LittleEndian.PutUint16(raw[i:], hb)
	}
	base, err := h.b.New(dt, N, K)
	if err != nil {
		return nil, err
	}
	o := &operand{base: base, n: N * K, raw: raw, view: h.b.View(base, 0, N, K)}
	h.all = append(h.all, o)
	if err := h.b.WriteRaw(base, raw); err != nil {
		return nil, err
	}
	o.host = make([]float32, N*K)
	for i, v := range dequant(dt, raw, N, K) {
		o.host[i] = float32(v)
	}
	h.inputs = append(h.inputs, o)
	return o, nil
}

// dequant returns the exact values of a packed weight (ref).
func dequant(dt tensor.DType, raw []byte, N, K int) []float64 {
	w := make([]float64, N*K)
	if dt == tensor.Q4 {
		ref.DequantQ4(w, raw, N, K)
	} else {
		ref.DequantQ8(w, raw, N, K)
	}
	return w
}
