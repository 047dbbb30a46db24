package weights

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/luminaweb/lumina/model/tensor"
)

// pt is one tensor of a test pack.
type pt struct {
	name  string
	dtype PackDType
	shape tensor.Shape
	v     []float32
}

func testTensors(rng *rand.Rand) []pt {
	ts := []pt{
		{"x_embedder.weight", PackQ8, tensor.Shape{24, 64}, nil},
		{"x_embedder.bias", PackF32, tensor.Shape{24}, nil},
		{"layers.0.attention.qkv.weight", PackQ4, tensor.Shape{40, 45}, nil}, // K not a multiple of 32
		{"layers.0.attention_norm1.weight", PackF16, tensor.Shape{7}, nil},   // odd: padded half
		{"layers.0.feed_forward.w2.weight", PackBF16, tensor.Shape{24, 33}, nil},
		{"big.weight", PackF16, tensor.Shape{48, 256}, nil},         // 24 KiB: longer than the 16 KiB shard limit
		{"embed_tokens.weight", PackQ8, tensor.Shape{200, 64}, nil}, // host-only, spans shards
		{"layers.0.feed_forward.w1.weight", PackQ4, tensor.Shape{32, 64}, nil},
		{"scalar", PackF32, tensor.Shape{}, nil},
		{"vector.q8", PackQ8, tensor.Shape{45}, nil}, // 1-D quantized: rows are elements
		{"vector.q4", PackQ4, tensor.Shape{70}, nil},
	}
	for i := range ts {
		ts[i].v = randt(rng, ts[i].shape.Numel(), 0.05)
	}
	return ts
}

func writeTestPack(t testing.TB, dir string, ts []pt, opts PackOptions) *PackManifest {
	t.Helper()
	w, err := NewPackWriter(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range ts {
		if err := w.Add(x.name, x.shape, x.dtype, x.v); err != nil {
			t.Fatal(err)
		}
	}
	m, err := w.Finish("manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

var smallPack = PackOptions{Kind: "dit", Config: json.RawMessage(`{"dim":24}`), ShardLimit: 16 << 10, ChunkSize: 1 << 10, HostOnly: []string{"embed_tokens.weight"}}

// Write → read gives back exactly the encoded tensors, through Float32,
// Raw, Float32Rows and Stream; shards respect the limit; tensors are
// aligned; the declared requirements and GPU bytes are right.
func TestPackRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	ts := testTensors(rng)
	dir := t.TempDir()
	m := writeTestPack(t, dir, ts, smallPack)
	if len(m.Shards) < 3 {
		t.Fatalf("%d shards, expected the 16 KiB limit to make several", len(m.Shards))
	}
	for _, s := range m.Shards {
		st, err := os.Stat(filepath.Join(dir, s.File))
		if err != nil || st.Size() != s.Size || s.Size > smallPack.ShardLimit {
			t.Errorf("shard %s: %v, size %d (limit %d)", s.File, err, s.Size, smallPack.ShardLimit)
		}
	}
	var maxUp, gpu int64
	for _, x := range m.Tensors {
		if x.Offset%DefaultAlignment != 0 || x.Length%4 != 0 {
			t.Errorf("%s: offset %d, length %d", x.Name, x.Offset, x.Length)
		}
		if !x.HostOnly {
			maxUp, gpu = max(maxUp, x.Length), gpu+x.Length
		}
	}
	if m.Requirements.MaxStorageBufferBindingSize != maxUp || m.Requirements.MaxBufferSize != maxUp || m.GPUBytes != gpu || m.Model.Kind != "dit" || compact(m.Model.Config) != `{"dim":24}` {
		t.Errorf("manifest header %+v %+v", m.Requirements, m.Model)
	}
	p, err := OpenPack(&Dir{Path: dir}, "manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if got := strings.Join(p.Names(), ","); got != strings.Join(m.TensorNames(), ",") {
		t.Fatalf("names %s", got)
	}
	for _, x := range ts {
		enc, _ := Encode(x.dtype, x.shape, x.v)
		want := make([]float32, x.shape.Numel())
		decodeFloat32(x.dtype, x.shape, enc, want)
		got, err := p.Float32(x.name)
		if err != nil {
			t.Fatal(err)
		}
		equalF32(t, x.name, got, want)
		raw, pt, err := p.Raw(x.name)
		if err != nil || !bytes.Equal(raw, enc) || pt.DType != x.dtype {
			t.Fatalf("Raw(%s): %v, %s, equal %v", x.name, err, pt.DType, bytes.Equal(raw, enc))
		}
		if info, _ := p.Info(x.name); !info.Shape.Equal(x.shape) {
			t.Errorf("Info(%s) %v", x.name, info)
		}
		if len(x.shape) > 0 {
			n := x.shape[0]
			rowLen := x.shape[1:].Numel()
			for _, r := range [][2]int{{0, 1}, {n - 1, 1}, {n / 3, n / 2}, {0, n}, {1, 0}} {
				got, err := p.Float32Rows(x.name, r[0], r[1])
				if err != nil {
					t.Fatal(err)
				}
				equalF32(t, fmt.Sprintf("%s rows %v", x.name, r), got, want[r[0]*rowLen:(r[0]+r[1])*rowLen])
			}
		}
	}
	_, err = p.Float32Rows("x_embedder.weight", 20, 5)
	mustErr(t, err, nil, "out of range")
	_, err = p.Float32("absent.weight")
	mustErr(t, err, ErrNotFound, "manifest.json", `"absent.weight"`)
	// Stream: every tensor once, in byte order, equal to its encoding.
	var seen []string
	err = p.Stream(func(pt PackTensor, data []byte) error {
		seen = append(seen, pt.Name)
		for _, x := range ts {
			if x.name == pt.Name {
				enc, _ := Encode(x.dtype, x.shape, x.v)
				if !bytes.Equal(enc, data) {
					t.Errorf("Stream %s differs", pt.Name)
				}
			}
		}
		return nil
	})
	if err != nil || len(seen) != len(ts) || seen[0] != ts[0].name || seen[len(seen)-1] != ts[len(ts)-1].name {
		t.Fatalf("Stream: %v, %v", err, seen)
	}
	// A pack is a Source the canonical mapping accepts.
	d, err := DetectDiT(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Expect(d, "layers.0.attention.qkv.weight", 40, 45); err != nil {
		t.Fatal(err)
	}
}

// Streaming a pack over a folder reads every shard once.
func TestPackStreamReadsOnce(t *testing.T) {
	dir := t.TempDir()
	m := writeTestPack(t, dir, testTensors(rand.New(rand.NewPCG(1, 1))), smallPack)
	files := &Dir{Path: dir}
	p, err := OpenPack(files, "manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	before := files.BytesRead()
	if err := p.Stream(func(PackTensor, []byte) error { return nil }); err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, s := range m.Shards {
		total += s.Size
	}
	if got := files.BytesRead() - before; got != total {
		t.Errorf("Stream read %d bytes, the shards hold %d", got, total)
	}
}

func TestPackWriterLimits(t *testing.T) {
	for _, o := range []PackOptions{
		{ShardLimit: MaxShardLimit + 256},
		{ShardLimit: -1},
		{Alignment: 6},
		{Alignment: 2},
		{ShardLimit: 1000}, // not a multiple of the alignment
		{Prefix: "../x"},
	} {
		if _, err := NewPackWriterTo(nil, o); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
	w, err := NewPackWriter(t.TempDir(), PackOptions{ShardLimit: 1024, Alignment: 4})
	if err != nil {
		t.Fatal(err)
	}
	mustErr(t, w.AddEncoded("a", tensor.Shape{4}, PackF32, make([]byte, 12)), nil, "takes 16 bytes")
	if err := w.Add("a", tensor.Shape{300}, PackF32, make([]float32, 300)); err != nil { // 1200 B: spans two shards
		t.Fatal(err)
	}
	mustErr(t, w.Add("a", tensor.Shape{1}, PackF32, []float32{1}), nil, "repeated")
	mustErr(t, w.Add("b", tensor.Shape{1}, PackQ8, []float32{float32(nan())}), nil, `"b"`)
	if err := w.Add("c", tensor.Shape{3}, PackF16, []float32{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	m, err := w.Finish("m.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Shards) != 2 || m.Shards[0].Size != 1024 || m.Tensors[1].Shard != 1 || m.Tensors[1].Offset != 176 {
		t.Errorf("manifest %+v", m)
	}
	if _, err := w.Finish("m.json"); err == nil {
		t.Error("Finish twice")
	}
	// The default and the largest limit.
	w, _ = NewPackWriterTo(func(string) (io.WriteCloser, error) { return nopWC{}, nil }, PackOptions{})
	if w.opts.ShardLimit != 64<<20 {
		t.Errorf("default limit %d", w.opts.ShardLimit)
	}
}

func nan() float64 { return math.NaN() }

// corrupt helpers -----------------------------------------------------------

func flipByte(t testing.TB, path string, at int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[at] ^= 0x40
	writeFile(t, path, b)
}

// A flipped byte, a truncated shard, a missing shard, corrupt chunk sums:
// each is an error naming the file, and no tensor of that shard is used.
func TestPackIntegrity(t *testing.T) {
	ts := testTensors(rand.New(rand.NewPCG(7, 8)))
	fresh := func(t *testing.T) (string, *PackManifest) {
		dir := t.TempDir()
		return dir, writeTestPack(t, dir, ts, smallPack)
	}
	open := func(t *testing.T, dir string) *Pack {
		p, err := OpenPack(&Dir{Path: dir}, "manifest.json")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		return p
	}
	t.Run("flipped byte", func(t *testing.T) {
		dir, m := fresh(t)
		s := m.Shards[1]
		flipByte(t, filepath.Join(dir, s.File), s.Size-1)
		p := open(t, dir)
		var used []string
		err := p.Stream(func(pt PackTensor, _ []byte) error {
			if pt.Shard >= 1 {
				used = append(used, pt.Name)
			}
			return nil
		})
		mustErr(t, err, ErrChecksum, s.File, "sha256")
		if len(used) != 0 {
			t.Errorf("tensors of the corrupt shard were used: %v", used)
		}
		for _, x := range m.Tensors {
			if x.Shard == 1 && !x.HostOnly {
				_, err := p.Float32(x.Name)
				mustErr(t, err, ErrChecksum, s.File, x.Name)
			}
		}
	})
	t.Run("flipped byte under a row read", func(t *testing.T) {
		dir, m := fresh(t)
		var emb PackTensor
		for _, x := range m.Tensors {
			if x.Name == "embed_tokens.weight" {
				emb = x
			}
		}
		flipByte(t, filepath.Join(dir, m.Shards[emb.Shard].File), emb.Offset+70) // row 1's values
		p := open(t, dir)
		if _, err := p.Float32Rows(emb.Name, 190, 1); err != nil {
			t.Errorf("a row in another chunk: %v", err)
		}
		_, err := p.Float32Rows(emb.Name, 1, 1)
		mustErr(t, err, ErrChecksum, m.Shards[emb.Shard].File, "chunk")
	})
	t.Run("truncated shard", func(t *testing.T) {
		dir, m := fresh(t)
		s := m.Shards[0]
		path := filepath.Join(dir, s.File)
		b, _ := os.ReadFile(path)
		writeFile(t, path, b[:len(b)-10])
		_, err := open(t, dir).Float32(m.Tensors[0].Name)
		mustErr(t, err, ErrFormat, s.File, "truncated")
	})
	t.Run("missing shard", func(t *testing.T) {
		dir, m := fresh(t)
		os.Remove(filepath.Join(dir, m.Shards[0].File))
		_, err := open(t, dir).Float32(m.Tensors[0].Name)
		mustErr(t, err, os.ErrNotExist, m.Shards[0].File)
	})
	t.Run("corrupt chunk sums", func(t *testing.T) {
		dir, m := fresh(t)
		for _, s := range m.Shards {
			if s.ChunkSums != "" {
				flipByte(t, filepath.Join(dir, s.ChunkSums), 3)
			}
		}
		_, err := open(t, dir).Float32Rows("embed_tokens.weight", 0, 1)
		mustErr(t, err, ErrChecksum, "chunk sums")
	})
}

// A malformed or malicious manifest is refused with a clear error.
func TestPackManifestErrors(t *testing.T) {
	dir := t.TempDir()
	writeTestPack(t, dir, testTensors(rand.New(rand.NewPCG(9, 9))), smallPack)
	good, _ := os.ReadFile(filepath.Join(dir, "manifest.json"))
	edit := func(f func(m map[string]any)) []byte {
		var m map[string]any
		json.Unmarshal(good, &m)
		f(m)
		b, _ := json.Marshal(m)
		return b
	}
	tensorAt := func(m map[string]any, i int) map[string]any {
		return m["tensors"].([]any)[i].(map[string]any)
	}
	shardAt := func(m map[string]any, i int) map[string]any {
		return m["shards"].([]any)[i].(map[string]any)
	}
	cases := []struct {
		name string
		b    []byte
		want string
	}{
		{"truncated", good[:len(good)/2], "unexpected end"},
		{"empty", nil, "unexpected end"},
		{"magic", edit(func(m map[string]any) { m["magic"] = "safetensors" }), "not a lumina pack"},
		{"version", edit(func(m map[string]any) { m["version"] = 2 }), "version 2"},
		{"alignment", edit(func(m map[string]any) { m["alignment"] = 3 }), "alignment 3"},
		{"shard limit", edit(func(m map[string]any) { m["shard_limit"] = 1 << 30 }), "shard_limit"},
		{"shard outside", edit(func(m map[string]any) { shardAt(m, 0)["file"] = "../etc/passwd" }), "bad or repeated file name"},
		{"shard absolute", edit(func(m map[string]any) { shardAt(m, 0)["file"] = "/x.bin" }), "bad or repeated file name"},
		{"shard repeated", edit(func(m map[string]any) { shardAt(m, 1)["file"] = shardAt(m, 0)["file"] }), "bad or repeated"},
		{"sha256", edit(func(m map[string]any) { shardAt(m, 0)["sha256"] = "ABC" }), "sha256"},
		{"shard size", edit(func(m map[string]any) { shardAt(m, 0)["size"] = 0 }), "size 0"},
		{"dtype", edit(func(m map[string]any) { tensorAt(m, 0)["dtype"] = "q3" }), `unknown dtype "q3"`},
		{"length", edit(func(m map[string]any) { tensorAt(m, 0)["length"] = 4 }), "length says 4"},
		{"shape", edit(func(m map[string]any) { tensorAt(m, 0)["shape"] = []int{-1, 4} }), "dimension -1"},
		{"huge shape", edit(func(m map[string]any) { tensorAt(m, 0)["shape"] = []int{1 << 30, 1 << 30} }), "too large"},
		{"no shard", edit(func(m map[string]any) { tensorAt(m, 0)["shard"] = 99 }), "shard 99 does not exist"},
		{"unaligned", edit(func(m map[string]any) { tensorAt(m, 1)["offset"] = 2 }), "not aligned"},
		{"outside shard", edit(func(m map[string]any) { tensorAt(m, 1)["offset"] = 1 << 20 }), "outside shard"},
		{"overlap", edit(func(m map[string]any) { tensorAt(m, 1)["offset"] = 0 }), "overlap"},
		{"duplicate", edit(func(m map[string]any) { tensorAt(m, 1)["name"] = tensorAt(m, 0)["name"] }), "repeated"},
		{"past the end", edit(func(m map[string]any) {
			last := len(m["shards"].([]any)) - 1
			tensorAt(m, len(m["tensors"].([]any))-1)["shard"] = last
			tensorAt(m, len(m["tensors"].([]any))-1)["offset"] = float64(int(shardAt(m, last)["size"].(float64)-1) / 256 * 256)
			tensorAt(m, len(m["tensors"].([]any))-1)["shape"] = []int{300}
			tensorAt(m, len(m["tensors"].([]any))-1)["length"] = 1200
			tensorAt(m, len(m["tensors"].([]any))-1)["dtype"] = "f32"
		}), "run past the last shard"},
		{"understated requirements", edit(func(m map[string]any) {
			m["requirements"].(map[string]any)["max_storage_buffer_binding_size"] = 16
		}), "requirements declare"},
		{"gpu bytes", edit(func(m map[string]any) { m["gpu_bytes"] = 1 }), "gpu_bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseManifest(c.b)
			mustErr(t, err, ErrFormat, "pack manifest", c.want)
			d := t.TempDir()
			writeFile(t, filepath.Join(d, "m.json"), c.b)
			_, err = OpenPack(&Dir{Path: d}, "m.json")
			mustErr(t, err, ErrFormat, "m.json", c.want)
		})
	}
	_, err := OpenPack(&Dir{Path: dir}, "../manifest.json")
	mustErr(t, err, ErrFormat, "not inside")
}

// countingServer serves dir on 127.0.0.1 and counts the body bytes sent.
func countingServer(t testing.TB, dir string) (*httptest.Server, *atomic.Int64) {
	skipNoNet(t)
	var n atomic.Int64
	fs := http.FileServer(http.Dir(dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fs.ServeHTTP(countWriter{w, &n}, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

type countWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c countWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// A pack over HTTP range requests equals the pack on disk; reading a few
// rows of a large host-only table fetches only their chunks.
func TestPackHTTP(t *testing.T) {
	rng := rand.New(rand.NewPCG(10, 11))
	dir := t.TempDir()
	ts := testTensors(rng)
	table := pt{"model.embed_tokens.weight", PackQ8, tensor.Shape{16000, 256}, nil} // 4.3 MB, an embedding-like table
	table.v = randn(rng, table.shape.Numel(), 0.02)
	ts = append(ts, table)
	f16table := pt{"model.embed_f16.weight", PackF16, tensor.Shape{4000, 256}, randn(rng, 4000*256, 0.02)}
	ts = append(ts, f16table)
	opts := PackOptions{Kind: "gemma", ShardLimit: 1 << 20, HostOnly: []string{table.name, f16table.name, "embed_tokens.weight"}}
	m := writeTestPack(t, dir, ts, opts)
	srv, served := countingServer(t, dir)
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Fatalf("server at %s", srv.URL)
	}
	disk, err := OpenPack(&Dir{Path: dir}, "manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	defer disk.Close()
	files := &HTTPFiles{Base: srv.URL + "/"}
	web, err := OpenPack(files, "manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range ts {
		if x.name == table.name || x.name == f16table.name {
			continue
		}
		a, err1 := disk.Float32(x.name)
		b, err2 := web.Float32(x.name)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		equalF32(t, x.name+" over HTTP", b, a)
	}
	if files.BytesRead() != served.Load() {
		t.Errorf("client counted %d bytes, server sent %d", files.BytesRead(), served.Load())
	}
	// The gather: rows of the prompt's tokens only.
	for _, tab := range []pt{table, f16table} {
		tlen := int64(0)
		for _, x := range m.Tensors {
			if x.Name == tab.name {
				tlen = x.Length
			}
		}
		web, err := OpenPack(files, "manifest.json")
		if err != nil {
			t.Fatal(err)
		}
		before := served.Load()
		ids := []int{2, 1017, 3999, 2500}
		for _, id := range ids {
			a, err1 := disk.Float32Rows(tab.name, id, 1)
			b, err2 := web.Float32Rows(tab.name, id, 1)
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			equalF32(t, fmt.Sprintf("%s row %d over HTTP", tab.name, id), b, a)
		}
		got := served.Load() - before
		t.Logf("%s (%d bytes): %d rows fetched %d bytes (manifest, chunk sums, chunks)", tab.name, tlen, len(ids), got)
		if got > tlen/8 {
			t.Errorf("gathering %d rows of %s fetched %d bytes of its %d", len(ids), tab.name, got, tlen)
		}
	}
}

// A server that ignores Range must not make us download everything.
func TestHTTPRangeChecks(t *testing.T) {
	skipNoNet(t)
	body := bytes.Repeat([]byte("0123456789"), 100000)
	var sent atomic.Int64
	ignore := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := w.Write(body)
		sent.Add(int64(n))
	}))
	defer ignore.Close()
	_, err := OpenHTTPRange(t.Context(), nil, ignore.URL+"/x")
	mustErr(t, err, ErrRangeIgnored, "200")
	// A server that honours the size probe but then ignores Range.
	var calls atomic.Int64
	half := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-0/%d", len(body)))
			w.WriteHeader(http.StatusPartialContent)
			w.Write(body[:1])
			return
		}
		w.Write(body)
	}))
	defer half.Close()
	r, err := OpenHTTPRange(t.Context(), nil, half.URL+"/x")
	if err != nil || r.Size() != int64(len(body)) {
		t.Fatal(err, r.Size())
	}
	buf := make([]byte, 10)
	_, err = r.ReadAt(buf, 500)
	mustErr(t, err, ErrRangeIgnored, "500-509")
	if r.BytesRead() > 1 {
		t.Errorf("read %d bytes of a response that ignored Range", r.BytesRead())
	}
	// A wrong Content-Range is an error.
	wrong := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-9/%d", len(body)))
		w.WriteHeader(http.StatusPartialContent)
		w.Write(body[:10])
	}))
	defer wrong.Close()
	r, err = OpenHTTPRange(t.Context(), nil, wrong.URL+"/x")
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.ReadAt(buf, 100)
	mustErr(t, err, nil, "Content-Range")
	// A real server: ReadAt equals the file, at the end too.
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "f.bin"), body)
	srv, _ := countingServer(t, dir)
	r, err = OpenHTTPRange(t.Context(), nil, srv.URL+"/f.bin")
	if err != nil {
		t.Fatal(err)
	}
	n, err := r.ReadAt(buf, int64(len(body)-4))
	if n != 4 || err == nil || !errors.Is(err, io.EOF) || string(buf[:4]) != "6789" {
		t.Errorf("ReadAt at the end: %d %v %q", n, err, buf[:4])
	}
	if _, err := (&HTTPFiles{Base: srv.URL}).Open("a/../../b"); err == nil {
		t.Error("a name outside the base was accepted")
	}
}

type nopWC struct{}

func (nopWC) Write(p []byte) (int, error) { return len(p), nil }
func (nopWC) Close() error                { return nil }

func compact(b []byte) string {
	var out bytes.Buffer
	json.Compact(&out, b)
	return out.String()
}

// skipNoNet skips tests that listen on 127.0.0.1 where wasm cannot.
func skipNoNet(t testing.TB) {
	if runtime.GOOS == "wasip1" || runtime.GOOS == "js" {
		t.Skip("no sockets on " + runtime.GOOS)
	}
}
