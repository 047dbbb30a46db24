package weights

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/luminaweb/lumina/model/tensor"
)

// gt is one tensor of a test GGUF file: ne (innermost first), type, and
// its data in ggml blocks.
type gt struct {
	name string
	typ  GGMLType
	ne   []uint64
	data []byte
}

// ggufBytes writes a GGUF v3 file: header, metadata, tensor infos, data
// aligned to align (general.alignment is written when it is not 32).
func ggufBytes(kvs []GGUFKV, ts []gt, align int) []byte {
	var b bytes.Buffer
	le := func(v any) { binary.Write(&b, binary.LittleEndian, v) }
	str := func(s string) { le(uint64(len(s))); b.WriteString(s) }
	b.WriteString("GGUF")
	le(uint32(3))
	le(uint64(len(ts)))
	if align != 32 {
		kvs = append(kvs, GGUFKV{"general.alignment", GGUFUint32, uint32(align)})
	}
	le(uint64(len(kvs)))
	var value func(t GGUFValueType, v any)
	value = func(t GGUFValueType, v any) {
		switch t {
		case GGUFString:
			str(v.(string))
		case GGUFBool:
			if v.(bool) {
				le(uint8(1))
			} else {
				le(uint8(0))
			}
		case GGUFArray:
			a := v.(GGUFArrayValue)
			le(uint32(a.Type))
			rv := reflect.ValueOf(a.Values)
			le(uint64(rv.Len()))
			for i := 0; i < rv.Len(); i++ {
				value(a.Type, rv.Index(i).Interface())
			}
		default:
			le(v)
		}
	}
	for _, kv := range kvs {
		str(kv.Key)
		le(uint32(kv.Type))
		value(kv.Type, kv.Value)
	}
	off := 0
	offs := make([]int, len(ts))
	for i, t := range ts {
		offs[i] = off
		off += (len(t.data) + align - 1) / align * align
	}
	for i, t := range ts {
		str(t.name)
		le(uint32(len(t.ne)))
		for _, d := range t.ne {
			le(d)
		}
		le(uint32(t.typ))
		le(uint64(offs[i]))
	}
	for b.Len()%align != 0 {
		b.WriteByte(0)
	}
	for _, t := range ts {
		b.Write(t.data)
		for b.Len()%align != 0 {
			b.WriteByte(0)
		}
	}
	return b.Bytes()
}

// Test encoders: each builds blocks of a type from random integer codes
// and scales, and returns the values ggml's formulas give for them,
// computed from the codes (not by unpacking the bits).

func putF16(b []byte, f float32) float32 {
	h := tensor.F32ToF16(f)
	binary.LittleEndian.PutUint16(b, h)
	return tensor.F16ToF32(h)
}

func encodeBlocks(rng *rand.Rand, typ GGMLType, n int) ([]byte, []float32) {
	var out []byte
	var want []float32
	switch typ {
	case GGMLF32:
		for range n {
			f := float32(rng.NormFloat64())
			out = binary.LittleEndian.AppendUint32(out, math.Float32bits(f))
			want = append(want, f)
		}
	case GGMLF16, GGMLBF16:
		for range n {
			f := float32(rng.NormFloat64())
			if typ == GGMLF16 {
				h := tensor.F32ToF16(f)
				out = binary.LittleEndian.AppendUint16(out, h)
				want = append(want, tensor.F16ToF32(h))
			} else {
				h := tensor.F32ToBF16(f)
				out = binary.LittleEndian.AppendUint16(out, h)
				want = append(want, tensor.BF16ToF32(h))
			}
		}
	case GGMLQ4_0, GGMLQ4_1, GGMLQ5_0, GGMLQ5_1, GGMLQ8_0:
		for range n / 32 {
			_, size, _ := typ.BlockSize()
			blk := make([]byte, size)
			d := putF16(blk, float32(rng.Float64()*0.01))
			var m float32
			var q [32]int
			bits := map[GGMLType]int{GGMLQ4_0: 4, GGMLQ4_1: 4, GGMLQ5_0: 5, GGMLQ5_1: 5, GGMLQ8_0: 8}[typ]
			for j := range q {
				q[j] = rng.IntN(1 << bits)
			}
			switch typ {
			case GGMLQ8_0:
				for j := range q {
					q[j] -= 128
					blk[2+j] = byte(int8(q[j]))
					want = append(want, float32(q[j])*d)
				}
			case GGMLQ4_0, GGMLQ4_1:
				qs := blk[size-16:]
				if typ == GGMLQ4_1 {
					m = putF16(blk[2:], float32(-rng.Float64()*0.1))
				}
				for j := range 16 {
					qs[j] = byte(q[j] | q[j+16]<<4)
				}
				for j := range q {
					if typ == GGMLQ4_0 {
						want = append(want, float32(q[j]-8)*d)
					} else {
						want = append(want, float32(float32(q[j])*d)+m)
					}
				}
			case GGMLQ5_0, GGMLQ5_1:
				off := 2
				if typ == GGMLQ5_1 {
					m = putF16(blk[2:], float32(-rng.Float64()*0.1))
					off = 4
				}
				var qh uint32
				for j := range q {
					qh |= uint32(q[j]>>4) << j
				}
				binary.LittleEndian.PutUint32(blk[off:], qh)
				for j := range 16 {
					blk[off+4+j] = byte(q[j]&15 | (q[j+16]&15)<<4)
				}
				for j := range q {
					if typ == GGMLQ5_0 {
						want = append(want, float32(q[j]-16)*d)
					} else {
						want = append(want, float32(float32(q[j])*d)+m)
					}
				}
			}
			out = append(out, blk...)
		}
	case GGMLQ4_K, GGMLQ5_K:
		for range n / 256 {
			_, size, _ := typ.BlockSize()
			blk := make([]byte, size)
			d := putF16(blk, float32(rng.Float64()*0.001))
			dmin := putF16(blk[2:], float32(rng.Float64()*0.001))
			var sc, mn [8]int
			s := blk[4:16]
			for j := range 8 {
				sc[j], mn[j] = rng.IntN(64), rng.IntN(64)
			}
			for j := range 4 {
				s[j] = byte(sc[j] | (sc[j+4]>>4)<<6)
				s[j+4] = byte(mn[j] | (mn[j+4]>>4)<<6)
				s[j+8] = byte(sc[j+4]&15 | (mn[j+4]&15)<<4)
			}
			var q [256]int
			qbits := 4
			if typ == GGMLQ5_K {
				qbits = 5
			}
			for i := range q {
				q[i] = rng.IntN(1 << qbits)
			}
			qs := blk[size-128:]
			for c := range 4 {
				for l := range 32 {
					lo, hi := q[64*c+l], q[64*c+32+l]
					qs[32*c+l] = byte(lo&15 | (hi&15)<<4)
					if typ == GGMLQ5_K {
						blk[16+l] |= byte(lo>>4)<<(2*c) | byte(hi>>4)<<(2*c+1)
					}
				}
			}
			for i := range q {
				sub := i / 32
				d1 := float32(d * float32(sc[sub]))
				m1 := float32(dmin * float32(mn[sub]))
				want = append(want, float32(d1*float32(q[i]))-m1)
			}
			out = append(out, blk...)
		}
	case GGMLQ6_K:
		for range n / 256 {
			blk := make([]byte, 210)
			d := putF16(blk[208:], float32(rng.Float64()*0.001))
			var sc [16]int
			for i := range sc {
				sc[i] = rng.IntN(256) - 128
				blk[192+i] = byte(int8(sc[i]))
			}
			var q [256]int
			for i := range q {
				q[i] = rng.IntN(64)
			}
			for h := range 2 {
				for l := range 32 {
					q0, q1, q2, q3 := q[128*h+l], q[128*h+32+l], q[128*h+64+l], q[128*h+96+l]
					blk[64*h+l] = byte(q0&15 | (q2&15)<<4)
					blk[64*h+l+32] = byte(q1&15 | (q3&15)<<4)
					blk[128+32*h+l] = byte(q0>>4 | (q1>>4)<<2 | (q2>>4)<<4 | (q3>>4)<<6)
				}
			}
			for i := range q {
				// value 128h+32k+l uses scale l/16 + 2k of half h.
				h, k, l := i/128, i%128/32, i%32
				s := float32(d * float32(sc[8*h+l/16+2*k]))
				want = append(want, float32(s*float32(q[i]-32)))
			}
			out = append(out, blk...)
		}
	default:
		panic(typ)
	}
	return out, want
}

var readableTypes = []GGMLType{GGMLF32, GGMLF16, GGMLBF16, GGMLQ4_0, GGMLQ4_1, GGMLQ5_0, GGMLQ5_1, GGMLQ8_0, GGMLQ4_K, GGMLQ5_K, GGMLQ6_K}

// Every readable type decodes to the values of its codes, whole and by
// rows; Q8_0, Q4_0 and Q4_1 repack exactly, the others within the error
// of the target format.
func TestGGUFTypes(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 13))
	var ts []gt
	wants := map[string][]float32{}
	for _, typ := range readableTypes {
		ne := []uint64{512, 6}
		data, want := encodeBlocks(rng, typ, 512*6)
		name := "t." + typ.String()
		ts = append(ts, gt{name, typ, ne, data})
		wants[name] = want
	}
	b := ggufBytes(nil, ts, 32)
	g, err := NewGGUF(bytes.NewReader(b), int64(len(b)), "types.gguf")
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range ts {
		got, err := g.Float32(x.name)
		if err != nil {
			t.Fatal(err)
		}
		equalF32(t, x.name, got, wants[x.name])
		rows, err := g.Float32Rows(x.name, 2, 3)
		if err != nil {
			t.Fatal(err)
		}
		equalF32(t, x.name+" rows 2-4", rows, wants[x.name][2*512:5*512])
		info, _ := g.Info(x.name)
		if !info.Shape.Equal([]int{6, 512}) {
			t.Errorf("%s shape %v", x.name, info.Shape)
		}
		packed, rep, err := g.Repack(x.name, PackQ4)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Dequantize(rep.To, info.Shape, packed)
		if err != nil {
			t.Fatal(err)
		}
		exact := map[GGMLType]PackDType{GGMLF32: PackF32, GGMLF16: PackF16, GGMLBF16: PackBF16, GGMLQ8_0: PackQ8, GGMLQ4_0: PackQ4, GGMLQ4_1: PackQ4}
		if to, ok := exact[x.typ]; ok {
			if !rep.Exact || rep.To != to {
				t.Errorf("%s: repack %+v, want exact %s", x.name, rep, to)
			}
			for i, v := range back {
				if v != float64(wants[x.name][i]) {
					t.Fatalf("%s: repacked [%d] = %v, GGUF value %v", x.name, i, v, wants[x.name][i])
				}
			}
		} else {
			if rep.Exact || rep.To != PackQ4 || rep.RelRMS <= 0 || rep.RelRMS > 0.15 {
				t.Errorf("%s: repack report %+v", x.name, rep)
			}
			t.Logf("%s → q4: max abs %.3g, relative RMS %.4f", x.name, rep.MaxAbs, rep.RelRMS)
		}
	}
}

// ggufDims maps the real dimensions of the Lumina-2 GGUF tensors to small
// stand-ins that keep every quantized ne[0] a multiple of 256 (K-quants)
// or 32, as the real ones are.
var ggufDims = map[int]int{2304: 256, 9216: 256, 1024: 256, 256: 256, 3840: 16, 96: 4, 64: 32}

// The published Lumina-2 GGUF quants, rebuilt small from their tensor
// lists: the header parse agrees with gguf-parser-go, DetectDiT maps the
// file, and every tensor reads as the values written.
func TestGGUFLumina2(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(layoutDir(t), "manifests", "gguf_calcuis_lumina2.json"))
	if err != nil {
		t.Fatal(err)
	}
	var man struct {
		Files map[string][][]json.RawMessage `json:"files"`
	}
	if err := json.Unmarshal(raw, &man); err != nil {
		t.Fatal(err)
	}
	typeOf := map[string]GGMLType{"Q4_0": GGMLQ4_0, "Q4_K": GGMLQ4_K, "Q5_0": GGMLQ5_0}
	rng := rand.New(rand.NewPCG(14, 15))
	for file, rows := range man.Files {
		t.Run(file, func(t *testing.T) {
			var ts []gt
			wants := map[string][]float32{}
			half := GGMLF16
			if strings.Contains(file, "k_m") {
				half = GGMLBF16 // the list allows either
			}
			for _, row := range rows {
				var name, ty string
				var shape []int
				json.Unmarshal(row[0], &name)
				json.Unmarshal(row[1], &ty)
				json.Unmarshal(row[2], &shape)
				typ, ok := typeOf[ty]
				if ty == "F16|BF16" {
					typ, ok = half, true
				}
				if !ok {
					t.Fatalf("%s: type %s", name, ty)
				}
				var ne []uint64
				n := 1
				for i := len(shape) - 1; i >= 0; i-- {
					d, ok := ggufDims[shape[i]]
					if !ok {
						t.Fatalf("%s: no stand-in for %d", name, shape[i])
					}
					ne = append(ne, uint64(d))
					n *= d
				}
				data, want := encodeBlocks(rng, typ, n)
				ts = append(ts, gt{name, typ, ne, data})
				wants[name] = want
			}
			kvs := []GGUFKV{
				{"general.architecture", GGUFString, "lumina2"},
				{"general.quantization_version", GGUFUint32, uint32(2)},
				{"general.file_type", GGUFUint32, uint32(2)},
				{"test.array", GGUFArray, GGUFArrayValue{GGUFString, []string{"a", "bc"}}},
				{"test.ints", GGUFArray, GGUFArrayValue{GGUFInt32, []int32{-1, 2}}},
				{"test.f64", GGUFFloat64, 0.25},
				{"test.bool", GGUFBool, true},
				{"test.i8", GGUFInt8, int8(-3)},
				{"test.u16", GGUFUint16, uint16(7)},
				{"test.i16", GGUFInt16, int16(-7)},
				{"test.i64", GGUFInt64, int64(-1 << 40)},
				{"test.u64", GGUFUint64, uint64(1 << 40)},
				{"test.f32", GGUFFloat32, float32(1.5)},
				{"test.u8", GGUFUint8, uint8(200)},
				{"test.nested", GGUFArray, GGUFArrayValue{GGUFArray, []GGUFArrayValue{{GGUFUint8, []uint8{1, 2}}}}},
			}
			path := writeFile(t, filepath.Join(t.TempDir(), file), ggufBytes(kvs, ts, 32))
			g, err := OpenGGUF(path)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			crossCheck(t, g, path)
			if len(g.KV) != len(kvs) {
				t.Fatalf("%d KV pairs, wrote %d", len(g.KV), len(kvs))
			}
			for i, kv := range kvs {
				if !reflect.DeepEqual(g.KV[i], kv) {
					t.Errorf("KV %d: %#v, wrote %#v", i, g.KV[i], kv)
				}
			}
			if a, _ := g.Get("general.architecture"); a != "lumina2" {
				t.Errorf("architecture %v", a)
			}
			d, err := DetectDiT(g)
			if err != nil {
				t.Fatal(err)
			}
			if d.Layout().Naming != Original || d.Layout().Prefix != "" || len(d.Names()) != len(rows) {
				t.Fatalf("layout %v, %d names", d.Layout(), len(d.Names()))
			}
			for _, x := range ts {
				got, err := d.Float32(x.name)
				if err != nil {
					t.Fatal(err)
				}
				equalF32(t, x.name, got, wants[x.name])
			}
			// Repack to a pack; Q4_0 exactly, Q4_K and Q5_0 requantized.
			dir := t.TempDir()
			w, err := NewPackWriter(dir, PackOptions{Kind: "dit", ShardLimit: 1 << 20})
			if err != nil {
				t.Fatal(err)
			}
			var worst RepackReport
			for _, x := range ts {
				b, rep, err := g.Repack(x.name, PackQ4)
				if err != nil {
					t.Fatal(err)
				}
				if rep.Exact != (x.typ != GGMLQ4_K && x.typ != GGMLQ5_0) {
					t.Errorf("%s: %+v", x.name, rep)
				}
				if rep.RelRMS > worst.RelRMS {
					worst = rep
				}
				info, _ := g.Info(x.name)
				if err := w.AddEncoded(x.name, info.Shape, rep.To, b); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := w.Finish("manifest.json"); err != nil {
				t.Fatal(err)
			}
			if worst.Name != "" {
				t.Logf("worst requantization: %s %s→%s relative RMS %.4f, max abs %.3g", worst.Name, worst.From, worst.To, worst.RelRMS, worst.MaxAbs)
			}
			p, err := OpenPack(&Dir{Path: dir}, "manifest.json")
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			for _, x := range ts {
				if x.typ == GGMLQ4_0 || x.typ == half {
					got, _ := p.Float32(x.name)
					equalF32(t, x.name+" via pack", got, wants[x.name])
				}
			}
		})
	}
}

// Malformed headers give errors that say what is wrong.
func TestGGUFErrors(t *testing.T) {
	good := []gt{{"a", GGMLQ8_0, []uint64{32, 2}, make([]byte, 68)}, {"b", GGMLF16, []uint64{3}, make([]byte, 6)}}
	base := ggufBytes([]GGUFKV{{"k", GGUFString, "v"}}, good, 32)
	set := func(b []byte, off int, v any) []byte {
		b = bytes.Clone(b)
		var w bytes.Buffer
		binary.Write(&w, binary.LittleEndian, v)
		copy(b[off:], w.Bytes())
		return b
	}
	// Offsets into base: magic 0, version 4, tensor count 8, kv count 16,
	// kv at 24 ("k": 8+1, type 4, "v": 8+1 → 46), tensor "a" at 46: name
	// 9, n_dims 4 (55), ne 16 (59), type (75), offset (79); tensor "b"
	// at 87: offset at 112.
	cases := []struct {
		name string
		b    []byte
		want string
	}{
		{"short", base[:10], "shorter than a GGUF header"},
		{"magic", set(base, 0, []byte("GGML")), "magic"},
		{"version 1", set(base, 4, uint32(1)), "version 1"},
		{"big-endian", set(base, 4, uint32(3<<24)), "big-endian"},
		{"huge counts", set(base, 8, uint64(1<<40)), "cannot fit"},
		{"kv type", set(base, 24+9, uint32(99)), "unknown value type 99"},
		{"string length", set(base, 24+13, uint64(1<<50)), "string of"},
		{"n_dims", set(base, 55, uint32(5)), "5 dimensions"},
		{"zero dim", set(base, 59, uint64(0)), "ne[0] = 0"},
		{"block", set(base, 59, uint64(33)), "not a multiple of Q8_0's block"},
		{"unknown type", set(base, 75, uint32(99)), "unknown type 99"},
		{"unaligned", set(base, 79, uint64(4)), "not a multiple of the alignment"},
		{"past the end", set(base, 79, uint64(1<<20)), "run past the end"},
		{"overlap", set(base, 112, uint64(64)), "overlap"},
		{"truncated data", base[:len(base)-40], "run past the end"},
		{"truncated header", base[:100], "bytes needed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := NewGGUF(bytes.NewReader(c.b), int64(len(c.b)), "bad.gguf")
			mustErr(t, err, ErrFormat, "bad.gguf", c.want)
		})
	}
	bad := ggufBytes(nil, good, 12)
	_, err := NewGGUF(bytes.NewReader(bad), int64(len(bad)), "align.gguf")
	mustErr(t, err, ErrFormat, "general.alignment")
	g, err := NewGGUF(bytes.NewReader(base), int64(len(base)), "ok.gguf")
	if err != nil {
		t.Fatal(err)
	}
	q2 := ggufBytes(nil, []gt{{"q", GGMLQ2_K, []uint64{256}, make([]byte, 84)}}, 64)
	g, err = NewGGUF(bytes.NewReader(q2), int64(len(q2)), "q2.gguf")
	if err != nil {
		t.Fatal(err)
	}
	_, err = g.Float32("q")
	mustErr(t, err, nil, "q2.gguf", "Q2_K", "cannot dequantize")
}

// FuzzGGUFHeader: no input makes the parser panic or read past the file;
// a file it accepts reads every tensor without panicking.
func FuzzGGUFHeader(f *testing.F) {
	rng := rand.New(rand.NewPCG(1, 1))
	d, _ := encodeBlocks(rng, GGMLQ4_K, 256)
	f.Add(ggufBytes([]GGUFKV{{"a", GGUFArray, GGUFArrayValue{GGUFString, []string{"x"}}}}, []gt{{"t", GGMLQ4_K, []uint64{256}, d}, {"u", GGMLF16, []uint64{2, 2}, make([]byte, 8)}}, 32))
	f.Add(ggufBytes([]GGUFKV{{"n", GGUFArray, GGUFArrayValue{GGUFArray, []GGUFArrayValue{{GGUFBool, []bool{true}}}}}}, nil, 64))
	f.Add([]byte("GGUF\x03\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := NewGGUF(bytes.NewReader(b), int64(len(b)), "fuzz.gguf")
		if err != nil {
			return
		}
		for _, n := range g.Names() {
			if v, err := g.Float32(n); err == nil {
				info, _ := g.Info(n)
				if len(v) != info.Shape.Numel() {
					t.Fatalf("%s: %d values for %v", n, len(v), info.Shape)
				}
			}
		}
	})
}

// FuzzPackManifest: no manifest makes the parser panic, and one it accepts
// has every tensor inside its shards.
func FuzzPackManifest(f *testing.F) {
	dir := f.TempDir()
	writeTestPack(f, dir, testTensors(rand.New(rand.NewPCG(2, 2))), smallPack)
	good, _ := os.ReadFile(filepath.Join(dir, "manifest.json"))
	f.Add(good)
	f.Add([]byte(`{"magic":"lumina-pack","version":1,"alignment":4,"shard_limit":8,"shards":[],"tensors":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b)
		if err != nil {
			return
		}
		starts := m.streamStarts()
		for _, x := range m.Tensors {
			if starts[x.Shard]+x.Offset+x.Length > starts[len(starts)-1] {
				t.Fatalf("%s runs past the shards", x.Name)
			}
		}
	})
}
