package dit

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/luminaweb/lumina/internal/golden"
	"github.com/luminaweb/lumina/internal/gputest"
	"github.com/luminaweb/lumina/model/internal/nn"
	"github.com/luminaweb/lumina/model/ops"
	"github.com/luminaweb/lumina/model/tensor"
	"github.com/luminaweb/lumina/model/weights"
	"github.com/luminaweb/lumina/wgpu"
)

func TestMain(m *testing.M) { gputest.Main(m) }

const goldenCase = "nextdit_tiny"

func TestGoldenCPU(t *testing.T) { testGolden(t, ops.NewCPU(), false) }

func TestGoldenGPU(t *testing.T) {
	dev := gputest.OpenOrSkip(t, wgpu.Options{})
	g, err := ops.NewGPU(dev, ops.GPUOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close) // after the model's and inputs' cleanups (LIFO)
	testGolden(t, g, true)
}

// load builds the model of the golden case on b.
func load(t *testing.T, c *golden.Case, b ops.Backend) *Model {
	t.Helper()
	cfg, err := ParseConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.QKNormEps != DefaultQKNormEps || cfg.FFNHidden() != 384 || cfg.HeadDim() != 24 || cfg.AdaLNDim() != 96 {
		t.Fatalf("derived sizes: qk eps %g, FFN %d, head %d, adaLN %d; want the default eps, 384, 24, 96",
			cfg.QKNormEps, cfg.FFNHidden(), cfg.HeadDim(), cfg.AdaLNDim())
	}
	// The golden outputs come from the original code without apex, whose
	// QK-norm eps is 1e-6 (golden README, "Shims").
	cfg.QKNormEps = 1e-6
	l := &nn.Loader{B: b, Src: c}
	m, err := Load(l, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Release(); l.Release() })
	return m
}

// inputs uploads input<pfx>.{x,t,cap_feats} and returns the caption
// lengths from input<pfx>.cap_mask (right padding).
func inputs(t *testing.T, c *golden.Case, b ops.Backend, pfx string) (x, tt, cf *ops.Tensor, capLens []int) {
	t.Helper()
	up := func(name string) *ops.Tensor {
		info, ok := c.Info(name)
		if !ok {
			t.Fatalf("golden has no %s", name)
		}
		v := c.Must(t, name)
		d, err := b.New(tensor.F32, info.Shape...)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Write(d, v); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Release(d) })
		return d
	}
	x, tt, cf = up("input"+pfx+".x"), up("input"+pfx+".t"), up("input"+pfx+".cap_feats")
	info, _ := c.Info("input" + pfx + ".cap_mask")
	mask := c.Must(t, "input"+pfx+".cap_mask")
	B, L := info.Shape[0], info.Shape[1]
	for e := range B {
		n := 0
		for n < L && mask[e*L+n] == 1 {
			n++
		}
		for _, v := range mask[e*L+n : (e+1)*L] {
			if v != 0 {
				t.Fatalf("%s row %d is not right-padded", "input"+pfx+".cap_mask", e)
			}
		}
		capLens = append(capLens, n)
	}
	return x, tt, cf, capLens
}

func read(t *testing.T, b ops.Backend, x *ops.Tensor) []float32 {
	t.Helper()
	v, err := b.Read(context.Background(), x)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// forward runs Forward on the golden inputs with prefix pfx and returns
// the output's values.
func runForward(t *testing.T, c *golden.Case, b ops.Backend, m *Model, pfx string) []float32 {
	t.Helper()
	x, tt, cf, capLens := inputs(t, c, b, pfx)
	out, err := m.Forward(x, tt, cf, capLens)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release(out)
	return read(t, b, out)
}

func maxAbs(v []float32) float64 {
	m := 0.0
	for _, x := range v {
		m = max(m, math.Abs(float64(x)))
	}
	return m
}

// atol returns the golden tolerance of name, or for a tensor the JSON
// gives none (intermediates, output.cfg.raw, the alternative eps) that of
// output.x scaled by the tensor's magnitude relative to output.x's: the
// same rule (10× / 100× the f32 error of a careful port) at that scale.
func atol(t *testing.T, c *golden.Case, name string, gpu bool) float64 {
	t.Helper()
	pick := func(tol golden.Tol) float64 {
		if gpu {
			return tol.GPU
		}
		return tol.Strict
	}
	if name == "output.x" || name == "output.nonsquare.x" {
		return pick(c.Tolerance(t, name))
	}
	scale := max(1, maxAbs(c.Must(t, name))/maxAbs(c.Must(t, "output.x")))
	return pick(c.Tolerance(t, "output.x")) * scale
}

// rowMask keeps the elements of a (B, L, X) tensor whose row l is below
// lens[b].
func rowMask(B, L, X int, lens []int) func(int) bool {
	return func(i int) bool { return (i/X)%L < lens[(i/X)/L] }
}

func testGolden(t *testing.T, b ops.Backend, gpu bool) {
	c := golden.Open(t, goldenCase)
	m := load(t, c, b)

	got := map[string][]float32{}
	shapes := map[string]tensor.Shape{}
	m.Hook = func(name string, x *ops.Tensor) {
		got[name] = read(t, b, x)
		shapes[name] = x.Shape().Clone()
	}
	out := runForward(t, c, b, m, "")
	m.Hook = nil
	c.Compare(t, "output.x", out, atol(t, c, "output.x", gpu), nil)

	// Intermediates, normative rows only.
	_, _, _, capLens := inputs(t, c, b, "")
	B := len(capLens)
	var checked []string
	for _, name := range c.Names() {
		if !strings.HasPrefix(name, "inter.") {
			continue
		}
		key := strings.TrimPrefix(name, "inter.")
		v, ok := got[key]
		if !ok {
			continue
		}
		info, _ := c.Info(name)
		if !shapes[key].Equal(info.Shape) {
			t.Errorf("%s: shape %v, golden %v", name, shapes[key], info.Shape)
			continue
		}
		var keep func(int) bool
		sh := info.Shape
		switch {
		case key == "cap_embedder" || strings.HasPrefix(key, "context_refiner."):
			keep = rowMask(B, sh[1], sh[2], capLens)
		case len(sh) == 3 && (strings.HasPrefix(key, "layers.") || key == "final_layer"):
			keep = jointMask(t, c, sh[2])
		}
		c.Compare(t, name, v, atol(t, c, name, gpu), keep)
		checked = append(checked, key)
	}
	// Every stored block intermediate must have been reached.
	for _, name := range c.Names() {
		key := strings.TrimPrefix(name, "inter.")
		if strings.HasPrefix(name, "inter.") && !slices.Contains(checked, key) &&
			!strings.HasPrefix(key, "rope.") && key != "layers.0.input1_mask" && key != "final_layer.input1_adaln" {
			t.Errorf("%s was not reached by a hook", name)
		}
	}
	// final_layer.input1_adaln is the adaLN input, the timestep embedding.
	c.Compare(t, "inter.final_layer.input1_adaln", got["t_embedder"], atol(t, c, "inter.t_embedder", gpu), nil)

	// A non-square latent with other caption lengths.
	c.Compare(t, "output.nonsquare.x", runForward(t, c, b, m, ".nonsquare"), atol(t, c, "output.nonsquare.x", gpu), nil)
	// CFG's batch: the cond caption fills Lc (no caption padding).
	c.Compare(t, "output.cfg.raw", runForward(t, c, b, m, ".cfg"), atol(t, c, "output.cfg.raw", gpu), nil)

	// The same geometry again reuses its plan; the answer is unchanged.
	n := len(m.plans)
	again := runForward(t, c, b, m, "")
	if len(m.plans) != n || n != 3 {
		t.Errorf("%d plans after a repeated geometry, want 3", len(m.plans))
	}
	if !slices.Equal(again, out) {
		t.Errorf("a second forward with a cached plan differs")
	}

	// QK-norm eps 1e-5 (apex/diffusers) instead of 1e-6. The two
	// references differ by less than atol, so each output is also held to
	// half their distance: a QK-norm eps mix-up must fail.
	m.Cfg.QKNormEps = 1e-5
	alt := runForward(t, c, b, m, "")
	c.Compare(t, "output.alt_qknorm_eps1e-5.x", alt, atol(t, c, "output.alt_qknorm_eps1e-5.x", gpu), nil)
	ref, refAlt := c.Must(t, "output.x"), c.Must(t, "output.alt_qknorm_eps1e-5.x")
	dist := 0.0
	for i := range ref {
		dist = max(dist, math.Abs(float64(ref[i])-float64(refAlt[i])))
	}
	c.Compare(t, "output.x", out, min(atol(t, c, "output.x", gpu), dist/2), nil)
	c.Compare(t, "output.alt_qknorm_eps1e-5.x", alt, min(atol(t, c, "output.x", gpu), dist/2), nil)
}

// jointMask keeps the rows of a (B, S, X) joint tensor that
// inter.layers.0.input1_mask marks real.
func jointMask(t *testing.T, c *golden.Case, X int) func(int) bool {
	mask := c.Must(t, "inter.layers.0.input1_mask")
	return func(i int) bool { return mask[i/X] == 1 }
}

// TestRopeGolden checks the host-side position ids and RoPE tables against
// the original's (inter.rope.*), real rows only, and the joint mask.
func TestRopeGolden(t *testing.T) {
	c := golden.Open(t, goldenCase)
	cfg, err := ParseConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	_, _, _, capLens := inputs(t, c, ops.NewCPU(), "")
	info, _ := c.Info("input.x")
	Hp, Wp := info.Shape[2]/cfg.PatchSize, info.Shape[3]/cfg.PatchSize
	ids := positionIDs(capLens, Hp, Wp)
	S, N := len(ids[0]), Hp*Wp
	half := cfg.HeadDim() / 2
	mask := c.Must(t, "inter.layers.0.input1_mask")
	var pos []float32
	for e, row := range ids {
		for l, id := range row {
			if real := l < capLens[e]+N; real != (mask[e*S+l] == 1) {
				t.Fatalf("entry %d row %d: real = %v, golden mask %v", e, l, real, mask[e*S+l])
			}
			pos = append(pos, float32(id[0]), float32(id[1]), float32(id[2]))
		}
	}
	keep := func(X int) func(int) bool { return func(i int) bool { return mask[i/X] == 1 } }
	c.Compare(t, "inter.rope.position_ids", pos, 0, keep(3))
	cs := ropeTable(slices.Concat(ids...), cfg.AxesDims, cfg.RopeTheta)
	re, im := make([]float32, len(cs)/2), make([]float32, len(cs)/2)
	for i := range re {
		re[i], im[i] = cs[2*i], cs[2*i+1]
	}
	// cos/sin of the same f32 angles; torch's float32 sincos is within an ulp or so.
	c.Compare(t, "inter.rope.freqs_cis_real", re, 1e-6, keep(half))
	c.Compare(t, "inter.rope.freqs_cis_imag", im, 1e-6, keep(half))
}

// TestPaddingInvariance: the padded caption rows must not reach the
// output (the oracle checked the same, bit-identically).
func TestPaddingInvariance(t *testing.T) {
	c := golden.Open(t, goldenCase)
	b := ops.NewCPU()
	m := load(t, c, b)
	x, tt, cf, capLens := inputs(t, c, b, "")
	run := func() []float32 {
		out, err := m.Forward(x, tt, cf, capLens)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Release(out)
		return read(t, b, out)
	}
	ref := run()
	v := read(t, b, cf)
	sh := cf.Shape()
	for e, n := range capLens {
		for i := (e*sh[1] + n) * sh[2]; i < (e+1)*sh[1]*sh[2]; i++ {
			v[i] = 10*v[i] + 3
		}
	}
	if err := b.Write(cf, v); err != nil {
		t.Fatal(err)
	}
	if got := run(); !slices.Equal(got, ref) {
		t.Errorf("changing padded caption rows changed the output")
	}
}

// tamper hides or reshapes one tensor of a Source.
type tamper struct {
	weights.Source
	name  string
	shape tensor.Shape // nil: hide it
}

func (s tamper) Info(name string) (weights.Info, bool) {
	info, ok := s.Source.Info(name)
	if name == s.name {
		if s.shape == nil {
			return weights.Info{}, false
		}
		info.Shape = s.shape
	}
	return info, ok
}

func TestLoadErrors(t *testing.T) {
	c := golden.Open(t, goldenCase)
	cfg, err := ParseConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		src  tamper
		want []string
	}{
		{tamper{c, "layers.1.attention.qkv.weight", nil}, []string{"missing", `"layers.1.attention.qkv.weight"`, "[192,96]"}},
		{tamper{c, "noise_refiner.0.adaLN_modulation.1.weight", tensor.Shape{96, 384}}, []string{`"noise_refiner.0.adaLN_modulation.1.weight"`, "[96,384]", "expected [384,96]"}},
		{tamper{c, "context_refiner.1.attention.k_norm.weight", tensor.Shape{23}}, []string{`"context_refiner.1.attention.k_norm.weight"`, "expected [24]"}},
	} {
		l := &nn.Loader{B: ops.NewCPU(), Src: tc.src}
		_, err := Load(l, cfg)
		l.Release()
		if err == nil {
			t.Errorf("Load with %s tampered: no error", tc.src.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Load with %s tampered: error %q does not mention %s", tc.src.name, err, w)
			}
		}
	}
}

// TestPrefixedCheckpoint: keys under "model.diffusion_model." load too.
func TestPrefixedCheckpoint(t *testing.T) {
	c := golden.Open(t, goldenCase)
	cfg, err := ParseConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	l := &nn.Loader{B: ops.NewCPU(), Src: prefixed{c}}
	defer l.Release()
	if _, err := Load(l, cfg); err != nil {
		t.Fatal(err)
	}
}

type prefixed struct{ weights.Source }

func (p prefixed) Info(name string) (weights.Info, bool) {
	n, ok := strings.CutPrefix(name, checkpointPrefix)
	if !ok {
		return weights.Info{}, false
	}
	return p.Source.Info(n)
}

func (p prefixed) Float32(name string) ([]float32, error) {
	return p.Source.Float32(strings.TrimPrefix(name, checkpointPrefix))
}

// TestParseConfigDiffusers reads the 2B model's diffusers config.json
// names and checks the derived sizes of spec §3.1.
func TestParseConfigDiffusers(t *testing.T) {
	cfg, err := ParseConfig([]byte(`{"_class_name": "Lumina2Transformer2DModel", "axes_dim_rope": [32, 32, 32],
		"axes_lens": [300, 512, 512], "cap_feat_dim": 2304, "ffn_dim_multiplier": null, "hidden_size": 2304,
		"in_channels": 16, "multiple_of": 256, "norm_eps": 1e-05, "num_attention_heads": 24, "num_kv_heads": 8,
		"num_layers": 26, "num_refiner_layers": 2, "out_channels": null, "patch_size": 2, "sample_size": 128,
		"scaling_factor": 1.0}`))
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(cfg.Dim, cfg.NLayers, cfg.NRefinerLayers, cfg.NHeads, cfg.NKVHeads, cfg.HeadDim(),
		cfg.FFNHidden(), cfg.AdaLNDim(), cfg.PatchDim(), cfg.QKNorm, cfg.RopeTheta)
	if want := "2304 26 2 24 8 96 9216 1024 64 true 10000"; got != want {
		t.Errorf("derived: %s, want %s", got, want)
	}
	if _, err := ParseConfig([]byte(`{"dim": 96, "n_heads": 5}`)); err == nil {
		t.Errorf("an invalid config parsed")
	}
}

// TestGPUSteadyState: after the first forward of a geometry, a forward
// creates no GPU buffer (plans cached, activations from the pool; DESIGN
// "Nothing is created in the loop").
func TestGPUSteadyState(t *testing.T) {
	dev := gputest.OpenOrSkip(t, wgpu.Options{})
	g, err := ops.NewGPU(dev, ops.GPUOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	c := golden.Open(t, goldenCase)
	m := load(t, c, g)
	x, tt, cf, capLens := inputs(t, c, g, ".cfg")
	step := func() {
		out, err := m.Forward(x, tt, cf, capLens)
		if err != nil {
			t.Fatal(err)
		}
		read(t, g, out)
		g.Release(out)
	}
	step()
	n := g.BufferAllocs()
	step()
	step()
	if d := g.BufferAllocs() - n; d != 0 {
		t.Errorf("%d GPU buffers created by steps after the first", d)
	}
}
