// Package nn holds what the three networks share: loading a checkpoint
// tensor onto a backend with its shape checked, and a scope of allocated
// tensors released together.
package nn

import (
	"fmt"

	"github.com/luminaweb/lumina/model/ops"
	"github.com/luminaweb/lumina/model/tensor"
	"github.com/luminaweb/lumina/model/weights"
)

// Loader uploads checkpoint tensors to a backend and remembers them so they
// can be released together.
type Loader struct {
	B      ops.Backend
	Src    weights.Source
	Prefix string // prepended to every name, e.g. "transformer."
	// Packed uploads matrices (2-D weights, which the networks only
	// multiply by) in their stored format where the source keeps them as
	// f16, bf16, q8 or q4, instead of converting them to f32. With no Src
	// (a memory plan), PlanDType is the format those matrices are planned
	// in (zero: f32).
	Packed    bool
	PlanDType tensor.DType
	loaded    []*ops.Tensor
}

// packedSource is a source that can hand over stored bytes
// (weights.Mapped).
type packedSource interface {
	Packed(name string) ([]byte, tensor.DType, bool, error)
}

// Load reads the named tensor, checks its shape, and uploads it as f32.
// With no Src (a memory plan), it only allocates the tensor.
func (l *Loader) Load(name string, shape ...int) (*ops.Tensor, error) {
	full := l.Prefix + name
	if l.Src == nil {
		dt := tensor.F32
		if l.Packed && len(shape) == 2 {
			dt = l.PlanDType
		}
		t, err := l.B.New(dt, shape...)
		if err != nil {
			return nil, fmt.Errorf("allocate %q: %w", full, err)
		}
		l.loaded = append(l.loaded, t)
		return t, nil
	}
	if ps, ok := l.Src.(packedSource); ok && l.Packed && len(shape) == 2 {
		if info, found := l.Src.Info(full); found && info.Shape.Equal(shape) {
			raw, dt, ok, err := ps.Packed(full)
			if err != nil {
				return nil, fmt.Errorf("read %q: %w", full, err)
			}
			if ok {
				t, err := l.B.New(dt, shape...)
				if err != nil {
					return nil, fmt.Errorf("upload %q: %w", full, err)
				}
				if err := l.B.WriteRaw(t, raw); err != nil {
					l.B.Release(t)
					return nil, fmt.Errorf("upload %q: %w", full, err)
				}
				l.loaded = append(l.loaded, t)
				return t, nil
			}
		}
	}
	v, err := weights.Expect(l.Src, full, shape...)
	if err != nil {
		return nil, err
	}
	t, err := l.B.New(tensor.F32, shape...)
	if err != nil {
		return nil, fmt.Errorf("upload %q: %w", full, err)
	}
	if err := l.B.Write(t, v); err != nil {
		l.B.Release(t)
		return nil, fmt.Errorf("upload %q: %w", full, err)
	}
	l.loaded = append(l.loaded, t)
	return t, nil
}

// Has reports whether the source holds the named tensor (false for a
// memory plan, which has no source).
func (l *Loader) Has(name string) bool {
	if l.Src == nil {
		return false
	}
	_, ok := l.Src.Info(l.Prefix + name)
	return ok
}

// Info describes the named tensor of the source (false for a memory plan).
func (l *Loader) Info(name string) (weights.Info, bool) {
	if l.Src == nil {
		return weights.Info{}, false
	}
	return l.Src.Info(l.Prefix + name)
}

// Release frees every tensor the loader uploaded.
func (l *Loader) Release() {
	for _, t := range l.loaded {
		l.B.Release(t)
	}
	l.loaded = nil
}

// Scope collects temporaries so a forward pass can release them at once.
type Scope struct {
	B    ops.Backend
	Err  error // first allocation error; later New calls return nil
	live []*ops.Tensor
}

// New allocates an f32 tensor in the scope. After an allocation error it
// returns nil and keeps the error in Err (sticky, like the backend's).
func (s *Scope) New(shape ...int) *ops.Tensor {
	if s.Err != nil {
		return nil
	}
	t, err := s.B.New(tensor.F32, shape...)
	if err != nil {
		s.Err = err
		return nil
	}
	s.live = append(s.live, t)
	return t
}

// Release frees every tensor allocated in the scope.
func (s *Scope) Release() {
	for _, t := range s.live {
		s.B.Release(t)
	}
	s.live = nil
}
