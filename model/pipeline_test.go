package model

import (
	"context"
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/luminaweb/lumina/internal/golden"
	"github.com/luminaweb/lumina/internal/gputest"
	"github.com/luminaweb/lumina/model/internal/dit"
	"github.com/luminaweb/lumina/model/internal/gemma2"
	"github.com/luminaweb/lumina/model/internal/sched"
	"github.com/luminaweb/lumina/model/internal/vae"
	"github.com/luminaweb/lumina/model/ops"
	"github.com/luminaweb/lumina/model/tensor"
	"github.com/luminaweb/lumina/model/weights"
	"github.com/luminaweb/lumina/wgpu"
)

func TestMain(m *testing.M) { gputest.Main(m) }

// goldenPipeline builds a Pipeline from pipeline_tiny's weights and
// configs on backend b.
func goldenPipeline(t *testing.T, c *golden.Case, b ops.Backend) *Pipeline {
	t.Helper()
	var cfg struct {
		Text struct {
			Vocab, Layers, Heads, KVHeads, Hidden, Inter, HeadDim, Window int
			QPAS                                                          float64
		} `json:"text_encoder_gemma_pytorch"`
		Transformer json.RawMessage `json:"transformer"`
		VAE         struct {
			Ch      int     `json:"ch"`
			ChMult  []int   `json:"ch_mult"`
			ResBlks int     `json:"num_res_blocks"`
			Z       int     `json:"z_channels"`
			Scale   float64 `json:"scale_factor"`
			Shift   float64 `json:"shift_factor"`
		} `json:"vae_flux"`
	}
	raw := struct {
		Text map[string]float64 `json:"text_encoder_gemma_pytorch"`
	}{}
	if err := json.Unmarshal(c.Config, &cfg); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(c.Config, &raw); err != nil {
		t.Fatal(err)
	}
	tx := raw.Text
	// The compact gemma_pytorch keys of this case (its "note"), soft-caps
	// and eps as in the gemma2_tiny cases.
	gcfg := gemma2.Config{VocabSize: int(tx["vocab_size"]), NumHiddenLayers: int(tx["layers"]), NumAttentionHeads: int(tx["heads"]),
		NumKeyValueHeads: int(tx["kv_heads"]), HiddenSize: int(tx["hidden"]), IntermediateSize: int(tx["inter"]), HeadDim: int(tx["head_dim"]),
		SlidingWindow: int(tx["window"]), QueryPreAttnScalar: tx["qpas"], AttnLogitSoftcapping: 50, FinalLogitSoftcapping: 30,
		RMSNormEps: 1e-6, RopeTheta: 10000}
	if err := gcfg.Validate(); err != nil {
		t.Fatal(err)
	}
	dcfg, err := dit.ParseConfig(cfg.Transformer)
	if err != nil {
		t.Fatal(err)
	}
	dcfg.QKNormEps = 1e-6 // the oracle ran without apex (golden README)
	blocks := make([]int, len(cfg.VAE.ChMult))
	for i, m := range cfg.VAE.ChMult {
		blocks[i] = cfg.VAE.Ch * m
	}
	vraw, _ := json.Marshal(map[string]any{"latent_channels": cfg.VAE.Z, "block_out_channels": blocks, "layers_per_block": cfg.VAE.ResBlks,
		"norm_num_groups": 32, "scaling_factor": cfg.VAE.Scale, "shift_factor": cfg.VAE.Shift, "use_post_quant_conv": false, "out_channels": 3})
	vcfg, err := vae.ParseConfig(vraw)
	if err != nil {
		t.Fatal(err)
	}
	p := &Pipeline{b: b}
	if err := p.load([3]weights.Source{c, c, c}, gcfg, dcfg, vcfg, time.Now()); err != nil {
		t.Fatal(err)
	}
	p.def.vaeScale, p.def.vaeShift = vcfg.ScalingFactor, vcfg.ShiftFactor
	t.Cleanup(func() {
		p.dit.Release()
		for _, l := range p.loaders {
			l.Release()
		}
	})
	return p
}

// The whole pipeline against the original code glued as sample.py does:
// ids -> Gemma -> CFG Euler sampling -> VAE, every stage compared.
func testPipelineGolden(t *testing.T, b ops.Backend, gpu bool) {
	c := golden.Open(t, "pipeline_tiny")
	p := goldenPipeline(t, c, b)
	ctx := context.Background()
	atol := func(name string) float64 {
		tol := c.Tolerance(t, name)
		if gpu {
			return tol.GPU
		}
		return tol.Strict
	}

	// Text features of [prompt, ""] from the stored ids.
	idsF, mask := c.Must(t, "input.input_ids"), c.Must(t, "input.attention_mask")
	L := len(idsF) / 2
	ids := make([][]int, 2)
	for r := range 2 {
		for j := range L {
			if mask[r*L+j] == 1 {
				ids[r] = append(ids[r], int(idsF[r*L+j]))
			}
		}
	}
	feats, lens, err := p.encodeIDs(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release(feats)
	fv, err := b.Read(ctx, feats)
	if err != nil {
		t.Fatal(err)
	}
	// Our features are padded to the longest prompt; the golden ones to a
	// multiple of 8. Compare the valid rows.
	want := c.Must(t, "inter.cap_feats")
	D := len(want) / (2 * L)
	Lo := feats.Shape()[1]
	got := make([]float32, len(want))
	for r := range 2 {
		for j := range lens[r] {
			copy(got[(r*L+j)*D:(r*L+j+1)*D], fv[(r*Lo+j)*D:])
		}
	}
	c.Compare(t, "inter.cap_feats", got, atol("inter.cap_feats(valid)"), func(i int) bool { return mask[i/D] == 1 })

	// Euler on the shifted grid with CFG 4, renorm 1.
	steps := int(c.Must(t, "input.num_steps")[0])
	shift := float64(c.Must(t, "input.t_shift")[0])
	grid := sched.Grid(steps, shift)
	gt := make([]float32, len(grid))
	for i, v := range grid {
		gt[i] = float32(v)
	}
	c.Compare(t, "inter.t_grid", gt, 1e-7, nil)
	z := c.Must(t, "input.z")
	zi, _ := c.Info("input.z")
	shape := tensor.Shape{zi.Shape[1], zi.Shape[2], zi.Shape[3]}
	r := resolved{Request: Request{Guidance: float64(c.Must(t, "input.cfg_scale")[0]), Renorm: 1}, solver: sched.Euler{}}
	v, release, err := p.velocity(ctx, r, shape, feats, lens, 0, func(int) {})
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	x := append([]float32(nil), z...)
	traj := append([]float32(nil), x...)
	traj = append(traj, x...) // both rows of the stored trajectory
	for k := 0; k+1 < len(grid); k++ {
		if err := (sched.Euler{}).Step(x, grid[k], grid[k+1], v); err != nil {
			t.Fatal(err)
		}
		traj = append(traj, x...)
		traj = append(traj, x...)
	}
	c.Compare(t, "inter.trajectory", traj, atol("inter.trajectory"), nil)

	// Decode trajectory[-1] (z/scale + shift applied here, as the oracle's
	// decode does).
	for i, zv := range x {
		x[i] = float32(float64(zv)/p.def.vaeScale + p.def.vaeShift)
	}
	img, _, _, err := p.decodeValues(ctx, x, shape)
	if err != nil {
		t.Fatal(err)
	}
	c.Compare(t, "output.image", img, atol("output.image"), nil)
	// And the uint8 mapping agrees with round(image01·255).
	im01 := c.Must(t, "output.image01")
	bad := 0
	for i, v := range img {
		if d := math.Abs(float64(vae.Pixel(v)) - math.Round(float64(im01[i])*255)); d > 1 {
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%d pixels differ from round(image01·255) by more than 1", bad)
	}
}

func TestPipelineGoldenCPU(t *testing.T) { testPipelineGolden(t, ops.NewCPU(), false) }

func TestPipelineGoldenGPU(t *testing.T) {
	dev := gputest.OpenOrSkip(t, wgpu.Options{})
	g, err := ops.NewGPU(dev, ops.GPUOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	testPipelineGolden(t, g, true)
}
