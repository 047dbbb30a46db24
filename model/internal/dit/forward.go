package dit

import (
	"fmt"
	"math"
	"strconv"

	"github.com/luminaweb/lumina/model/internal/nn"
	"github.com/luminaweb/lumina/model/ops"
	"github.com/luminaweb/lumina/model/tensor"
)

// Forward predicts the velocity (toward data, spec §3.11) of the latent x
// (B, C, H, W) at model times t (B) in [0, 1] (0 = noise, used unscaled),
// given caption features capFeats (B, Lc, cap_feat_dim) right-padded:
// capLens[b] ≤ Lc is the number of real caption tokens of entry b (the
// padded rows are never read into the result). Entries may have different
// caption lengths (CFG's cond and uncond in one batch): the joint sequences
// are padded and their padding masked (spec §3.12). It returns a new
// (B, C, H, W) tensor, which the caller releases.
//
// The RoPE tables and masks of a geometry (H, W, Lc, capLens) are built on
// its first forward and reused after. Op failures are recorded by the
// backend and surface at its next Sync or Read; Forward itself fails on bad
// arguments and allocation errors.
func (m *Model) Forward(x, t, capFeats *ops.Tensor, capLens []int) (*ops.Tensor, error) {
	c := m.Cfg
	xs, cs := x.Shape(), capFeats.Shape()
	if len(xs) != 4 || xs[1] != c.InChannels || xs[2]%c.PatchSize != 0 || xs[3]%c.PatchSize != 0 {
		return nil, fmt.Errorf("dit: Forward: x %v, want (B, %d, H, W) with H and W multiples of %d", x, c.InChannels, c.PatchSize)
	}
	B, H, W := xs[0], xs[2], xs[3]
	if t.Numel() != B {
		return nil, fmt.Errorf("dit: Forward: t %v, want %d times", t, B)
	}
	if len(cs) != 3 || cs[0] != B || cs[2] != c.CapFeatDim {
		return nil, fmt.Errorf("dit: Forward: capFeats %v, want (%d, Lc, %d)", capFeats, B, c.CapFeatDim)
	}
	Lc := cs[1]
	if len(capLens) != B {
		return nil, fmt.Errorf("dit: Forward: %d caption lengths for a batch of %d", len(capLens), B)
	}
	for b, n := range capLens {
		if n < 1 || n > Lc {
			return nil, fmt.Errorf("dit: Forward: capLens[%d] = %d, want 1..%d", b, n, Lc)
		}
	}
	pl, err := m.plan(B, Lc, H, W, capLens)
	if err != nil {
		return nil, err
	}
	// The scratch is allocated before the output and released when this
	// returns, the output later by the caller: with the backend's
	// first-released-first-reused pool, every step then gets the same
	// buffers back and no new bind group is made after the first step.
	s := &nn.Scope{B: m.b}
	defer s.Release()
	f := &forward{m: m, b: m.b, s: s, pl: pl}
	f.alloc()
	if s.Err != nil {
		return nil, fmt.Errorf("dit: Forward: %w", s.Err)
	}
	out, err := m.b.New(tensor.F32, B, c.InChannels, H, W)
	if err != nil {
		return nil, fmt.Errorf("dit: Forward: %w", err)
	}
	f.run(out, x, t, capFeats)
	if s.Err != nil { // the hooks' scratch
		m.b.Release(out)
		return nil, fmt.Errorf("dit: Forward: %w", s.Err)
	}
	return out, nil
}

// forward is one Forward's activations. Scratch tensors hold rows =
// B·max(Lc, S) rows and are viewed at each stage's size; 2-D tensors are
// (rows, ·).
type forward struct {
	m  *Model
	b  ops.Backend
	s  *nn.Scope
	pl *Plan

	tfreq    *ops.Tensor    // (B, 256)
	th, temb *ops.Tensor    // (B, Dt)
	stemb    *ops.Tensor    // (B, Dt) SiLU(temb), the input of every adaLN linear
	mod      [4]*ops.Tensor // (B, D) each: scale_msa, gate_msa, scale_mlp, gate_mlp
	capIn    *ops.Tensor    // (B·Lc, Dcap) RMSNorm of the caption features
	patches  *ops.Tensor    // (B·N, P)
	cap      *ops.Tensor    // (B·Lc, D) caption stream
	img      *ops.Tensor    // (B·N, D) image stream
	joint    *ops.Tensor    // (B·S, D) joint stream
	mid      *ops.Tensor    // (rows, D) a block's residual midpoint
	n1, h    *ops.Tensor    // (rows, D) pre-norm, modulated input
	o, n2    *ops.Tensor    // (rows, D) branch output, post-norm
	q, qn    *ops.Tensor    // (rows, H·Dh) queries; normed (or aliases q)
	qr, att  *ops.Tensor    // (rows, H·Dh) rotated queries, attention output
	k, kn    *ops.Tensor    // (rows, Hkv·Dh)
	kr, v    *ops.Tensor    // (rows, Hkv·Dh)
	w1, w3   *ops.Tensor    // (rows, F)
	g        *ops.Tensor    // (rows, F) SiLU(w1) ⊙ w3
	fs       *ops.Tensor    // (B, D) final layer scale
	y        *ops.Tensor    // (B·S, P) final layer output
}

func (f *forward) alloc() {
	c, s, pl := f.m.Cfg, f.s, f.pl
	B, D, Dt, F := pl.B, c.Dim, c.AdaLNDim(), c.FFNHidden()
	Q, KV := c.NHeads*c.HeadDim(), c.NKVHeads*c.HeadDim()
	rows := B * max(pl.Lc, pl.S)
	f.tfreq, f.th, f.temb, f.stemb = s.New(B, tFreqDim), s.New(B, Dt), s.New(B, Dt), s.New(B, Dt)
	for i := range f.mod {
		f.mod[i] = s.New(B, D)
	}
	f.capIn, f.patches = s.New(B*pl.Lc, c.CapFeatDim), s.New(B*pl.N, c.PatchDim())
	f.cap, f.img, f.joint = s.New(B*pl.Lc, D), s.New(B*pl.N, D), s.New(B*pl.S, D)
	f.mid, f.n1, f.h, f.o, f.n2 = s.New(rows, D), s.New(rows, D), s.New(rows, D), s.New(rows, D), s.New(rows, D)
	f.q, f.qr, f.att = s.New(rows, Q), s.New(rows, Q), s.New(rows, Q)
	f.k, f.kr, f.v = s.New(rows, KV), s.New(rows, KV), s.New(rows, KV)
	f.qn, f.kn = f.q, f.k
	if c.QKNorm {
		f.qn, f.kn = s.New(rows, Q), s.New(rows, KV)
	}
	f.w1, f.w3, f.g = s.New(rows, F), s.New(rows, F), s.New(rows, F)
	f.fs, f.y = s.New(B, D), s.New(B*pl.S, c.PatchDim())
}

// run computes the whole forward pass into out (spec §3.9).
func (f *forward) run(out, x, t, capFeats *ops.Tensor) {
	m, b, c, pl := f.m, f.b, f.m.Cfg, f.pl
	B, Lc, N, S, D := pl.B, pl.Lc, pl.N, pl.S, c.Dim
	eps := float32(c.NormEps)

	// Timestep embedder: temb = mlp.2(SiLU(mlp.0([cos | sin]))) (§3.3).
	b.Timestep(f.tfreq, b.View(t, 0, B))
	f.hook("t_embedder.t_freq", f.tfreq, B, tFreqDim)
	b.MatMul(f.th, f.tfreq, m.TEmbedderMlp0W, m.TEmbedderMlp0B)
	b.Act(f.stemb, f.th, ops.SiLU) // stemb as scratch: ops do not run in place
	b.MatMul(f.temb, f.stemb, m.TEmbedderMlp2W, m.TEmbedderMlp2B)
	f.hook("t_embedder", f.temb, B, c.AdaLNDim())
	b.Act(f.stemb, f.temb, ops.SiLU)

	// Caption embedder and context refiner (unmodulated, caption mask).
	b.RMSNorm(f.capIn, b.View(capFeats, 0, B*Lc, c.CapFeatDim), m.CapEmbedderNorm, eps, false)
	b.MatMul(f.cap, f.capIn, m.CapEmbedderWeight, m.CapEmbedderBias)
	f.hook("cap_embedder", f.cap, B, Lc, D)
	for i := range m.ContextRefiner {
		f.block("context_refiner."+strconv.Itoa(i), &m.ContextRefiner[i], f.cap, Lc, pl.csCap, pl.capLen)
	}

	// Patch embedder and noise refiner (modulated, no mask: every entry
	// has the same image size).
	b.Patchify(b.View(f.patches, 0, B, N, c.PatchDim()), x, c.PatchSize)
	b.MatMul(f.img, f.patches, m.XEmbedderWeight, m.XEmbedderBias)
	f.hook("x_embedder", f.img, B, N, D)
	for i := range m.NoiseRefiner {
		f.block("noise_refiner."+strconv.Itoa(i), &m.NoiseRefiner[i], f.img, N, pl.csImg, nil)
	}

	// Joint sequence per entry: [real caption tokens, image tokens, zeros].
	for e, n := range pl.CapLens {
		row := e * S * D
		b.Copy(b.View(f.joint, row, n*D), b.View(f.cap, e*Lc*D, n*D))
		b.Copy(b.View(f.joint, row+n*D, N*D), b.View(f.img, e*N*D, N*D))
		if pad := S - n - N; pad > 0 {
			b.Copy(b.View(f.joint, row+(n+N)*D, pad*D), b.View(pl.zeros, 0, pad*D))
		}
	}
	f.hook("layers.0.input0", f.joint, B, S, D)
	f.jointLayers()

	// Final layer (§3.10): LayerNorm without affine, ·(1 + scale), linear.
	b.MatMul(f.fs, f.stemb, m.FinalAdaLNWeight, m.FinalAdaLNBias)
	f.hook("final_layer.adaLN_modulation", f.fs, B, D)
	ln, mod := b.View(f.n1, 0, B, S, D), b.View(f.h, 0, B, S, D)
	b.LayerNorm(ln, b.View(f.joint, 0, B, S, D), finalLayerNormEps)
	b.Modulate(mod, ln, f.fs)
	b.MatMul(f.y, b.View(mod, 0, B*S, D), m.FinalLinearWeight, m.FinalLinearBias)
	f.hook("final_layer", f.y, B, S, c.PatchDim())

	// Unpatchify each entry's image rows y[b, CapLens[b] : CapLens[b]+N].
	img := c.InChannels * pl.Hp * pl.Wp * c.PatchSize * c.PatchSize
	osh := out.Shape()
	for e, n := range pl.CapLens {
		b.Unpatchify(b.View(out, e*img, 1, osh[1], osh[2], osh[3]),
			b.View(f.y, (e*S+n)*c.PatchDim(), 1, N, c.PatchDim()), c.PatchSize)
	}
}

// JointCache lets a caller reuse the joint layers' residual between
// evaluations (TeaCache, spec §6). Decide gets layer 0's modulated input
// (B, S, D), norm1(j)·(1 + scale_msa), on the backend, and returns per
// batch entry whether to reuse that entry's stored residual instead of
// running the joint layers. Forward keeps the residuals (one per entry,
// refreshed whenever the entry's layers run) in its plan.
type JointCache interface {
	Decide(mod *ops.Tensor) (reuse []bool, err error)
}

// jointLayers runs the joint layers on f.joint, or reuses residuals where
// the model's cache says so.
func (f *forward) jointLayers() {
	m, b, pl, D := f.m, f.b, f.pl, f.m.Cfg.Dim
	B, S := pl.B, pl.S
	run := func() {
		for i := range m.Layers {
			f.block("layers."+strconv.Itoa(i), &m.Layers[i], f.joint, S, pl.csJoint, pl.jointLen)
		}
	}
	if m.Cache == nil || len(m.Layers) == 0 {
		run()
		return
	}
	// Layer 0's modulated input, computed as the block computes it.
	w := &m.Layers[0]
	Dt := m.Cfg.AdaLNDim()
	b.MatMul(f.mod[0], f.stemb, b.View(w.AdaLNWeight, 0, D, Dt), b.View(w.AdaLNBias, 0, D))
	n1 := b.View(f.n1, 0, B*S, D)
	b.RMSNorm(n1, f.joint, w.AttentionNorm1, float32(m.Cfg.NormEps), false)
	mod := b.View(f.h, 0, B, S, D)
	b.Modulate(mod, b.View(n1, 0, B, S, D), f.mod[0])
	reuse, err := m.Cache.Decide(mod)
	if err != nil || len(reuse) != B {
		if err == nil {
			err = fmt.Errorf("dit: the cache decided for %d entries of %d", len(reuse), B)
		}
		f.s.Err = err
		return
	}
	if pl.residual == nil {
		if pl.residual, err = b.New(tensor.F32, B*S, D); err != nil {
			f.s.Err = err
			return
		}
		pl.hasRes = make([]bool, B)
	}
	entry := func(t *ops.Tensor, e int) *ops.Tensor { return b.View(t, e*S*D, S*D) }
	all := true
	for e := range B {
		reuse[e] = reuse[e] && pl.hasRes[e]
		all = all && reuse[e]
	}
	if all {
		b.Add(f.mid, f.joint, pl.residual) // ops do not run in place
		b.Copy(f.joint, b.View(f.mid, 0, B*S, D))
		return
	}
	in := f.s.New(B*S, D) // the blocks use every other scratch tensor
	if in == nil {
		return
	}
	b.Copy(in, f.joint)
	run()
	for e := range B {
		if reuse[e] {
			b.Add(entry(f.mid, e), entry(in, e), entry(pl.residual, e))
			b.Copy(entry(f.joint, e), entry(f.mid, e))
			continue
		}
		b.Scale(entry(f.mid, e), entry(in, e), -1)
		b.Add(entry(pl.residual, e), entry(f.joint, e), entry(f.mid, e))
		pl.hasRes[e] = true
	}
}

// block runs one transformer block on x (B·L, D) in place (spec §3.8):
//
//	x = x + g_msa·attention_norm2(attention(attention_norm1(x)·(1 + s_msa)))
//	x = x + g_mlp·ffn_norm2(FFN(ffn_norm1(x)·(1 + s_mlp)))
//
// with g = tanh(gate) and the (1 + scale) factors in modulated blocks;
// without modulation the factors and gates are 1. cs is the stage's RoPE
// table, keyLen its key lengths (nil: every key is real).
func (f *forward) block(name string, w *Block, x *ops.Tensor, L int, cs, keyLen *ops.Tensor) {
	b, c := f.b, f.m.Cfg
	B, D := f.pl.B, c.Dim
	n, eps := B*L, float32(c.NormEps)
	v2 := func(t *ops.Tensor, cols int) *ops.Tensor { return b.View(t, 0, n, cols) }
	v3 := func(t *ops.Tensor) *ops.Tensor { return b.View(t, 0, B, L, D) }
	x2, mid := v2(x, D), v2(f.mid, D)
	n1, h, o, n2 := v2(f.n1, D), v2(f.h, D), v2(f.o, D), v2(f.n2, D)

	modulated := w.AdaLNWeight != nil
	if modulated {
		// The four chunks of adaLN_modulation(SiLU(temb)), each from its
		// contiguous block of D weight rows, so each lands as (B, D).
		Dt := c.AdaLNDim()
		for i, dst := range f.mod {
			b.MatMul(dst, f.stemb, b.View(w.AdaLNWeight, i*D*Dt, D, Dt), b.View(w.AdaLNBias, i*D, D))
		}
		f.hookAdaLN(name + ".adaLN_modulation")
	}

	// Attention branch (§3.6).
	b.RMSNorm(n1, x2, w.AttentionNorm1, eps, false)
	f.hook(name+".attention_norm1", n1, B, L, D)
	in := n1
	if modulated {
		b.Modulate(v3(h), v3(n1), f.mod[0])
		f.hook(name+".modulated", h, B, L, D)
		in = h
	}
	f.attention(w, in, L, cs, keyLen)
	f.hook(name+".attention", o, B, L, D)
	b.RMSNorm(n2, o, w.AttentionNorm2, eps, false)
	if modulated {
		b.GatedAdd(v3(mid), v3(x2), v3(n2), f.mod[1])
	} else {
		b.Add(mid, x2, n2)
	}

	// Feed-forward branch (§3.7): w2(SiLU(w1·u) ⊙ w3·u).
	b.RMSNorm(n1, mid, w.FFNNorm1, eps, false)
	in = n1
	if modulated {
		b.Modulate(v3(h), v3(n1), f.mod[2])
		in = h
	}
	F := c.FFNHidden()
	w1, w3, g := v2(f.w1, F), v2(f.w3, F), v2(f.g, F)
	b.MatMul(w1, in, w.W1, nil)
	b.MatMul(w3, in, w.W3, nil)
	b.Gate(g, w1, w3, ops.SiLU)
	b.MatMul(o, g, w.W2, nil)
	f.hook(name+".feed_forward", o, B, L, D)
	b.RMSNorm(n2, o, w.FFNNorm2, eps, false)
	if modulated {
		b.GatedAdd(v3(x2), v3(mid), v3(n2), f.mod[3])
	} else {
		b.Add(x2, mid, n2)
	}
	f.hook(name, x2, B, L, D)
}

// attention writes attention(in) for in (B·L, D) into f.o: q, k, v from
// the row blocks of qkv, QK-RMSNorm per head, interleaved 3-axis RoPE,
// grouped-query attention with scale 1/√Dh, and the output projection.
func (f *forward) attention(w *Block, in *ops.Tensor, L int, cs, keyLen *ops.Tensor) {
	b, c := f.b, f.m.Cfg
	B, D := f.pl.B, c.Dim
	H, Hkv, Dh := c.NHeads, c.NKVHeads, c.HeadDim()
	n := B * L
	q, k, v := b.View(f.q, 0, n, H*Dh), b.View(f.k, 0, n, Hkv*Dh), b.View(f.v, 0, n, Hkv*Dh)
	b.MatMul(q, in, b.View(w.QKV, 0, H*Dh, D), nil)
	b.MatMul(k, in, b.View(w.QKV, H*Dh*D, Hkv*Dh, D), nil)
	b.MatMul(v, in, b.View(w.QKV, (H+Hkv)*Dh*D, Hkv*Dh, D), nil)
	qn, kn := q, k
	if w.QNorm != nil {
		qeps := float32(c.QKNormEps)
		qn, kn = b.View(f.qn, 0, n*H, Dh), b.View(f.kn, 0, n*Hkv, Dh)
		b.RMSNorm(qn, b.View(q, 0, n*H, Dh), w.QNorm, qeps, false)
		b.RMSNorm(kn, b.View(k, 0, n*Hkv, Dh), w.KNorm, qeps, false)
	}
	qr, kr := b.View(f.qr, 0, B, L, H, Dh), b.View(f.kr, 0, B, L, Hkv, Dh)
	b.Rope(qr, b.View(qn, 0, B, L, H, Dh), cs, ops.RopeInterleaved)
	b.Rope(kr, b.View(kn, 0, B, L, Hkv, Dh), cs, ops.RopeInterleaved)
	att := b.View(f.att, 0, B, L, H, Dh)
	b.Attention(att, qr, kr, b.View(v, 0, B, L, Hkv, Dh), ops.AttnOptions{
		Scale:  float32(math.Sqrt(1 / float64(Dh))),
		KeyLen: keyLen,
	})
	b.MatMul(b.View(f.o, 0, n, D), b.View(att, 0, n, H*Dh), w.Out, nil)
}

func (f *forward) hook(name string, t *ops.Tensor, shape ...int) {
	if f.m.Hook != nil {
		f.m.Hook(name, f.b.View(t, 0, shape...))
	}
}

// hookAdaLN shows the four modulation chunks as the original's (B, 4D)
// adaLN_modulation output; the copy is made only when a hook is set.
func (f *forward) hookAdaLN(name string) {
	if f.m.Hook == nil {
		return
	}
	B, D := f.pl.B, f.m.Cfg.Dim
	t := f.s.New(B, 4*D)
	if t == nil {
		return
	}
	for e := range B {
		for i, c := range f.mod {
			f.b.Copy(f.b.View(t, (e*4+i)*D, D), f.b.View(c, e*D, D))
		}
	}
	f.m.Hook(name, t)
}
