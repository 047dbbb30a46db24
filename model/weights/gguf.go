package weights

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"

	"github.com/luminaweb/lumina/model/tensor"
)

// GGUF (ggml's file format, docs/gguf.md in ggml-org/ggml): a header of
// typed key/value metadata and tensor infos, then the tensor data, each
// tensor at an offset (from the start of the data) that is a multiple of
// general.alignment (32 by default). All integers are little-endian.
//
//	magic "GGUF", version uint32 (2 or 3), tensor_count uint64, kv_count uint64
//	kv:     key string, value_type uint32, value
//	string: uint64 length, bytes (UTF-8, not NUL-terminated)
//	array:  element type uint32, count uint64, elements
//	tensor: name string, n_dims uint32, ne[n_dims] uint64 (innermost
//	        first: ne[0] is the last PyTorch dimension), type uint32, offset uint64
//	data starts at the end of the tensor infos rounded up to the alignment.

// GGMLType is a tensor type of ggml.
type GGMLType uint32

// The ggml tensor types this package knows the block size of. Float32
// reads F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K and Q6_K.
const (
	GGMLF32    GGMLType = 0
	GGMLF16    GGMLType = 1
	GGMLQ4_0   GGMLType = 2
	GGMLQ4_1   GGMLType = 3
	GGMLQ5_0   GGMLType = 6
	GGMLQ5_1   GGMLType = 7
	GGMLQ8_0   GGMLType = 8
	GGMLQ8_1   GGMLType = 9
	GGMLQ2_K   GGMLType = 10
	GGMLQ3_K   GGMLType = 11
	GGMLQ4_K   GGMLType = 12
	GGMLQ5_K   GGMLType = 13
	GGMLQ6_K   GGMLType = 14
	GGMLQ8_K   GGMLType = 15
	GGMLIQ4_NL GGMLType = 20
	GGMLIQ4_XS GGMLType = 23
	GGMLI8     GGMLType = 24
	GGMLI16    GGMLType = 25
	GGMLI32    GGMLType = 26
	GGMLI64    GGMLType = 27
	GGMLF64    GGMLType = 28
	GGMLBF16   GGMLType = 30
)

// ggmlTypes gives each known type's name, values per block and bytes per
// block (ggml's type traits, from the block structs in ggml-common.h).
var ggmlTypes = map[GGMLType]struct {
	name        string
	block, size int
}{
	GGMLF32: {"F32", 1, 4}, GGMLF16: {"F16", 1, 2}, GGMLBF16: {"BF16", 1, 2},
	GGMLQ4_0: {"Q4_0", 32, 18}, GGMLQ4_1: {"Q4_1", 32, 20},
	GGMLQ5_0: {"Q5_0", 32, 22}, GGMLQ5_1: {"Q5_1", 32, 24},
	GGMLQ8_0: {"Q8_0", 32, 34}, GGMLQ8_1: {"Q8_1", 32, 36},
	GGMLQ2_K: {"Q2_K", 256, 84}, GGMLQ3_K: {"Q3_K", 256, 110},
	GGMLQ4_K: {"Q4_K", 256, 144}, GGMLQ5_K: {"Q5_K", 256, 176},
	GGMLQ6_K: {"Q6_K", 256, 210}, GGMLQ8_K: {"Q8_K", 256, 292},
	GGMLIQ4_NL: {"IQ4_NL", 32, 18}, GGMLIQ4_XS: {"IQ4_XS", 256, 136},
	GGMLI8: {"I8", 1, 1}, GGMLI16: {"I16", 1, 2}, GGMLI32: {"I32", 1, 4},
	GGMLI64: {"I64", 1, 8}, GGMLF64: {"F64", 1, 8},
}

func (t GGMLType) String() string {
	if tt, ok := ggmlTypes[t]; ok {
		return tt.name
	}
	return fmt.Sprintf("ggml_type(%d)", uint32(t))
}

// BlockSize returns the values per block and bytes per block, or false
// for an unknown type.
func (t GGMLType) BlockSize() (values, bytes int, ok bool) {
	tt, ok := ggmlTypes[t]
	return tt.block, tt.size, ok
}

// GGUFValueType is the type of a metadata value.
type GGUFValueType uint32

// The metadata value types.
const (
	GGUFUint8 GGUFValueType = iota
	GGUFInt8
	GGUFUint16
	GGUFInt16
	GGUFUint32
	GGUFInt32
	GGUFFloat32
	GGUFBool
	GGUFString
	GGUFArray
	GGUFUint64
	GGUFInt64
	GGUFFloat64
)

// GGUFKV is one metadata pair. Value holds uint8, int8, uint16, int16,
// uint32, int32, float32, bool, string, uint64, int64, float64, or for an
// array a GGUFArrayValue.
type GGUFKV struct {
	Key   string
	Type  GGUFValueType
	Value any
}

// GGUFArrayValue is an array value: Values is a []uint8, []int8, []uint16,
// []int16, []uint32, []int32, []float32, []bool, []string, []uint64,
// []int64, []float64 or, nested, []GGUFArrayValue.
type GGUFArrayValue struct {
	Type   GGUFValueType
	Values any
}

// GGUFTensor is one tensor info.
type GGUFTensor struct {
	Name   string
	Type   GGMLType
	Dims   []uint64     // ne[], innermost first, as stored
	Shape  tensor.Shape // PyTorch order: Dims reversed
	Offset int64        // absolute offset of the data in the file
	Size   int64        // bytes of data
}

// GGUF is a GGUF file read through an io.ReaderAt (a file, a RangeSource).
// Only the header is read when it is opened. It implements Source and
// RowReader under the file's own tensor names (the Lumina-2 GGUF quants
// keep the original checkpoint names, so DetectDiT maps it), and Repack
// converts a tensor to a pack dtype. A GGUF is safe for concurrent use.
type GGUF struct {
	name      string
	r         io.ReaderAt
	closer    io.Closer
	size      int64
	Version   uint32
	KV        []GGUFKV
	Alignment int64
	DataStart int64 // absolute offset of the data section
	tensors   []GGUFTensor
	byName    map[string]int
	names     []string
}

// OpenGGUF opens a GGUF file and reads its header. Close it when done.
func OpenGGUF(path string) (*GGUF, error) {
	g, f, err := openPath(path, NewGGUF)
	if err != nil {
		return nil, err
	}
	g.closer = f
	return g, nil
}

// ggufReader reads the header sequentially, never past the file's size.
type ggufReader struct {
	br   *bufio.Reader
	pos  int64
	size int64
	err  error
}

func (r *ggufReader) fail(format string, a ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("at byte %d: %s", r.pos, fmt.Sprintf(format, a...))
	}
}

func (r *ggufReader) left() int64 { return r.size - r.pos }

func (r *ggufReader) bytes(n int64) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > r.left() {
		r.fail("%d bytes needed, %d left in the file", n, r.left())
		return nil
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r.br, b); err != nil {
		r.fail("%v", err)
		return nil
	}
	r.pos += n
	return b
}

func (r *ggufReader) u8() uint8 {
	if b := r.bytes(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *ggufReader) u16() uint16 {
	if b := r.bytes(2); b != nil {
		return binary.LittleEndian.Uint16(b)
	}
	return 0
}

func (r *ggufReader) u32() uint32 {
	if b := r.bytes(4); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

func (r *ggufReader) u64() uint64 {
	if b := r.bytes(8); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

func (r *ggufReader) str() string {
	n := r.u64()
	if r.err == nil && n > uint64(r.left()) {
		r.fail("string of %d bytes, %d left in the file", n, r.left())
	}
	return string(r.bytes(int64(n)))
}

// minValueSize is the fewest bytes a value of type t takes.
func minValueSize(t GGUFValueType) int64 {
	switch t {
	case GGUFUint8, GGUFInt8, GGUFBool:
		return 1
	case GGUFUint16, GGUFInt16:
		return 2
	case GGUFUint32, GGUFInt32, GGUFFloat32:
		return 4
	case GGUFArray:
		return 12
	}
	return 8 // string length, 64-bit values
}

// value reads one value of type t; depth bounds nested arrays.
func (r *ggufReader) value(t GGUFValueType, depth int) any {
	switch t {
	case GGUFUint8:
		return r.u8()
	case GGUFInt8:
		return int8(r.u8())
	case GGUFUint16:
		return r.u16()
	case GGUFInt16:
		return int16(r.u16())
	case GGUFUint32:
		return r.u32()
	case GGUFInt32:
		return int32(r.u32())
	case GGUFFloat32:
		return math.Float32frombits(r.u32())
	case GGUFBool:
		b := r.u8()
		if b > 1 {
			r.fail("bool value %d", b)
		}
		return b == 1
	case GGUFString:
		return r.str()
	case GGUFUint64:
		return r.u64()
	case GGUFInt64:
		return int64(r.u64())
	case GGUFFloat64:
		return math.Float64frombits(r.u64())
	case GGUFArray:
		if depth > 8 {
			r.fail("arrays nested more than 8 deep")
			return nil
		}
		et := GGUFValueType(r.u32())
		n := r.u64()
		if r.err != nil {
			return nil
		}
		if et > GGUFFloat64 {
			r.fail("array of unknown value type %d", et)
			return nil
		}
		if n > uint64(r.left()/minValueSize(et)) {
			r.fail("array of %d %d-byte values, %d bytes left in the file", n, minValueSize(et), r.left())
			return nil
		}
		return GGUFArrayValue{Type: et, Values: r.array(et, int(n), depth)}
	}
	r.fail("unknown value type %d", t)
	return nil
}

func readArray[T any](r *ggufReader, n int, f func() T) []T {
	out := make([]T, 0, n)
	for i := 0; i < n && r.err == nil; i++ {
		out = append(out, f())
	}
	return out
}

func (r *ggufReader) array(t GGUFValueType, n, depth int) any {
	switch t {
	case GGUFUint8:
		return r.bytes(int64(n))
	case GGUFInt8:
		return readArray(r, n, func() int8 { return int8(r.u8()) })
	case GGUFUint16:
		return readArray(r, n, r.u16)
	case GGUFInt16:
		return readArray(r, n, func() int16 { return int16(r.u16()) })
	case GGUFUint32:
		return readArray(r, n, r.u32)
	case GGUFInt32:
		return readArray(r, n, func() int32 { return int32(r.u32()) })
	case GGUFFloat32:
		return readArray(r, n, func() float32 { return math.Float32frombits(r.u32()) })
	case GGUFBool:
		return readArray(r, n, func() bool { return r.value(GGUFBool, depth).(bool) })
	case GGUFString:
		return readArray(r, n, r.str)
	case GGUFUint64:
		return readArray(r, n, r.u64)
	case GGUFInt64:
		return readArray(r, n, func() int64 { return int64(r.u64()) })
	case GGUFFloat64:
		return readArray(r, n, func() float64 { return math.Float64frombits(r.u64()) })
	}
	return readArray(r, n, func() GGUFArrayValue {
		v, _ := r.value(GGUFArray, depth+1).(GGUFArrayValue)
		return v
	})
}

// NewGGUF reads the header of a GGUF file of size bytes held by r; name is
// used in errors. It checks the magic and version (2 or 3, little-endian),
// every metadata value, general.alignment, and that every tensor has a
// known type, at most 4 positive dimensions with ne[0] a multiple of its
// block, an aligned offset, and data inside the file overlapping no other.
func NewGGUF(r io.ReaderAt, size int64, name string) (*GGUF, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("weights: %s: %w: %s", name, ErrFormat, fmt.Sprintf(format, a...))
	}
	if size < 24 {
		return nil, bad("file is %d bytes, shorter than a GGUF header", size)
	}
	rd := &ggufReader{br: bufio.NewReaderSize(io.NewSectionReader(r, 0, size), 1<<16), size: size}
	if magic := rd.bytes(4); rd.err == nil && string(magic) != "GGUF" {
		return nil, bad("magic %q is not \"GGUF\"", magic)
	}
	g := &GGUF{name: name, r: r, size: size, byName: map[string]int{}, Alignment: 32}
	g.Version = rd.u32()
	if rd.err == nil && g.Version != 2 && g.Version != 3 {
		if v := g.Version; v&0xffff == 0 && (v>>24 == 2 || v>>24 == 3) {
			return nil, bad("big-endian GGUF (version %d) is not supported", v>>24)
		}
		return nil, bad("version %d; versions 2 and 3 are supported", g.Version)
	}
	nt, nkv := rd.u64(), rd.u64()
	if rd.err == nil && (nkv > uint64(rd.left()/12) || nt > uint64(rd.left()/24)) {
		return nil, bad("%d metadata pairs and %d tensors cannot fit in %d bytes", nkv, nt, size)
	}
	seen := map[string]bool{}
	for i := uint64(0); i < nkv && rd.err == nil; i++ {
		key := rd.str()
		t := GGUFValueType(rd.u32())
		v := rd.value(t, 0)
		if rd.err != nil {
			break
		}
		if seen[key] {
			return nil, bad("metadata key %q repeated", key)
		}
		seen[key] = true
		g.KV = append(g.KV, GGUFKV{Key: key, Type: t, Value: v})
		if key == "general.alignment" {
			a, ok := v.(uint32)
			if !ok || a == 0 || a%8 != 0 {
				return nil, bad("general.alignment is %v (%T); it must be a uint32 multiple of 8", v, v)
			}
			g.Alignment = int64(a)
		}
	}
	for i := uint64(0); i < nt && rd.err == nil; i++ {
		var t GGUFTensor
		t.Name = rd.str()
		nd := rd.u32()
		if rd.err == nil && nd > 4 {
			return nil, bad("tensor %q has %d dimensions; ggml allows 4", t.Name, nd)
		}
		for j := uint32(0); j < nd && rd.err == nil; j++ {
			t.Dims = append(t.Dims, rd.u64())
		}
		t.Type = GGMLType(rd.u32())
		off := rd.u64()
		if rd.err != nil {
			break
		}
		if _, dup := g.byName[t.Name]; dup {
			return nil, bad("tensor %q appears twice", t.Name)
		}
		if err := g.tensorInfo(&t, off); err != nil {
			return nil, bad("%v", err)
		}
		g.byName[t.Name] = len(g.tensors)
		g.tensors = append(g.tensors, t)
	}
	if rd.err != nil {
		return nil, bad("header: %v", rd.err)
	}
	g.DataStart = (rd.pos + g.Alignment - 1) / g.Alignment * g.Alignment
	dataLen := size - g.DataStart
	for i := range g.tensors {
		t := &g.tensors[i]
		if t.Offset > dataLen || t.Size > dataLen-t.Offset {
			return nil, bad("tensor %q: %d bytes at data offset %d run past the end of the file (%d bytes of data)", t.Name, t.Size, t.Offset, max(dataLen, 0))
		}
		t.Offset += g.DataStart
	}
	all := slices.Clone(g.tensors)
	sort.Slice(all, func(i, j int) bool { return all[i].Offset < all[j].Offset })
	for i := 1; i < len(all); i++ {
		if all[i].Offset < all[i-1].Offset+all[i-1].Size {
			return nil, bad("tensors %q and %q overlap", all[i-1].Name, all[i].Name)
		}
	}
	for _, t := range g.tensors {
		g.names = append(g.names, t.Name)
	}
	slices.Sort(g.names)
	return g, nil
}

// tensorInfo checks a tensor info and fills Shape and Size; Offset is
// left relative to the data section.
func (g *GGUF) tensorInfo(t *GGUFTensor, off uint64) error {
	block, bsize, ok := t.Type.BlockSize()
	if !ok {
		return fmt.Errorf("tensor %q has unknown type %d", t.Name, uint32(t.Type))
	}
	numel := uint64(1)
	t.Shape = make(tensor.Shape, len(t.Dims))
	for j, d := range t.Dims {
		if d == 0 || d > maxDim {
			return fmt.Errorf("tensor %q: ne[%d] = %d", t.Name, j, d)
		}
		t.Shape[len(t.Dims)-1-j] = int(d)
		hi, lo := mulU64(numel, d)
		if hi != 0 || lo > 1<<48 {
			return fmt.Errorf("tensor %q: shape %v is too large", t.Name, t.Dims)
		}
		numel = lo
	}
	ne0 := uint64(1)
	if len(t.Dims) > 0 {
		ne0 = t.Dims[0]
	}
	if ne0%uint64(block) != 0 {
		return fmt.Errorf("tensor %q: ne[0] = %d is not a multiple of %s's block of %d", t.Name, ne0, t.Type, block)
	}
	if off%uint64(g.Alignment) != 0 || off > 1<<62 {
		return fmt.Errorf("tensor %q: data offset %d is not a multiple of the alignment %d", t.Name, off, g.Alignment)
	}
	t.Size = int64(numel / uint64(block) * uint64(bsize))
	t.Offset = int64(off)
	return nil
}

// String returns the name the file was opened with.
func (g *GGUF) String() string { return g.name }

// Close closes the file when it was opened from a path.
func (g *GGUF) Close() error {
	if g.closer == nil {
		return nil
	}
	return g.closer.Close()
}

// Get returns a metadata value by key.
func (g *GGUF) Get(key string) (any, bool) {
	for _, kv := range g.KV {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return nil, false
}

// Tensors lists the tensor infos in file order.
func (g *GGUF) Tensors() []GGUFTensor { return slices.Clone(g.tensors) }

// Tensor returns one tensor info.
func (g *GGUF) Tensor(name string) (GGUFTensor, bool) {
	i, ok := g.byName[name]
	if !ok {
		return GGUFTensor{}, false
	}
	return g.tensors[i], true
}

// Names implements Source: every tensor, sorted.
func (g *GGUF) Names() []string { return slices.Clone(g.names) }

// Info implements Source. Quantized tensors report F32, what Float32
// gives.
func (g *GGUF) Info(name string) (Info, bool) {
	t, ok := g.Tensor(name)
	if !ok {
		return Info{}, false
	}
	dt := tensor.F32
	switch t.Type {
	case GGMLF16:
		dt = tensor.F16
	case GGMLBF16:
		dt = tensor.BF16
	}
	return Info{Name: name, DType: dt, Shape: t.Shape.Clone()}, true
}

func (g *GGUF) tensor(name string) (GGUFTensor, error) {
	t, ok := g.Tensor(name)
	if !ok {
		return GGUFTensor{}, fmt.Errorf("weights: %s: %w %q", g.name, ErrNotFound, name)
	}
	if !canDequant(t.Type) {
		return GGUFTensor{}, fmt.Errorf("weights: %s: tensor %q has type %s, which this reader cannot dequantize", g.name, name, t.Type)
	}
	return t, nil
}

// Raw returns a tensor's stored bytes (ggml blocks) and its info.
func (g *GGUF) Raw(name string) ([]byte, GGUFTensor, error) {
	t, ok := g.Tensor(name)
	if !ok {
		return nil, GGUFTensor{}, fmt.Errorf("weights: %s: %w %q", g.name, ErrNotFound, name)
	}
	b := make([]byte, t.Size)
	if err := readFull(g.r, b, t.Offset); err != nil {
		return nil, GGUFTensor{}, fmt.Errorf("weights: %s: reading tensor %q: %w", g.name, name, err)
	}
	return b, t, nil
}

// Float32 implements Source: the tensor dequantized as ggml does.
func (g *GGUF) Float32(name string) ([]float32, error) {
	t, err := g.tensor(name)
	if err != nil {
		return nil, err
	}
	b, _, err := g.Raw(name)
	if err != nil {
		return nil, err
	}
	out := make([]float32, t.Shape.Numel())
	dequantGGML(t.Type, b, out)
	return out, nil
}

// Float32Rows implements RowReader: rows along the first PyTorch dimension
// (the last ne), reading only their blocks.
func (g *GGUF) Float32Rows(name string, row, n int) ([]float32, error) {
	t, err := g.tensor(name)
	if err != nil {
		return nil, err
	}
	rowLen, err := rowSpan(g.name, name, t.Shape, row, n)
	if err != nil {
		return nil, err
	}
	if block, _, _ := t.Type.BlockSize(); rowLen%block != 0 { // a 1-D quantized tensor
		v, err := g.Float32(name)
		if err != nil {
			return nil, err
		}
		return v[row*rowLen : (row+n)*rowLen], nil
	}
	rowBytes := t.Size / int64(t.Shape[0])
	b := make([]byte, int64(n)*rowBytes)
	if err := readFull(g.r, b, t.Offset+int64(row)*rowBytes); err != nil {
		return nil, fmt.Errorf("weights: %s: reading tensor %q: %w", g.name, name, err)
	}
	out := make([]float32, n*rowLen)
	dequantGGML(t.Type, b, out)
	return out, nil
}
