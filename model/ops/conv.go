package ops

import (
	"fmt"

	"github.com/luminaweb/lumina/model/tensor"
	"github.com/luminaweb/lumina/shaders/ref"
	"github.com/luminaweb/lumina/wgpu"
)

// Conv is the convolution family, with the embedding gather: the VAE
// decoder's convolutions and the Gemma token-embedding lookup.
type Conv interface {
	// Conv2D: dst[b,co,y,x] = bias[co] + Σ_{ci,ky,kx} x[b,ci,y+ky−pad,x+kx−pad]·w[co,ci,ky,kx]
	// (torch.nn.functional.conv2d, stride 1, zero padding pad, NCHW).
	// x is (B, Ci, H, W), w is (Co, Ci, k, k) with k ∈ {1, 3}, bias is (Co)
	// or nil, dst is (B, Co, H, W); pad must be (k−1)/2 (1 for 3×3, 0 for
	// 1×1), so the output keeps the input's size. No broadcasting.
	Conv2D(dst, x, w, bias *Tensor, pad int)
	// Gather copies rows of table (V, D) into dst (N, D): dst[i] =
	// table[ids[i]] (torch.nn.functional.embedding). ids (N) is an f32
	// tensor of integer ids, exact below 2^24. An id that is not an integer
	// in [0, V) (out of range, fractional, NaN) yields a zero row; the
	// table is never read outside its bounds for it.
	Gather(dst, table, ids *Tensor)
}

var (
	_ Conv = (*CPU)(nil)
	_ Conv = (*GPU)(nil)
)

// convGeom is Conv2D's geometry.
type convGeom struct{ B, Ci, Co, H, W, k, pad int }

// convShapes validates Conv2D's operands.
func convShapes(dst, x, w, bias *Tensor, pad int) convGeom {
	checkF32("Conv2D", dst, x, w, bias)
	if len(x.shape) != 4 || len(w.shape) != 4 || len(dst.shape) != 4 {
		badShapes("Conv2D", "x, w and dst must be 4-D (x (B,Ci,H,W), w (Co,Ci,k,k), dst (B,Co,H,W))", x, w, dst)
	}
	g := convGeom{B: x.shape[0], Ci: x.shape[1], H: x.shape[2], W: x.shape[3], Co: w.shape[0], k: w.shape[2], pad: pad}
	if w.shape[1] != g.Ci {
		badShapes("Conv2D", "w's input channels differ from x's (x is (B,Ci,H,W), w is (Co,Ci,k,k))", x, w)
	}
	if g.k != w.shape[3] || (g.k != 1 && g.k != 3) {
		badShapes("Conv2D", "kernel must be 1×1 or 3×3", w)
	}
	if 2*pad != g.k-1 {
		badShapes("Conv2D", fmt.Sprintf("pad %d does not keep the size for k=%d (want %d)", pad, g.k, (g.k-1)/2), w)
	}
	if !dst.shape.Equal(tensor.Shape{g.B, g.Co, g.H, g.W}) {
		badShapes("Conv2D", "dst is not (B,Co,H,W)", x, w, dst)
	}
	if bias != nil && (len(bias.shape) != 1 || bias.shape[0] != g.Co) {
		badShapes("Conv2D", "bias is not (Co)", w, bias)
	}
	return g
}

// gatherShapes validates Gather's operands and returns N, V, D.
func gatherShapes(dst, table, ids *Tensor) (N, V, D int) {
	checkF32("Gather", dst, table, ids)
	if len(table.shape) != 2 || len(ids.shape) != 1 || len(dst.shape) != 2 {
		badShapes("Gather", "table must be (V,D), ids (N), dst (N,D)", table, ids, dst)
	}
	N, V, D = ids.shape[0], table.shape[0], table.shape[1]
	if dst.shape[0] != N || dst.shape[1] != D {
		badShapes("Gather", "dst is not (N,D)", table, ids, dst)
	}
	return N, V, D
}

func (c *CPU) Conv2D(dst, x, w, bias *Tensor, pad int) {
	checkOwner(c, "Conv2D", dst, x, w)
	if bias != nil {
		checkOwner(c, "Conv2D", bias)
	}
	g := convShapes(dst, x, w, bias, pad)
	if c.dry {
		return // a memory plan: shapes checked, nothing computed
	}
	ref.Conv2D(c.data(dst), c.data(x), c.data(w), c.data(bias), g.B, g.Ci, g.Co, g.H, g.W, g.k, g.pad)
}

func (c *CPU) Gather(dst, table, ids *Tensor) {
	checkOwner(c, "Gather", dst, table, ids)
	_, V, D := gatherShapes(dst, table, ids)
	if c.dry {
		return // a memory plan: shapes checked, nothing computed
	}
	ref.Gather(c.data(dst), c.data(table), c.data(ids), V, D)
}

func init() {
	registerParams("conv", "Params", ConvParams{})
	registerParams("gather", "Params", GatherParams{})
}

// ConvParams is the Go twin of conv.wgsl's Params.
type ConvParams struct {
	NB, H, W, Ci, K, Pad     uint32
	Ci0, NCi, NCo, Y0, Rows  uint32
	XRow0, XOff, XBStride    uint32
	WOff, BOff, OutOff       uint32
	OutBStride               uint32
	HasBias, Accumulate      uint32
	TilesCo, TilesP, XBlocks uint32
	_                        [1]uint32
}

// conv.wgsl's defaults: WG_CO×WG_P invocations, each TCO channels × TP pixels.
const (
	convWGCo, convWGP = 4, 16
	convTCo, convTP   = 4, 4
)

// convChunk splits n into the fewest near-equal parts of at most most each.
func convChunk(n, most int) (size int) {
	parts := (n + most - 1) / most
	return (n + parts - 1) / parts
}

// Conv2D on the GPU. When x, w or dst exceed one storage binding
// (maxStorageBufferBindingSize; a VAE activation at 1024² is 512 MiB) the
// work is split so that each dispatch binds only a window of them:
//
//   - per batch, and into chunks of whole output-channel planes (dst and w
//     windows) and of whole input-channel planes (x window), the chunks of
//     input channels of one output chunk dispatched in order, each adding to
//     what the previous one stored;
//   - when a single channel plane exceeds a binding, one input and one
//     output channel per dispatch, in bands of output rows, x bound over
//     the band plus its halo of pad rows.
//
// Every output keeps the same sequence of f32 operations (bias first, then
// input channels and taps in order), so the split result is bit-identical
// to the unsplit one.
func (g *GPU) Conv2D(dst, x, w, bias *Tensor, pad int) {
	checkOwner(g, "Conv2D", dst, x, w)
	if bias != nil {
		checkOwner(g, "Conv2D", bias)
	}
	cg := convShapes(dst, x, w, bias, pad)
	out, done := g.distinct(dst, x, w, bias)
	if out == nil {
		return
	}
	defer done()
	dst = out
	B, Ci, Co, H, W, k := cg.B, cg.Ci, cg.Co, cg.H, cg.W, cg.k
	P, wRow, E := H*W, Ci*k*k, g.windowElems(x)
	p := ConvParams{H: uint32(H), W: uint32(W), Ci: uint32(Ci), K: uint32(k), Pad: uint32(pad),
		XBStride: uint32(Ci * P), OutBStride: uint32(Co * P), XBlocks: uint32((W + convTP - 1) / convTP)}
	if bias != nil {
		p.HasBias = 1
	}
	// run dispatches nb batches from b0, output channels [co0, co0+nco),
	// input channels [ci0, ci0+nci), output rows [y0, y0+rows), binding x
	// from row xr0 to row xr1 (exclusive) of the last input channel.
	run := func(b0, nb, co0, nco, ci0, nci, y0, rows, xr0, xr1 int) {
		q := p
		q.NB, q.NCo, q.Ci0, q.NCi, q.Y0, q.Rows, q.XRow0 = uint32(nb), uint32(nco), uint32(ci0), uint32(nci), uint32(y0), uint32(rows), uint32(xr0)
		if ci0 > 0 {
			q.Accumulate = 1
		}
		xs := (b0*Ci+ci0)*P + xr0*W
		bx, ox := g.window(x, xs, (nb-1)*Ci*P+(nci-1)*P+(xr1-xr0)*W)
		bw, ow := g.window(w, co0*wRow, nco*wRow)
		os := (b0*Co+co0)*P + y0*W
		bo, oo := g.window(dst, os, (nb-1)*Co*P+(nco-1)*P+rows*W)
		bb := bw // bound but unread without a bias
		if bias != nil {
			bb, q.BOff = g.window(bias, co0, nco)
		}
		q.XOff, q.WOff, q.OutOff = ox, ow, oo
		q.TilesCo = uint32((nco + convWGCo*convTCo - 1) / (convWGCo * convTCo))
		q.TilesP = uint32((rows*int(q.XBlocks) + convWGP - 1) / convWGP)
		g.dispatch("conv", "conv2d", nil, nb*int(q.TilesCo*q.TilesP), q, bx, bw, bb, bo)
	}
	switch {
	case B*Ci*P <= E && B*Co*P <= E && Co*wRow <= E:
		run(0, B, 0, Co, 0, Ci, 0, H, 0, H)
	case P <= E && wRow <= E:
		nci := convChunk(Ci, E/P)
		nco := convChunk(Co, min(E/P, E/wRow))
		for b := range B {
			for co0 := 0; co0 < Co; co0 += nco {
				for ci0 := 0; ci0 < Ci; ci0 += nci {
					run(b, 1, co0, min(nco, Co-co0), ci0, min(nci, Ci-ci0), 0, H, 0, H)
				}
			}
		}
	case E/W > 2*pad && wRow <= E:
		rows := convChunk(H, E/W-2*pad)
		for b := range B {
			for y0 := 0; y0 < H; y0 += rows {
				r := min(rows, H-y0)
				xr0, xr1 := max(y0-pad, 0), min(y0+r+pad, H)
				for co := range Co {
					for ci := range Ci {
						run(b, 1, co, 1, ci, 1, y0, r, xr0, xr1)
					}
				}
			}
		}
	default:
		lim := g.dev.Limits().MaxStorageBufferBindingSize
		g.setErr(&wgpu.LimitError{Name: "maxStorageBufferBindingSize", Need: uint64(max((1+2*pad)*W, wRow)) * 4, Have: lim,
			What: fmt.Sprintf("Conv2D of %s by %s (one output row with its halo, or one weight row)", x, w)})
	}
}

// GatherParams is the Go twin of gather.wgsl's Params.
type GatherParams struct {
	N, D, V, Row0, Rows  uint32
	TOff, IDsOff, OutOff uint32
	WriteInvalid         uint32
	_                    [3]uint32
}

const gatherWG = 256 // gather.wgsl's default WG

// Gather on the GPU. A table larger than one storage binding (Gemma's is
// 2.2 GiB in f32) is bound a window of rows at a time, one dispatch per
// window, and ids and dst in chunks of rows when they exceed one too.
func (g *GPU) Gather(dst, table, ids *Tensor) {
	checkOwner(g, "Gather", dst, table, ids)
	N, V, D := gatherShapes(dst, table, ids)
	out, done := g.distinct(dst, table, ids)
	if out == nil {
		return
	}
	defer done()
	dst = out
	E := g.windowElems(table)
	if D > E {
		g.setErr(&wgpu.LimitError{Name: "maxStorageBufferBindingSize", Need: uint64(D) * 4,
			Have: g.dev.Limits().MaxStorageBufferBindingSize, What: fmt.Sprintf("Gather of %s (one row)", table)})
		return
	}
	vrows := convChunk(V, E/D)
	nrows := convChunk(N, E/D)
	for i0 := 0; i0 < N; i0 += nrows {
		n := min(nrows, N-i0)
		bi, oi := g.window(ids, i0, n)
		bo, oo := g.window(dst, i0*D, n*D)
		for r0 := 0; r0 < V; r0 += vrows {
			r := min(vrows, V-r0)
			bt, ot := g.window(table, r0*D, r*D)
			p := GatherParams{N: uint32(n), D: uint32(D), V: uint32(V), Row0: uint32(r0), Rows: uint32(r),
				TOff: ot, IDsOff: oi, OutOff: oo}
			if r0 == 0 {
				p.WriteInvalid = 1
			}
			g.dispatch("gather", "gather", nil, (n*D+gatherWG-1)/gatherWG, p, bt, bi, bo)
		}
	}
}
