package gemma2_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/luminaweb/lumina/internal/golden"
	"github.com/luminaweb/lumina/internal/gputest"
	"github.com/luminaweb/lumina/model/internal/gemma2"
	"github.com/luminaweb/lumina/model/internal/nn"
	"github.com/luminaweb/lumina/model/ops"
	"github.com/luminaweb/lumina/model/tensor"
	"github.com/luminaweb/lumina/model/weights"
	"github.com/luminaweb/lumina/wgpu"
)

func TestMain(m *testing.M) { gputest.Main(m) }

const caseName = "gemma2_tiny"

// goldenConfig parses the golden file's HF-named configuration.
func goldenConfig(t *testing.T, c *golden.Case) gemma2.Config {
	t.Helper()
	cfg, err := gemma2.ParseConfig(jsonField(t, c, "config_hf_equivalent"))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func jsonField(t *testing.T, c *golden.Case, key string) []byte {
	t.Helper()
	v, ok := c.JSON[key]
	if !ok {
		t.Fatalf("golden %s: no %q in the JSON", c.Name, key)
	}
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestConfig(t *testing.T) {
	c := golden.Open(t, caseName)
	hf := goldenConfig(t, c)
	pt, err := gemma2.ParseGemmaPytorchConfig(jsonField(t, c, "config_gemma_pytorch"))
	if err != nil {
		t.Fatal(err)
	}
	// Only the HF file names the activation; both mean the same model.
	hfa := hf
	hfa.HiddenAct, hfa.HiddenActivation = "", ""
	if hfa != pt {
		t.Errorf("the HF and gemma_pytorch configs differ:\n%+v\n%+v", hf, pt)
	}
	if hf.SlidingWindow != 8 || hf.QueryPreAttnScalar != 32 || hf.HeadDim != 16 || hf.RopeTheta != 10000 {
		t.Errorf("golden config parsed as %+v", hf)
	}

	// gemma-2-2b's config.json (spec §2.1).
	real, err := gemma2.ParseConfig([]byte(`{"architectures":["Gemma2ForCausalLM"],"attention_bias":false,
		"attn_logit_softcapping":50.0,"bos_token_id":2,"eos_token_id":1,"final_logit_softcapping":30.0,
		"head_dim":256,"hidden_act":"gelu_pytorch_tanh","hidden_activation":"gelu_pytorch_tanh",
		"hidden_size":2304,"intermediate_size":9216,"max_position_embeddings":8192,"model_type":"gemma2",
		"num_attention_heads":8,"num_hidden_layers":26,"num_key_value_heads":4,"pad_token_id":0,
		"query_pre_attn_scalar":256,"rms_norm_eps":1e-06,"rope_theta":10000.0,"sliding_window":4096,
		"torch_dtype":"float32","vocab_size":256000}`))
	if err != nil {
		t.Fatal(err)
	}
	if real.HiddenSize != 2304 || real.NumKeyValueHeads != 4 || real.SlidingWindow != 4096 || real.AttnLogitSoftcapping != 50 {
		t.Errorf("gemma-2-2b config parsed as %+v", real)
	}

	bad := []struct{ json, want string }{
		{`{"vocab_size":8,"hidden_size":8,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":3,"num_key_value_heads":2,"head_dim":4,"rms_norm_eps":1e-6,"query_pre_attn_scalar":4}`, "multiple"},
		{`{"vocab_size":8,"hidden_size":8,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":2,"head_dim":4,"rms_norm_eps":1e-6}`, "query_pre_attn_scalar"},
		{`{"vocab_size":8,"hidden_size":8,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":2,"head_dim":4,"rms_norm_eps":1e-6,"query_pre_attn_scalar":4,"hidden_act":"relu"}`, "relu"},
	}
	for _, tc := range bad {
		if _, err := gemma2.ParseConfig([]byte(tc.json)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseConfig(%s) = %v, want an error about %s", tc.json, err, tc.want)
		}
	}
}

// inputs are the golden ids and the real lengths from the attention mask.
type inputs struct {
	B, L int
	ids  []float32
	mask []float32
	lens []int
}

func readInputs(t *testing.T, c *golden.Case) inputs {
	t.Helper()
	info, _ := c.Info("input.input_ids")
	in := inputs{B: info.Shape[0], L: info.Shape[1], ids: c.Must(t, "input.input_ids"), mask: c.Must(t, "input.attention_mask")}
	for b := range in.B {
		n := 0
		for n < in.L && in.mask[b*in.L+n] == 1 {
			n++
		}
		for l := n; l < in.L; l++ {
			if in.mask[b*in.L+l] != 0 {
				t.Fatalf("attention mask row %d is not right padding", b)
			}
		}
		in.lens = append(in.lens, n)
	}
	return in
}

// tolerance returns name's tolerances; the JSON lists hidden_states.k only,
// so the tensors equal to one of them (prompt_embeds = hidden_states[−2],
// last_hidden_state = hidden_states[−1], checked equal in the file) use its
// entry, and layer 0's sub-module outputs use hidden_states.1's (layer 0's
// output; they have smaller magnitudes, max |ref| 2.7–4.1 against 6.1).
func tolerance(t *testing.T, c *golden.Case, name string, layers int, gpu bool) float64 {
	t.Helper()
	switch {
	case name == "output.prompt_embeds":
		name = "output.hidden_states." + strconv.Itoa(layers-1)
	case name == "output.last_hidden_state":
		name = "output.hidden_states." + strconv.Itoa(layers)
	case strings.HasPrefix(name, "inter.layers.0."):
		name = "output.hidden_states.1"
	}
	tol := c.Tolerance(t, name)
	if gpu {
		return tol.GPU
	}
	return tol.Strict
}

func read(t *testing.T, b ops.Backend, x *ops.Tensor) []float32 {
	t.Helper()
	v, err := b.Read(context.Background(), x)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// testGolden runs the golden case on b and compares every output.* and
// inter.* tensor over the normative rows (attention_mask == 1).
func testGolden(t *testing.T, b ops.Backend, gpu bool) {
	c := golden.Open(t, caseName)
	cfg := goldenConfig(t, c)
	in := readInputs(t, c)
	n, D := cfg.NumHiddenLayers, cfg.HiddenSize
	rowKeep := func(i int) bool { return in.mask[i/D] == 1 }
	compare := func(name string, got []float32) {
		t.Helper()
		c.Compare(t, name, got, tolerance(t, c, name, n, gpu), rowKeep)
	}

	l := &nn.Loader{B: b, Src: c}
	defer l.Release()
	m, err := gemma2.Load(l, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := b.New(tensor.F32, in.B, in.L)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release(ids)
	if err := b.Write(ids, in.ids); err != nil {
		t.Fatal(err)
	}

	// All layers, with every intermediate the hook reaches.
	seen := map[string]bool{}
	m.Hook = func(name string, x *ops.Tensor) {
		var want string
		switch {
		case name == "embed":
			want = "output.hidden_states.0"
		case strings.HasPrefix(name, "layers.0."):
			want = "inter." + name
		case strings.HasPrefix(name, "layers.") && !strings.Contains(name[len("layers."):], "."):
			k, _ := strconv.Atoi(name[len("layers."):])
			if k+1 < n { // hidden_states[n] is the normed output, below
				want = "output.hidden_states." + strconv.Itoa(k+1)
			}
		}
		if want != "" {
			compare(want, read(t, b, x))
			seen[want] = true
		}
	}
	h, err := m.Encode(ids, in.lens, n)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release(h)
	m.Hook = nil
	normed, err := b.New(tensor.F32, in.B, in.L, D)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release(normed)
	if err := m.FinalNorm(normed, h); err != nil {
		t.Fatal(err)
	}
	hn := read(t, b, normed)
	compare("output.last_hidden_state", hn)
	compare("output.hidden_states."+strconv.Itoa(n), hn)
	checkLogits(t, c, cfg, in, hn, gpu)

	// The production path: only the layers Lumina needs, no final norm.
	l2 := &nn.Loader{B: b, Src: c}
	defer l2.Release()
	enc, err := gemma2.LoadLayers(l2, cfg, n-1)
	if err != nil {
		t.Fatal(err)
	}
	pe, err := enc.Encode(ids, in.lens, n-1)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release(pe)
	compare("output.prompt_embeds", read(t, b, pe))

	for _, name := range c.Names() {
		if (strings.HasPrefix(name, "output.") || strings.HasPrefix(name, "inter.")) && !seen[name] &&
			name != "output.last_hidden_state" && name != "output.prompt_embeds" && name != "output.logits_at_pos" &&
			name != "output.hidden_states."+strconv.Itoa(n) {
			t.Errorf("golden tensor %s was not compared", name)
		}
	}
}

// checkLogits recomputes the tied LM head (not part of the encoder) on the
// host from our final-normed states at the recorded position: logits =
// cap·tanh(hn·Eᵀ/cap), and compares output.logits_at_pos.
func checkLogits(t *testing.T, c *golden.Case, cfg gemma2.Config, in inputs, hn []float32, gpu bool) {
	t.Helper()
	checks, _ := c.JSON["checks"].(map[string]any)
	posF, ok := checks["logits_at_pos_index"].(float64)
	if !ok {
		t.Fatal("golden: no checks.logits_at_pos_index")
	}
	pos, D, V := int(posF), cfg.HiddenSize, cfg.VocabSize
	E := c.Must(t, "model.embed_tokens.weight")
	capv := cfg.FinalLogitSoftcapping
	got := make([]float32, in.B*V)
	for b := range in.B {
		row := hn[(b*in.L+pos)*D:][:D]
		for v := range V {
			s := 0.0
			for d, x := range row {
				s += float64(x) * float64(E[v*D+d])
			}
			got[b*V+v] = float32(capv * math.Tanh(s/capv))
		}
	}
	tol := c.Tolerance(t, "output.logits_at_pos")
	atol := tol.Strict
	if gpu {
		atol = tol.GPU
	}
	c.Compare(t, "output.logits_at_pos", got, atol, nil)
}

func TestGoldenCPU(t *testing.T) {
	testGolden(t, ops.NewCPU(), false)
}

func TestGoldenGPU(t *testing.T) {
	dev := gputest.OpenOrSkip(t, wgpu.Options{})
	g, err := ops.NewGPU(dev, ops.GPUOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	testGolden(t, g, true)
}

// editSource hides one tensor, or reports another with a wrong shape.
type editSource struct {
	weights.Source
	hide, reshape string
	strip         bool // serve the names without the "model." prefix
}

func (s editSource) Info(name string) (weights.Info, bool) {
	if s.strip {
		if strings.HasPrefix(name, "model.") {
			return weights.Info{}, false
		}
		name = "model." + name
	}
	if name == s.hide {
		return weights.Info{}, false
	}
	info, ok := s.Source.Info(name)
	if ok && name == s.reshape {
		info.Shape = append(info.Shape.Clone(), 1)
	}
	return info, ok
}

func (s editSource) Float32(name string) ([]float32, error) {
	if s.strip {
		name = "model." + name
	}
	return s.Source.Float32(name)
}

func TestLoadErrors(t *testing.T) {
	c := golden.Open(t, caseName)
	cfg := goldenConfig(t, c)
	b := ops.NewCPU()
	load := func(src weights.Source, layers int) error {
		l := &nn.Loader{B: b, Src: src}
		defer l.Release()
		var err error
		if layers < 0 {
			_, err = gemma2.Load(l, cfg)
		} else {
			_, err = gemma2.LoadLayers(l, cfg, layers)
		}
		return err
	}
	I, D := cfg.IntermediateSize, cfg.HiddenSize
	for _, tc := range []struct {
		src  editSource
		want []string
	}{
		{editSource{Source: c, hide: "model.layers.2.mlp.up_proj.weight"},
			[]string{"missing", `"model.layers.2.mlp.up_proj.weight"`, fmt.Sprintf("[%d,%d]", I, D)}},
		{editSource{Source: c, reshape: "model.layers.1.post_feedforward_layernorm.weight"},
			[]string{`"model.layers.1.post_feedforward_layernorm.weight"`, fmt.Sprintf("[%d,1]", D), fmt.Sprintf("expected [%d]", D)}},
		{editSource{Source: c, hide: "model.norm.weight"}, []string{`"model.norm.weight"`}},
		{editSource{Source: c, hide: "model.embed_tokens.weight"}, []string{`"embed_tokens.weight"`}},
	} {
		err := load(tc.src, -1)
		if err == nil {
			t.Errorf("Load with %+v succeeded", tc.src)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Load error %q does not mention %s", err, w)
			}
		}
		t.Logf("%v", err)
	}
	// The encoder's prefix needs neither the last layer nor the final norm.
	last := fmt.Sprintf("model.layers.%d.mlp.up_proj.weight", cfg.NumHiddenLayers-1)
	if err := load(editSource{Source: c, hide: last}, cfg.NumHiddenLayers-1); err != nil {
		t.Errorf("LoadLayers(%d) without %s: %v", cfg.NumHiddenLayers-1, last, err)
	}
	if err := load(editSource{Source: c, hide: "model.norm.weight"}, cfg.NumHiddenLayers-1); err != nil {
		t.Errorf("LoadLayers without the final norm: %v", err)
	}
	// Keys without the "model." prefix (Lumina's text_encoder/).
	if err := load(editSource{Source: c, strip: true}, -1); err != nil {
		t.Errorf("Load from unprefixed names: %v", err)
	}
}

func TestEncodeArgs(t *testing.T) {
	c := golden.Open(t, caseName)
	cfg := goldenConfig(t, c)
	b := ops.NewCPU()
	l := &nn.Loader{B: b, Src: c}
	defer l.Release()
	m, err := gemma2.LoadLayers(l, cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	ids, _ := b.New(tensor.F32, 2, 5)
	for _, tc := range []struct {
		lens   []int
		layers int
	}{{[]int{5}, 1}, {[]int{5, 0}, 1}, {[]int{5, 6}, 1}, {[]int{5, 5}, 2}} {
		if out, err := m.Encode(ids, tc.lens, tc.layers); err == nil {
			b.Release(out)
			t.Errorf("Encode(lens %v, %d layers) succeeded", tc.lens, tc.layers)
		}
	}
}
