package weights

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func memFile(t testing.TB, name string, ts []st) *File {
	t.Helper()
	b := build(ts, nil)
	f, err := NewSafetensors(bytes.NewReader(b), int64(len(b)), name)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestIndexErrors(t *testing.T) {
	a := []st{{name: "x", dtype: "F32", shape: []int{2}}, {name: "y", dtype: "F16", shape: []int{3}}}
	b := []st{{name: "z", dtype: "BF16", shape: []int{4}}}
	for _, c := range []struct {
		name   string
		shards map[string][]st
		index  string
		parts  []string
	}{
		{"duplicate", map[string][]st{"a.safetensors": a, "b.safetensors": append(b, a[0])},
			`{"weight_map":{"x":"a.safetensors","y":"a.safetensors","z":"b.safetensors"}}`, []string{`"x"`, "a.safetensors", "b.safetensors", "both"}},
		{"wrong shard", map[string][]st{"a.safetensors": a, "b.safetensors": b},
			`{"weight_map":{"x":"b.safetensors","y":"a.safetensors","z":"b.safetensors"}}`, []string{`"x"`, "b.safetensors", "does not hold"}},
		{"listed but absent", map[string][]st{"a.safetensors": a},
			`{"weight_map":{"x":"a.safetensors","w":"a.safetensors"}}`, []string{`"w"`, "does not hold"}},
		{"total_size", map[string][]st{"a.safetensors": a},
			`{"metadata":{"total_size":99},"weight_map":{"x":"a.safetensors"}}`, []string{"total_size is 99", "14 bytes"}},
		{"outside", map[string][]st{"a.safetensors": a},
			`{"weight_map":{"x":"../a.safetensors"}}`, []string{"outside"}},
		{"no weight_map", nil, `{"metadata":{}}`, []string{"no weight_map"}},
		{"bad json", nil, `{"weight_map":`, []string{"index"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			for n, ts := range c.shards {
				writeFile(t, filepath.Join(dir, n), build(ts, nil))
			}
			path := writeFile(t, filepath.Join(dir, "m.safetensors.index.json"), []byte(c.index))
			_, err := OpenIndex(path)
			mustErr(t, err, ErrFormat, append([]string{path}, c.parts...)...)
		})
	}
	// A missing shard names the shard.
	dir := t.TempDir()
	path := writeFile(t, filepath.Join(dir, "m.safetensors.index.json"), []byte(`{"weight_map":{"x":"gone.safetensors"}}`))
	_, err := OpenIndex(path)
	mustErr(t, err, os.ErrNotExist, path, "gone.safetensors")
	// A good index reads across shards, with U8 bytes.
	spiece := st{name: "spiece_model", dtype: "U8", shape: []int{3}, data: []byte("abc")}
	x, err := OpenIndex(writeIndex(t, dir, "ok.index.json", []manifestFile{{"a.safetensors", withData(a, func(n string) string { return n })}, {"b.safetensors", append(withData(b, func(n string) string { return n }), spiece)}}))
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	for _, n := range []string{"x", "y", "z"} {
		info, _ := x.Info(n)
		v, err := x.Float32(n)
		if err != nil {
			t.Fatal(err)
		}
		equalF32(t, n, v, gen(n, info.Shape.Numel()))
	}
	if raw, _, err := x.Raw("z"); err != nil || len(raw) != 8 {
		t.Errorf("Raw(z): %d bytes, %v", len(raw), err)
	}
	if bs, err := x.Bytes("spiece_model"); err != nil || string(bs) != "abc" {
		t.Errorf("Bytes = %q, %v", bs, err)
	}
	_, err = x.Float32("w")
	mustErr(t, err, ErrNotFound, "ok.index.json", `"w"`)
}

func TestMapErrors(t *testing.T) {
	qkv := func(q, k, v []int) []st {
		ts := []st{{name: "x_embedder.weight", dtype: "F32", shape: []int{4, 2}}}
		for i, s := range [][]int{q, k, v} {
			if s != nil {
				ts = append(ts, st{name: "layers.3.attn.to_" + string("qkv"[i]) + ".weight", dtype: "F32", shape: s})
			}
		}
		return ts
	}
	_, err := DetectDiT(memFile(t, "noV.safetensors", qkv([]int{4, 4}, []int{2, 4}, nil)))
	mustErr(t, err, nil, "noV.safetensors", `"layers.3.attention.qkv.weight"`, "part 2 of 3")
	_, err = DetectDiT(memFile(t, "kv.safetensors", qkv([]int{4, 4}, []int{2, 4}, []int{3, 4})))
	mustErr(t, err, nil, "kv.safetensors", `"layers.3.attn.to_k.weight"`, "2 rows")
	_, err = DetectDiT(memFile(t, "cols.safetensors", qkv([]int{4, 4}, []int{2, 5}, []int{2, 4})))
	mustErr(t, err, nil, "cols.safetensors", "cannot join")
	// A Gemma file is no Next-DiT: the error lists names found.
	gemma := memFile(t, "gemma.safetensors", []st{{name: "model.embed_tokens.weight", dtype: "F16", shape: []int{4, 2}}, {name: "model.norm.weight", dtype: "F16", shape: []int{2}}})
	_, err = DetectDiT(gemma)
	mustErr(t, err, nil, "gemma.safetensors", "no dit", `"model.embed_tokens.weight"`)
	_, err = DetectVAE(gemma)
	mustErr(t, err, nil, "no vae")
	// Old and new diffusers attention names for one tensor.
	_, err = DetectVAE(memFile(t, "dup.safetensors", []st{
		{name: "decoder.conv_in.weight", dtype: "F32", shape: []int{2, 2, 3, 3}},
		{name: "decoder.mid_block.attentions.0.to_q.weight", dtype: "F32", shape: []int{2, 2}},
		{name: "decoder.mid_block.attentions.0.query.weight", dtype: "F32", shape: []int{2, 2, 1, 1}},
	}))
	mustErr(t, err, nil, "both map to", `"decoder.mid_block.attentions.0.to_q.weight"`)
	// Two DiTs under different prefixes are ambiguous.
	_, err = DetectDiT(memFile(t, "two.safetensors", []st{
		{name: "a.x_embedder.weight", dtype: "F32", shape: []int{2}},
		{name: "a.layers.0.attention.qkv.weight", dtype: "F32", shape: []int{2}},
		{name: "b.x_embedder.weight", dtype: "F32", shape: []int{2}},
		{name: "b.layers.0.attention.qkv.weight", dtype: "F32", shape: []int{2}},
	}))
	mustErr(t, err, nil, "several dit layouts")
	// A missing canonical tensor is named with the source and layout.
	m, err := DetectDiT(memFile(t, "ok.safetensors", qkv([]int{4, 4}, []int{2, 4}, []int{2, 4})))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Expect(m, "layers.0.attention.out.weight", 4, 4)
	mustErr(t, err, nil, `"layers.0.attention.out.weight"`)
	_, err = m.Float32("layers.0.attention.out.weight")
	mustErr(t, err, ErrNotFound, "ok.safetensors", "dit/diffusers", `"layers.0.attention.out.weight"`)
	_, err = Map(m, Layout{Kind: Gemma, Naming: BFL})
	mustErr(t, err, nil, "unknown layout")
}
