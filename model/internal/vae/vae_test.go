package vae_test

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/luminaweb/lumina/internal/golden"
	"github.com/luminaweb/lumina/internal/gputest"
	"github.com/luminaweb/lumina/model/internal/nn"
	"github.com/luminaweb/lumina/model/internal/vae"
	"github.com/luminaweb/lumina/model/ops"
	"github.com/luminaweb/lumina/model/tensor"
	"github.com/luminaweb/lumina/model/weights"
	"github.com/luminaweb/lumina/wgpu"
)

func TestMain(m *testing.M) { gputest.Main(m) }

const caseName = "flux_vae_decoder_tiny"

// goldenConfig parses the case's diffusers-named config (its "config"
// object follows flux's names; "config_diffusers_equivalent" is the same
// decoder as diffusers' config.json spells it).
func goldenConfig(t testing.TB, c *golden.Case) vae.Config {
	t.Helper()
	raw, err := json.Marshal(c.JSON["config_diffusers_equivalent"])
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := vae.ParseConfig(raw)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// latent maps the sampler's latent to the decoder's input as the caller
// does (spec §4.9), in float32 like the oracle.
func latent(cfg vae.Config, z []float32) []float32 {
	out := make([]float32, len(z))
	s, sh := float32(cfg.ScalingFactor), float32(cfg.ShiftFactor)
	for i, v := range z {
		out[i] = v/s + sh
	}
	return out
}

func upload(t testing.TB, b ops.Backend, v []float32, shape ...int) *ops.Tensor {
	t.Helper()
	x, err := b.New(tensor.F32, shape...)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Write(x, v); err != nil {
		t.Fatal(err)
	}
	return x
}

// decode loads the model from src onto b, decodes z and returns the image
// and the intermediates the hook saw (read back inside the hook).
func decode(t testing.TB, b ops.Backend, src weights.Source, cfg vae.Config, z []float32, zShape []int) ([]float32, map[string][]float32) {
	t.Helper()
	l := &nn.Loader{B: b, Src: src}
	defer l.Release()
	m, err := vae.Load(l, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	inter := map[string][]float32{}
	m.Hook = func(name string, x *ops.Tensor) {
		v, err := b.Read(ctx, x)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		inter[name] = v
	}
	zt := upload(t, b, z, zShape...)
	defer b.Release(zt)
	x, err := m.Decode(zt)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release(x)
	want := []int{zShape[0], cfg.OutChannels, zShape[2] * cfg.Upscale(), zShape[3] * cfg.Upscale()}
	if !x.Shape().Equal(want) {
		t.Fatalf("Decode returned %v, want %v", x.Shape(), want)
	}
	v, err := b.Read(ctx, x)
	if err != nil {
		t.Fatal(err)
	}
	return v, inter
}

func maxAbs(v []float32) float64 {
	m := 0.0
	for _, x := range v {
		m = max(m, math.Abs(float64(x)))
	}
	return m
}

// checkGolden decodes the golden case on b and compares output.x and
// every inter.decoder.* tensor.
func checkGolden(t *testing.T, b ops.Backend, gpu bool) {
	c := golden.Open(t, caseName)
	cfg := goldenConfig(t, c)
	z := latent(cfg, c.Must(t, "input.z"))
	// The caller's mapping in float32 matches the oracle's to an ulp or so.
	c.Compare(t, "inter.decoder.input_unscaled", z, 1e-6, nil)
	info, _ := c.Info("input.z")
	got, inter := decode(t, b, c, cfg, z, info.Shape)

	tol := c.Tolerance(t, "output.x")
	atol := tol.Strict
	if gpu {
		atol = tol.GPU
	}
	c.Compare(t, "output.x", got, atol, nil)
	// The case gives tolerances for output.x only. Intermediates lie
	// upstream of it, with fewer f32 roundings, so output.x's tolerance
	// relative to its largest value is applied to each intermediate's
	// largest value.
	rel := atol / maxAbs(c.Must(t, "output.x"))
	var names []string
	for _, n := range c.Names() {
		if strings.HasPrefix(n, "inter.decoder.") && n != "inter.decoder.input_unscaled" {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		t.Fatal("no inter.decoder.* tensors in the golden case")
	}
	for _, n := range names {
		v, ok := inter[strings.TrimPrefix(n, "inter.decoder.")]
		if !ok {
			t.Errorf("%s: the decoder's hook never reported it", n)
			continue
		}
		c.Compare(t, n, v, rel*maxAbs(c.Must(t, n)), nil)
	}
}

func TestGoldenCPU(t *testing.T) { checkGolden(t, ops.NewCPU(), false) }

func TestGoldenGPU(t *testing.T) {
	g, err := ops.NewGPU(gputest.OpenOrSkip(t, wgpu.Options{}), ops.GPUOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	checkGolden(t, g, true)
}

// TestWeights checks the decoder's weight list against the golden file
// (every weight in it, nothing else, same shapes) and the parameter
// counts against the spec.
func TestWeights(t *testing.T) {
	c := golden.Open(t, caseName)
	cfg := goldenConfig(t, c)
	var want []string
	for _, n := range c.Names() {
		if strings.HasPrefix(n, vae.Prefix) {
			want = append(want, n)
		}
	}
	params := 0
	var got []string
	for _, w := range cfg.Weights() {
		got = append(got, w.Name)
		params += w.Shape.Numel()
		info, ok := c.Info(w.Name)
		if !ok {
			continue // reported below
		}
		if !info.Shape.Equal(w.Shape) {
			t.Errorf("%s: golden shape %v, Weights says %v", w.Name, info.Shape, w.Shape)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("Weights lists %d tensors, the golden file has %d:\n got %v\nwant %v", len(got), len(want), got, want)
	}
	if n := c.JSON["checks"].(map[string]any)["n_params_decoder"].(float64); params != int(n) {
		t.Errorf("tiny decoder: %d parameters, golden says %d", params, int(n))
	}

	flux := hfConfig(t)
	params = 0
	for _, w := range flux.Weights() {
		params += w.Shape.Numel()
	}
	if params != 49_545_475 { // spec §5.1 [derived]
		t.Errorf("FLUX decoder: %d parameters, spec §5.1 says 49,545,475", params)
	}
}

// hfConfig parses the Lumina-Image-2.0 vae/config.json kept beside the
// golden files.
func hfConfig(t testing.TB) vae.Config {
	t.Helper()
	dir, err := golden.Dir()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "..", "hf-layout", "Alpha-VLLM_Lumina-Image-2.0", "vae", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := vae.ParseConfig(raw)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestParseConfig(t *testing.T) {
	cfg := hfConfig(t)
	if cfg.LatentChannels != 16 || cfg.OutChannels != 3 || !slices.Equal(cfg.BlockOutChannels, []int{128, 256, 512, 512}) ||
		cfg.LayersPerBlock != 2 || cfg.NormNumGroups != 32 || cfg.ScalingFactor != 0.3611 || cfg.ShiftFactor != 0.1159 ||
		!cfg.MidBlockAddAttention || cfg.Upscale() != 8 {
		t.Errorf("Lumina vae/config.json parsed as %+v", cfg)
	}
	for _, bad := range []struct{ json, want string }{
		{`{"latent_channels": 16, "block_out_channels": [32, 64], "norm_num_groups": 32, "scaling_factor": 1}`, "use_post_quant_conv"},
		{`{"latent_channels": 16, "block_out_channels": [32, 48], "norm_num_groups": 32, "use_post_quant_conv": false, "scaling_factor": 1}`, "block_out_channels[1] = 48"},
		{`{"latent_channels": 16, "block_out_channels": [32], "act_fn": "gelu", "use_post_quant_conv": false, "scaling_factor": 1}`, "act_fn"},
		{`{"latent_channels": 16, "block_out_channels": [], "use_post_quant_conv": false, "scaling_factor": 1}`, "block_out_channels is empty"},
	} {
		if _, err := vae.ParseConfig([]byte(bad.json)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("ParseConfig(%s) = %v, want an error mentioning %q", bad.json, err, bad.want)
		}
	}
}

// TestPixel maps the golden output.x to bytes and checks them against
// round(output.image01·255), the oracle's own [0, 1] image.
func TestPixel(t *testing.T) {
	c := golden.Open(t, caseName)
	x, im := c.Must(t, "output.x"), c.Must(t, "output.image01")
	for i := range x {
		if got, want := vae.Pixel(x[i]), uint8(math.RoundToEven(float64(im[i]*255))); got != want {
			t.Fatalf("Pixel(%v) = %d, want %d (image01 %v)", x[i], got, want, im[i])
		}
	}
	for _, tc := range []struct {
		v    float32
		want uint8
	}{{-1, 0}, {-5, 0}, {1, 255}, {7, 255}, {0, 128}, {float32(math.NaN()), 0}, {-1 + 2.0/255, 1}, {-1 + 1.0/255, 0} /* 0.5 → ties to even */} {
		if got := vae.Pixel(tc.v); got != tc.want {
			t.Errorf("Pixel(%v) = %d, want %d", tc.v, got, tc.want)
		}
	}
	info, _ := c.Info("output.x")
	h, w := info.Shape[2], info.Shape[3]
	img, err := vae.Image(x, h, w)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range [][2]int{{0, 0}, {3, 7}, {h - 1, w - 1}} {
		y, i := p[0], p[1]
		got := img.NRGBAAt(i, y)
		want := [4]uint8{vae.Pixel(x[y*w+i]), vae.Pixel(x[h*w+y*w+i]), vae.Pixel(x[2*h*w+y*w+i]), 255}
		if [4]uint8{got.R, got.G, got.B, got.A} != want {
			t.Errorf("pixel (%d, %d) = %v, want %v", i, y, got, want)
		}
	}
	if _, err := vae.Image(x, h, w+1); err == nil {
		t.Error("Image accepted a wrong size")
	}
}

// alteredSource hides one tensor or reports it with another shape.
type alteredSource struct {
	weights.Source
	name  string
	shape tensor.Shape // nil: hidden
}

func (s alteredSource) Info(name string) (weights.Info, bool) {
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
	c := golden.Open(t, caseName)
	cfg := goldenConfig(t, c)
	b := ops.NewCPU()
	for _, tc := range []struct {
		name  string
		shape tensor.Shape
		want  []string
	}{
		{"decoder.up_blocks.1.resnets.0.conv_shortcut.weight", nil,
			[]string{"missing", "decoder.up_blocks.1.resnets.0.conv_shortcut.weight", "[32,64,1,1]"}},
		{"decoder.mid_block.resnets.1.conv2.weight", tensor.Shape{64, 64, 1, 3},
			[]string{"decoder.mid_block.resnets.1.conv2.weight", "[64,64,1,3]", "[64,64,3,3]"}},
		{"decoder.mid_block.attentions.0.to_k.weight", tensor.Shape{64, 64, 3, 3},
			[]string{"decoder.mid_block.attentions.0.to_k.weight", "[64,64,3,3]", "[64,64]", "[64,64,1,1]"}},
		{"decoder.mid_block.attentions.0.to_v.weight", tensor.Shape{64, 32},
			[]string{"decoder.mid_block.attentions.0.to_v.weight", "[64,32]", "[64,64]"}},
	} {
		l := &nn.Loader{B: b, Src: alteredSource{c, tc.name, tc.shape}}
		_, err := vae.Load(l, cfg)
		l.Release()
		if err == nil {
			t.Errorf("%s altered to %v: Load succeeded", tc.name, tc.shape)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s altered to %v: error %q does not mention %q", tc.name, tc.shape, err, w)
			}
		}
	}
}

// convSource reports the attention projections as 1×1 conv weights
// [C, C, 1, 1], as flux's checkpoints and older conversions store them.
type convSource struct{ weights.Source }

func (s convSource) Info(name string) (weights.Info, bool) {
	info, ok := s.Source.Info(name)
	if ok && strings.Contains(name, ".attentions.0.to_") && strings.HasSuffix(name, ".weight") {
		info.Shape = append(info.Shape.Clone(), 1, 1)
	}
	return info, ok
}

// TestConvLayoutProjections decodes with the projections stored as 1×1
// convs and gets the same image, bit for bit.
func TestConvLayoutProjections(t *testing.T) {
	c := golden.Open(t, caseName)
	cfg := goldenConfig(t, c)
	z := latent(cfg, c.Must(t, "input.z"))
	info, _ := c.Info("input.z")
	b := ops.NewCPU()
	want, _ := decode(t, b, c, cfg, z, info.Shape)
	got, _ := decode(t, b, convSource{c}, cfg, z, info.Shape)
	if !slices.Equal(got, want) {
		t.Error("projections stored [C, C, 1, 1] decode differently from [C, C]")
	}
}
