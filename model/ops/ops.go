// Package ops is the vocabulary the networks are written in: tensors that
// live on a Backend, and ops that read tensors and write one. The networks
// (gemma2, dit, vae) call only this package, so the same model code runs on
// the GPU (package wgpu plus the WGSL in package shaders) and on the CPU
// (package shaders/ref, float64 accumulation) with no change.
//
// Ops are destination-passing: Add(dst, a, b) writes into dst, which lets a
// model plan its activations once and reuse them every step. The functions
// of the same names at package level (ops.Add(b, x, y)) allocate the
// destination and return it, for code that prefers that shape. Tensors are
// released explicitly (Backend.Release); a backend reuses released memory.
//
// Errors: allocation and transfer calls return errors; op calls record work
// and keep the first failure (a GPU submission error, a device limit) as a
// sticky error returned by Sync and Read. Calling an op with shapes that do
// not fit is a programming error and panics with the op and the shapes.
package ops

import (
	"context"
	"fmt"

	"github.com/luminaweb/lumina/model/tensor"
)

// Tensor is a tensor on a backend: a shape and an element type over a range
// of the backend's storage. A view (Backend.View) shares its parent's
// storage.
type Tensor struct {
	shape tensor.Shape
	dtype tensor.DType
	off   int // element offset into the storage
	store any // backend-private storage
	view  bool
	owner Backend
	prows int // packed (q8/q4) tensors: rows of the whole tensor, kept by views
}

// Shape returns the tensor's dimensions (do not modify).
func (t *Tensor) Shape() tensor.Shape { return t.shape }

// DType returns the element type.
func (t *Tensor) DType() tensor.DType { return t.dtype }

// Numel is the number of elements.
func (t *Tensor) Numel() int { return t.shape.Numel() }

func (t *Tensor) String() string {
	if t == nil {
		return "<nil>"
	}
	return t.dtype.String() + t.shape.String()
}

// Backend runs ops. Implementations: NewCPU and NewGPU.
type Backend interface {
	// Name identifies the backend and its device in logs.
	Name() string

	// New allocates a tensor. Its contents are unspecified until written
	// (the GPU backend reuses released buffers as they are).
	New(dt tensor.DType, shape ...int) (*Tensor, error)
	// View returns a tensor of the given shape over t's storage starting at
	// element offset off; it must fit inside t. Releasing a view does
	// nothing; the parent owns the storage. Views of 16-bit tensors start
	// at even offsets (two elements share a 32-bit word on the GPU).
	View(t *Tensor, off int, shape ...int) *Tensor
	// Write stores values into t (rounded to t's element type). A 16-bit
	// view of odd length may only be written when it ends its storage
	// (its last word is shared with the next element otherwise). Packed
	// tensors (q8, q4) are written with WriteRaw only.
	Write(t *Tensor, values []float32) error
	// WriteRaw stores t's bytes as a pack stores them (model/weights, the
	// layouts of tensor.DType): t.DType().Bytes(t.Shape()) bytes, or for a
	// 16-bit tensor of odd length also 2·numel (the pad half is added).
	// This is how q8 and q4 weights are uploaded. Packed tensors have no
	// views but the whole one, and Read returns their dequantized values.
	WriteRaw(t *Tensor, raw []byte) error
	// Read waits for pending work and returns t's values as float32, or
	// the first error recorded since the last Sync.
	Read(ctx context.Context, t *Tensor) ([]float32, error)
	// Release returns t's storage to the backend.
	Release(t *Tensor)
	// Sync submits pending work, waits for it, and returns (and clears)
	// the first error recorded since the last Sync.
	Sync(ctx context.Context) error
	// Close releases everything the backend holds.
	Close()

	// Add: dst[i] = a[i] + b[i mod b.Numel()]. b has a's shape, or is a
	// row broadcast over a's leading dimensions (b.Numel() equal to a's
	// last dimension).
	Add(dst, a, b *Tensor)
	// MatMul: dst (M,N) = x (M,K) · wᵀ (w is (N,K), the nn.Linear layout)
	// + bias (N) when bias is not nil. w may be f32, f16 or bf16 (16-bit
	// weights are converted exactly and accumulated in f32), or q8 or q4
	// (dequantized in registers, each weight the exact value rounded once
	// to f32, accumulated in f32).
	MatMul(dst, x, w, bias *Tensor)

	// The op families, one file each.
	Norms     // norm.go: RMSNorm, LayerNorm, GroupNorm, Softmax
	Pointwise // pointwise.go: Mul, Scale, activations, gating, modulation, layout moves
	Attn      // attention.go: RoPE, tiled attention
	Conv      // conv.go: Conv2D, embedding Gather
}

// badShapes panics with a message naming the op and its operands' shapes.
func badShapes(op, why string, ts ...*Tensor) {
	msg := fmt.Sprintf("ops: %s: %s:", op, why)
	for _, t := range ts {
		msg += " " + t.String()
	}
	panic(msg)
}

func checkOwner(b Backend, op string, ts ...*Tensor) {
	for _, t := range ts {
		if t == nil {
			badShapes(op, "nil tensor", ts...)
		}
		if t.owner != b {
			panic(fmt.Sprintf("ops: %s: tensor %s belongs to backend %q, not %q", op, t, nameOf(t.owner), b.Name()))
		}
	}
}

func nameOf(b Backend) string {
	if b == nil {
		return "<none>"
	}
	return b.Name()
}

func checkF32(op string, ts ...*Tensor) {
	for _, t := range ts {
		if t != nil && t.dtype != tensor.F32 {
			badShapes(op, "only f32 is supported so far, got", t)
		}
	}
}

// addShapes validates Add's operands and returns n and the period of b.
func addShapes(dst, a, b *Tensor) (n, bn int) {
	checkF32("Add", dst, a, b)
	if !dst.shape.Equal(a.shape) {
		badShapes("Add", "dst and a differ", dst, a)
	}
	last := a.shape[len(a.shape)-1]
	if !b.shape.Equal(a.shape) && !(b.Numel() == last && b.shape[len(b.shape)-1] == last) {
		badShapes("Add", "b is neither a's shape nor a row of it", a, b)
	}
	return a.Numel(), b.Numel()
}

// matmulShapes validates MatMul's operands and returns M, N, K. The
// weight may be f32, f16, bf16, q8 or q4; everything else is f32.
func matmulShapes(dst, x, w, bias *Tensor) (M, N, K int) {
	checkF32("MatMul", dst, x, bias)
	if w.dtype != tensor.F32 && w.dtype != tensor.F16 && w.dtype != tensor.BF16 && !w.dtype.Quantized() {
		badShapes("MatMul", "w must be f32, f16, bf16, q8 or q4, got", w)
	}
	if len(x.shape) != 2 || len(w.shape) != 2 || len(dst.shape) != 2 {
		badShapes("MatMul", "x, w and dst must be 2-D", x, w, dst)
	}
	M, K, N = x.shape[0], x.shape[1], w.shape[0]
	if w.shape[1] != K {
		badShapes("MatMul", "inner dimensions differ (x is (M,K), w is (N,K))", x, w)
	}
	if dst.shape[0] != M || dst.shape[1] != N {
		badShapes("MatMul", "dst is not (M,N)", x, w, dst)
	}
	if bias != nil && bias.Numel() != N {
		badShapes("MatMul", "bias is not (N)", w, bias)
	}
	return M, N, K
}

func viewShape(op string, t *Tensor, off int, shape []int) tensor.Shape {
	s := tensor.Shape(shape).Clone()
	if !s.Valid() || off < 0 || off+s.Numel() > t.Numel() {
		panic(fmt.Sprintf("ops: %s: view of %d elements at %d does not fit in %s", op, s.Numel(), off, t))
	}
	if t.dtype.Quantized() {
		// Groups of 32 along a row share a scale, and the two sections are
		// laid out for the whole tensor: a view is a block of whole rows
		// (MatMul finds its groups by row index).
		K := t.shape[len(t.shape)-1]
		if len(s) != 2 || s[1] != K || off%K != 0 {
			panic(fmt.Sprintf("ops: %s: a view of the packed %s tensor %s must be whole rows (n, %d), not %d elements %v at %d",
				op, t.dtype, t, K, s.Numel(), s, off))
		}
	}
	return s
}

func newShape(op string, shape []int) (tensor.Shape, error) {
	s := tensor.Shape(shape).Clone()
	if len(s) == 0 || !s.Valid() {
		return nil, fmt.Errorf("ops: %s: invalid shape %v", op, s)
	}
	return s, nil
}

// Add allocates dst and computes dst = a + b (see Backend.Add).
func Add(b Backend, x, y *Tensor) (*Tensor, error) {
	dst, err := b.New(x.dtype, x.shape...)
	if err != nil {
		return nil, err
	}
	b.Add(dst, x, y)
	return dst, nil
}

// MatMul allocates dst and computes dst = x·wᵀ + bias (see Backend.MatMul).
func MatMul(b Backend, x, w, bias *Tensor) (*Tensor, error) {
	dst, err := b.New(tensor.F32, x.shape[0], w.shape[0])
	if err != nil {
		return nil, err
	}
	b.MatMul(dst, x, w, bias)
	return dst, nil
}
