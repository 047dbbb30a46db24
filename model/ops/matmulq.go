package ops

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/luminaweb/lumina/model/tensor"
	"github.com/luminaweb/lumina/shaders/ref"
	"github.com/luminaweb/lumina/wgpu"
)

// Packed weights: raw uploads (WriteRaw on both backends) and MatMul on q8
// and q4 weights (matmulq.wgsl on the GPU, ref.MatMulQ8/Q4 on the CPU).

func init() { registerParams("matmulq", "Params", MatMulQParams{}) }

// MatMulQParams is the Go twin of matmulq.wgsl's Params.
type MatMulQParams struct {
	M, N, K, TilesN             uint32
	XOff, BOff, OutOff, HasBias uint32
	Groups                      uint32 // groups of 32 a weight row, ceil(K/32)
	Second                      uint32 // word offset of the scales (q8) or (d, m) words (q4)
	Row0                        uint32 // first weight row (a view of whole rows)
	_                           [1]uint32
}

// matmulQ dispatches matmulq.wgsl for a q8 or q4 weight w; p and the
// bindings (x, w whole, bias, out) are matmul's.
func (g *GPU) matmulQ(w *Tensor, groups int, p MatMulParams, bs ...wgpu.Binding) {
	K := w.shape[len(w.shape)-1]
	l := w.dtype.Layout(tensor.Shape{w.prows, K}) // of the whole tensor, for a view
	q := MatMulQParams{M: p.M, N: p.N, K: p.K, TilesN: p.TilesN, XOff: p.XOff, BOff: p.BOff, OutOff: p.OutOff,
		HasBias: p.HasBias, Groups: uint32(l.Groups), Row0: uint32(w.off / K)}
	if l.Second/4 > math.MaxUint32 {
		// Far above any storage binding: the dispatch reports the limit.
		q.Second = math.MaxUint32
	} else {
		q.Second = uint32(l.Second / 4)
	}
	entry := "matmul_q8"
	if w.dtype == tensor.Q4 {
		entry = "matmul_q4"
	}
	g.dispatch("matmulq", entry, g.matmulC, groups, q, bs...)
}

// rawOf checks that raw is t's bytes as stored and returns them, a 16-bit
// tensor of odd length given without its pad half padded.
func rawOf(t *Tensor, raw []byte) ([]byte, error) {
	want := t.dtype.Bytes(t.shape)
	switch {
	case int64(len(raw)) == want:
		return raw, nil
	case (t.dtype == tensor.F16 || t.dtype == tensor.BF16) && len(raw) == 2*t.Numel():
		return append(raw[:len(raw):len(raw)], 0, 0), nil
	}
	return nil, fmt.Errorf("ops: WriteRaw: %s takes %d bytes, got %d", t, want, len(raw))
}

// WriteRaw uploads t's bytes as stored (see Backend.WriteRaw).
func (g *GPU) WriteRaw(t *Tensor, raw []byte) error {
	checkOwner(g, "WriteRaw", t)
	raw, err := rawOf(t, raw)
	if err != nil {
		return err
	}
	// As in Write: recorded work that reads the old contents goes first.
	g.flush(g.context())
	if g.err != nil {
		return g.err
	}
	buf := g.buffer(t)
	start := uint64(t.off) * elemBytes(t) // packed tensors: t.off is 0
	if t.dtype != tensor.F32 && !t.dtype.Quantized() && t.Numel()%2 == 1 && t.view && start+uint64(len(raw)) < buf.Size() {
		panic(fmt.Sprintf("ops: WriteRaw: odd-length view %s at %d shares its last word with the next element", t, t.off))
	}
	return g.dev.Write(buf, start, raw)
}

// WriteRaw keeps a packed tensor's bytes and decodes other types into the
// float32 storage (see Backend.WriteRaw).
func (c *CPU) WriteRaw(t *Tensor, raw []byte) error {
	checkOwner(c, "WriteRaw", t)
	raw, err := rawOf(t, raw)
	if err != nil || c.dry {
		return err
	}
	if t.dtype.Quantized() {
		copy(t.store.([]byte), raw)
		return nil
	}
	d := c.data(t)
	for i := range d {
		switch t.dtype {
		case tensor.F16:
			d[i] = tensor.F16ToF32(binary.LittleEndian.Uint16(raw[2*i:]))
		case tensor.BF16:
			d[i] = tensor.BF16ToF32(binary.LittleEndian.Uint16(raw[2*i:]))
		default:
			d[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
	}
	return nil
}

// dequantF32 is what Read returns for a packed tensor with bytes raw: each
// value dequantized exactly (ref) and rounded to float32.
func dequantF32(t *Tensor, raw []byte) []float32 {
	l := t.dtype.Layout(t.shape)
	w := make([]float64, t.Numel())
	if t.dtype == tensor.Q8 {
		ref.DequantQ8(w, raw, l.Rows, l.K)
	} else {
		ref.DequantQ4(w, raw, l.Rows, l.K)
	}
	v := make([]float32, len(w))
	for i, x := range w {
		v[i] = float32(x)
	}
	return v
}
