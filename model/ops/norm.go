package ops

import (
	"fmt"

	"github.com/luminaweb/lumina/shaders/ref"
	"github.com/luminaweb/lumina/wgpu"
)

// Norms is the family of row reductions that rescale their row: RMSNorm
// (Next-DiT's block norms and QK-norm, Gemma's (1 + w) variant), LayerNorm
// without affine (Next-DiT's final layer), GroupNorm (the VAE) and softmax.
// Statistics are computed in f32 (float64 on the CPU), means and variances
// in two passes. dst has x's shape and must not overlap an input.
type Norms interface {
	// RMSNorm normalises each row of the last dimension D: dst = x /
	// sqrt(mean(x²) + eps) ⊙ w, or ⊙ (1 + w) when plusOne (Gemma). w is
	// (D), shared by every row (so a per-head QK-norm is x viewed as
	// (tokens·heads, head_dim)).
	RMSNorm(dst, x, w *Tensor, eps float32, plusOne bool)
	// LayerNorm without affine over the last dimension: (x − mean) /
	// sqrt(var + eps), biased variance.
	LayerNorm(dst, x *Tensor, eps float32)
	// GroupNorm over x (B, C, ...spatial) with G groups of C/G channels,
	// statistics over each group's channels and all spatial positions
	// (biased variance), then affine: dst[b,c,…] = norm·w[c] + b[c] with w,
	// b (C). A 2-D x (B, C) has one spatial position. C must be a multiple
	// of groups.
	GroupNorm(dst, x, w, b *Tensor, groups int, eps float32)
	// Softmax over the last dimension, with the row maximum subtracted
	// before exponentiating.
	Softmax(dst, x *Tensor)
}

var (
	_ Norms = (*CPU)(nil)
	_ Norms = (*GPU)(nil)
)

// rowShapes validates a row op (dst equal to x in shape) and returns the
// number of rows and their length, x's last dimension.
func rowShapes(op string, dst, x *Tensor) (rows, n int) {
	checkF32(op, dst, x)
	if !dst.shape.Equal(x.shape) {
		badShapes(op, "dst and x differ", dst, x)
	}
	n = x.shape[len(x.shape)-1]
	return x.Numel() / n, n
}

// rmsShapes validates RMSNorm and returns rows and D.
func rmsShapes(dst, x, w *Tensor) (rows, D int) {
	rows, D = rowShapes("RMSNorm", dst, x)
	checkF32("RMSNorm", w)
	if w.Numel() != D || w.shape[len(w.shape)-1] != D {
		badShapes("RMSNorm", "w is not (D), D = x's last dimension", x, w)
	}
	return rows, D
}

// groupShapes validates GroupNorm and returns B, C, the spatial size S
// (product of the dimensions after C; 1 for a 2-D x).
func groupShapes(dst, x, w, b *Tensor, groups int) (B, C, S int) {
	checkF32("GroupNorm", dst, x, w, b)
	if !dst.shape.Equal(x.shape) {
		badShapes("GroupNorm", "dst and x differ", dst, x)
	}
	if len(x.shape) < 2 {
		badShapes("GroupNorm", "x is not (B, C, ...spatial)", x)
	}
	B, C = x.shape[0], x.shape[1]
	if groups < 1 || C%groups != 0 {
		badShapes("GroupNorm", fmt.Sprintf("C is not a multiple of groups = %d", groups), x)
	}
	if w.Numel() != C || b.Numel() != C {
		badShapes("GroupNorm", "w and b are not (C)", x, w, b)
	}
	return B, C, x.Numel() / (B * C)
}

// CPU backend.

func (c *CPU) RMSNorm(dst, x, w *Tensor, eps float32, plusOne bool) {
	checkOwner(c, "RMSNorm", dst, x, w)
	_, D := rmsShapes(dst, x, w)
	if c.dry {
		return // a memory plan: shapes checked, nothing computed
	}
	ref.RMSNorm(c.data(dst), c.data(x), c.data(w), D, eps, plusOne)
}

func (c *CPU) LayerNorm(dst, x *Tensor, eps float32) {
	checkOwner(c, "LayerNorm", dst, x)
	_, n := rowShapes("LayerNorm", dst, x)
	if c.dry {
		return // a memory plan: shapes checked, nothing computed
	}
	ref.LayerNorm(c.data(dst), c.data(x), n, eps)
}

func (c *CPU) GroupNorm(dst, x, w, b *Tensor, groups int, eps float32) {
	checkOwner(c, "GroupNorm", dst, x, w, b)
	B, C, S := groupShapes(dst, x, w, b, groups)
	if c.dry {
		return // a memory plan: shapes checked, nothing computed
	}
	ref.GroupNorm(c.data(dst), c.data(x), c.data(w), c.data(b), B, C, S, groups, eps)
}

func (c *CPU) Softmax(dst, x *Tensor) {
	checkOwner(c, "Softmax", dst, x)
	_, n := rowShapes("Softmax", dst, x)
	if c.dry {
		return // a memory plan: shapes checked, nothing computed
	}
	ref.Softmax(c.data(dst), c.data(x), n)
}

// GPU backend.

// NormParams is the Go twin of norm.wgsl's Params.
type NormParams struct {
	Rows, N, Spatial, CPG, Groups uint32
	XOff, WOff, BOff, OutOff      uint32
	Eps                           float32
	PlusOne, Row0                 uint32
}

func init() { registerParams("norm", "Params", NormParams{}) }

// norm records norm.wgsl dispatches, one workgroup per row of p.N
// elements; w and b bind x when nil (not read). Rows are split into
// bands whose x and dst windows fit one binding (w and b are bound whole);
// a GroupNorm row is one (batch, group) pair, contiguous in NCHW.
func (g *GPU) norm(op, entry string, p NormParams, rows int, dst, x, w, b *Tensor) {
	out, done := g.distinct(dst, x, w, b)
	if out == nil {
		return
	}
	if w == nil {
		w = x
	}
	if b == nil {
		b = x
	}
	n := int(p.N)
	sw, sb := whole(w), whole(b)
	if w == x {
		sw = rowsOf(x, n)
	}
	if b == x {
		sb = rowsOf(x, n)
	}
	g.split(op, rows, 0, []span{rowsOf(x, n), sw, sb, rowsOf(out, n)}, func(r0, r1 int, bs []wgpu.Binding, off []uint32) {
		q := p
		q.Rows, q.Row0, q.XOff, q.WOff, q.BOff, q.OutOff = uint32(r1), uint32(r0), off[0], off[1], off[2], off[3]
		g.dispatch("norm", entry, nil, r1-r0, q, bs...)
	})
	done()
}

func (g *GPU) RMSNorm(dst, x, w *Tensor, eps float32, plusOne bool) {
	checkOwner(g, "RMSNorm", dst, x, w)
	rows, D := rmsShapes(dst, x, w)
	p := NormParams{N: uint32(D), Eps: eps}
	if plusOne {
		p.PlusOne = 1
	}
	g.norm("RMSNorm", "rms_norm", p, rows, dst, x, w, nil)
}

func (g *GPU) LayerNorm(dst, x *Tensor, eps float32) {
	checkOwner(g, "LayerNorm", dst, x)
	rows, n := rowShapes("LayerNorm", dst, x)
	g.norm("LayerNorm", "layer_norm", NormParams{N: uint32(n), Eps: eps}, rows, dst, x, nil, nil)
}

func (g *GPU) GroupNorm(dst, x, w, b *Tensor, groups int, eps float32) {
	checkOwner(g, "GroupNorm", dst, x, w, b)
	B, C, S := groupShapes(dst, x, w, b, groups)
	cpg := C / groups
	p := NormParams{N: uint32(cpg * S), Spatial: uint32(S), CPG: uint32(cpg), Groups: uint32(groups), Eps: eps}
	g.norm("GroupNorm", "group_norm", p, B*groups, dst, x, w, b)
}

func (g *GPU) Softmax(dst, x *Tensor) {
	checkOwner(g, "Softmax", dst, x)
	rows, n := rowShapes("Softmax", dst, x)
	g.norm("Softmax", "softmax", NormParams{N: uint32(n)}, rows, dst, x, nil, nil)
}
