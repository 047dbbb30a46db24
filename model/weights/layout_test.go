package weights

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/luminaweb/lumina/model/tensor"
)

// The conversions below go the other way from the package's maps (original
// → diffusers for Next-DiT, LDM → diffusers for the VAE), written from the
// spec tables (§3.13.3, §5.5) and checked against the manifests, so that the
// package's reverse maps are tested against an independent statement.

// piece is rows [lo, hi) of a source tensor, stored under another name.
type piece struct {
	name   string
	shape  []int
	lo, hi int
}

var blockRe = regexp.MustCompile(`^(noise_refiner|context_refiner|layers)\.(\d+)\.(.+)$`)

// origToDiff converts one original Next-DiT tensor to its diffusers pieces
// (none for the dropped norm_final).
func origToDiff(t testing.TB, name string, shape []int) []piece {
	whole := func(n string) []piece { return []piece{{n, shape, 0, shape[0]}} }
	if name == "norm_final.weight" {
		return nil
	}
	for _, m := range [][2]string{
		{"x_embedder.", "x_embedder."},
		{"cap_embedder.", "time_caption_embed.caption_embedder."},
		{"t_embedder.mlp.0.", "time_caption_embed.timestep_embedder.linear_1."},
		{"t_embedder.mlp.2.", "time_caption_embed.timestep_embedder.linear_2."},
		{"final_layer.adaLN_modulation.1.", "norm_out.linear_1."},
		{"final_layer.linear.", "norm_out.linear_2."},
	} {
		if rest, ok := strings.CutPrefix(name, m[0]); ok {
			return whole(m[1] + rest)
		}
	}
	g := blockRe.FindStringSubmatch(name)
	if g == nil {
		t.Fatalf("origToDiff: unexpected %q", name)
	}
	b, rest := g[1]+"."+g[2]+".", g[3]
	switch rest {
	case "attention.qkv.weight":
		d := shape[1] // q has as many rows as the model width
		kv := (shape[0] - d) / 2
		return []piece{
			{b + "attn.to_q.weight", []int{d, d}, 0, d},
			{b + "attn.to_k.weight", []int{kv, d}, d, d + kv},
			{b + "attn.to_v.weight", []int{kv, d}, d + kv, d + 2*kv},
		}
	case "attention_norm1.weight":
		if g[1] == "context_refiner" {
			return whole(b + "norm1.weight")
		}
		return whole(b + "norm1.norm.weight")
	}
	r := strings.NewReplacer(
		"attention.out.weight", "attn.to_out.0.weight",
		"attention.q_norm.weight", "attn.norm_q.weight",
		"attention.k_norm.weight", "attn.norm_k.weight",
		"feed_forward.w1.", "feed_forward.linear_1.",
		"feed_forward.w2.", "feed_forward.linear_2.",
		"feed_forward.w3.", "feed_forward.linear_3.",
		"adaLN_modulation.1.", "norm1.linear.",
		"attention_norm2.weight", "norm2.weight",
	)
	return whole(b + r.Replace(rest))
}

// ldmToDiff converts a BFL/LDM VAE decoder name (4 up levels) to diffusers'.
func ldmToDiff(t testing.TB, name string) (string, bool) {
	r, ok := strings.CutPrefix(name, "decoder.")
	if !ok {
		return "", false
	}
	repl := strings.NewReplacer(
		"norm_out.", "conv_norm_out.",
		"mid.block_1.", "mid_block.resnets.0.",
		"mid.block_2.", "mid_block.resnets.1.",
		"mid.attn_1.norm.", "mid_block.attentions.0.group_norm.",
		"mid.attn_1.q.", "mid_block.attentions.0.to_q.",
		"mid.attn_1.k.", "mid_block.attentions.0.to_k.",
		"mid.attn_1.v.", "mid_block.attentions.0.to_v.",
		"mid.attn_1.proj_out.", "mid_block.attentions.0.to_out.0.",
		"nin_shortcut.", "conv_shortcut.",
		"upsample.conv.", "upsamplers.0.conv.",
		".block.", ".resnets.",
	)
	if g := regexp.MustCompile(`^up\.(\d)\.(.+)$`).FindStringSubmatch(r); g != nil {
		i, _ := strconv.Atoi(g[1])
		r = fmt.Sprintf("up_blocks.%d.", 3-i) + strings.TrimPrefix(repl.Replace("."+g[2]), ".")
		return "decoder." + r, true
	}
	return "decoder." + repl.Replace(r), true
}

// shapes maps name → shape, for comparing layouts.
func shapes(ts []st) map[string]string {
	m := map[string]string{}
	for _, s := range ts {
		m[s.name] = tensor.Shape(s.shape).String()
	}
	return m
}

func srcShapes(src Source) map[string]string {
	m := map[string]string{}
	for _, n := range src.Names() {
		info, _ := src.Info(n)
		m[n] = info.Shape.String()
	}
	return m
}

func sameShapes(t testing.TB, what string, got, want map[string]string) {
	t.Helper()
	for n, s := range want {
		if got[n] != s {
			t.Errorf("%s: %q has shape %q, want %q", what, n, got[n], s)
		}
	}
	for n := range got {
		if _, ok := want[n]; !ok {
			t.Errorf("%s: unexpected %q", what, n)
		}
	}
}

func concat(files ...[]st) []st {
	var out []st
	for _, f := range files {
		out = append(out, f...)
	}
	return out
}

func without(ts []st, name string) []st {
	return slices.DeleteFunc(slices.Clone(ts), func(s st) bool { return s.name == name })
}

// writeIndex writes shards (data as given) and their index file, with the
// weight_map and total_size transformers writes.
func writeIndex(t testing.TB, dir, index string, shards []manifestFile) string {
	t.Helper()
	wm := map[string]string{}
	var total int64
	for _, s := range shards {
		writeFile(t, filepath.Join(dir, s.File), build(s.Tensors, nil))
		for _, ts := range s.Tensors {
			wm[ts.name] = s.File
			total += ts.nbytes()
		}
	}
	js, _ := json.MarshalIndent(map[string]any{"metadata": map[string]any{"total_size": total}, "weight_map": wm}, "", "  ")
	return writeFile(t, filepath.Join(dir, index), js)
}

// checkValues compares every canonical tensor with want(name).
func checkValues(t testing.TB, m *Mapped, want func(name string, n int) []float32) {
	t.Helper()
	for _, n := range m.Names() {
		info, _ := m.Info(n)
		v, err := m.Float32(n)
		if err != nil {
			t.Fatal(err)
		}
		equalF32(t, n, v, want(n, info.Shape.Numel()))
	}
}

// TestDiTDiffusersIndex: the HF transformer folder (diffusers names, two
// shards and an index) at stand-in sizes presents the original names, with
// to_q/to_k/to_v joined into qkv in that row order.
func TestDiTDiffusersIndex(t *testing.T) {
	orig := scaled(t, manifestFileNamed(t, loadManifest(t, "orig_consolidated_and_comfy_bf16.json"), "consolidated.00-of-01.pth"), ditDims)
	hf := loadManifest(t, "hf_transformer_diffusers.json")
	// Values: each original tensor gets gen(original name); the diffusers
	// pieces are row ranges of it.
	data := map[string][]float32{}
	var converted []st
	for _, o := range orig {
		v := gen(o.name, tensor.Shape(o.shape).Numel())
		row := tensor.Shape(o.shape[1:]).Numel()
		for _, p := range origToDiff(t, o.name, o.shape) {
			data[p.name] = v[p.lo*row : p.hi*row]
			converted = append(converted, st{name: p.name, dtype: "F32", shape: p.shape})
		}
	}
	var shards []manifestFile
	var all []st
	for _, f := range hf {
		s := scaled(t, f.Tensors, ditDims)
		for i := range s {
			s[i].data = encode("F32", data[s[i].name])
		}
		all = append(all, s...)
		shards = append(shards, manifestFile{f.File, s})
	}
	sameShapes(t, "spec ORIG→DIFF vs diffusers manifest", shapes(converted), shapes(all))

	x, err := OpenIndex(writeIndex(t, t.TempDir(), "diffusion_pytorch_model.safetensors.index.json", shards))
	if err != nil {
		t.Fatal(err)
	}
	m, err := DetectDiT(x)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if l := m.Layout(); l != (Layout{DiT, Diffusers, ""}) || len(x.Shards()) != 2 {
		t.Errorf("layout %v, %d shards", l, len(x.Shards()))
	}
	sameShapes(t, "canonical", srcShapes(m), shapes(without(orig, "norm_final.weight")))
	checkValues(t, m, gen)
	if len(m.Unused()) != 0 {
		t.Errorf("unused: %v", m.Unused())
	}
	// Rows 20..36 of a qkv [40,24] span q (0..24), k (24..32) and v (32..40).
	const qkv = "layers.25.attention.qkv.weight" // in the second shard
	rows, err := m.Float32Rows(qkv, 20, 16)
	if err != nil {
		t.Fatal(err)
	}
	equalF32(t, qkv+" rows 20..36", rows, gen(qkv, 40*24)[20*24:36*24])
	if p, _ := m.Stored(qkv); !slices.Equal(p, []string{"layers.25.attn.to_q.weight", "layers.25.attn.to_k.weight", "layers.25.attn.to_v.weight"}) {
		t.Errorf("Stored(%s) = %v", qkv, p)
	}
	_, err = m.Float32("layers.25.attn.to_q.weight")
	mustErr(t, err, ErrNotFound, `"layers.25.attn.to_q.weight"`, "diffusion_pytorch_model.safetensors.index.json")
}

// TestDiTOriginalSingleFile: ComfyUI's lumina_2_model_bf16 (original names,
// no prefix, BF16), and the same with the model.diffusion_model. prefix of
// single-file repacks next to other networks' tensors.
func TestDiTOriginalSingleFile(t *testing.T) {
	comfy := scaled(t, manifestFileNamed(t, loadManifest(t, "orig_consolidated_and_comfy_bf16.json"), "lumina_2_model_bf16.safetensors"), ditDims)
	for _, prefix := range []string{"", "model.diffusion_model."} {
		ts := withData(comfy, func(n string) string { return n })
		for i := range ts {
			ts[i].name = prefix + ts[i].name
		}
		if prefix != "" {
			ts = append(ts, st{name: "vae.decoder.conv_in.weight", dtype: "F32", shape: []int{2}}, st{name: "text_encoders.gemma2_2b.transformer.model.norm.weight", dtype: "F16", shape: []int{3}})
		}
		path := writeFile(t, filepath.Join(t.TempDir(), "lumina_2_model_bf16.safetensors"), build(ts, nil))
		f, err := OpenSafetensors(path)
		if err != nil {
			t.Fatal(err)
		}
		m, err := DetectDiT(f)
		if err != nil {
			t.Fatal(err)
		}
		if l := m.Layout(); l != (Layout{DiT, Original, prefix}) {
			t.Errorf("layout %v", l)
		}
		sameShapes(t, "canonical", srcShapes(m), shapes(comfy))
		checkValues(t, m, gen)
		if info, _ := m.Info("layers.0.attention.qkv.weight"); info.DType != tensor.BF16 {
			t.Errorf("dtype %v", info.DType)
		}
		if len(m.Unused()) != len(ts)-len(comfy) {
			t.Errorf("unused %v", m.Unused())
		}
		m.Close()
	}
}

// TestGemmaLayouts: the HF text_encoder (three shards, no prefix, F32) and
// ComfyUI's gemma_2_2b_fp16 (model. prefix, F16, U8 spiece_model) give the
// same canonical tensors; the SentencePiece bytes come through.
func TestGemmaLayouts(t *testing.T) {
	var shards []manifestFile
	var hfAll []st
	for _, f := range loadManifest(t, "hf_text_encoder_gemma2.json") {
		s := withData(scaled(t, f.Tensors, gemmaDims), func(n string) string { return n })
		shards = append(shards, manifestFile{f.File, s})
		hfAll = append(hfAll, s...)
	}
	x, err := OpenIndex(writeIndex(t, t.TempDir(), "model.safetensors.index.json", shards))
	if err != nil {
		t.Fatal(err)
	}
	hf, err := DetectGemma(x)
	if err != nil {
		t.Fatal(err)
	}
	defer hf.Close()

	comfyTs := withData(scaled(t, loadManifest(t, "comfy_gemma_2_2b_fp16.json")[0].Tensors, gemmaDims), func(n string) string { return strings.TrimPrefix(n, "model.") })
	spiece := []byte(strings.Repeat("sp", 50))
	for i := range comfyTs {
		if comfyTs[i].dtype == "U8" {
			comfyTs[i].data = spiece
		}
	}
	path := writeFile(t, filepath.Join(t.TempDir(), "gemma_2_2b_fp16.safetensors"), build(comfyTs, nil))
	f, err := OpenSafetensors(path)
	if err != nil {
		t.Fatal(err)
	}
	comfy, err := DetectGemma(f)
	if err != nil {
		t.Fatal(err)
	}
	defer comfy.Close()

	if hf.Layout() != (Layout{Gemma, HF, ""}) || comfy.Layout() != (Layout{Gemma, HF, "model."}) {
		t.Errorf("layouts %v, %v", hf.Layout(), comfy.Layout())
	}
	want := shapes(hfAll)
	if len(want) != 288 {
		t.Fatalf("%d HF tensors", len(want))
	}
	sameShapes(t, "hf", srcShapes(hf), want)
	sameShapes(t, "comfy", srcShapes(comfy), want)
	checkValues(t, hf, gen)
	checkValues(t, comfy, gen)
	if info, _ := comfy.Info("layers.25.mlp.down_proj.weight"); info.DType != tensor.F16 {
		t.Errorf("comfy dtype %v", info.DType)
	}
	if b, err := comfy.SentencePiece(); err != nil || string(b) != string(spiece) {
		t.Errorf("SentencePiece: %d bytes, %v", len(b), err)
	}
	_, err = hf.SentencePiece()
	mustErr(t, err, ErrNotFound, "spiece_model")
	if slices.Contains(comfy.Names(), "spiece_model") {
		t.Error("spiece_model is not hidden")
	}
	// Embedding rows are read alone.
	rows, err := Rows(comfy, "embed_tokens.weight", 7, 2)
	if err != nil {
		t.Fatal(err)
	}
	equalF32(t, "embedding rows", rows, gen("embed_tokens.weight", 40*24)[7*24:9*24])
}

// TestVAELayouts: FLUX/ComfyUI ae.safetensors (BFL names, up levels
// reversed, 1×1 conv attention) and the diffusers VAE give the same
// canonical decoder.
func TestVAELayouts(t *testing.T) {
	files := loadManifest(t, "vae_ae_and_diffusers.json")
	diff := scaled(t, manifestFileNamed(t, files, "vae/diffusion_pytorch_model.safetensors"), vaeDims)
	ae := scaled(t, manifestFileNamed(t, files, "ae.safetensors"), vaeDims)
	var want []st
	for _, s := range diff {
		if strings.HasPrefix(s.name, "decoder.") {
			want = append(want, s)
		}
	}
	// The spec's LDM → diffusers table, checked against the diffusers
	// manifest; toLDM records where each canonical tensor comes from.
	toLDM := map[string]string{}
	var converted []st
	for _, s := range ae {
		if d, ok := ldmToDiff(t, s.name); ok {
			toLDM[d] = s.name
			shape := s.shape
			if len(shape) == 4 && strings.Contains(d, "attentions") {
				shape = shape[:2]
			}
			converted = append(converted, st{name: d, shape: shape})
		}
	}
	sameShapes(t, "spec LDM→DIFF vs diffusers manifest", shapes(converted), shapes(want))

	for _, c := range []struct {
		file   string
		ts     []st
		naming Naming
		key    func(string) string
	}{
		{"ae.safetensors", ae, BFL, func(n string) string { return toLDM[n] }},
		{"diffusion_pytorch_model.safetensors", diff, Diffusers, func(n string) string { return n }},
	} {
		t.Run(string(c.naming), func(t *testing.T) {
			path := writeFile(t, filepath.Join(t.TempDir(), c.file), build(withData(c.ts, func(n string) string { return n }), nil))
			f, err := OpenSafetensors(path)
			if err != nil {
				t.Fatal(err)
			}
			m, err := DetectVAE(f)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if m.Layout() != (Layout{VAE, c.naming, ""}) {
				t.Errorf("layout %v", m.Layout())
			}
			sameShapes(t, "canonical", srcShapes(m), shapes(want))
			checkValues(t, m, func(n string, k int) []float32 { return gen(c.key(n), k) })
			if len(m.Unused()) != len(c.ts)-len(want) { // the encoder
				t.Errorf("%d unused", len(m.Unused()))
			}
		})
	}
}

// TestRealLayouts reads headers with the real names, dtypes and shapes (the
// data reads as zeros, never written) through the real index files, and
// checks each maps to the canonical names and shapes.
func TestRealLayouts(t *testing.T) {
	dir := layoutDir(t)
	origFiles := loadManifest(t, "orig_consolidated_and_comfy_bf16.json")
	orig := manifestFileNamed(t, origFiles, "consolidated.00-of-01.pth")
	comfyDiT := manifestFileNamed(t, origFiles, "lumina_2_model_bf16.safetensors")
	comfyGemma := loadManifest(t, "comfy_gemma_2_2b_fp16.json")[0].Tensors
	hfGemma := concat(filesOf(loadManifest(t, "hf_text_encoder_gemma2.json"))...)
	vae := loadManifest(t, "vae_ae_and_diffusers.json")

	open := func(ts []st, name string) Source {
		v := newVirtual(ts)
		f, err := NewSafetensors(v, v.size, name)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	index := func(manifest, path string) Source {
		byFile := map[string][]st{}
		for _, f := range loadManifest(t, manifest) {
			byFile[f.File] = f.Tensors
		}
		x, err := openIndex(filepath.Join(dir, "Alpha-VLLM_Lumina-Image-2.0", path), func(p string) (*File, error) {
			return open(byFile[filepath.Base(p)], p).(*File), nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	var decoder []st
	for _, s := range manifestFileNamed(t, vae, "vae/diffusion_pytorch_model.safetensors") {
		if strings.HasPrefix(s.name, "decoder.") {
			decoder = append(decoder, s)
		}
	}
	for _, c := range []struct {
		name   string
		src    Source
		kind   Kind
		layout Layout
		want   []st
	}{
		{"comfy lumina_2_model_bf16", open(comfyDiT, "lumina_2_model_bf16.safetensors"), DiT, Layout{DiT, Original, ""}, orig},
		{"hf transformer", index("hf_transformer_diffusers.json", "transformer/diffusion_pytorch_model.safetensors.index.json"), DiT, Layout{DiT, Diffusers, ""}, without(orig, "norm_final.weight")},
		{"hf text_encoder", index("hf_text_encoder_gemma2.json", "text_encoder/model.safetensors.index.json"), Gemma, Layout{Gemma, HF, ""}, hfGemma},
		{"comfy gemma_2_2b_fp16", open(comfyGemma, "gemma_2_2b_fp16.safetensors"), Gemma, Layout{Gemma, HF, "model."}, hfGemma},
		{"ae", open(manifestFileNamed(t, vae, "ae.safetensors"), "ae.safetensors"), VAE, Layout{VAE, BFL, ""}, decoder},
		{"diffusers vae", open(manifestFileNamed(t, vae, "vae/diffusion_pytorch_model.safetensors"), "vae.safetensors"), VAE, Layout{VAE, Diffusers, ""}, decoder},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, err := Detect(c.src, c.kind)
			if err != nil {
				t.Fatal(err)
			}
			if m.Layout() != c.layout {
				t.Errorf("layout %v, want %v", m.Layout(), c.layout)
			}
			sameShapes(t, c.name, srcShapes(m), shapes(c.want))
		})
	}
	// The safetensors size model of hf-layout/README.md (compact header,
	// sorted by dtype then name, padded to 8) gives ComfyUI's exact sizes.
	for _, c := range []struct {
		ts   []st
		size int64
	}{{comfyDiT, 5_219_585_680}, {comfyGemma, 5_232_958_283}} {
		ts := slices.Clone(c.ts)
		slices.SortFunc(ts, func(a, b st) int {
			if a.dtype != b.dtype {
				return strings.Compare(b.dtype, a.dtype) // F16 before U8
			}
			return strings.Compare(a.name, b.name)
		})
		if v := newVirtual(ts); v.size != c.size {
			t.Errorf("%s…: %d bytes, ComfyUI's file has %d", ts[0].name, v.size, c.size)
		}
	}
}

func filesOf(fs []manifestFile) [][]st {
	var out [][]st
	for _, f := range fs {
		out = append(out, f.Tensors)
	}
	return out
}

// TestGoldenLayouts detects the tiny golden checkpoints' namings.
func TestGoldenLayouts(t *testing.T) {
	dir := filepath.Join(layoutDir(t), "..", "golden")
	for _, c := range []struct {
		file   string
		kind   Kind
		layout Layout
	}{
		{"nextdit_tiny.safetensors", DiT, Layout{DiT, Original, ""}},
		{"gemma2_tiny.safetensors", Gemma, Layout{Gemma, HF, "model."}},
		{"flux_vae_decoder_tiny.safetensors", VAE, Layout{VAE, Diffusers, ""}},
	} {
		f, err := OpenSafetensors(filepath.Join(dir, c.file))
		if errors.Is(err, os.ErrNotExist) {
			t.Skip(err)
		}
		if err != nil {
			t.Fatal(err)
		}
		m, err := Detect(f, c.kind)
		if err != nil {
			t.Fatal(err)
		}
		if m.Layout() != c.layout || len(m.Names()) == 0 {
			t.Errorf("%s: layout %v, %d tensors", c.file, m.Layout(), len(m.Names()))
		}
		if _, ok := m.Info(map[Kind]string{DiT: "layers.0.attention.qkv.weight", Gemma: "embed_tokens.weight", VAE: "decoder.mid_block.attentions.0.to_q.weight"}[c.kind]); !ok {
			t.Errorf("%s: key tensor missing", c.file)
		}
		m.Close()
	}
}
