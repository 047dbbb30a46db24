// Package weights reads model checkpoints as users have them (safetensors
// in the original, diffusers and ComfyUI namings; later GGUF and our packed
// manifests) without holding a whole checkpoint in memory: a tensor is read
// when it is asked for, from an io.ReaderAt.
package weights

import (
	"fmt"

	"github.com/luminaweb/lumina/model/tensor"
)

// Info describes one stored tensor.
type Info struct {
	Name  string
	DType tensor.DType
	Shape tensor.Shape
}

// Source is a set of named tensors. The networks load their weights through
// it, by their canonical names (the original Lumina checkpoint names for
// Next-DiT, HF names without the "model." prefix for Gemma-2, diffusers
// names for the VAE decoder); implementations map other namings onto those.
type Source interface {
	// Info returns the description of a tensor, and false when the source
	// has no tensor of that name.
	Info(name string) (Info, bool)
	// Float32 reads a whole tensor, converted to float32.
	Float32(name string) ([]float32, error)
	// Names lists every tensor, sorted.
	Names() []string
}

// Expect returns the tensor's values after checking that it exists and has
// the expected shape; the error names the tensor and both shapes.
func Expect(src Source, name string, shape ...int) ([]float32, error) {
	info, ok := src.Info(name)
	if !ok {
		return nil, fmt.Errorf("weights: missing tensor %q (expected shape %v)", name, tensor.Shape(shape))
	}
	if !info.Shape.Equal(shape) {
		return nil, fmt.Errorf("weights: tensor %q has shape %v, expected %v", name, info.Shape, tensor.Shape(shape))
	}
	return src.Float32(name)
}

// RowReader is implemented by sources that can read part of a tensor: rows
// [row, row+n) along its first dimension, e.g. the few rows of Gemma's
// 256000-row embedding table that a prompt needs.
type RowReader interface {
	Float32Rows(name string, row, n int) ([]float32, error)
}

// ByteSource is implemented by sources that can return a tensor's stored
// bytes whatever its dtype (ComfyUI's U8 "spiece_model").
type ByteSource interface {
	Bytes(name string) ([]byte, error)
}

// Rows reads rows [row, row+n) of a tensor along its first dimension:
// through RowReader when src has it, else by reading the whole tensor.
func Rows(src Source, name string, row, n int) ([]float32, error) {
	if rr, ok := src.(RowReader); ok {
		return rr.Float32Rows(name, row, n)
	}
	info, ok := src.Info(name)
	if !ok {
		return nil, fmt.Errorf("weights: %w %q", ErrNotFound, name)
	}
	rowLen, err := rowSpan(describe(src), name, info.Shape, row, n)
	if err != nil {
		return nil, err
	}
	v, err := src.Float32(name)
	if err != nil {
		return nil, err
	}
	return v[row*rowLen : (row+n)*rowLen], nil
}

// describe names a source in errors: its String method, or its type.
func describe(src Source) string {
	if s, ok := src.(fmt.Stringer); ok {
		return s.String()
	}
	return fmt.Sprintf("%T", src)
}
