package weights

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/nlpodyssey/safetensors"

	"github.com/luminaweb/lumina/model/tensor"
)

// ErrFormat marks a malformed checkpoint: a bad header, a tensor whose
// bytes do not fit its shape or the file, overlapping data ranges.
var ErrFormat = errors.New("malformed checkpoint")

// ErrNotFound marks a request for a tensor the source does not hold.
var ErrNotFound = errors.New("no such tensor")

// maxHeader bounds the JSON header we are willing to read. Real headers are
// small (the 400-tensor Next-DiT file has about 40 KB; safetensors' own
// limit is 100 MB); the bound keeps a corrupt length from allocating much.
const maxHeader = 64 << 20

// maxDim bounds one dimension so shapes convert to int on every target.
const maxDim = math.MaxInt32

// readChunk is how many bytes Float32 reads at a time: the float32 output is
// the only allocation proportional to the tensor.
const readChunk = 1 << 20

// Entry is one tensor as stored in a safetensors file, whatever its dtype.
type Entry struct {
	Name   string
	DType  string       // as stored: "F32", "F16", "BF16", "U8"
	Shape  tensor.Shape // outermost first
	Offset int64        // absolute byte offset of the data in the file
	Size   int64        // bytes of data
}

// File is one safetensors file read through an io.ReaderAt. Only the header
// is read when it is opened; tensors are read when asked for. It implements
// Source for its F32, F16 and BF16 tensors; U8 tensors (ComfyUI's
// "spiece_model") are listed by Tensors and readable with Bytes only.
// A File is safe for concurrent use.
type File struct {
	name    string
	r       io.ReaderAt
	closer  io.Closer
	size    int64
	entries map[string]Entry
	floats  []string // sorted names of the F32/F16/BF16 tensors
	meta    map[string]string
}

// OpenSafetensors opens a safetensors file and reads its header. Close it
// when done.
func OpenSafetensors(path string) (*File, error) {
	file, f, err := openPath(path, NewSafetensors)
	if err != nil {
		return nil, err
	}
	file.closer = f
	return file, nil
}

// openPath opens a file and reads it with open (NewSafetensors, NewGGUF),
// closing it again when that fails.
func openPath[T any](path string, open func(io.ReaderAt, int64, string) (T, error)) (T, *os.File, error) {
	var zero T
	f, err := os.Open(path)
	if err != nil {
		return zero, nil, fmt.Errorf("weights: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return zero, nil, fmt.Errorf("weights: %w", err)
	}
	v, err := open(f, st.Size(), path)
	if err != nil {
		f.Close()
		return zero, nil, err
	}
	return v, f, nil
}

// NewSafetensors reads the header of a safetensors file of size bytes held
// by r (a file, an HTTP range reader, a browser blob). name is used in
// errors. It checks that every tensor is F32, F16, BF16 or U8, that its
// shape matches its byte range, and that the ranges lie inside the file and
// do not overlap.
func NewSafetensors(r io.ReaderAt, size int64, name string) (*File, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("weights: %s: %w: %s", name, ErrFormat, fmt.Sprintf(format, a...))
	}
	if size < 8 {
		return nil, bad("file is %d bytes, shorter than the 8-byte header length", size)
	}
	var lenBuf [8]byte
	if err := readFull(r, lenBuf[:], 0); err != nil {
		return nil, fmt.Errorf("weights: %s: reading header length: %w", name, err)
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	if n > maxHeader {
		return nil, bad("header length %d exceeds the limit %d", n, maxHeader)
	}
	if n > uint64(size-8) {
		return nil, bad("header length %d runs past the end of the %d-byte file", n, size)
	}
	hdr := make([]byte, n)
	if err := readFull(r, hdr, 8); err != nil {
		return nil, fmt.Errorf("weights: %s: reading header: %w", name, err)
	}
	var md safetensors.Metadata
	if err := json.Unmarshal(hdr, &md); err != nil {
		return nil, bad("header: %v", err)
	}
	f := &File{name: name, r: r, size: size, entries: map[string]Entry{}, meta: md.Metadata()}
	dataStart := int64(8 + n)
	dataLen := uint64(size - dataStart)
	for tname, ti := range md.Tensors() {
		e, err := entryOf(tname, ti, dataStart, dataLen)
		if err != nil {
			return nil, bad("%v", err)
		}
		f.entries[tname] = e
		if e.DType != "U8" {
			f.floats = append(f.floats, tname)
		}
	}
	slices.Sort(f.floats)
	// Overlap: sort by start; each range must end before the next begins.
	// Empty tensors occupy no bytes and may share an offset.
	all := f.Tensors()
	sort.Slice(all, func(i, j int) bool { return all[i].Offset < all[j].Offset })
	var prev *Entry
	for i := range all {
		e := &all[i]
		if e.Size == 0 {
			continue
		}
		if prev != nil && e.Offset < prev.Offset+prev.Size {
			return nil, bad("tensors %q and %q overlap", prev.Name, e.Name)
		}
		prev = e
	}
	return f, nil
}

// entryOf validates one header entry against the data section
// [dataStart, dataStart+dataLen) of the file.
func entryOf(name string, ti *safetensors.TensorInfo, dataStart int64, dataLen uint64) (Entry, error) {
	var elem uint64
	switch ti.DType {
	case safetensors.F32:
		elem = 4
	case safetensors.F16, safetensors.BF16:
		elem = 2
	case safetensors.U8:
		elem = 1
	default:
		return Entry{}, fmt.Errorf("tensor %q has dtype %s; only F32, F16, BF16 (and U8 as raw bytes) are supported", name, ti.DType)
	}
	shape := make(tensor.Shape, len(ti.Shape))
	numel := uint64(1)
	for i, d := range ti.Shape {
		if d > maxDim {
			return Entry{}, fmt.Errorf("tensor %q: dimension %d is %d, too large", name, i, d)
		}
		shape[i] = int(d)
		hi, lo := mulU64(numel, d)
		if hi != 0 {
			return Entry{}, fmt.Errorf("tensor %q: shape %v overflows", name, ti.Shape)
		}
		numel = lo
	}
	hi, nbytes := mulU64(numel, elem)
	begin, end := ti.DataOffsets[0], ti.DataOffsets[1]
	switch {
	case hi != 0:
		return Entry{}, fmt.Errorf("tensor %q: shape %v overflows", name, ti.Shape)
	case end < begin:
		return Entry{}, fmt.Errorf("tensor %q: data offsets [%d,%d) are reversed", name, begin, end)
	case end > dataLen:
		return Entry{}, fmt.Errorf("tensor %q: data [%d,%d) runs past the %d bytes of data in the file", name, begin, end, dataLen)
	case end-begin != nbytes:
		return Entry{}, fmt.Errorf("tensor %q: %s %v needs %d bytes, data offsets [%d,%d) hold %d", name, ti.DType, shape, nbytes, begin, end, end-begin)
	}
	return Entry{Name: name, DType: ti.DType.String(), Shape: shape, Offset: dataStart + int64(begin), Size: int64(nbytes)}, nil
}

func mulU64(a, b uint64) (hi, lo uint64) {
	if a == 0 || b == 0 {
		return 0, 0
	}
	lo = a * b
	if lo/b != a {
		return 1, lo
	}
	return 0, lo
}

// String returns the name the file was opened with.
func (f *File) String() string { return f.name }

// Close closes the underlying file when the File was opened from a path.
func (f *File) Close() error {
	if f.closer == nil {
		return nil
	}
	return f.closer.Close()
}

// Metadata returns the header's "__metadata__" strings (nil if none).
func (f *File) Metadata() map[string]string { return f.meta }

// Tensors lists every tensor in the file, U8 ones included, sorted by name.
func (f *File) Tensors() []Entry {
	out := make([]Entry, 0, len(f.entries))
	for _, e := range f.entries {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Names implements Source: the F32, F16 and BF16 tensors, sorted.
func (f *File) Names() []string { return slices.Clone(f.floats) }

// Info implements Source. U8 tensors have no Info.
func (f *File) Info(name string) (Info, bool) {
	e, ok := f.entries[name]
	if !ok || e.DType == "U8" {
		return Info{}, false
	}
	return Info{Name: name, DType: dtypeOf(e.DType), Shape: e.Shape.Clone()}, true
}

func dtypeOf(s string) tensor.DType {
	switch s {
	case "F16":
		return tensor.F16
	case "BF16":
		return tensor.BF16
	}
	return tensor.F32
}

// float returns a float tensor's entry or an error naming file and tensor.
func (f *File) float(name string) (Entry, error) {
	e, ok := f.entries[name]
	if !ok {
		return Entry{}, fmt.Errorf("weights: %s: %w %q", f.name, ErrNotFound, name)
	}
	if e.DType == "U8" {
		return Entry{}, fmt.Errorf("weights: %s: tensor %q is U8, not a float tensor (read it with Bytes)", f.name, name)
	}
	return e, nil
}

// Float32 implements Source: the tensor's values, F16 and BF16 decoded.
func (f *File) Float32(name string) ([]float32, error) {
	e, err := f.float(name)
	if err != nil {
		return nil, err
	}
	out := make([]float32, e.Shape.Numel())
	return out, f.decode(e, e.Offset, out)
}

// Float32Rows implements RowReader: rows [row, row+n) of the tensor along
// its first dimension, without reading the rest (Gemma's embedding table).
func (f *File) Float32Rows(name string, row, n int) ([]float32, error) {
	e, err := f.float(name)
	if err != nil {
		return nil, err
	}
	rowLen, err := rowSpan(f.name, name, e.Shape, row, n)
	if err != nil {
		return nil, err
	}
	out := make([]float32, n*rowLen)
	off := e.Offset + int64(row*rowLen*dtypeOf(e.DType).Size())
	return out, f.decode(e, off, out)
}

// rowSpan checks a row range and returns the elements per row.
func rowSpan(file, name string, shape tensor.Shape, row, n int) (int, error) {
	if len(shape) == 0 || row < 0 || n < 0 || row+n > shape[0] {
		return 0, fmt.Errorf("weights: %s: tensor %q %v: rows [%d,%d) out of range", file, name, shape, row, row+n)
	}
	return shape[1:].Numel(), nil
}

// decode reads len(out) elements of e's dtype starting at byte off.
func (f *File) decode(e Entry, off int64, out []float32) error {
	elem := dtypeOf(e.DType).Size()
	buf := make([]byte, min(readChunk, len(out)*elem))
	for done := 0; done < len(out); {
		k := min(len(buf)/elem, len(out)-done)
		b := buf[:k*elem]
		if err := readFull(f.r, b, off); err != nil {
			return fmt.Errorf("weights: %s: reading tensor %q: %w", f.name, e.Name, err)
		}
		dst := out[done : done+k]
		switch e.DType {
		case "F32":
			for i := range dst {
				dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
			}
		case "F16":
			for i := range dst {
				dst[i] = tensor.F16ToF32(binary.LittleEndian.Uint16(b[2*i:]))
			}
		case "BF16":
			for i := range dst {
				dst[i] = tensor.BF16ToF32(binary.LittleEndian.Uint16(b[2*i:]))
			}
		}
		done += k
		off += int64(len(b))
	}
	return nil
}

// Raw returns a float tensor's stored bytes (little-endian, as in the file)
// and its Info, for uploading F16/BF16 data packed, without conversion.
func (f *File) Raw(name string) ([]byte, Info, error) {
	e, err := f.float(name)
	if err != nil {
		return nil, Info{}, err
	}
	b, err := f.read(e)
	if err != nil {
		return nil, Info{}, err
	}
	info, _ := f.Info(name)
	return b, info, nil
}

// Bytes returns any tensor's stored bytes, U8 tensors included.
func (f *File) Bytes(name string) ([]byte, error) {
	e, ok := f.entries[name]
	if !ok {
		return nil, fmt.Errorf("weights: %s: %w %q", f.name, ErrNotFound, name)
	}
	return f.read(e)
}

func (f *File) read(e Entry) ([]byte, error) {
	b := make([]byte, e.Size)
	if err := readFull(f.r, b, e.Offset); err != nil {
		return nil, fmt.Errorf("weights: %s: reading tensor %q: %w", f.name, e.Name, err)
	}
	return b, nil
}

// readFull reads len(b) bytes at off. io.ReaderAt may report io.EOF along
// with a full read at the end of the input; that is success.
func readFull(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}
