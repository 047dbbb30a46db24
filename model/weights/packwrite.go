package weights

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/luminaweb/lumina/model/tensor"
)

// PackOptions configure a PackWriter. Zero values take the defaults.
type PackOptions struct {
	Kind       string          // model kind recorded in the manifest ("dit", "gemma", "vae")
	Config     json.RawMessage // the model's config, recorded as is
	ShardLimit int64           // bytes per shard at most: DefaultShardLimit; never above MaxShardLimit
	Alignment  int             // tensor alignment in a shard: DefaultAlignment; a power of two ≥ 4
	ChunkSize  int64           // chunk of the chunk sums: DefaultChunkSize
	Prefix     string          // shard file names: Prefix + "-00000.bin"; "shard" by default
	Features   []string        // WebGPU features loading the pack needs (none for our dtypes)
	HostOnly   []string        // tensors read by rows on the host and never uploaded (embedding tables)
}

// PackWriter writes a pack one tensor at a time: each tensor is encoded
// and copied into the current shard buffer, which is written out and
// hashed when full. It holds at most one shard buffer and the tensor being
// added. Finish writes the manifest.
type PackWriter struct {
	create  func(name string) (io.WriteCloser, error)
	opts    PackOptions
	host    map[string]bool
	buf     []byte // the shard being filled
	hostBuf bool   // buf holds host-only bytes: write chunk sums
	m       PackManifest
	names   map[string]bool
	done    bool
	err     error // sticky: a failed write ends the pack
}

// NewPackWriter writes a pack into the folder dir (created if needed).
func NewPackWriter(dir string, opts PackOptions) (*PackWriter, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("weights: %w", err)
	}
	return NewPackWriterTo(func(name string) (io.WriteCloser, error) {
		return os.Create(filepath.Join(dir, filepath.FromSlash(name)))
	}, opts)
}

// NewPackWriterTo writes a pack through create, which makes one file of
// the pack (a shard, a chunk-sum file, the manifest) by name.
func NewPackWriterTo(create func(name string) (io.WriteCloser, error), opts PackOptions) (*PackWriter, error) {
	if opts.ShardLimit == 0 {
		opts.ShardLimit = DefaultShardLimit
	}
	if opts.Alignment == 0 {
		opts.Alignment = DefaultAlignment
	}
	if opts.ChunkSize == 0 {
		opts.ChunkSize = DefaultChunkSize
	}
	if opts.Prefix == "" {
		opts.Prefix = "shard"
	}
	switch {
	case opts.ShardLimit < 0 || opts.ShardLimit > MaxShardLimit:
		return nil, fmt.Errorf("weights: shard limit %d is not in (0, %d]", opts.ShardLimit, MaxShardLimit)
	case opts.Alignment < 4 || opts.Alignment > 1<<16 || opts.Alignment&(opts.Alignment-1) != 0:
		return nil, fmt.Errorf("weights: alignment %d is not a power of two in [4, 65536]", opts.Alignment)
	case opts.ShardLimit%int64(opts.Alignment) != 0:
		return nil, fmt.Errorf("weights: shard limit %d is not a multiple of the alignment %d", opts.ShardLimit, opts.Alignment)
	case opts.ChunkSize < 4 || opts.ChunkSize > MaxShardLimit:
		return nil, fmt.Errorf("weights: chunk size %d is not in [4, %d]", opts.ChunkSize, MaxShardLimit)
	case !validFile(opts.Prefix + "-00000.bin"):
		return nil, fmt.Errorf("weights: bad shard prefix %q", opts.Prefix)
	}
	w := &PackWriter{create: create, opts: opts, host: map[string]bool{}, names: map[string]bool{}}
	for _, n := range opts.HostOnly {
		w.host[n] = true
	}
	w.m = PackManifest{
		Magic: PackMagic, Version: PackVersion,
		Model:      PackModel{Kind: opts.Kind, Config: opts.Config},
		Alignment:  opts.Alignment,
		ShardLimit: opts.ShardLimit,
		Requirements: PackRequirements{
			Features: append([]string{}, opts.Features...),
		},
		Shards:  []PackShard{},
		Tensors: []PackTensor{},
	}
	return w, nil
}

// Add encodes a tensor's float32 values as dtype and appends it.
func (w *PackWriter) Add(name string, shape tensor.Shape, dtype PackDType, v []float32) error {
	b, err := Encode(dtype, shape, v)
	if err != nil {
		return fmt.Errorf("weights: packing %q as %s: %w", name, dtype, err)
	}
	return w.AddEncoded(name, shape, dtype, b)
}

// AddEncoded appends a tensor already in dtype's layout (Encode's output,
// a GGUF repack, f16 bytes copied from a checkpoint).
func (w *PackWriter) AddEncoded(name string, shape tensor.Shape, dtype PackDType, b []byte) error {
	if w.err != nil {
		return w.err
	}
	if w.done {
		return errors.New("weights: pack writer is finished")
	}
	if name == "" || w.names[name] {
		return fmt.Errorf("weights: pack tensor name %q is empty or repeated", name)
	}
	want, err := PackedLength(dtype, shape)
	if err != nil {
		return fmt.Errorf("weights: packing %q: %w", name, err)
	}
	if int64(len(b)) != want {
		return fmt.Errorf("weights: packing %q: %s %v takes %d bytes, got %d", name, dtype, shape, want, len(b))
	}
	w.names[name] = true
	// Host-only tensors (embedding tables read by rows) never share a
	// shard with uploaded ones: a loader verifies a whole shard before it
	// uploads from it, and must not have to fetch a table to do so.
	if len(w.buf) > 0 && w.hostBuf != w.host[name] {
		if err := w.flush(); err != nil {
			return err
		}
	}
	limit := w.opts.ShardLimit
	length := int64(len(b))
	pos := (int64(len(w.buf)) + int64(w.opts.Alignment) - 1) &^ (int64(w.opts.Alignment) - 1)
	if len(w.buf) > 0 && (pos >= limit || (pos+length > limit && length <= limit)) {
		if err := w.flush(); err != nil {
			return err
		}
		pos = 0
	}
	w.grow(pos)
	t := PackTensor{Name: name, Shape: shape.Clone(), DType: dtype, Shard: len(w.m.Shards), Offset: pos, Length: length, HostOnly: w.host[name]}
	for len(b) > 0 {
		k := min(limit-int64(len(w.buf)), int64(len(b)))
		n := len(w.buf)
		w.grow(int64(n) + k)
		copy(w.buf[n:], b[:k])
		b = b[k:]
		w.hostBuf = w.hostBuf || t.HostOnly
		if len(b) > 0 {
			if err := w.flush(); err != nil {
				return err
			}
		}
	}
	w.m.Tensors = append(w.m.Tensors, t)
	if !t.HostOnly {
		r := &w.m.Requirements
		r.MaxStorageBufferBindingSize = max(r.MaxStorageBufferBindingSize, length)
		r.MaxBufferSize = max(r.MaxBufferSize, length)
		w.m.GPUBytes += length
	}
	return nil
}

// grow extends the shard buffer to n bytes (zeros), never reserving more
// than the shard limit.
func (w *PackWriter) grow(n int64) {
	if n <= int64(len(w.buf)) {
		return
	}
	if n > int64(cap(w.buf)) {
		c := min(w.opts.ShardLimit, max(n, 2*int64(cap(w.buf))))
		nb := make([]byte, len(w.buf), c)
		copy(nb, w.buf)
		w.buf = nb
	}
	old := len(w.buf)
	w.buf = w.buf[:n]
	clear(w.buf[old:])
}

// flush writes the shard buffer as the next shard.
func (w *PackWriter) flush() error {
	i := len(w.m.Shards)
	s := PackShard{File: fmt.Sprintf("%s-%05d.bin", w.opts.Prefix, i), Size: int64(len(w.buf))}
	sum := sha256.Sum256(w.buf)
	s.SHA256 = hex.EncodeToString(sum[:])
	if err := w.write(s.File, w.buf); err != nil {
		return err
	}
	if w.hostBuf {
		var sums []byte
		for off := int64(0); off < s.Size; off += w.opts.ChunkSize {
			c := sha256.Sum256(w.buf[off:min(off+w.opts.ChunkSize, s.Size)])
			sums = append(sums, c[:]...)
		}
		s.ChunkSize = w.opts.ChunkSize
		s.ChunkSums = fmt.Sprintf("%s-%05d.sums", w.opts.Prefix, i)
		h := sha256.Sum256(sums)
		s.ChunkSumsSHA256 = hex.EncodeToString(h[:])
		if err := w.write(s.ChunkSums, sums); err != nil {
			return err
		}
	}
	w.m.Shards = append(w.m.Shards, s)
	w.buf = w.buf[:0]
	w.hostBuf = false
	return nil
}

func (w *PackWriter) write(name string, b []byte) error {
	f, err := w.create(name)
	if err == nil {
		_, err = f.Write(b)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		w.err = fmt.Errorf("weights: writing %s: %w", name, err)
	}
	return w.err
}

// Finish writes the last shard and the manifest (as manifestName) and
// returns the manifest. It checks the manifest as a reader would.
func (w *PackWriter) Finish(manifestName string) (*PackManifest, error) {
	if w.err != nil {
		return nil, w.err
	}
	if w.done {
		return nil, errors.New("weights: pack writer is finished")
	}
	if !validFile(manifestName) {
		return nil, fmt.Errorf("weights: bad manifest name %q", manifestName)
	}
	w.done = true
	if len(w.buf) > 0 {
		if err := w.flush(); err != nil {
			return nil, err
		}
	}
	for _, n := range w.opts.HostOnly {
		if !w.names[n] {
			return nil, fmt.Errorf("weights: host-only tensor %q was never added", n)
		}
	}
	b, err := json.MarshalIndent(&w.m, "", " ")
	if err != nil {
		return nil, fmt.Errorf("weights: %w", err)
	}
	m, err := ParseManifest(b)
	if err != nil {
		return nil, fmt.Errorf("weights: the manifest written is invalid: %w", err)
	}
	if err := w.write(manifestName, append(b, '\n')); err != nil {
		return nil, err
	}
	m.Tensors = slices.Clip(m.Tensors)
	return m, nil
}
