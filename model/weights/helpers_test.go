package weights

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/luminaweb/lumina/model/tensor"
)

// st is one tensor of a synthetic safetensors file. data nil means zeros.
type st struct {
	name  string
	dtype string
	shape []int
	data  []byte
}

func elemSize(dtype string) int {
	switch dtype {
	case "F32":
		return 4
	case "F16", "BF16":
		return 2
	}
	return 1
}

func (t st) nbytes() int64 { return int64(tensor.Shape(t.shape).Numel() * elemSize(t.dtype)) }

// header builds the 8-byte length and the JSON header the way the
// safetensors library writes it (compact, tensors in the given order,
// fields dtype, shape, data_offsets; padded with spaces to a multiple of
// 8), and returns it with the size of the data section.
func header(ts []st, meta map[string]string) ([]byte, int64) {
	var b strings.Builder
	b.WriteByte('{')
	if meta != nil {
		m, _ := json.Marshal(meta)
		fmt.Fprintf(&b, `"__metadata__":%s`, m)
	}
	var off int64
	for i, t := range ts {
		if i > 0 || meta != nil {
			b.WriteByte(',')
		}
		shape, _ := json.Marshal(t.shape)
		if t.shape == nil {
			shape = []byte("[]")
		}
		n := t.nbytes()
		fmt.Fprintf(&b, `%q:{"dtype":%q,"shape":%s,"data_offsets":[%d,%d]}`, t.name, t.dtype, shape, off, off+n)
		off += n
	}
	b.WriteByte('}')
	for b.Len()%8 != 0 {
		b.WriteByte(' ')
	}
	out := binary.LittleEndian.AppendUint64(nil, uint64(b.Len()))
	return append(out, b.String()...), off
}

// build returns a whole small file.
func build(ts []st, meta map[string]string) []byte {
	out, _ := header(ts, meta)
	for _, t := range ts {
		if t.data != nil {
			out = append(out, t.data...)
		} else {
			out = append(out, make([]byte, t.nbytes())...)
		}
	}
	return out
}

func writeFile(t testing.TB, path string, b []byte) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// virtual is a safetensors file of any size held as its header only: the
// data reads as zeros (a file with holes, without the disk).
type virtual struct {
	hdr  []byte
	size int64
}

func newVirtual(ts []st) *virtual {
	h, n := header(ts, nil)
	return &virtual{hdr: h, size: int64(len(h)) + n}
}

func (v *virtual) ReadAt(p []byte, off int64) (int, error) {
	if off >= v.size {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && off+int64(n) < v.size {
		if o := off + int64(n); o < int64(len(v.hdr)) {
			p[n] = v.hdr[o]
		} else {
			p[n] = 0
		}
		n++
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// gen returns deterministic values for a tensor, exact in F16 and BF16
// (multiples of 1/8 in [-15, 15]), different for every name.
func gen(name string, n int) []float32 {
	h := fnv.New32a()
	h.Write([]byte(name))
	s := h.Sum32()
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(int((s+uint32(i)*2654435761)>>8%241)-120) / 8
	}
	return v
}

func encode(dtype string, v []float32) []byte {
	var b []byte
	for _, x := range v {
		switch dtype {
		case "F32":
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
		case "F16":
			b = binary.LittleEndian.AppendUint16(b, tensor.F32ToF16(x))
		case "BF16":
			b = binary.LittleEndian.AppendUint16(b, tensor.F32ToBF16(x))
		}
	}
	return b
}

// withData fills every float tensor with gen(key(name)) values.
func withData(ts []st, key func(string) string) []st {
	out := make([]st, len(ts))
	for i, t := range ts {
		t.shape = append([]int(nil), t.shape...)
		if t.dtype != "U8" {
			t.data = encode(t.dtype, gen(key(t.name), tensor.Shape(t.shape).Numel()))
		}
		out[i] = t
	}
	return out
}

// layoutDir finds ../shared/testdata/hf-layout above the package.
func layoutDir(t testing.TB) string {
	t.Helper()
	wd, _ := os.Getwd()
	for d := wd; ; d = filepath.Dir(d) {
		p := filepath.Join(d, "..", "shared", "testdata", "hf-layout")
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			return p
		}
		if filepath.Dir(d) == d {
			t.Skip("no ../shared/testdata/hf-layout above " + wd)
		}
	}
}

// manifestFile is one file of a manifest in hf-layout/manifests.
type manifestFile struct {
	File    string
	Tensors []st
}

func loadManifest(t testing.TB, name string) []manifestFile {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(layoutDir(t), "manifests", name))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Files []struct {
			File    string              `json:"file"`
			Count   int                 `json:"tensor_count"`
			Tensors [][]json.RawMessage `json:"tensors"`
		} `json:"files"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	var out []manifestFile
	for _, f := range m.Files {
		mf := manifestFile{File: f.File}
		for _, row := range f.Tensors {
			var s st
			if len(row) != 3 || json.Unmarshal(row[0], &s.name) != nil || json.Unmarshal(row[1], &s.dtype) != nil || json.Unmarshal(row[2], &s.shape) != nil {
				t.Fatalf("%s: bad row %s", name, row)
			}
			mf.Tensors = append(mf.Tensors, s)
		}
		if len(mf.Tensors) != f.Count {
			t.Fatalf("%s/%s: %d tensors, tensor_count %d", name, f.File, len(mf.Tensors), f.Count)
		}
		out = append(out, mf)
	}
	return out
}

func manifestFileNamed(t testing.TB, files []manifestFile, name string) []st {
	t.Helper()
	for _, f := range files {
		if f.File == name {
			return f.Tensors
		}
	}
	t.Fatalf("no %s in manifest", name)
	return nil
}

// scaled shrinks every dimension through dims (a consistent map, so that
// e.g. qkv rows stay q+k+v); an unmapped dimension fails the test.
func scaled(t testing.TB, ts []st, dims map[int]int) []st {
	t.Helper()
	out := make([]st, len(ts))
	for i, s := range ts {
		shape := make([]int, len(s.shape))
		for j, d := range s.shape {
			small, ok := dims[d]
			if !ok {
				t.Fatalf("%s: no small stand-in for dimension %d", s.name, d)
			}
			shape[j] = small
		}
		s.shape = shape
		out[i] = s
	}
	return out
}

// Stand-in sizes: Next-DiT D 2304→24, q/k/v 2304/768/768→24/8/8 (qkv
// 3840→40), head dim 96→4, FFN 9216→32, adaLN 1024→16, t freq 256→8,
// patch features 64→16; Gemma vocab 256000→40, q width 2048→16, kv
// 1024→8, SentencePiece 4241003→100 bytes; VAE channels 512/256/128→16/8/4,
// latent 16→2 (encoder out 32→4), kernel sizes kept.
var (
	ditDims   = map[int]int{2304: 24, 64: 16, 1024: 16, 256: 8, 3840: 40, 768: 8, 96: 4, 9216: 32}
	gemmaDims = map[int]int{256000: 40, 2304: 24, 2048: 16, 1024: 8, 9216: 32, 4241003: 100}
	vaeDims   = map[int]int{512: 16, 256: 8, 128: 4, 32: 4, 16: 2, 3: 3, 1: 1}
)

func mustErr(t testing.TB, err error, target error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", parts)
	}
	if target != nil && !errors.Is(err, target) {
		t.Errorf("error %q is not %v", err, target)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not mention %q", err, p)
		}
	}
}

func equalF32(t testing.TB, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: [%d] = %v, want %v", what, i, got[i], want[i])
		}
	}
}
