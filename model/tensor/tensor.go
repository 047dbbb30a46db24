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
//
// Q8 and Q4 are packed (quantized) weights: a tensor of shape (…, K) is
// rows of K values in groups of QuantGroup along K, stored in two sections
// of little-endian u32 words (R = numel/K rows, G = ceil(K/32) groups a
// row, group index gi = r·G + g, a row's last group zero-padded):
//
//	q8  values: R·G·32 bytes, value j of group gi at byte gi·32 + j (int8);
//	    scales at byte R·G·32: the f16 scale d of group gi at half gi
//	    (low half of a word first), padded to a word. Value = q·d.
//	q4  values: R·G·16 bytes, value j of group gi at word gi·4 + j/8,
//	    bits 4·(j%8) (unsigned 0..15); then one word per group at byte
//	    R·G·16 + 4·gi: the f16 scale d in bits 0-15, the f16 offset m in
//	    bits 16-31. Value = q·d + m.
//
// This is the layout of model/weights' pack dtypes q8 and q4 (its PackDType
// documents the choice); Bytes gives a packed tensor's size.
const (
	F32 DType = iota
	F16
	BF16
	Q8
	Q4
)

var dtypeNames = [...]string{F32: "f32", F16: "f16", BF16: "bf16", Q8: "q8", Q4: "q4"}

// QuantGroup is the number of values along K that share a scale in Q8 and
// Q4.
const QuantGroup = 32

// Quantized reports whether d is a packed quantized type (Q8, Q4), whose
// elements are not individually addressable.
func (d DType) Quantized() bool { return d == Q8 || d == Q4 }

// QuantLayout is the geometry of a Q8 or Q4 tensor (see the DType
// constants).
type QuantLayout struct {
	Rows   int   // numel / K
	K      int   // last dimension
	Groups int   // groups a row, ceil(K/QuantGroup)
	Second int64 // byte offset of the second section (q8 scales, q4 (d, m) words)
	Length int64 // total bytes, a multiple of 4
}

// Layout returns the geometry of a d tensor (Q8 or Q4) of shape s (a
// scalar shape counts as [1]). It panics for other types.
func (d DType) Layout(s Shape) QuantLayout {
	if !d.Quantized() {
		panic(fmt.Sprintf("tensor: Layout of %s: not a quantized type", d))
	}
	k := 1
	if len(s) > 0 {
		k = s[len(s)-1]
	}
	l := QuantLayout{Rows: s.Numel() / k, K: k, Groups: (k + QuantGroup - 1) / QuantGroup}
	ng := int64(l.Rows) * int64(l.Groups)
	if d == Q8 {
		l.Second = ng * QuantGroup
		l.Length = l.Second + (2*ng+3)&^3
	} else {
		l.Second = ng * QuantGroup / 2
		l.Length = l.Second + 4*ng
	}
	return l
}

// Bytes is the size in bytes of a d tensor of shape s as stored (on the
// GPU and in a pack): 4 per element for f32, 16-bit types two to a word
// (padded to a word), Q8 and Q4 as their Layout.
func (d DType) Bytes(s Shape) int64 {
	n := int64(s.Numel())
	switch d {
	case F16, BF16:
		return (2*n + 3) &^ 3
	case Q8, Q4:
		return d.Layout(s).Length
	default:
		return 4 * n
	}
}

func (d DType) String() string {
	if int(d) < len(dtypeNames) {
		return dtypeNames[d]
	}
	return fmt.Sprintf("dtype(%d)", uint8(d))
}

// Size is the number of bytes one element takes (4 for the packed types,
// whose elements have no size of their own: use Bytes).
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
