package weights

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"sync"

	"github.com/luminaweb/lumina/model/tensor"
)

// ErrChecksum marks a shard (or chunk of one) whose bytes do not have the
// sha256 the manifest gives: none of its tensors is used.
var ErrChecksum = errors.New("checksum mismatch")

// Pack reads a pack through Files (a folder, HTTP range requests). It
// implements Source (Float32 dequantizes q8 and q4), RowReader (reading
// only the bytes of the rows asked for) and io.Closer; Raw and Stream give
// the stored bytes for GPU upload. A shard's bytes are used only after its
// sha256 (or, for a row read, the sha256 of the chunks read) matched the
// manifest. It keeps the last verified shard in memory, so reading tensors
// in pack order reads and hashes each shard once. A Pack is safe for
// concurrent use.
type Pack struct {
	name   string
	files  Files
	m      *PackManifest
	byName map[string]int // index into m.Tensors
	names  []string
	starts []int64 // stream offset of every shard, and the stream length

	mu   sync.Mutex
	srcs []RangeSource
	cur  int    // shard held in curB, or -1
	curB []byte // its verified bytes (a fresh slice per load: callers may keep subslices)
	sums [][]byte
}

// OpenPack reads and validates the manifest named manifest from files.
// Shards are opened when first needed.
func OpenPack(files Files, manifest string) (*Pack, error) {
	src, err := files.Open(manifest)
	if err != nil {
		return nil, fmt.Errorf("weights: pack %s: %w", manifest, err)
	}
	if c, ok := src.(io.Closer); ok {
		defer c.Close()
	}
	if src.Size() > maxManifest {
		return nil, fmt.Errorf("weights: pack %s: %w: manifest is %d bytes, more than %d", manifest, ErrFormat, src.Size(), maxManifest)
	}
	b := make([]byte, src.Size())
	if err := readFull(src, b, 0); err != nil {
		return nil, fmt.Errorf("weights: pack %s: reading manifest: %w", manifest, err)
	}
	m, err := ParseManifest(b)
	if err != nil {
		return nil, fmt.Errorf("weights: pack %s: %w", manifest, err)
	}
	p := &Pack{name: manifest, files: files, m: m, byName: map[string]int{}, starts: m.streamStarts(),
		srcs: make([]RangeSource, len(m.Shards)), sums: make([][]byte, len(m.Shards)), cur: -1}
	for i, t := range m.Tensors {
		p.byName[t.Name] = i
	}
	p.names = m.TensorNames()
	return p, nil
}

// String names the pack by its manifest.
func (p *Pack) String() string { return "pack " + p.name }

// Manifest returns the manifest (do not modify it).
func (p *Pack) Manifest() *PackManifest { return p.m }

// Close closes the shard files that were opened.
func (p *Pack) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for i, s := range p.srcs {
		if c, ok := s.(io.Closer); ok {
			errs = append(errs, c.Close())
		}
		p.srcs[i] = nil
	}
	p.cur, p.curB = -1, nil
	return errors.Join(errs...)
}

// Names implements Source.
func (p *Pack) Names() []string { return slices.Clone(p.names) }

// Tensor returns a tensor's manifest entry.
func (p *Pack) Tensor(name string) (PackTensor, bool) {
	i, ok := p.byName[name]
	if !ok {
		return PackTensor{}, false
	}
	t := p.m.Tensors[i]
	t.Shape = t.Shape.Clone()
	return t, true
}

// Info implements Source. q8 and q4 tensors report F32, what Float32
// gives; use Tensor for the stored dtype.
func (p *Pack) Info(name string) (Info, bool) {
	t, ok := p.Tensor(name)
	if !ok {
		return Info{}, false
	}
	dt := tensor.F32
	switch t.DType {
	case PackF16:
		dt = tensor.F16
	case PackBF16:
		dt = tensor.BF16
	}
	return Info{Name: name, DType: dt, Shape: t.Shape}, true
}

func (p *Pack) tensor(name string) (PackTensor, error) {
	t, ok := p.Tensor(name)
	if !ok {
		return PackTensor{}, fmt.Errorf("weights: %s: %w %q", p, ErrNotFound, name)
	}
	return t, nil
}

// Float32 implements Source.
func (p *Pack) Float32(name string) ([]float32, error) {
	t, err := p.tensor(name)
	if err != nil {
		return nil, err
	}
	b, err := p.readRange(t, 0, t.Length, false)
	if err != nil {
		return nil, err
	}
	out := make([]float32, t.Shape.Numel())
	decodeFloat32(t.DType, t.Shape, b, out)
	return out, nil
}

// Raw returns a tensor's stored bytes (its dtype's layout, see PackDType)
// for upload, and its manifest entry.
func (p *Pack) Raw(name string) ([]byte, PackTensor, error) {
	t, err := p.tensor(name)
	if err != nil {
		return nil, PackTensor{}, err
	}
	b, err := p.readRange(t, 0, t.Length, false)
	if err != nil {
		return nil, PackTensor{}, err
	}
	return bytes.Clone(b), t, nil
}

// Float32Rows implements RowReader: rows [row, row+n) along the first
// dimension, reading (by range, verified by chunk sums where the shard has
// them) only the bytes that hold those rows: for q8 and q4 their values
// and their scales.
func (p *Pack) Float32Rows(name string, row, n int) ([]float32, error) {
	t, err := p.tensor(name)
	if err != nil {
		return nil, err
	}
	rowLen, err := rowSpan(p.String(), name, t.Shape, row, n)
	if err != nil {
		return nil, err
	}
	out := make([]float32, n*rowLen)
	if n == 0 {
		return out, nil
	}
	e0, e1 := int64(row)*int64(rowLen), int64(row+n)*int64(rowLen)
	switch t.DType {
	case PackF32, PackF16, PackBF16:
		es := int64(4)
		if t.DType != PackF32 {
			es = 2
		}
		b, err := p.readRange(t, e0*es, e1*es, true)
		if err != nil {
			return nil, err
		}
		decodeFloat32(t.DType, tensor.Shape{len(out)}, b, out)
		return out, nil
	}
	l, _ := t.DType.Layout(t.Shape)
	r0, r1 := int(e0/int64(l.K)), int((e1+int64(l.K)-1)/int64(l.K))
	sub := l
	sub.Rows = r1 - r0
	ng0, ng1 := int64(r0)*int64(l.Groups), int64(r1)*int64(l.Groups)
	gb := groupBytes(t.DType)
	per := int64(4) // second-section bytes per group
	if t.DType == PackQ8 {
		per = 2
	}
	sub.Second = (ng1 - ng0) * gb
	buf := make([]byte, sub.Second+align4((ng1-ng0)*per))
	qs, err := p.readRange(t, ng0*gb, ng1*gb, true)
	if err != nil {
		return nil, err
	}
	sc, err := p.readRange(t, l.Second+ng0*per, l.Second+ng1*per, true)
	if err != nil {
		return nil, err
	}
	copy(buf, qs)
	copy(buf[sub.Second:], sc)
	skip := int(e0 - int64(r0)*int64(l.K))
	dequantRows(t.DType, sub, buf, 0, sub.Rows, func(i int, x float64) {
		if j := i - skip; j >= 0 && j < len(out) {
			out[j] = float32(x)
		}
	})
	return out, nil
}

// Stream calls fn for every tensor in the order of its bytes, reading each
// shard once, whole, and verifying it before any of its tensors is passed
// on: the upload path. data is valid only during the call. Host memory is
// one shard, plus one tensor for a tensor that spans shards.
func (p *Pack) Stream(fn func(t PackTensor, data []byte) error) error {
	order := make([]int, len(p.m.Tensors))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool {
		ta, tb := p.m.Tensors[order[a]], p.m.Tensors[order[b]]
		return p.starts[ta.Shard]+ta.Offset < p.starts[tb.Shard]+tb.Offset
	})
	for _, i := range order {
		t := p.m.Tensors[i]
		t.Shape = t.Shape.Clone()
		b, err := p.readRange(t, 0, t.Length, false)
		if err != nil {
			return err
		}
		if err := fn(t, b); err != nil {
			return err
		}
	}
	return nil
}

// readRange returns bytes [a, b) of tensor t. Without partial, every shard
// touched is read whole and verified; with partial, a shard with chunk sums
// is read and verified only over the chunks covering the range. The result
// may alias the held shard: do not modify it.
func (p *Pack) readRange(t PackTensor, a, b int64, partial bool) ([]byte, error) {
	start := p.starts[t.Shard] + t.Offset + a
	end := p.starts[t.Shard] + t.Offset + b
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []byte
	for i := t.Shard; i < len(p.m.Shards) && start < end; i++ {
		lo, hi := start-p.starts[i], min(end, p.starts[i+1])-p.starts[i]
		if lo >= hi || lo < 0 {
			continue
		}
		piece, err := p.shardRange(i, lo, hi, partial)
		if err != nil {
			return nil, fmt.Errorf("weights: %s: tensor %q: %w", p, t.Name, err)
		}
		if out == nil && start+int64(len(piece)) == end {
			return piece, nil // within one shard: no copy
		}
		out = append(out, piece...)
		start += int64(len(piece))
	}
	if int64(len(out)) != b-a {
		return nil, fmt.Errorf("weights: %s: tensor %q: read %d of %d bytes", p, t.Name, len(out), b-a)
	}
	return out, nil
}

// shardRange returns bytes [lo, hi) of shard i, verified. p.mu is held.
func (p *Pack) shardRange(i int, lo, hi int64, partial bool) ([]byte, error) {
	if p.cur == i {
		return p.curB[lo:hi], nil
	}
	s := p.m.Shards[i]
	if partial && s.ChunkSums != "" {
		return p.chunkRange(i, lo, hi)
	}
	src, err := p.source(i)
	if err != nil {
		return nil, err
	}
	// Read and hash in one pass, 1 MiB at a time.
	buf := make([]byte, s.Size)
	h := sha256.New()
	for off := int64(0); off < s.Size; off += readChunk {
		part := buf[off:min(off+readChunk, s.Size)]
		if err := readFull(src, part, off); err != nil {
			return nil, fmt.Errorf("shard %s: %w", s.File, err)
		}
		h.Write(part)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != s.SHA256 {
		p.cur, p.curB = -1, nil
		return nil, fmt.Errorf("shard %s: %w: sha256 %s, manifest says %s", s.File, ErrChecksum, got, s.SHA256)
	}
	p.cur, p.curB = i, buf
	return buf[lo:hi], nil
}

// chunkRange reads the chunks of shard i covering [lo, hi), checks each
// against the shard's chunk sums and returns the range. p.mu is held.
func (p *Pack) chunkRange(i int, lo, hi int64) ([]byte, error) {
	s := p.m.Shards[i]
	sums, err := p.chunkSums(i)
	if err != nil {
		return nil, err
	}
	src, err := p.source(i)
	if err != nil {
		return nil, err
	}
	c0, c1 := lo/s.ChunkSize, (hi+s.ChunkSize-1)/s.ChunkSize
	from, to := c0*s.ChunkSize, min(c1*s.ChunkSize, s.Size)
	buf := make([]byte, to-from)
	if err := readFull(src, buf, from); err != nil {
		return nil, fmt.Errorf("shard %s: %w", s.File, err)
	}
	for c := c0; c < c1; c++ {
		part := buf[c*s.ChunkSize-from : min((c+1)*s.ChunkSize, s.Size)-from]
		if got := sha256.Sum256(part); !bytes.Equal(got[:], sums[32*c:32*c+32]) {
			return nil, fmt.Errorf("shard %s: %w in chunk %d (bytes %d-%d)", s.File, ErrChecksum, c, c*s.ChunkSize, c*s.ChunkSize+int64(len(part))-1)
		}
	}
	return buf[lo-from : hi-from], nil
}

// chunkSums loads and verifies shard i's chunk-sum file. p.mu is held.
func (p *Pack) chunkSums(i int) ([]byte, error) {
	if p.sums[i] != nil {
		return p.sums[i], nil
	}
	s := p.m.Shards[i]
	n := (s.Size + s.ChunkSize - 1) / s.ChunkSize * 32
	src, err := p.files.Open(s.ChunkSums)
	if err != nil {
		return nil, fmt.Errorf("shard %s: chunk sums: %w", s.File, err)
	}
	if c, ok := src.(io.Closer); ok {
		defer c.Close()
	}
	if src.Size() != n {
		return nil, fmt.Errorf("shard %s: chunk sums %s: %w: %d bytes, want %d", s.File, s.ChunkSums, ErrFormat, src.Size(), n)
	}
	b := make([]byte, n)
	if err := readFull(src, b, 0); err != nil {
		return nil, fmt.Errorf("shard %s: chunk sums %s: %w", s.File, s.ChunkSums, err)
	}
	if got := sha256.Sum256(b); hex.EncodeToString(got[:]) != s.ChunkSumsSHA256 {
		return nil, fmt.Errorf("shard %s: chunk sums %s: %w", s.File, s.ChunkSums, ErrChecksum)
	}
	p.sums[i] = b
	return b, nil
}

// source opens shard i and checks its size. p.mu is held.
func (p *Pack) source(i int) (RangeSource, error) {
	if p.srcs[i] != nil {
		return p.srcs[i], nil
	}
	s := p.m.Shards[i]
	src, err := p.files.Open(s.File)
	if err != nil {
		return nil, fmt.Errorf("shard %s: %w", s.File, err)
	}
	if src.Size() != s.Size {
		if c, ok := src.(io.Closer); ok {
			c.Close()
		}
		return nil, fmt.Errorf("shard %s: %w: %d bytes, manifest says %d (truncated or replaced)", s.File, ErrFormat, src.Size(), s.Size)
	}
	p.srcs[i] = src
	return src, nil
}
