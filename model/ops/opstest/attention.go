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

// given makes an input tensor holding exactly vals.
func (h *harness) given(vals []float32, shape ...int) (*operand, error) {
	o, err := h.alloc(tensor.F32, shape, func(i int) float32 { return vals[i] })
	if err == nil {
		h.inputs = append(h.inputs, o)
	}
	return o, err
}

func attnBackend(h *harness) (ops.Attn, error) {
	nb, ok := h.b.(ops.Attn)
	if !ok {
		return nil, fmt.Errorf("backend %s lacks the attention family (ops.Attn)", h.b.Name())
	}
	return nb, nil
}

// Rope: each output is x_i·c − x_j·s (or x_j·c + x_i·s): two f32 products
// and one sum, so |fl − exact| ≤ γ_2·(|x_i c| + |x_j s|) whether or not the
// compiler fuses a multiply-add, plus one more u for the reference's own
// rounding to f32: 3u of that scale, 4u with headroom. A wrong pairing or
// angle is off by O(|x|), a million times more.
var ropeTol = Tolerance{Rel: 4 * u, NMSE: 1e-12, Why: "γ_2·(|x_i c|+|x_j s|) + u, ×4/3"}

func ropeCase(B, L, H, Dh, csB int, mode ops.RopeMode, random bool) Case {
	p := fmt.Sprintf("B=%d,L=%d,H=%d,Dh=%d,csB=%d,%s", B, L, H, Dh, csB, mode)
	return Case{Op: "Rope", Params: p, Random: random, run: func(h *harness) error {
		nb, err := attnBackend(h)
		if err != nil {
			return err
		}
		x, err := h.input(-2, 2, B, L, H, Dh)
		if err != nil {
			return err
		}
		// A real table: cos and sin of angles as large as RoPE makes them
		// (position 4351 times frequency 1).
		half := Dh / 2
		tab := make([]float32, csB*L*half*2)
		for i := 0; i < len(tab); i += 2 {
			phi := 4352 * h.rng.Float64()
			tab[i], tab[i+1] = float32(math.Cos(phi)), float32(math.Sin(phi))
		}
		cs, err := h.given(tab, csB, L, half, 2)
		if err != nil {
			return err
		}
		out, err := h.output(B, L, H, Dh)
		if err != nil {
			return err
		}
		nb.Rope(out.view, x.view, cs.view, mode)
		want := make([]float32, len(x.host))
		ref.Rope(want, x.host, cs.host, B, L, H, Dh, mode == ops.RopeInterleaved)
		// The scale |x_i c| + |x_j s| of each output is the reference
		// applied to |x| and |cs| with the sign of the sine flipped on
		// one side; computing it directly is simpler.
		scale := make([]float64, len(want))
		for b := range B {
			for l := range L {
				t := tab[(b%csB)*L*half*2+l*half*2:]
				for hh := range H {
					row := ((b*L+l)*H + hh) * Dh
					for m := range half {
						i, j := row+m, row+m+half
						if mode == ops.RopeInterleaved {
							i, j = row+2*m, row+2*m+1
						}
						c, s := math.Abs(float64(t[2*m])), math.Abs(float64(t[2*m+1]))
						xi, xj := math.Abs(float64(x.host[i])), math.Abs(float64(x.host[j]))
						scale[i] = xi*c + xj*s
						scale[j] = xj*c + xi*s
					}
				}
			}
		}
		return h.result(out, want, scale, ropeTol)
	}}
}

// attnCase is one Attention check.
type attnCase struct {
	B, Lq, Lk, H, Hkv, Dh int
	scale, softCap        float32
	causal                bool
	window                int
	keyLen                []int   // nil: no key padding mask
	qk                    float64 // q and k uniform in [−qk, qk); 0 means 1
}

func (c attnCase) params() string {
	p := fmt.Sprintf("B=%d,Lq=%d,Lk=%d,H=%d,Hkv=%d,Dh=%d,scale=%.6g", c.B, c.Lq, c.Lk, c.H, c.Hkv, c.Dh, c.scale)
	if c.softCap != 0 {
		p += fmt.Sprintf(",softcap=%g", c.softCap)
	}
	if c.causal {
		p += ",causal"
	}
	if c.window != 0 {
		p += fmt.Sprintf(",window=%d", c.window)
	}
	if c.keyLen != nil {
		p += ",keylen=" + strings.ReplaceAll(fmt.Sprint(c.keyLen), " ", ":")
	}
	if c.qk != 0 && c.qk != 1 {
		p += fmt.Sprintf(",qk=±%g", c.qk)
	}
	return p
}

// Attention tolerance, per output element: |got − ref| ≤ rel·Σ_j p_j|v_j|,
// the scale that the softmax-weighted sum of v carries (the reference run
// again on |v|). rel is derived from the f32 operations of an online
// softmax:
//   - a logit is a Dh-term dot product, scaled (and soft-capped): its
//     error is δs ≤ γ_Dh·scale·Σ_e|q_e k_e| + 2u|s| (+ a few u of SoftCap
//     for tanh, whose WGSL accuracy is inherited from sinh/cosh);
//     Σ|q_e k_e| ≤ ‖q‖₂‖k‖₂ (Cauchy–Schwarz) over the actual rows. A
//     logit error δs moves p_j by p_j·δs and the output by ≤ 2δs·Σp|v|;
//   - exp has 3 + 2|x| ulp (WGSL §precision), and Σ_j p_j|x_j| ≤ ln Lk, so
//     the weights are off by ≤ (6 + 4 ln Lk)u relative, in aggregate;
//   - the weighted sum and the normaliser add Lk terms plus one rescale
//     per block of 16 keys: γ_{1.07·Lk+2}, twice (numerator and divisor).
//
// The bound is then doubled. A missing or extra key moves an output by
// about p_j|v_j − out|, i.e. 1/Lk of the scale for spread-out softmaxes,
// which these random inputs give, well above rel for the sizes here; the
// NMSE, ggml's metric, is held at 1e-7 for the same reason.
func (c attnCase) tolerance(q, k []float32) Tolerance {
	norm := func(x []float32) float64 {
		var mx float64
		for r := 0; r < len(x); r += c.Dh {
			var s float64
			for _, v := range x[r : r+c.Dh] {
				s += float64(v) * float64(v)
			}
			mx = max(mx, s)
		}
		return math.Sqrt(mx)
	}
	S := float64(c.scale) * norm(q) * norm(k)
	if c.softCap != 0 {
		S = min(S, float64(c.softCap))
	}
	ds := (float64(c.Dh)*u/(1-float64(c.Dh)*u))*float64(c.scale)*norm(q)*norm(k) + 2*u*S
	if c.softCap != 0 {
		ds += 8 * u * float64(c.softCap)
	}
	lk := float64(c.Lk)
	rel := 2*ds + (6+4*math.Log(lk))*u + 2*(1.07*lk+2)*u
	return Tolerance{Abs: 1e-30, Rel: 2 * rel, NMSE: 1e-7,
		Why: fmt.Sprintf("online-softmax bound %.2g·Σp|v| (logit error %.2g)", 2*rel, ds)}
}

func (c attnCase) mask() ref.AttnMask {
	return ref.AttnMask{Scale: float64(c.scale), SoftCap: float64(c.softCap), Causal: c.causal, Window: c.window, KeyLen: c.keyLen}
}

func (c attnCase) opts() ops.AttnOptions {
	return ops.AttnOptions{Scale: c.scale, SoftCap: c.softCap, Causal: c.causal, Window: c.window}
}

func (c attnCase) shape() ref.AttnShape {
	return ref.AttnShape{B: c.B, Lq: c.Lq, Lk: c.Lk, H: c.H, Hkv: c.Hkv, Dh: c.Dh}
}

func (c attnCase) toCase(random bool) Case {
	return Case{Op: "Attention", Params: c.params(), Random: random, run: func(h *harness) error {
		nb, err := attnBackend(h)
		if err != nil {
			return err
		}
		qk := c.qk
		if qk == 0 {
			qk = 1
		}
		q, err := h.input(-qk, qk, c.B, c.Lq, c.H, c.Dh)
		if err != nil {
			return err
		}
		k, err := h.input(-qk, qk, c.B, c.Lk, c.Hkv, c.Dh)
		if err != nil {
			return err
		}
		v, err := h.input(-1, 1, c.B, c.Lk, c.Hkv, c.Dh)
		if err != nil {
			return err
		}
		o := c.opts()
		if c.keyLen != nil {
			kl := make([]float32, c.B)
			for b, n := range c.keyLen {
				kl[b] = float32(n)
			}
			klt, err := h.given(kl, c.B)
			if err != nil {
				return err
			}
			o.KeyLen = klt.view
		}
		out, err := h.output(c.B, c.Lq, c.H, c.Dh)
		if err != nil {
			return err
		}
		nb.Attention(out.view, q.view, k.view, v.view, o)
		want := make([]float32, len(q.host))
		ref.Attention(want, q.host, k.host, v.host, c.shape(), c.mask(), nil)
		return h.result(out, want, AttnScale(v.host, q.host, k.host, c.shape(), c.mask(), nil), c.tolerance(q.host, k.host))
	}}
}

// AttnScale is Σ_j p_j|v_j| per output element (the attention of |v|), the
// scale of the attention tolerance; rows limits it to those query rows.
func AttnScale(v, q, k []float32, sh ref.AttnShape, m ref.AttnMask, rows []int) []float64 {
	av := make([]float32, len(v))
	for i, x := range v {
		av[i] = float32(math.Abs(float64(x)))
	}
	s32 := make([]float32, len(q))
	ref.Attention(s32, q, k, av, sh, m, rows)
	s := make([]float64, len(s32))
	for i, x := range s32 {
		s[i] = float64(x)
	}
	return s
}

// AttnTolerance is the conformance tolerance of one attention shape (see
// attnCase.tolerance), for tests that check selected rows of shapes too
// large for the full reference.
func AttnTolerance(sh ref.AttnShape, o ops.AttnOptions, q, k []float32) Tolerance {
	c := attnCase{B: sh.B, Lq: sh.Lq, Lk: sh.Lk, H: sh.H, Hkv: sh.Hkv, Dh: sh.Dh, scale: o.Scale, softCap: o.SoftCap}
	return c.tolerance(q, k)
}

func attentionCases(cfg Config, rng *rand.Rand) []Case {
	inv := func(dh int) float32 { return float32(1 / math.Sqrt(float64(dh))) }
	var cs []Case
	for _, c := range []struct {
		B, L, H, Dh, csB int
		mode             ops.RopeMode
	}{
		{1, 1, 1, 2, 1, ops.RopeInterleaved}, // size 1
		{1, 1, 1, 2, 1, ops.RopeHalf},
		{2, 3, 5, 14, 1, ops.RopeHalf},        // primes, Dh/2 = 7, cs broadcast
		{2, 7, 3, 10, 2, ops.RopeInterleaved}, // per-batch table
		{1, 1, 1, 510, 1, ops.RopeHalf},       // 255, 256, 257 pairs: WG ± 1
		{1, 1, 1, 512, 1, ops.RopeInterleaved},
		{1, 1, 1, 514, 1, ops.RopeHalf},
		{2, 5, 3, 96, 2, ops.RopeInterleaved},
	} {
		cs = append(cs, ropeCase(c.B, c.L, c.H, c.Dh, c.csB, c.mode, false))
	}
	if !cfg.Short {
		cs = append(cs,
			ropeCase(1, 300, 24, 96, 1, ops.RopeInterleaved, false), // Next-DiT q, S = 300
			ropeCase(1, 77, 8, 256, 1, ops.RopeHalf, false),         // Gemma-2 q, L = 77
		)
	}
	for range cfg.Random {
		B := 1 + rng.IntN(2)
		csB := B
		if rng.IntN(2) == 0 {
			csB = 1
		}
		mode := ops.RopeMode(rng.IntN(2))
		cs = append(cs, ropeCase(B, 1+rng.IntN(40), 1+rng.IntN(8), 2*(1+rng.IntN(64)), csB, mode, true))
	}

	ac := []attnCase{
		{B: 1, Lq: 1, Lk: 1, H: 1, Hkv: 1, Dh: 1, scale: 1},                                 // size 1
		{B: 1, Lq: 1, Lk: 13, H: 2, Hkv: 1, Dh: 8, scale: inv(8), causal: true},             // one query sees every key
		{B: 2, Lq: 7, Lk: 11, H: 6, Hkv: 2, Dh: 5, scale: inv(5), causal: true},             // primes, Dh not a multiple of 4, Lq < Lk
		{B: 1, Lq: 11, Lk: 7, H: 3, Hkv: 3, Dh: 6, scale: inv(6), causal: true},             // Lq > Lk: the first 4 rows see nothing (zeros)
		{B: 1, Lq: 13, Lk: 13, H: 2, Hkv: 1, Dh: 8, scale: inv(8), causal: true, window: 4}, // sliding window
		{B: 1, Lq: 9, Lk: 9, H: 1, Hkv: 1, Dh: 3, scale: inv(3), window: 3},                 // window without causal
		{B: 3, Lq: 9, Lk: 9, H: 4, Hkv: 4, Dh: 7, scale: inv(7), keyLen: []int{5, 0, 9}},    // key padding, one entry all padding
		{B: 2, Lq: 6, Lk: 9, H: 2, Hkv: 1, Dh: 4, scale: inv(4), causal: true, window: 5, keyLen: []int{7, 2}},
		{B: 1, Lq: 63, Lk: 15, H: 1, Hkv: 1, Dh: 9, scale: inv(9)}, // rows WG − 1, keys BK − 1
		{B: 1, Lq: 64, Lk: 16, H: 1, Hkv: 1, Dh: 9, scale: inv(9)},
		{B: 1, Lq: 65, Lk: 17, H: 1, Hkv: 1, Dh: 9, scale: inv(9)},
		{B: 1, Lq: 5, Lk: 5, H: 2, Hkv: 1, Dh: 256, scale: 1.0 / 16, softCap: 50, causal: true, qk: 4}, // Gemma head, capped logits
		{B: 2, Lq: 12, Lk: 12, H: 3, Hkv: 1, Dh: 16, scale: inv(16), softCap: 2, qk: 2},                // strong cap
		{B: 2, Lq: 40, Lk: 40, H: 6, Hkv: 2, Dh: 96, scale: inv(96), keyLen: []int{40, 33}},            // Next-DiT head under CFG
		// Long key ranges, walked by the GPU in several passes (208 keys
		// for Dh = 512, 432 for Dh = 256, 1056 for Dh = 96): masks that
		// start or end mid-pass, and a pass that is not a multiple of the
		// key block from the window's start.
		{B: 2, Lq: 9, Lk: 500, H: 2, Hkv: 1, Dh: 256, scale: 1.0 / 16, causal: true, window: 430, keyLen: []int{500, 420}},
		{B: 1, Lq: 4, Lk: 1200, H: 3, Hkv: 1, Dh: 96, scale: inv(96)},
		{B: 1, Lq: 3, Lk: 450, H: 1, Hkv: 1, Dh: 511, scale: inv(511), causal: true, window: 300}, // Dh above 256, not a multiple of 4
		// The FLUX VAE's mid attention: one head of 512 over the tokens
		// of a small latent.
		{B: 1, Lq: 256, Lk: 256, H: 1, Hkv: 1, Dh: 512, scale: inv(512)},
	}
	if !cfg.Short {
		ac = append(ac,
			// Next-DiT joint attention, 32 caption + 268 image tokens, 4 padded caption slots (spec §3.6).
			attnCase{B: 1, Lq: 300, Lk: 300, H: 24, Hkv: 8, Dh: 96, scale: inv(96), keyLen: []int{296}},
			// Gemma-2 layer (spec §2.2): the full causal one, and a window smaller than L.
			attnCase{B: 1, Lq: 77, Lk: 77, H: 8, Hkv: 4, Dh: 256, scale: 1.0 / 16, softCap: 50, causal: true, qk: 4},
			attnCase{B: 1, Lq: 77, Lk: 77, H: 8, Hkv: 4, Dh: 256, scale: 1.0 / 16, softCap: 50, causal: true, window: 32, qk: 4},
			// VAE mid attention at 160² pixels: 20² latent tokens, 2 passes.
			attnCase{B: 1, Lq: 400, Lk: 400, H: 1, Hkv: 1, Dh: 512, scale: inv(512)},
		)
	}
	for _, c := range ac {
		cs = append(cs, c.toCase(false))
	}
	for range cfg.Random {
		Hkv := 1 + rng.IntN(3)
		c := attnCase{B: 1 + rng.IntN(2), Lq: 1 + rng.IntN(40), Lk: 1 + rng.IntN(40), Hkv: Hkv, H: Hkv * (1 + rng.IntN(3)), Dh: 1 + rng.IntN(100)}
		c.scale = inv(c.Dh)
		c.causal = rng.IntN(2) == 0
		if rng.IntN(3) == 0 {
			c.window = 1 + rng.IntN(c.Lk)
		}
		if rng.IntN(3) == 0 {
			c.softCap = float32(1 + rng.IntN(50))
		}
		if rng.IntN(2) == 0 {
			c.keyLen = make([]int, c.B)
			for b := range c.keyLen {
				c.keyLen[b] = rng.IntN(c.Lk + 1)
			}
		}
		cs = append(cs, c.toCase(true))
	}
	return cs
}
