package ops

import (
	"fmt"

	"github.com/luminaweb/lumina/model/tensor"
	"github.com/luminaweb/lumina/shaders/ref"
	"github.com/luminaweb/lumina/wgpu"
)

// Attn is the attention family: rotary position embeddings and fused
// scaled-dot-product attention with grouped-query heads.
type Attn interface {
	// Rope rotates pairs of x (B, L, H, Dh) by the angles whose cosines
	// and sines are in cs (B, L, Dh/2, 2): cs[b,l,m] = [cos φ, sin φ] for
	// pair m of every head of token l. cs may have batch 1, broadcast
	// over B. For pair m with elements (i, j):
	//
	//	dst[i] = x[i]·cos φ − x[j]·sin φ
	//	dst[j] = x[j]·cos φ + x[i]·sin φ
	//
	// (i, j) = (2m, 2m+1) for RopeInterleaved (Next-DiT, spec §3.5) and
	// (m, m + Dh/2) for RopeHalf (Gemma-2's rotate_half, spec §2.2). Dh
	// must be even; dst has x's shape and must not overlap x.
	Rope(dst, x, cs *Tensor, mode RopeMode)

	// Attention computes, for every batch entry b, query i and head h,
	//
	//	s_j = o.Scale · q[b,i,h,:]·k[b,j,g,:]      (g = h / (H/Hkv))
	//	s_j = o.SoftCap · tanh(s_j / o.SoftCap)     (when SoftCap ≠ 0)
	//	dst[b,i,h,:] = Σ_j softmax(s)_j · v[b,j,g,:]
	//
	// with the softmax over the keys j that AttnOptions leaves visible.
	// q is (B, Lq, H, Dh), k and v are (B, Lk, Hkv, Dh) with H a multiple
	// of Hkv (query heads grouped contiguously on each key/value head),
	// dst is (B, Lq, H, Dh) and must not overlap the inputs. A query row
	// with no visible key (KeyLen 0, or a window and causal mask that
	// exclude everything) is written as zeros, not NaN. The GPU never
	// materialises the Lq×Lk logits (online softmax); Dh ≤ 512 there.
	Attention(dst, q, k, v *Tensor, o AttnOptions)
}

var (
	_ Attn = (*CPU)(nil)
	_ Attn = (*GPU)(nil)
)

// RopeMode selects which elements of a head vector form a rotated pair.
type RopeMode int

const (
	// RopeInterleaved pairs (2m, 2m+1): the head as Dh/2 complex numbers
	// (Lumina / Next-DiT).
	RopeInterleaved RopeMode = iota
	// RopeHalf pairs (m, m + Dh/2): HF transformers' rotate_half (Gemma-2).
	RopeHalf
)

func (m RopeMode) String() string {
	switch m {
	case RopeInterleaved:
		return "interleaved"
	case RopeHalf:
		return "half"
	}
	return fmt.Sprintf("RopeMode(%d)", int(m))
}

// AttnOptions are Attention's logit transform and masks.
type AttnOptions struct {
	Scale   float32 // logit scale, e.g. 1/√Dh
	SoftCap float32 // 0 = none; else s = SoftCap·tanh(s/SoftCap) after scaling, before masking
	Causal  bool    // key j visible to query i only if j ≤ i + (Lk − Lq)
	Window  int     // 0 = none; else key j visible only if (i + Lk − Lq) − j < Window (Gemma sliding window), combined with Causal
	KeyLen  *Tensor // nil = all keys valid; else (B) f32 holding the number of valid leading keys per batch entry (key padding mask)
}

// ropeShapes validates Rope's operands and returns B, L, H, Dh and whether
// cs is broadcast over the batch.
func ropeShapes(dst, x, cs *Tensor, mode RopeMode) (B, L, H, Dh int, bcast bool) {
	checkF32("Rope", dst, x, cs)
	if mode != RopeInterleaved && mode != RopeHalf {
		badShapes("Rope", fmt.Sprintf("unknown mode %d", int(mode)), x)
	}
	if len(x.shape) != 4 || !dst.shape.Equal(x.shape) {
		badShapes("Rope", "x must be (B, L, H, Dh) and dst its shape", dst, x)
	}
	B, L, H, Dh = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
	if Dh%2 != 0 {
		badShapes("Rope", "Dh must be even", x)
	}
	if len(cs.shape) != 4 || (cs.shape[0] != B && cs.shape[0] != 1) || cs.shape[1] != L ||
		cs.shape[2] != Dh/2 || cs.shape[3] != 2 {
		badShapes("Rope", "cs must be (B or 1, L, Dh/2, 2)", x, cs)
	}
	return B, L, H, Dh, cs.shape[0] != B || B == 1
}

// attnShapes validates Attention's operands.
func attnShapes(dst, q, k, v *Tensor, o AttnOptions) ref.AttnShape {
	checkF32("Attention", dst, q, k, v, o.KeyLen)
	if len(q.shape) != 4 || len(k.shape) != 4 || !v.shape.Equal(k.shape) || !dst.shape.Equal(q.shape) {
		badShapes("Attention", "q and dst must be (B, Lq, H, Dh), k and v (B, Lk, Hkv, Dh)", dst, q, k, v)
	}
	sh := ref.AttnShape{B: q.shape[0], Lq: q.shape[1], H: q.shape[2], Dh: q.shape[3], Lk: k.shape[1], Hkv: k.shape[2]}
	if k.shape[0] != sh.B || k.shape[3] != sh.Dh {
		badShapes("Attention", "k's batch or head dim differs from q's", q, k)
	}
	if sh.H%sh.Hkv != 0 {
		badShapes("Attention", "H is not a multiple of Hkv", q, k)
	}
	if o.KeyLen != nil && (len(o.KeyLen.shape) != 1 || o.KeyLen.shape[0] != sh.B) {
		badShapes("Attention", "KeyLen must be (B)", q, o.KeyLen)
	}
	if o.Window < 0 {
		badShapes("Attention", fmt.Sprintf("negative window %d", o.Window), q)
	}
	return sh
}

func attnMask(o AttnOptions, keyLen []float32) ref.AttnMask {
	m := ref.AttnMask{Scale: float64(o.Scale), SoftCap: float64(o.SoftCap), Causal: o.Causal, Window: o.Window}
	if keyLen != nil {
		m.KeyLen = make([]int, len(keyLen))
		for b, n := range keyLen {
			m.KeyLen[b] = int(n) // truncation, as the shader's i32()
		}
	}
	return m
}

func (c *CPU) Rope(dst, x, cs *Tensor, mode RopeMode) {
	checkOwner(c, "Rope", dst, x, cs)
	B, L, H, Dh, _ := ropeShapes(dst, x, cs, mode)
	if c.dry {
		return // a memory plan: shapes checked, nothing computed
	}
	ref.Rope(c.data(dst), c.data(x), c.data(cs), B, L, H, Dh, mode == RopeInterleaved)
}

func (c *CPU) Attention(dst, q, k, v *Tensor, o AttnOptions) {
	checkOwner(c, "Attention", dst, q, k, v)
	if o.KeyLen != nil {
		checkOwner(c, "Attention", o.KeyLen)
	}
	sh := attnShapes(dst, q, k, v, o)
	if c.dry {
		return // a memory plan: shapes checked, nothing computed
	}
	ref.Attention(c.data(dst), c.data(q), c.data(k), c.data(v), sh, attnMask(o, c.data(o.KeyLen)), nil)
}

func init() {
	registerParams("rope", "Params", RopeParams{})
	registerParams("attention", "Params", AttentionParams{})
}

// RopeParams is the Go twin of rope.wgsl's Params.
type RopeParams struct {
	Pairs, L, H, HalfDh    uint32
	Interleaved, CSBStride uint32
	XOff, CSOff, OutOff    uint32
	Base                   uint32
	_                      [2]uint32
}

const ropeWG = 256 // rope.wgsl's default WG

func (g *GPU) Rope(dst, x, cs *Tensor, mode RopeMode) {
	checkOwner(g, "Rope", dst, x, cs)
	B, L, H, Dh, bcast := ropeShapes(dst, x, cs, mode)
	out, done := g.distinct(dst, x, cs)
	if out == nil {
		return
	}
	half := Dh / 2
	pairs := B * L * H * half
	p := RopeParams{L: uint32(L), H: uint32(H), HalfDh: uint32(half)}
	if mode == RopeInterleaved {
		p.Interleaved = 1
	}
	if !bcast {
		p.CSBStride = uint32(L * Dh)
	}
	// Pairs [u0, u1) are in head rows u0/half .. (u1−1)/half, of tokens
	// (b·L + l) = row/H, whose cs rows are b·L + l, or l when broadcast.
	heads := span{x, func(u0, u1 int) (int, int) { return u0 / half * Dh, ((u1-1)/half + 1) * Dh }}
	csSpan := span{cs, func(u0, u1 int) (int, int) {
		t0, t1 := u0/half/H, (u1-1)/half/H
		if bcast {
			if t0/L != t1/L {
				return 0, L * Dh
			}
			t0, t1 = t0%L, t1%L
		}
		return t0 * Dh, (t1 + 1) * Dh
	}}
	outSpan := heads
	outSpan.t = out
	g.split("Rope", pairs, 0, []span{heads, csSpan, outSpan}, func(u0, u1 int, bs []wgpu.Binding, off []uint32) {
		q := p
		q.Pairs, q.Base, q.XOff, q.CSOff, q.OutOff = uint32(u1), uint32(u0), off[0], off[1], off[2]
		g.dispatch("rope", "rope", nil, (u1-u0+ropeWG-1)/ropeWG, q, bs...)
	})
	done()
}

// AttentionParams is the Go twin of attention.wgsl's Params.
type AttentionParams struct {
	B, Lq, Lk, H, Hkv, Dh, Group, Blocks uint32
	HasKeyLen, Causal, Window            uint32
	QOff, KOff, VOff, KLOff, OutOff      uint32
	Scale, SoftCap                       float32
	StOff, JBegin, JEnd, First, Last     uint32
	T0                                   uint32
}

const (
	attnWG    = 64  // attention.wgsl's default WG: (query, head) rows per workgroup
	attnDhMax = 512 // attention.wgsl's DH_MAX
	attnBK    = 16  // attention.wgsl's BK
	// attnLoopBudget is how many loop iterations one invocation may run:
	// llvmpipe stops every invocation's loops after 65,535 in total
	// (gallivm's LP_MAX_TGSI_LOOP_ITERATIONS) without any error.
	attnLoopBudget = 65535
	// attnSubmitWork bounds the multiply-adds of one submission (about a
	// second on lavapipe): lavapipe (Mesa 22/LLVM 15) segfaults in its
	// queue thread when one submit computes for many seconds (seen at
	// S = 2048, H = 3 in one batch).
	attnSubmitWork = 1 << 30
)

// attnKeysPerPass is the most keys one attention pass may cover so that an
// invocation stays within attnLoopBudget. The loops along Dh step by 4
// (d4 = ⌈Dh/4⌉ iterations, plus up to 3 of a scalar tail): per key a dot
// product and an accumulate, per block of attnBK keys a rescale, and Dh
// each to load and store the row, with slack for the block loops. Blocks
// are aligned to multiples of attnBK, so a pass may hold one block more
// than its length suggests.
func attnKeysPerPass(dh int) int {
	d4 := (dh + 3) / 4
	perBlock := attnBK*(2*d4+10) + d4 + 4
	n := ((attnLoopBudget-4*dh-256)/perBlock - 1) * attnBK
	return max(n, attnBK)
}

func (g *GPU) Attention(dst, q, k, v *Tensor, o AttnOptions) {
	checkOwner(g, "Attention", dst, q, k, v)
	if o.KeyLen != nil {
		checkOwner(g, "Attention", o.KeyLen)
	}
	sh := attnShapes(dst, q, k, v, o)
	if sh.Dh > attnDhMax {
		badShapes("Attention", fmt.Sprintf("head dim above %d is not supported on the GPU", attnDhMax), q)
	}
	out, done := g.distinct(dst, q, k, v, o.KeyLen)
	if out == nil {
		return
	}
	group := sh.H / sh.Hkv
	blocks := (sh.Lq*group + attnWG - 1) / attnWG
	p := AttentionParams{B: uint32(sh.B), Lq: uint32(sh.Lq), Lk: uint32(sh.Lk), H: uint32(sh.H), Hkv: uint32(sh.Hkv),
		Dh: uint32(sh.Dh), Group: uint32(group), Blocks: uint32(blocks), Window: uint32(o.Window),
		Scale: o.Scale, SoftCap: o.SoftCap}
	p.Causal = attnFlag(o.Causal)
	// The running [max, Σexp] of every row between passes: O(B·Lq·H),
	// from the pool, returned at once (later users are ordered after
	// these dispatches).
	state, err := g.temp(tensor.F32, sh.B*sh.Lq*sh.H*2)
	if err != nil {
		g.setErr(fmt.Errorf("ops: Attention: %w", err))
		return
	}
	defer g.releaseTemp(state)
	// Passes of keys within the loop budget, shortened (at multiples of
	// attnBK, which keeps the result bit-identical) until one kv head's
	// keys of a pass fit one binding: (n−1)·Hkv·Dh + Dh elements.
	chunk := attnKeysPerPass(sh.Dh)
	if E := g.windowElems(k); (chunk-1)*sh.Hkv*sh.Dh+sh.Dh > E {
		fit := (E-sh.Dh)/(sh.Hkv*sh.Dh) + 1
		chunk = max(1, fit/attnBK*attnBK, min(fit, attnBK))
	}
	units := sh.B * sh.Hkv * blocks
	// Workgroup t is (batch b, kv head g, block of WG query rows); its
	// query rows i cover [blk·WG/group, ((blk+1)·WG − 1)/group].
	unit := func(t int) (b, g, i0, i1 int) {
		b, g = t/(sh.Hkv*blocks), t/blocks%sh.Hkv
		blk := t % blocks
		return b, g, blk * attnWG / group, min(sh.Lq-1, ((blk+1)*attnWG-1)/group)
	}
	// rowSpan: elements per (query, head) row; one kv head's rows, else
	// whole batch entries.
	rowSpan := func(t *Tensor, per int) span {
		return span{t, func(u0, u1 int) (int, int) {
			b0, g0, i0, _ := unit(u0)
			b1, g1, _, i1 := unit(u1 - 1)
			if b0 == b1 && g0 == g1 {
				return ((b0*sh.Lq+i0)*sh.H + g0*group) * per, ((b0*sh.Lq+i1)*sh.H + (g0+1)*group) * per
			}
			return b0 * sh.Lq * sh.H * per, (b1 + 1) * sh.Lq * sh.H * per
		}}
	}
	klSpan := rowSpan(q, sh.Dh) // bound but unread without KeyLen
	if o.KeyLen != nil {
		klSpan = whole(o.KeyLen)
		p.HasKeyLen = 1
	}
	// Long-running work is submitted in pieces of at most attnSubmitWork
	// multiply-adds (see there): at most most workgroups per dispatch,
	// each dispatch its own submission.
	perUnit := attnWG * min(chunk, sh.Lk) * sh.Dh * 2
	most := max(1, attnSubmitWork/perUnit)
	heavy := units > most || chunk < sh.Lk
	for j := 0; j < sh.Lk; j += chunk {
		je := min(sh.Lk, j+chunk)
		// keys [j, je) of kv head g, or of every head of the batches.
		kvSpan := func(t *Tensor) span {
			return span{t, func(u0, u1 int) (int, int) {
				b0, g0, _, _ := unit(u0)
				b1, g1, _, _ := unit(u1 - 1)
				if b0 == b1 && g0 == g1 {
					return ((b0*sh.Lk+j)*sh.Hkv + g0) * sh.Dh, ((b0*sh.Lk+je-1)*sh.Hkv + g0 + 1) * sh.Dh
				}
				return (b0*sh.Lk + j) * sh.Hkv * sh.Dh, (b1*sh.Lk + je) * sh.Hkv * sh.Dh
			}}
		}
		spans := []span{rowSpan(q, sh.Dh), kvSpan(k), kvSpan(v), klSpan, rowSpan(out, sh.Dh), rowSpan(state, 2)}
		p.JBegin, p.JEnd = uint32(j), uint32(je)
		p.First, p.Last = attnFlag(j == 0), attnFlag(je == sh.Lk)
		g.split("Attention", units, most, spans, func(u0, u1 int, bs []wgpu.Binding, off []uint32) {
			pp := p
			pp.T0 = uint32(u0)
			pp.QOff, pp.KOff, pp.VOff, pp.KLOff, pp.OutOff, pp.StOff = off[0], off[1], off[2], off[3], off[4], off[5]
			g.dispatch("attention", "attention", nil, u1-u0, pp, bs...)
			if heavy {
				g.flush(g.context())
			}
		})
	}
	done()
}

func attnFlag(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}
