package ops

import (
	"context"
	"fmt"

	"github.com/luminaweb/lumina/model/tensor"
	"github.com/luminaweb/lumina/shaders/ref"
)

// CPU is the reference backend: float32 storage in Go slices (packed q8/q4
// weights as their bytes), every op computed by package shaders/ref
// (float64 accumulation, plain loops). It
// runs everywhere, including GOOS=wasip1, and is what the GPU is checked
// against.
type CPU struct {
	_    byte // not zero-sized: distinct backends must have distinct addresses
	dry  bool // a memory plan (NewPlan): no storage, no compute
	plan PlanStats
}

// NewCPU returns the reference backend.
func NewCPU() *CPU { return &CPU{} }

func (c *CPU) Name() string {
	if c.dry {
		return "memory plan (no compute)"
	}
	return "cpu (float64 reference)"
}

// PlanStats is what a memory plan measured: the bytes the GPU backend
// would hold (tensor.DType.Bytes: f32 4 bytes an element, f16/bf16 two
// packed in 32 bits, q8/q4 their packed layouts).
type PlanStats struct {
	Live, Peak   uint64       // bytes of tensors alive now, and at most so far
	Largest      uint64       // the largest single tensor
	LargestShape tensor.Shape // its shape
	Tensors      int          // tensors allocated
}

// NewPlan returns a backend that runs the model code without computing
// anything: every op checks its shapes exactly as on the other backends,
// tensors have no storage, reads return zeros, and the bytes a GPU would
// allocate are counted (PlanStats). Memory plans are made with it, from
// the same code that allocates for real.
func NewPlan() *CPU { return &CPU{dry: true} }

// PlanStats returns the plan's counters (zero for a computing backend).
func (c *CPU) PlanStats() PlanStats { return c.plan }

// ResetPeak starts a new peak measurement from the live bytes.
func (c *CPU) ResetPeak() { c.plan.Peak = c.plan.Live }

func (c *CPU) New(dt tensor.DType, shape ...int) (*Tensor, error) {
	s, err := newShape("New", shape)
	if err != nil {
		return nil, err
	}
	if c.dry {
		n := uint64(dt.Bytes(s))
		c.plan.Live += n
		c.plan.Peak = max(c.plan.Peak, c.plan.Live)
		c.plan.Tensors++
		if n > c.plan.Largest {
			c.plan.Largest, c.plan.LargestShape = n, s
		}
		return &Tensor{shape: s, dtype: dt, store: &planStore{}, owner: c}, nil
	}
	if dt.Quantized() {
		return &Tensor{shape: s, dtype: dt, store: make([]byte, dt.Bytes(s)), owner: c, prows: s.Numel() / s[len(s)-1]}, nil
	}
	return &Tensor{shape: s, dtype: dt, store: make([]float32, s.Numel()), owner: c}, nil
}

func (c *CPU) View(t *Tensor, off int, shape ...int) *Tensor {
	checkOwner(c, "View", t)
	s := viewShape("View", t, off, shape)
	return &Tensor{shape: s, dtype: t.dtype, off: t.off + off, store: t.store, view: true, owner: c, prows: t.prows}
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
	if t.dtype.Quantized() {
		return fmt.Errorf("ops: Write: %s is packed: upload its bytes with WriteRaw", t)
	}
	if len(v) != t.Numel() {
		return fmt.Errorf("ops: write %d values into %s", len(v), t)
	}
	if c.dry {
		return nil
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
	if c.dry {
		return make([]float32, t.Numel()), ctx.Err()
	}
	if t.dtype.Quantized() {
		return dequantF32(t, t.store.([]byte)), ctx.Err()
	}
	return append([]float32(nil), c.data(t)...), ctx.Err()
}

func (c *CPU) Release(t *Tensor) {
	if t == nil || t.view {
		return
	}
	if c.dry {
		if ps := t.store.(*planStore); !ps.released {
			ps.released = true
			c.plan.Live -= uint64(t.dtype.Bytes(t.shape))
		}
		return
	}
	t.store = nil
}

func (c *CPU) Sync(ctx context.Context) error { return ctx.Err() }
func (c *CPU) Close()                         {}

func (c *CPU) Add(dst, a, b *Tensor) {
	checkOwner(c, "Add", dst, a, b)
	addShapes(dst, a, b)
	if c.dry {
		return // a memory plan: shapes checked, nothing computed
	}
	ref.Add(c.data(dst), c.data(a), c.data(b))
}

func (c *CPU) MatMul(dst, x, w, bias *Tensor) {
	checkOwner(c, "MatMul", dst, x, w)
	if bias != nil {
		checkOwner(c, "MatMul", bias)
	}
	M, N, K := matmulShapes(dst, x, w, bias)
	if c.dry {
		return // a memory plan: shapes checked, nothing computed
	}
	switch w.dtype {
	case tensor.Q8, tensor.Q4:
		ref.MatMulQRows(c.data(dst), c.data(x), w.store.([]byte), c.data(bias), M, N, K, w.prows, w.off/K, w.dtype == tensor.Q4)
	default:
		ref.MatMul(c.data(dst), c.data(x), c.data(w), c.data(bias), M, N, K)
	}
}

// planStore stands for a planned tensor's storage: no data, but an
// identity (views share it, so overlap checks work) and a released flag.
type planStore struct{ released bool }
