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
