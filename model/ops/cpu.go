package ops

import (
	"context"
	"fmt"

	"github.com/luminaweb/lumina/model/tensor"
	"github.com/luminaweb/lumina/shaders/ref"
)

// CPU is the reference backend: float32 storage in Go slices, every op
// computed by package shaders/ref (float64 accumulation, plain loops). It
// runs everywhere, including GOOS=wasip1, and is what the GPU is checked
// against.
type CPU struct {
	_ byte // not zero-sized: distinct backends must have distinct addresses
}

// NewCPU returns the reference backend.
func NewCPU() *CPU { return &CPU{} }

func (c *CPU) Name() string { return "cpu (float64 reference)" }

func (c *CPU) New(dt tensor.DType, shape ...int) (*Tensor, error) {
	s, err := newShape("New", shape)
	if err != nil {
		return nil, err
	}
	return &Tensor{shape: s, dtype: dt, store: make([]float32, s.Numel()), owner: c}, nil
}

func (c *CPU) View(t *Tensor, off int, shape ...int) *Tensor {
	checkOwner(c, "View", t)
	s := viewShape("View", t, off, shape)
	return &Tensor{shape: s, dtype: t.dtype, off: t.off + off, store: t.store, view: true, owner: c}
}

// data is the tensor's window of its storage.
func (c *CPU) data(t *Tensor) []float32 {
	if t == nil {
		return nil
	}
	return t.store.([]float32)[t.off : t.off+t.Numel()]
}

func (c *CPU) Write(t *Tensor, v []float32) error {
	checkOwner(c, "Write", t)
	if len(v) != t.Numel() {
		return fmt.Errorf("ops: write %d values into %s", len(v), t)
	}
	d := c.data(t)
	switch t.dtype {
	case tensor.F16:
		for i, x := range v {
			d[i] = tensor.F16ToF32(tensor.F32ToF16(x))
		}
	case tensor.BF16:
		for i, x := range v {
			d[i] = tensor.BF16ToF32(tensor.F32ToBF16(x))
		}
	default:
		copy(d, v)
	}
	return nil
}

func (c *CPU) Read(ctx context.Context, t *Tensor) ([]float32, error) {
	checkOwner(c, "Read", t)
	return append([]float32(nil), c.data(t)...), ctx.Err()
}

func (c *CPU) Release(t *Tensor) {
	if t != nil && !t.view {
		t.store = nil
	}
}

func (c *CPU) Sync(ctx context.Context) error { return ctx.Err() }
func (c *CPU) Close()                         {}

func (c *CPU) Add(dst, a, b *Tensor) {
	checkOwner(c, "Add", dst, a, b)
	addShapes(dst, a, b)
	ref.Add(c.data(dst), c.data(a), c.data(b))
}

func (c *CPU) MatMul(dst, x, w, bias *Tensor) {
	checkOwner(c, "MatMul", dst, x, w)
	if bias != nil {
		checkOwner(c, "MatMul", bias)
	}
	M, N, K := matmulShapes(dst, x, w, bias)
	ref.MatMul(c.data(dst), c.data(x), c.data(w), c.data(bias), M, N, K)
}
