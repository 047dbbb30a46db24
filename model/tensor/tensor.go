// Package tensor holds what every other part of the model agrees on about
// tensors: element types, shapes and the 16-bit float codecs. It is pure Go
// and imports nothing from the module.
package tensor

import (
	"fmt"
	"strings"
)

// DType is the element type of a tensor as it is stored.
type DType uint8

// Element types. F16 and BF16 are stored two to a 32-bit word (low half
// first) on the GPU, because WGSL has no 16-bit storage types without the
// optional shader-f16 feature.
const (
	F32 DType = iota
	F16
	BF16
)

var dtypeNames = [...]string{F32: "f32", F16: "f16", BF16: "bf16"}

func (d DType) String() string {
	if int(d) < len(dtypeNames) {
		return dtypeNames[d]
	}
	return fmt.Sprintf("dtype(%d)", uint8(d))
}

// Size is the number of bytes one element takes.
func (d DType) Size() int {
	switch d {
	case F16, BF16:
		return 2
	default:
		return 4
	}
}

// Shape lists a tensor's dimensions, outermost first (row-major).
type Shape []int

// Numel is the number of elements, 1 for a scalar shape.
func (s Shape) Numel() int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}

// Equal reports whether both shapes have the same dimensions.
func (s Shape) Equal(o Shape) bool {
	if len(s) != len(o) {
		return false
	}
	for i := range s {
		if s[i] != o[i] {
			return false
		}
	}
	return true
}

// Valid reports whether every dimension is positive.
func (s Shape) Valid() bool {
	for _, d := range s {
		if d <= 0 {
			return false
		}
	}
	return true
}

// Clone returns a copy that does not share storage with s.
func (s Shape) Clone() Shape { return append(Shape(nil), s...) }

// String formats the shape as [a,b,c].
func (s Shape) String() string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = fmt.Sprint(d)
	}
	return "[" + strings.Join(parts, ",") + "]"
}
