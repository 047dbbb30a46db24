package ops

import (
	"context"
	"fmt"

	"github.com/luminaweb/lumina/model/tensor"
	"github.com/luminaweb/lumina/shaders/ref"
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
	// materialises the Lq×Lk logits (online softmax); Dh ≤ 256 there.
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
	ref.Rope(c.data(dst), c.data(x), c.data(cs), B, L, H, Dh, mode == RopeInterleaved)
}

func (c *CPU) Attention(dst, q, k, v *Tensor, o AttnOptions) {
	checkOwner(c, "Attention", dst, q, k, v)
	if o.KeyLen != nil {
		checkOwner(c, "Attention", o.KeyLen)
	}
	sh := attnShapes(dst, q, k, v, o)
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
	_                      [3]uint32
}

const ropeWG = 256 // rope.wgsl's default WG

func (g *GPU) Rope(dst, x, cs *Tensor, mode RopeMode) {
	checkOwner(g, "Rope", dst, x, cs)
	B, L, H, Dh, bcast := ropeShapes(dst, x, cs, mode)
	pairs := B * L * H * Dh / 2
	bx, ox := g.bind(x)
	bc, oc := g.bind(cs)
	bo, oo := g.bind(dst)
	p := RopeParams{Pairs: uint32(pairs), L: uint32(L), H: uint32(H), HalfDh: uint32(Dh / 2),
		XOff: ox, CSOff: oc, OutOff: oo}
	if mode == RopeInterleaved {
		p.Interleaved = 1
	}
	if !bcast {
		p.CSBStride = uint32(L * Dh)
	}
	g.dispatch("rope", "rope", nil, (pairs+ropeWG-1)/ropeWG, p, bx, bc, bo)
}

// AttentionParams is the Go twin of attention.wgsl's Params.
type AttentionParams struct {
	B, Lq, Lk, H, Hkv, Dh, Group, Blocks uint32
	HasKeyLen, Causal, Window            uint32
	QOff, KOff, VOff, KLOff, OutOff      uint32
	Scale, SoftCap                       float32
	StOff, JBegin, JEnd, First, Last     uint32
	_                                    [1]uint32
}

const (
	attnWG    = 64  // attention.wgsl's default WG: (query, head) rows per workgroup
	attnDhMax = 256 // attention.wgsl's DH_MAX
	attnBK    = 16  // attention.wgsl's BK
	// attnLoopBudget is how many loop iterations one invocation may run:
	// llvmpipe stops every invocation's loops after 65,535 in total
	// (gallivm's LP_MAX_TGSI_LOOP_ITERATIONS) without any error.
	attnLoopBudget = 65535
)

// attnKeysPerPass is the most keys one attention pass may cover so that an
// invocation stays within attnLoopBudget: per key a dot product and an
// accumulate over Dh (plus the block loops), per block of attnBK keys a
// rescale, and 4·Dh to load and store its row, with some slack.
func attnKeysPerPass(dh int) int {
	perBlock := attnBK*(2*dh+2) + dh + 2
	n := (attnLoopBudget - 4*dh - 256) / perBlock * attnBK
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
	group := sh.H / sh.Hkv
	blocks := (sh.Lq*group + attnWG - 1) / attnWG
	bq, oq := g.bind(q)
	bk, ok := g.bind(k)
	bv, ov := g.bind(v)
	bo, oo := g.bind(dst)
	p := AttentionParams{B: uint32(sh.B), Lq: uint32(sh.Lq), Lk: uint32(sh.Lk), H: uint32(sh.H), Hkv: uint32(sh.Hkv),
		Dh: uint32(sh.Dh), Group: uint32(group), Blocks: uint32(blocks), Window: uint32(o.Window),
		QOff: oq, KOff: ok, VOff: ov, OutOff: oo, Scale: o.Scale, SoftCap: o.SoftCap}
	p.Causal = attnFlag(o.Causal)
	bl := bq // bound but unread without KeyLen
	if o.KeyLen != nil {
		bl, p.KLOff = g.bind(o.KeyLen)
		p.HasKeyLen = 1
	}
	// The running [max, Σexp] of every row between passes: O(B·Lq·H),
	// from the pool, returned at once (later users are ordered after
	// these dispatches).
	state, err := g.New(tensor.F32, sh.B*sh.Lq*sh.H*2)
	if err != nil {
		g.setErr(fmt.Errorf("ops: Attention: %w", err))
		return
	}
	defer g.Release(state)
	bs, so := g.bind(state)
	p.StOff = so
	chunk := attnKeysPerPass(sh.Dh)
	for j := 0; j < sh.Lk; j += chunk {
		p.JBegin, p.JEnd = uint32(j), uint32(min(sh.Lk, j+chunk))
		p.First, p.Last = attnFlag(j == 0), attnFlag(j+chunk >= sh.Lk)
		g.dispatch("attention", "attention", nil, sh.B*sh.Hkv*blocks, p, bq, bk, bv, bl, bo, bs)
		if chunk < sh.Lk {
			// One submit per pass: lavapipe (Mesa 22/LLVM 15) segfaults
			// in its queue thread when one submit computes for more
			// than a few seconds (seen at S = 2048, H = 3 in one batch).
			g.flush(context.Background())
		}
	}
}

func attnFlag(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}
