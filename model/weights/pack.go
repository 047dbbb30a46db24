package weights

import (
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"sort"

	"github.com/luminaweb/lumina/model/tensor"
)

// The pack format: a JSON manifest and shard files. The shards, read one
// after the other, form one byte stream; a tensor is the range [offset,
// offset+length) of it counted from the start of its shard, so a tensor
// longer than what is left of a shard (only one longer than the shard
// limit) continues at the start of the next shard. Every tensor starts at
// an offset that is a multiple of the manifest's alignment (256 by default:
// WebGPU's largest minStorageBufferOffsetAlignment, so a shard uploaded as
// one buffer can bind any tensor in it; never less than 4) and its length
// is a multiple of 4. Bytes between tensors are zero.
//
// Every shard carries its sha256, checked before any of its bytes is used.
// A shard holding part of a host-only tensor (one read by rows, never
// uploaded: Gemma's embedding table) also has a chunk-sum file: the
// 32-byte sha256 of each chunk_size bytes of the shard (the last chunk
// shorter), with that file's own sha256 in the manifest, so a few rows can
// be read and verified without the whole shard.
const (
	PackMagic   = "lumina-pack"
	PackVersion = 1

	// DefaultShardLimit and MaxShardLimit bound a shard's size: 64 MiB by
	// default, and never more than 128 MiB (WebGPU's default
	// maxStorageBufferBindingSize, and what lavapipe allows at most).
	DefaultShardLimit = 64 << 20
	MaxShardLimit     = 128 << 20

	// DefaultAlignment is the tensor alignment inside a shard.
	DefaultAlignment = 256

	// DefaultChunkSize is the chunk of a shard's chunk sums: a gathered row
	// costs at most two chunks of reading.
	DefaultChunkSize = 16 << 10

	// maxManifest bounds the manifest we read (a 2.6B model's is ~100 KB).
	maxManifest = 64 << 20
)

// PackManifest is the manifest of a pack.
type PackManifest struct {
	Magic        string           `json:"magic"`   // PackMagic
	Version      int              `json:"version"` // PackVersion
	Model        PackModel        `json:"model"`
	Alignment    int              `json:"alignment"`
	ShardLimit   int64            `json:"shard_limit"`
	Requirements PackRequirements `json:"requirements"`
	GPUBytes     int64            `json:"gpu_bytes"` // sum of the lengths of the tensors that are uploaded
	Shards       []PackShard      `json:"shards"`
	Tensors      []PackTensor     `json:"tensors"` // in the order of their bytes
}

// PackModel says what the pack holds: a network kind ("dit", "gemma",
// "vae", or a name of the writer's choosing) and its config as raw JSON.
type PackModel struct {
	Kind   string          `json:"kind"`
	Config json.RawMessage `json:"config,omitempty"`
}

// PackRequirements are the device limits and features loading the pack
// needs: the largest uploaded tensor must fit one storage binding and one
// buffer.
type PackRequirements struct {
	MaxStorageBufferBindingSize int64    `json:"max_storage_buffer_binding_size"`
	MaxBufferSize               int64    `json:"max_buffer_size"`
	Features                    []string `json:"features"`
}

// PackShard is one shard file.
type PackShard struct {
	File            string `json:"file"` // relative to the manifest
	Size            int64  `json:"size"`
	SHA256          string `json:"sha256"` // lowercase hex
	ChunkSize       int64  `json:"chunk_size,omitempty"`
	ChunkSums       string `json:"chunk_sums,omitempty"` // file of 32-byte chunk digests
	ChunkSumsSHA256 string `json:"chunk_sums_sha256,omitempty"`
}

// PackTensor is one tensor of a pack.
type PackTensor struct {
	Name     string       `json:"name"`
	Shape    tensor.Shape `json:"shape"`
	DType    PackDType    `json:"dtype"`
	Shard    int          `json:"shard"`
	Offset   int64        `json:"offset"` // in its shard
	Length   int64        `json:"length"`
	HostOnly bool         `json:"host_only,omitempty"` // read by rows, never uploaded
}

// ParseManifest decodes and validates a manifest: the magic and version,
// file names, sizes and hashes of the shards, and for every tensor its
// dtype, shape, length (which must be the dtype's for the shape), range
// (inside the shards, aligned, overlapping no other) and the declared
// requirements (at least what the tensors need).
func ParseManifest(b []byte) (*PackManifest, error) {
	var m PackManifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("weights: pack manifest: %w: %v", ErrFormat, err)
	}
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("weights: pack manifest: %w: %v", ErrFormat, err)
	}
	return &m, nil
}

func validHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func validFile(s string) bool {
	return s != "" && !path.IsAbs(s) && path.Clean(s) == s && s != "." && !hasDotDot(s)
}

func hasDotDot(s string) bool {
	for _, p := range splitSlash(s) {
		if p == ".." {
			return true
		}
	}
	return false
}

func splitSlash(s string) []string {
	var out []string
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != '/' && s[i] != '\\' {
			i++
		}
		out = append(out, s[:i])
		if i == len(s) {
			break
		}
		s = s[i+1:]
	}
	return out
}

func (m *PackManifest) validate() error {
	if m.Magic != PackMagic {
		return fmt.Errorf("magic is %q, not %q: not a lumina pack manifest", m.Magic, PackMagic)
	}
	if m.Version != PackVersion {
		return fmt.Errorf("version %d; this build reads version %d (repack with a matching lumina)", m.Version, PackVersion)
	}
	if m.Alignment < 4 || m.Alignment > 1<<16 || m.Alignment&(m.Alignment-1) != 0 {
		return fmt.Errorf("alignment %d is not a power of two in [4, 65536]", m.Alignment)
	}
	if m.ShardLimit <= 0 || m.ShardLimit > MaxShardLimit {
		return fmt.Errorf("shard_limit %d is not in (0, %d]", m.ShardLimit, MaxShardLimit)
	}
	files := map[string]bool{}
	starts := make([]int64, len(m.Shards)+1) // shard i spans [starts[i], starts[i+1]) of the stream
	for i, s := range m.Shards {
		if !validFile(s.File) || files[s.File] {
			return fmt.Errorf("shard %d: bad or repeated file name %q", i, s.File)
		}
		files[s.File] = true
		if s.Size <= 0 || s.Size > m.ShardLimit {
			return fmt.Errorf("shard %s: size %d is not in (0, %d]", s.File, s.Size, m.ShardLimit)
		}
		if !validHash(s.SHA256) {
			return fmt.Errorf("shard %s: sha256 %q is not 64 lowercase hex digits", s.File, s.SHA256)
		}
		if s.ChunkSums != "" || s.ChunkSize != 0 || s.ChunkSumsSHA256 != "" {
			if !validFile(s.ChunkSums) || files[s.ChunkSums] || !validHash(s.ChunkSumsSHA256) || s.ChunkSize < 4 || s.ChunkSize > MaxShardLimit {
				return fmt.Errorf("shard %s: bad chunk sums (file %q, chunk size %d, sha256 %q)", s.File, s.ChunkSums, s.ChunkSize, s.ChunkSumsSHA256)
			}
			files[s.ChunkSums] = true
		}
		starts[i+1] = starts[i] + s.Size
	}
	names := map[string]bool{}
	type span struct {
		name       string
		start, end int64
	}
	var spans []span
	var maxUp, gpu int64
	for _, t := range m.Tensors {
		if t.Name == "" || names[t.Name] {
			return fmt.Errorf("tensor name %q is empty or repeated", t.Name)
		}
		names[t.Name] = true
		if !t.DType.Valid() {
			return fmt.Errorf("tensor %q: unknown dtype %q", t.Name, t.DType)
		}
		want, err := PackedLength(t.DType, t.Shape)
		if err != nil {
			return fmt.Errorf("tensor %q: %v", t.Name, err)
		}
		if t.Length != want {
			return fmt.Errorf("tensor %q: %s %v takes %d bytes, length says %d", t.Name, t.DType, t.Shape, want, t.Length)
		}
		if t.Shard < 0 || t.Shard >= len(m.Shards) {
			return fmt.Errorf("tensor %q: shard %d does not exist (%d shards)", t.Name, t.Shard, len(m.Shards))
		}
		sh := m.Shards[t.Shard]
		if t.Offset < 0 || t.Offset%int64(m.Alignment) != 0 || t.Offset >= sh.Size {
			return fmt.Errorf("tensor %q: offset %d is outside shard %s (%d bytes) or not aligned to %d", t.Name, t.Offset, sh.File, sh.Size, m.Alignment)
		}
		start := starts[t.Shard] + t.Offset
		end := start + t.Length
		if end > starts[len(m.Shards)] {
			return fmt.Errorf("tensor %q: %d bytes at %s+%d run past the last shard", t.Name, t.Length, sh.File, t.Offset)
		}
		if t.Offset+t.Length > sh.Size && t.Length <= m.ShardLimit {
			return fmt.Errorf("tensor %q: %d bytes at %s+%d cross a shard boundary though they fit one shard", t.Name, t.Length, sh.File, t.Offset)
		}
		spans = append(spans, span{t.Name, start, end})
		if !t.HostOnly {
			maxUp = max(maxUp, t.Length)
			gpu += t.Length
		}
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].start < spans[j].start })
	for i := 1; i < len(spans); i++ {
		if spans[i].start < spans[i-1].end {
			return fmt.Errorf("tensors %q and %q overlap", spans[i-1].name, spans[i].name)
		}
	}
	r := m.Requirements
	if r.MaxStorageBufferBindingSize < maxUp || r.MaxBufferSize < maxUp {
		return fmt.Errorf("requirements declare binding %d / buffer %d bytes, but a tensor to upload has %d", r.MaxStorageBufferBindingSize, r.MaxBufferSize, maxUp)
	}
	if m.GPUBytes != gpu {
		return fmt.Errorf("gpu_bytes is %d, the tensors to upload total %d", m.GPUBytes, gpu)
	}
	return nil
}

// streamStarts returns the offset of every shard in the concatenated
// stream, and the stream's length last.
func (m *PackManifest) streamStarts() []int64 {
	starts := make([]int64, len(m.Shards)+1)
	for i, s := range m.Shards {
		starts[i+1] = starts[i] + s.Size
	}
	return starts
}

// TensorNames lists the tensors, sorted.
func (m *PackManifest) TensorNames() []string {
	out := make([]string, len(m.Tensors))
	for i, t := range m.Tensors {
		out[i] = t.Name
	}
	slices.Sort(out)
	return out
}
