package ops

import (
	"fmt"
	"math"

	"github.com/luminaweb/lumina/shaders/ref"
	"github.com/luminaweb/lumina/wgpu"
)

// Activation selects the nonlinearity of Act and Gate.
type Activation int

const (
	// SiLU is x·sigmoid(x) (Next-DiT's SwiGLU FFN, adaLN input, VAE).
	SiLU Activation = iota
	// GELUTanh is 0.5x(1 + tanh(√(2/π)(x + 0.044715x³))) (Gemma-2's
	// gelu_pytorch_tanh).
	GELUTanh
)

func (a Activation) String() string {
	switch a {
	case SiLU:
		return "silu"
	case GELUTanh:
		return "gelu_tanh"
	}
	return fmt.Sprintf("Activation(%d)", int(a))
}

func (a Activation) ref() func(float64) float64 {
	if a == GELUTanh {
		return ref.GELUTanh64
	}
	return ref.SiLU64
}

// Pointwise is the family of elementwise and data-movement ops: products,
// activations, gated linear units, adaLN modulation and gated residuals,
// the timestep embedding, patchify/unpatchify, upsampling, transposes and
// copies. dst must not overlap an input (the GPU cannot bind a writable
// range that aliases another binding).
type Pointwise interface {
	// Mul: dst[i] = a[i]·b[i mod b.Numel()]. b has a's shape, or is a row
	// broadcast over a's leading dimensions (b.Numel() equal to a's last
	// dimension), as in Add.
	Mul(dst, a, b *Tensor)
	// Scale: dst = s·x; dst has x's shape.
	Scale(dst, x *Tensor, s float32)
	// Act: dst = act(x) elementwise; dst has x's shape.
	Act(dst, x *Tensor, act Activation)
	// Gate: dst = act(a) ⊙ b, the gated linear unit of an FFN (SwiGLU with
	// SiLU, GeGLU with GELUTanh); a, b and dst have the same shape.
	Gate(dst, a, b *Tensor, act Activation)
	// Modulate: dst[b,l,d] = x[b,l,d]·(1 + scale[b,d]), adaLN's scale-only
	// modulation with one vector per sample broadcast over its tokens. x
	// and dst are (B, L, D); scale has B·D elements, last dimension D.
	Modulate(dst, x, scale *Tensor)
	// GatedAdd: dst[b,l,d] = x[b,l,d] + tanh(gate[b,d])·y[b,l,d], the
	// tanh-gated residual of a modulated block. x, y and dst are
	// (B, L, D); gate has B·D elements, last dimension D.
	GatedAdd(dst, x, y, gate *Tensor)
	// Timestep: dst (B, F) = [cos(t·f_k) | sin(t·f_k)], f_k =
	// exp(−ln(10000)·k/(F/2)) for k < F/2: Next-DiT's sinusoidal timestep
	// embedding before its MLP. t has B elements (model time in [0, 1],
	// not scaled); F is even.
	Timestep(dst, t *Tensor)
	// Patchify: x (B, C, H, W) → dst (B, (H/p)·(W/p), p·p·C), tokens in
	// row-major patch order and features ordered (i, j, ch):
	// dst[b, r·(W/p)+q, (i·p+j)·C+ch] = x[b, ch, r·p+i, q·p+j]. H and W
	// are multiples of p.
	Patchify(dst, x *Tensor, p int)
	// Unpatchify is the inverse of Patchify: x (B, N, p·p·C) → dst
	// (B, C, H, W), with C, H and W taken from dst's shape.
	Unpatchify(dst, x *Tensor, p int)
	// Upsample2x: nearest-neighbour 2× upsampling, x (B, C, H, W) → dst
	// (B, C, 2H, 2W), each pixel copied to a 2×2 block.
	Upsample2x(dst, x *Tensor)
	// Transpose swaps the last two dimensions: x (B, R, C) → dst (B, C, R);
	// a 2-D x (R, C) gives dst (C, R).
	Transpose(dst, x *Tensor)
	// Copy copies src's elements into dst in order; they have the same
	// number of elements (shapes may differ), and must not overlap. With
	// views it slices and concatenates along the leading dimension.
	Copy(dst, src *Tensor)
}

var (
	_ Pointwise = (*CPU)(nil)
	_ Pointwise = (*GPU)(nil)
)

// bcastShapes validates an Add-like op (b equal to a or a row of it) and
// returns n and the period of b.
func bcastShapes(op string, dst, a, b *Tensor) (n, bn int) {
	checkF32(op, dst, a, b)
	if !dst.shape.Equal(a.shape) {
		badShapes(op, "dst and a differ", dst, a)
	}
	last := a.shape[len(a.shape)-1]
	if !b.shape.Equal(a.shape) && !(b.Numel() == last && b.shape[len(b.shape)-1] == last) {
		badShapes(op, "b is neither a's shape nor a row of it", a, b)
	}
	return a.Numel(), b.Numel()
}

// sameShapes validates an elementwise op whose operands all have dst's
// shape.
func sameShapes(op string, dst *Tensor, ts ...*Tensor) {
	checkF32(op, dst)
	checkF32(op, ts...)
	for _, t := range ts {
		if !t.shape.Equal(dst.shape) {
			badShapes(op, "operands differ in shape", append([]*Tensor{dst}, ts...)...)
		}
	}
}

func checkAct(op string, act Activation) {
	if act != SiLU && act != GELUTanh {
		panic(fmt.Sprintf("ops: %s: unknown activation %v", op, act))
	}
}

// perSampleShapes validates Modulate and GatedAdd: xs and dst are
// (B, L, D), v (scale or gate) has B·D elements with last dimension D.
func perSampleShapes(op string, dst, v *Tensor, xs ...*Tensor) (B, L, D int) {
	sameShapes(op, dst, xs...)
	checkF32(op, v)
	if len(dst.shape) != 3 {
		badShapes(op, "x is not (B, L, D)", append([]*Tensor{dst}, xs...)...)
	}
	B, L, D = dst.shape[0], dst.shape[1], dst.shape[2]
	if v.Numel() != B*D || v.shape[len(v.shape)-1] != D {
		badShapes(op, "the per-sample vector is not (B, D)", dst, v)
	}
	return B, L, D
}

// timestepShapes validates Timestep and returns B and F.
func timestepShapes(dst, t *Tensor) (B, F int) {
	checkF32("Timestep", dst, t)
	if len(dst.shape) != 2 || dst.shape[0] != t.Numel() || dst.shape[1]%2 != 0 {
		badShapes("Timestep", "dst is not (B, F) with B = t's length and F even", dst, t)
	}
	return dst.shape[0], dst.shape[1]
}

// patchShapes validates Patchify (img = x, tok = dst) and Unpatchify
// (img = dst, tok = x) and returns B, C, H, W.
func patchShapes(op string, img, tok *Tensor, p int) (B, C, H, W int) {
	checkF32(op, img, tok)
	if len(img.shape) != 4 || p < 1 {
		badShapes(op, fmt.Sprintf("image is not (B, C, H, W) or p = %d < 1", p), img, tok)
	}
	B, C, H, W = img.shape[0], img.shape[1], img.shape[2], img.shape[3]
	if H%p != 0 || W%p != 0 {
		badShapes(op, fmt.Sprintf("H and W are not multiples of p = %d", p), img)
	}
	if len(tok.shape) != 3 || tok.shape[0] != B || tok.shape[1] != (H/p)*(W/p) || tok.shape[2] != p*p*C {
		badShapes(op, fmt.Sprintf("tokens are not (B, (H/p)·(W/p), p·p·C) with p = %d", p), img, tok)
	}
	return B, C, H, W
}

// upsampleShapes validates Upsample2x and returns x's B, C, H, W.
func upsampleShapes(dst, x *Tensor) (B, C, H, W int) {
	checkF32("Upsample2x", dst, x)
	if len(x.shape) != 4 || len(dst.shape) != 4 {
		badShapes("Upsample2x", "x and dst are not (B, C, H, W)", x, dst)
	}
	B, C, H, W = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
	if dst.shape[0] != B || dst.shape[1] != C || dst.shape[2] != 2*H || dst.shape[3] != 2*W {
		badShapes("Upsample2x", "dst is not (B, C, 2H, 2W)", x, dst)
	}
	return B, C, H, W
}

// transposeShapes validates Transpose and returns B, R, C.
func transposeShapes(dst, x *Tensor) (B, R, C int) {
	checkF32("Transpose", dst, x)
	s := x.shape
	switch len(s) {
	case 2:
		B, R, C = 1, s[0], s[1]
	case 3:
		B, R, C = s[0], s[1], s[2]
	default:
		badShapes("Transpose", "x is not (B, R, C) or (R, C)", x, dst)
	}
	want := append(s[:len(s)-2:len(s)-2], C, R)
	if !dst.shape.Equal(want) {
		badShapes("Transpose", "dst is not x with its last two dimensions swapped", x, dst)
	}
	return B, R, C
}

// copyShapes validates Copy: equal element counts and no overlap.
func copyShapes(dst, src *Tensor) {
	checkF32("Copy", dst, src)
	if dst.Numel() != src.Numel() {
		badShapes("Copy", "element counts differ", dst, src)
	}
	if sameStore(dst, src) && dst.off < src.off+src.Numel() && src.off < dst.off+dst.Numel() {
		badShapes("Copy", fmt.Sprintf("dst (at %d) and src (at %d) overlap", dst.off, src.off), dst, src)
	}
}

// sameStore reports whether two tensors share storage. CPU storage is a
// slice, which cannot be compared with ==.
func sameStore(a, b *Tensor) bool {
	if sa, ok := a.store.([]float32); ok {
		sb, ok := b.store.([]float32)
		return ok && len(sa) > 0 && len(sb) > 0 && &sa[0] == &sb[0]
	}
	return a.store == b.store
}

// CPU backend.

func (c *CPU) Mul(dst, a, b *Tensor) {
	checkOwner(c, "Mul", dst, a, b)
	bcastShapes("Mul", dst, a, b)
	if c.dry {
		return // a memory plan: shapes checked, nothing computed
	}
	ref.Mul(c.data(dst), c.data(a), c.data(b))
}

func (c *CPU) Scale(dst, x *Tensor, s float32) {
	checkOwner(c, "Scale", dst, x)
	sameShapes("Scale", dst, x)
	if c.dry {
		return // a memory plan: shapes checked, nothing computed
	}
	ref.Scale(c.data(dst), c.data(x), s)
}

func (c *CPU) Act(dst, x *Tensor, act Activation) {
	checkOwner(c, "Act", dst, x)
	sameShapes("Act", dst, x)
	checkAct("Act", act)
	if c.dry {
		return // a memory plan: shapes checked, nothing computed
	}
	ref.Act(c.data(dst), c.data(x), act.ref())
}

func (c *CPU) Gate(dst, a, b *Tensor, act Activation) {
	checkOwner(c, "Gate", dst, a, b)
	sameShapes("Gate", dst, a, b)
	checkAct("Gate", act)
	if c.dry {
		return // a memory plan: shapes checked, nothing computed
	}
	ref.Gate(c.data(dst), c.data(a), c.data(b), act.ref())
}

func (c *CPU) Modulate(dst, x, scale *Tensor) {
	checkOwner(c, "Modulate", dst, x, scale)
	B, L, D := perSampleShapes("Modulate", dst, scale, x)
	if c.dry {
		return // a memory plan: shapes checked, nothing computed
	}
	ref.Modulate(c.data(dst), c.data(x), c.data(scale), B, L, D)
}

func (c *CPU) GatedAdd(dst, x, y, gate *Tensor) {
	checkOwner(c, "GatedAdd", dst, x, y, gate)
	B, L, D := perSampleShapes("GatedAdd", dst, gate, x, y)
	if c.dry {
		return // a memory plan: shapes checked, nothing computed
	}
	ref.GatedAdd(c.data(dst), c.data(x), c.data(y), c.data(gate), B, L, D)
}

func (c *CPU) Timestep(dst, t *Tensor) {
	checkOwner(c, "Timestep", dst, t)
	_, F := timestepShapes(dst, t)
	if c.dry {
		return // a memory plan: shapes checked, nothing computed
	}
	ref.Timestep(c.data(dst), c.data(t), F)
}

func (c *CPU) Patchify(dst, x *Tensor, p int) {
	checkOwner(c, "Patchify", dst, x)
	B, C, H, W := patchShapes("Patchify", x, dst, p)
	if c.dry {
		return // a memory plan: shapes checked, nothing computed
	}
	ref.Patchify(c.data(dst), c.data(x), B, C, H, W, p)
}

func (c *CPU) Unpatchify(dst, x *Tensor, p int) {
	checkOwner(c, "Unpatchify", dst, x)
	B, C, H, W := patchShapes("Unpatchify", dst, x, p)
	if c.dry {
		return // a memory plan: shapes checked, nothing computed
	}
	ref.Unpatchify(c.data(dst), c.data(x), B, C, H, W, p)
}

func (c *CPU) Upsample2x(dst, x *Tensor) {
	checkOwner(c, "Upsample2x", dst, x)
	B, C, H, W := upsampleShapes(dst, x)
	if c.dry {
		return // a memory plan: shapes checked, nothing computed
	}
	ref.Upsample2x(c.data(dst), c.data(x), B, C, H, W)
}

func (c *CPU) Transpose(dst, x *Tensor) {
	checkOwner(c, "Transpose", dst, x)
	B, R, C := transposeShapes(dst, x)
	if c.dry {
		return // a memory plan: shapes checked, nothing computed
	}
	ref.Transpose(c.data(dst), c.data(x), B, R, C)
}

func (c *CPU) Copy(dst, src *Tensor) {
	checkOwner(c, "Copy", dst, src)
	copyShapes(dst, src)
	if c.dry {
		return // a memory plan: shapes checked, nothing computed
	}
	copy(c.data(dst), c.data(src))
}

// GPU backend.

// PointwiseParams is the Go twin of pointwise.wgsl's Params.
type PointwiseParams struct {
	N, D, L, Act             uint32
	AOff, BOff, COff, OutOff uint32
	S                        float32
	Base                     uint32
	_                        [2]uint32
}

// LayoutParams is the Go twin of layout.wgsl's Params.
type LayoutParams struct {
	N, C, H, W, P uint32
	XOff, OutOff  uint32
	Base          uint32
}

func init() {
	registerParams("pointwise", "Params", PointwiseParams{})
	registerParams("layout", "Params", LayoutParams{})
}

const pointwiseWG = 256 // pointwise.wgsl's and layout.wgsl's default WG

// pointwise records pointwise.wgsl dispatches over dst's elements, split
// into element ranges whose windows fit one binding; inputs a, b, c bind
// in order with the given spans over those elements (a nil input is bound
// to a, not read).
func (g *GPU) pointwise(op, entry string, p PointwiseParams, dst *Tensor, in ...span) {
	ts := make([]*Tensor, len(in))
	for i, s := range in {
		ts[i] = s.t
	}
	out, done := g.distinct(dst, ts...)
	if out == nil {
		return
	}
	for len(in) < 3 {
		in = append(in, in[0])
	}
	g.split(op, dst.Numel(), 0, []span{in[0], in[1], in[2], rowsOf(out, 1)}, func(u0, u1 int, bs []wgpu.Binding, off []uint32) {
		q := p
		q.N, q.Base = uint32(u1), uint32(u0)
		q.AOff, q.BOff, q.COff, q.OutOff = off[0], off[1], off[2], off[3]
		g.dispatch("pointwise", entry, nil, (u1-u0+pointwiseWG-1)/pointwiseWG, q, bs...)
	})
	done()
}

// perSample is the span of a (B, D) vector read at row (i / (L·D))·D +
// i mod D by the elements i of a (B, L, D) tensor.
func perSample(t *Tensor, L, D int) span {
	return span{t, func(u0, u1 int) (int, int) {
		if u0/D == (u1-1)/D {
			s := u0 / (L * D) * D
			return s + u0%D, s + (u1-1)%D + 1
		}
		return u0 / (L * D) * D, ((u1-1)/(L*D) + 1) * D
	}}
}

func (g *GPU) Mul(dst, a, b *Tensor) {
	checkOwner(g, "Mul", dst, a, b)
	_, bn := bcastShapes("Mul", dst, a, b)
	g.pointwise("Mul", "mul", PointwiseParams{D: uint32(bn)}, dst, rowsOf(a, 1), periodic(b, bn))
}

func (g *GPU) Scale(dst, x *Tensor, s float32) {
	checkOwner(g, "Scale", dst, x)
	sameShapes("Scale", dst, x)
	g.pointwise("Scale", "scale", PointwiseParams{S: s}, dst, rowsOf(x, 1))
}

func (g *GPU) Act(dst, x *Tensor, act Activation) {
	checkOwner(g, "Act", dst, x)
	sameShapes("Act", dst, x)
	checkAct("Act", act)
	g.pointwise("Act", "act", PointwiseParams{Act: uint32(act)}, dst, rowsOf(x, 1))
}

func (g *GPU) Gate(dst, a, b *Tensor, act Activation) {
	checkOwner(g, "Gate", dst, a, b)
	sameShapes("Gate", dst, a, b)
	checkAct("Gate", act)
	g.pointwise("Gate", "gate", PointwiseParams{Act: uint32(act)}, dst, rowsOf(a, 1), rowsOf(b, 1))
}

func (g *GPU) Modulate(dst, x, scale *Tensor) {
	checkOwner(g, "Modulate", dst, x, scale)
	_, L, D := perSampleShapes("Modulate", dst, scale, x)
	g.pointwise("Modulate", "modulate", PointwiseParams{D: uint32(D), L: uint32(L)}, dst, rowsOf(x, 1), perSample(scale, L, D))
}

func (g *GPU) GatedAdd(dst, x, y, gate *Tensor) {
	checkOwner(g, "GatedAdd", dst, x, y, gate)
	_, L, D := perSampleShapes("GatedAdd", dst, gate, x, y)
	g.pointwise("GatedAdd", "gated_add", PointwiseParams{D: uint32(D), L: uint32(L)}, dst,
		rowsOf(x, 1), rowsOf(y, 1), perSample(gate, L, D))
}

func (g *GPU) Timestep(dst, t *Tensor) {
	checkOwner(g, "Timestep", dst, t)
	_, F := timestepShapes(dst, t)
	half := F / 2
	// f_k = exp(s·k); s rounded once from float64.
	s := float32(-math.Log(ref.TimestepMaxPeriod) / float64(half))
	ts := span{t, func(u0, u1 int) (int, int) { return u0 / F, (u1-1)/F + 1 }}
	g.pointwise("Timestep", "timestep", PointwiseParams{D: uint32(half), S: s}, dst, ts)
}

// layout records layout.wgsl dispatches over n elements of the index space
// the entry iterates (dst's, or x's for patchify), split into ranges whose
// windows of x and dst (spans xs and ds) fit one binding.
func (g *GPU) layout(op, entry string, p LayoutParams, n int, dst *Tensor, xs, ds span) {
	out, done := g.distinct(dst, xs.t)
	if out == nil {
		return
	}
	ds.t = out
	g.split(op, n, 0, []span{xs, ds}, func(u0, u1 int, bs []wgpu.Binding, off []uint32) {
		q := p
		q.N, q.Base, q.XOff, q.OutOff = uint32(u1), uint32(u0), off[0], off[1]
		g.dispatch("layout", entry, nil, (u1-u0+pointwiseWG-1)/pointwiseWG, q, bs...)
	})
	done()
}

// tokenSpan is the span of the token tensor (B, (H/p)·(W/p), p·p·C) that
// the image elements [u0, u1) of (B, C, H, W) map to: the tokens of the
// patch rows they cover within one channel plane, else of whole images.
func tokenSpan(t *Tensor, C, H, W, p int) span {
	row := W * p * C // token elements per patch row
	img := C * H * W // per image, in either layout
	return span{t, func(u0, u1 int) (int, int) {
		plane0, plane1 := u0/(H*W), (u1-1)/(H*W)
		if plane0 != plane1 {
			return plane0 / C * img, (plane1/C + 1) * img
		}
		b := plane0 / C
		r0, r1 := u0/W%H/p, (u1-1)/W%H/p
		return b*img + r0*row, b*img + (r1+1)*row
	}}
}

func (g *GPU) Patchify(dst, x *Tensor, p int) {
	checkOwner(g, "Patchify", dst, x)
	_, C, H, W := patchShapes("Patchify", x, dst, p)
	g.layout("Patchify", "patchify", LayoutParams{C: uint32(C), H: uint32(H), W: uint32(W), P: uint32(p)},
		x.Numel(), dst, rowsOf(x, 1), tokenSpan(dst, C, H, W, p))
}

func (g *GPU) Unpatchify(dst, x *Tensor, p int) {
	checkOwner(g, "Unpatchify", dst, x)
	_, C, H, W := patchShapes("Unpatchify", dst, x, p)
	g.layout("Unpatchify", "unpatchify", LayoutParams{C: uint32(C), H: uint32(H), W: uint32(W), P: uint32(p)},
		dst.Numel(), dst, tokenSpan(x, C, H, W, p), rowsOf(dst, 1))
}

func (g *GPU) Upsample2x(dst, x *Tensor) {
	checkOwner(g, "Upsample2x", dst, x)
	_, _, H, W := upsampleShapes(dst, x)
	// Output element o is in input row (plane·H + row/2), monotone in o.
	xs := span{x, func(u0, u1 int) (int, int) {
		in := func(o int) int { return o/(4*H*W)*H + o/(2*W)%(2*H)/2 }
		return in(u0) * W, (in(u1-1) + 1) * W
	}}
	g.layout("Upsample2x", "upsample2x", LayoutParams{H: uint32(H), W: uint32(W)}, dst.Numel(), dst, xs, rowsOf(dst, 1))
}

func (g *GPU) Transpose(dst, x *Tensor) {
	checkOwner(g, "Transpose", dst, x)
	_, R, C := transposeShapes(dst, x)
	// Output row (b, c) reads column c of x[b]: within one output row the
	// rows of x it covers; across output rows whole (R, C) planes.
	xs := span{x, func(u0, u1 int) (int, int) {
		if u0/R == (u1-1)/R {
			b, c := u0/(R*C), u0/R%C
			return (b*R+u0%R)*C + c, (b*R+(u1-1)%R)*C + c + 1
		}
		return u0 / (R * C) * R * C, ((u1-1)/(R*C) + 1) * R * C
	}}
	g.layout("Transpose", "transpose_last2", LayoutParams{H: uint32(R), W: uint32(C)}, dst.Numel(), dst, xs, rowsOf(dst, 1))
}

// Copy is a buffer-to-buffer copy recorded in the batch, in order with the
// dispatches around it; no kernel is involved, so there is no binding
// limit and no alignment beyond 4 bytes. WebGPU copies only between
// different buffers, so a copy between two views of one tensor goes
// through a scratch buffer.
func (g *GPU) Copy(dst, src *Tensor) {
	checkOwner(g, "Copy", dst, src)
	copyShapes(dst, src)
	if !sameStore(dst, src) {
		g.copy(dst, src)
		return
	}
	s, err := g.temp(src.dtype, src.shape...)
	if err != nil {
		g.setErr(fmt.Errorf("ops: Copy: scratch: %w", err))
		return
	}
	g.copy(s, src)
	g.copy(dst, s)
	g.releaseTemp(s)
}

// copy records a copy of src's elements into dst (f32, different buffers).
func (g *GPU) copy(dst, src *Tensor) {
	if g.err != nil {
		return
	}
	g.batch.Copy(g.buffer(dst), uint64(dst.off)*4, g.buffer(src), uint64(src.off)*4, uint64(src.Numel())*4)
	g.recorded()
}
