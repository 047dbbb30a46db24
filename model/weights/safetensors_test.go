package weights

import (
	"bytes"
	"encoding/binary"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nlpodyssey/safetensors"

	"github.com/luminaweb/lumina/model/tensor"
)

func TestSafetensorsRead(t *testing.T) {
	big := 300_000 // F32 1.2 MB: several read chunks
	spiece := []byte("\x0a\x05hello sentencepiece")
	ts := []st{
		{name: "a.f32", dtype: "F32", shape: []int{3, 5}, data: encode("F32", gen("a", 15))},
		{name: "b.f16", dtype: "F16", shape: []int{7}, data: encode("F16", gen("b", 7))},
		{name: "c.bf16", dtype: "BF16", shape: []int{2, 3, 4}, data: encode("BF16", gen("c", 24))},
		{name: "spiece_model", dtype: "U8", shape: []int{len(spiece)}, data: spiece},
		{name: "big", dtype: "F32", shape: []int{big / 100, 100}, data: encode("F32", gen("big", big))},
		{name: "empty", dtype: "F32", shape: []int{0, 4}, data: []byte{}},
	}
	path := writeFile(t, filepath.Join(t.TempDir(), "x.safetensors"), build(ts, map[string]string{"format": "pt"}))
	f, err := OpenSafetensors(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got, want := f.Names(), []string{"a.f32", "b.f16", "big", "c.bf16", "empty"}; !slices.Equal(got, want) {
		t.Errorf("Names = %v, want %v (U8 left out)", got, want)
	}
	if len(f.Tensors()) != 6 || f.Metadata()["format"] != "pt" {
		t.Errorf("Tensors = %d entries, Metadata = %v", len(f.Tensors()), f.Metadata())
	}
	for _, c := range []struct {
		name  string
		dt    tensor.DType
		shape tensor.Shape
		key   string
	}{{"a.f32", tensor.F32, tensor.Shape{3, 5}, "a"}, {"b.f16", tensor.F16, tensor.Shape{7}, "b"}, {"c.bf16", tensor.BF16, tensor.Shape{2, 3, 4}, "c"}, {"big", tensor.F32, tensor.Shape{big / 100, 100}, "big"}} {
		info, ok := f.Info(c.name)
		if !ok || info.DType != c.dt || !info.Shape.Equal(c.shape) || info.Name != c.name {
			t.Errorf("Info(%q) = %+v %v", c.name, info, ok)
		}
		v, err := Expect(f, c.name, c.shape...)
		if err != nil {
			t.Fatal(err)
		}
		equalF32(t, c.name, v, gen(c.key, c.shape.Numel()))
		raw, rinfo, err := f.Raw(c.name)
		if err != nil || !bytes.Equal(raw, encode(stName(info.DType), v)) || rinfo.DType != c.dt {
			t.Errorf("Raw(%q): %d bytes, %+v, %v", c.name, len(raw), rinfo, err)
		}
	}
	rows, err := f.Float32Rows("big", 1234, 3)
	if err != nil {
		t.Fatal(err)
	}
	equalF32(t, "big rows", rows, gen("big", big)[123400:123700])
	if v, err := Rows(f, "c.bf16", 1, 1); err != nil || len(v) != 12 {
		t.Errorf("Rows(c.bf16, 1, 1) = %d values, %v", len(v), err)
	}
	if v, err := f.Float32("empty"); err != nil || len(v) != 0 {
		t.Errorf("empty: %v %v", v, err)
	}
	if b, err := f.Bytes("spiece_model"); err != nil || !bytes.Equal(b, spiece) {
		t.Errorf("Bytes(spiece_model) = %q, %v", b, err)
	}
	_, err = f.Float32("spiece_model")
	mustErr(t, err, nil, path, `"spiece_model"`, "U8")
	_, err = f.Float32("nope")
	mustErr(t, err, ErrNotFound, path, `"nope"`)
	_, err = Expect(f, "a.f32", 5, 3)
	mustErr(t, err, nil, `"a.f32"`, "[3,5]", "[5,3]")
	_, err = f.Float32Rows("a.f32", 2, 2)
	mustErr(t, err, nil, path, `"a.f32"`, "out of range")
}

func TestSafetensorsInterop(t *testing.T) {
	// A file written by the safetensors library itself.
	v := gen("w", 6)
	tv, err := safetensors.NewTensorView(safetensors.F32, []uint64{2, 3}, encode("F32", v))
	if err != nil {
		t.Fatal(err)
	}
	tv16, err := safetensors.NewTensorView(safetensors.BF16, []uint64{4}, encode("BF16", gen("u", 4)))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := safetensors.Serialize(map[string]safetensors.TensorView{"w": tv, "u": tv16}, map[string]string{"k": "v"})
	if err != nil {
		t.Fatal(err)
	}
	f, err := NewSafetensors(bytes.NewReader(raw), int64(len(raw)), "lib")
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.Float32("w")
	if err != nil {
		t.Fatal(err)
	}
	equalF32(t, "w", got, v)
	got, _ = f.Float32("u")
	equalF32(t, "u", got, gen("u", 4))
	// And our test writer's output is readable by the library.
	if _, err := safetensors.Deserialize(build([]st{{name: "x", dtype: "F16", shape: []int{3}}}, nil)); err != nil {
		t.Fatal(err)
	}
}

// rawHeader makes a file from a literal JSON header and n data bytes.
func rawHeader(js string, n int) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(js)))
	return append(append(b, js...), make([]byte, n)...)
}

func TestSafetensorsErrors(t *testing.T) {
	good := build([]st{
		{name: "a", dtype: "F32", shape: []int{2, 2}},
		{name: "b", dtype: "F16", shape: []int{4}},
	}, nil)
	hugeLen := binary.LittleEndian.AppendUint64(nil, 1<<40)
	beyond := binary.LittleEndian.AppendUint64(nil, uint64(len(good)))
	for _, c := range []struct {
		name  string
		file  []byte
		parts []string
	}{
		{"empty file", nil, []string{"shorter than"}},
		{"short length", []byte{1, 2, 3}, []string{"shorter than"}},
		{"truncated data", good[:len(good)-3], []string{`"b"`, "runs past"}},
		{"truncated header", good[:20], []string{"runs past the end"}},
		{"header length beyond the file", append(beyond, good[8:]...), []string{"runs past the end"}},
		{"huge header length", append(hugeLen, good[8:]...), []string{"exceeds the limit"}},
		{"bad json", rawHeader(`{"a":{"dtype":"F32",`, 0), []string{"header"}},
		{"not an object", rawHeader(`[1,2]`, 0), []string{"header"}},
		{"bad dtype", rawHeader(`{"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}}`, 16), []string{`"ids"`, "I64"}},
		{"unknown dtype", rawHeader(`{"q":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}}`, 2), []string{`"q"`, "F8_E4M3"}},
		{"shape mismatch", rawHeader(`{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, 8), []string{`"w"`, "needs 12 bytes"}},
		{"reversed offsets", rawHeader(`{"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}`, 8), []string{`"w"`, "reversed"}},
		{"overlap", rawHeader(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F16","shape":[4],"data_offsets":[8,16]}}`, 16), []string{`"a"`, `"b"`, "overlap"}},
		{"shape overflow", rawHeader(`{"w":{"dtype":"F32","shape":[2147483647,2147483647,2147483647],"data_offsets":[0,8]}}`, 8), []string{`"w"`, "overflows"}},
		{"dimension too large", rawHeader(`{"w":{"dtype":"F32","shape":[0,4294967296],"data_offsets":[0,0]}}`, 0), []string{`"w"`, "too large"}},
		{"negative dimension", rawHeader(`{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}`, 0), []string{"header"}},
		{"extra key", rawHeader(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}}`, 4), []string{"header"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := NewSafetensors(bytes.NewReader(c.file), int64(len(c.file)), "bad.safetensors")
			mustErr(t, err, ErrFormat, append([]string{"bad.safetensors"}, c.parts...)...)
		})
	}
	// A reader that fails says so, with the file's name.
	_, err := NewSafetensors(failing{}, 100, "net.safetensors")
	mustErr(t, err, nil, "net.safetensors", "boom")
	// A tensor whose bytes cannot be read at load time names the tensor.
	f, err := NewSafetensors(&shortRead{bytes.NewReader(good), int64(len(good)) - 3}, int64(len(good)), "cut.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Float32("b")
	mustErr(t, err, nil, "cut.safetensors", `"b"`)
	_, err = OpenSafetensors(filepath.Join(t.TempDir(), "none.safetensors"))
	mustErr(t, err, nil, "none.safetensors")
}

type failing struct{}

func (failing) ReadAt([]byte, int64) (int, error) { return 0, errors.New("boom") }

// shortRead serves bytes only below limit, as a file truncated after it was
// opened would.
type shortRead struct {
	r     *bytes.Reader
	limit int64
}

func (s *shortRead) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > s.limit {
		p = p[:max(0, s.limit-off)]
	}
	n, err := s.r.ReadAt(p, off)
	if err == nil && off+int64(len(p)) >= s.limit {
		err = errors.New("short")
	}
	return n, err
}

// FuzzSafetensors feeds arbitrary bytes to the header parser: a file must
// open or fail with an error, never panic, and an opened file's tensors
// must read back with the element counts their shapes give.
//
//	go test -run=- -fuzz=FuzzSafetensors -fuzztime=30s ./model/weights
func FuzzSafetensors(f *testing.F) {
	f.Add(build([]st{{name: "a", dtype: "F32", shape: []int{2, 2}}, {name: "b", dtype: "BF16", shape: []int{3}}}, nil))
	f.Add(build([]st{{name: "spiece_model", dtype: "U8", shape: []int{5}}, {name: "h", dtype: "F16", shape: []int{1, 1, 2}}}, map[string]string{"format": "pt"}))
	f.Add(build([]st{{name: "e", dtype: "F32", shape: []int{0}}, {name: "s", dtype: "F32", shape: nil}}, nil))
	f.Add(rawHeader(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F16","shape":[4],"data_offsets":[8,16]}}`, 16))
	f.Add(rawHeader(`{"w":{"dtype":"F32","shape":[2147483647,2147483647,2147483647],"data_offsets":[0,8]}}`, 8))
	f.Add(rawHeader(`{"__metadata__":{"k":"v"}}`, 0))
	f.Add(rawHeader(`null`, 0))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := NewSafetensors(bytes.NewReader(b), int64(len(b)), "fuzz")
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		for _, e := range file.Tensors() {
			raw, err := file.Bytes(e.Name)
			if err != nil || int64(len(raw)) != e.Size || e.Offset+e.Size > int64(len(b)) {
				t.Fatalf("%q: %d bytes of %d at %d, %v", e.Name, len(raw), e.Size, e.Offset, err)
			}
		}
		for _, name := range file.Names() {
			info, _ := file.Info(name)
			v, err := file.Float32(name)
			if err != nil || len(v) != info.Shape.Numel() {
				t.Fatalf("%q: %d values for %v, %v", name, len(v), info.Shape, err)
			}
		}
	})
}

// stName names a dtype the way safetensors headers do.
func stName(d tensor.DType) string {
	return map[tensor.DType]string{tensor.F32: "F32", tensor.F16: "F16", tensor.BF16: "BF16"}[d]
}
