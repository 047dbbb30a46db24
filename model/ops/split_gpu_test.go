package ops_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/luminaweb/lumina/internal/gputest"
	"github.com/luminaweb/lumina/model/ops"
	"github.com/luminaweb/lumina/model/ops/opstest"
	"github.com/luminaweb/lumina/model/tensor"
	"github.com/luminaweb/lumina/wgpu"
)

// splitCase is one op on inputs of several MiB, run on a device whose
// storage bindings are capped at 1 MiB and on the unrestricted one.
type splitCase struct {
	name string
	in   [][]int // input shapes, uniform in [-2, 2)
	out  []int
	run  func(g *ops.GPU, out *ops.Tensor, in []*ops.Tensor)
}

func splitCases() []splitCase {
	pw := func(name string, n int, f func(g *ops.GPU, out, a, b *ops.Tensor)) splitCase {
		return splitCase{name, [][]int{{n}, {n}}, []int{n}, func(g *ops.GPU, out *ops.Tensor, in []*ops.Tensor) { f(g, out, in[0], in[1]) }}
	}
	inv := func(dh int) float32 { return float32(1 / math.Sqrt(float64(dh))) }
	attn := func(B, L, H, Hkv, Dh int, o ops.AttnOptions) splitCase {
		return splitCase{fmt.Sprintf("Attention/B=%d,L=%d,H=%d,Hkv=%d,Dh=%d,causal=%v", B, L, H, Hkv, Dh, o.Causal),
			[][]int{{B, L, H, Dh}, {B, L, Hkv, Dh}, {B, L, Hkv, Dh}}, []int{B, L, H, Dh},
			func(g *ops.GPU, out *ops.Tensor, in []*ops.Tensor) { g.Attention(out, in[0], in[1], in[2], o) }}
	}
	const n = 1<<20 + 3 // 4 MiB
	return []splitCase{
		pw("Add", n, func(g *ops.GPU, out, a, b *ops.Tensor) { g.Add(out, a, b) }),
		{"Add/rows=1500,cols=1000,b=row", [][]int{{1500, 1000}, {1000}}, []int{1500, 1000},
			func(g *ops.GPU, out *ops.Tensor, in []*ops.Tensor) { g.Add(out, in[0], in[1]) }},
		{"Mul/rows=1200,cols=1024,b=row", [][]int{{1200, 1024}, {1024}}, []int{1200, 1024},
			func(g *ops.GPU, out *ops.Tensor, in []*ops.Tensor) { g.Mul(out, in[0], in[1]) }},
		pw("Mul", n, func(g *ops.GPU, out, a, b *ops.Tensor) { g.Mul(out, a, b) }),
		pw("Scale", n, func(g *ops.GPU, out, a, _ *ops.Tensor) { g.Scale(out, a, -0.37) }),
		pw("Act/silu", n, func(g *ops.GPU, out, a, _ *ops.Tensor) { g.Act(out, a, ops.SiLU) }),
		pw("Gate/gelu_tanh", n, func(g *ops.GPU, out, a, b *ops.Tensor) { g.Gate(out, a, b, ops.GELUTanh) }),
		{"Modulate/B=2,L=300,D=1536", [][]int{{2, 300, 1536}, {2, 1536}}, []int{2, 300, 1536},
			func(g *ops.GPU, out *ops.Tensor, in []*ops.Tensor) { g.Modulate(out, in[0], in[1]) }},
		{"GatedAdd/B=2,L=300,D=1536", [][]int{{2, 300, 1536}, {2, 300, 1536}, {2, 1536}}, []int{2, 300, 1536},
			func(g *ops.GPU, out *ops.Tensor, in []*ops.Tensor) { g.GatedAdd(out, in[0], in[1], in[2]) }},
		{"RMSNorm/rows=1000,dim=1024", [][]int{{1000, 1024}, {1024}}, []int{1000, 1024},
			func(g *ops.GPU, out *ops.Tensor, in []*ops.Tensor) { g.RMSNorm(out, in[0], in[1], 1e-6, true) }},
		{"LayerNorm/rows=1000,dim=1024", [][]int{{1000, 1024}}, []int{1000, 1024},
			func(g *ops.GPU, out *ops.Tensor, in []*ops.Tensor) { g.LayerNorm(out, in[0], 1e-6) }},
		{"Softmax/rows=300,dim=4352", [][]int{{300, 4352}}, []int{300, 4352},
			func(g *ops.GPU, out *ops.Tensor, in []*ops.Tensor) { g.Softmax(out, in[0]) }},
		{"GroupNorm/B=2,C=64,64x64,groups=32", [][]int{{2, 64, 64, 64}, {64}, {64}}, []int{2, 64, 64, 64},
			func(g *ops.GPU, out *ops.Tensor, in []*ops.Tensor) { g.GroupNorm(out, in[0], in[1], in[2], 32, 1e-6) }},
		{"Upsample2x/B=1,C=16,H=128,W=128", [][]int{{1, 16, 128, 128}}, []int{1, 16, 256, 256},
			func(g *ops.GPU, out *ops.Tensor, in []*ops.Tensor) { g.Upsample2x(out, in[0]) }},
		{"Transpose/B=4,R=300,C=500", [][]int{{4, 300, 500}}, []int{4, 500, 300},
			func(g *ops.GPU, out *ops.Tensor, in []*ops.Tensor) { g.Transpose(out, in[0]) }},
		{"Transpose/R=1000,C=300", [][]int{{1000, 300}}, []int{300, 1000}, // one plane above a binding
			func(g *ops.GPU, out *ops.Tensor, in []*ops.Tensor) { g.Transpose(out, in[0]) }},
		{"Patchify/B=2,C=16,H=128,W=128,p=2", [][]int{{2, 16, 128, 128}}, []int{2, 64 * 64, 64},
			func(g *ops.GPU, out *ops.Tensor, in []*ops.Tensor) { g.Patchify(out, in[0], 2) }},
		{"Unpatchify/B=2,C=16,H=128,W=128,p=2", [][]int{{2, 64 * 64, 64}}, []int{2, 16, 128, 128},
			func(g *ops.GPU, out *ops.Tensor, in []*ops.Tensor) { g.Unpatchify(out, in[0], 2) }},
		{"Rope/B=2,L=600,H=8,Dh=96,csB=2", [][]int{{2, 600, 8, 96}, {2, 600, 48, 2}}, []int{2, 600, 8, 96},
			func(g *ops.GPU, out *ops.Tensor, in []*ops.Tensor) { g.Rope(out, in[0], in[1], ops.RopeInterleaved) }},
		{"Rope/B=2,L=300,H=8,Dh=256,csB=1", [][]int{{2, 300, 8, 256}, {1, 300, 128, 2}}, []int{2, 300, 8, 256},
			func(g *ops.GPU, out *ops.Tensor, in []*ops.Tensor) { g.Rope(out, in[0], in[1], ops.RopeHalf) }},
		// Query blocks and (batch, kv head) windows; K/V per head fit.
		attn(2, 200, 24, 8, 96, ops.AttnOptions{Scale: inv(96), Causal: true}),
		// One head's K and V above a binding: key passes shortened.
		attn(1, 512, 8, 8, 128, ops.AttnOptions{Scale: inv(128)}),
		// The VAE's single head of 512.
		attn(1, 600, 1, 1, 512, ops.AttnOptions{Scale: inv(512)}),
	}
}

// splitRun uploads the inputs to g, runs the case, and returns the output
// and the number of bind groups the device created for it.
func splitRun(t *testing.T, g *ops.GPU, c splitCase, in [][]float32) ([]float32, int) {
	t.Helper()
	ctx := context.Background()
	var ts []*ops.Tensor
	for i, s := range c.in {
		x, err := g.New(tensor.F32, s...)
		if err != nil {
			t.Fatal(err)
		}
		defer g.Release(x)
		if err := g.Write(x, in[i]); err != nil {
			t.Fatal(err)
		}
		ts = append(ts, x)
	}
	out, err := g.New(tensor.F32, c.out...)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Release(out)
	if err := g.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	before := g.Device().Stats().BindGroups
	c.run(g, out, ts)
	got, err := g.Read(ctx, out)
	if err != nil {
		t.Fatalf("%s: %v", g.Name(), err)
	}
	return got, g.Device().Stats().BindGroups - before
}

// TestSplitBinding proves that every op splits its work when a tensor
// exceeds one storage binding: on a device capped at 1 MiB per binding,
// (a) every conformance case passes, also with all operands views of one
// buffer (WebGPU binds a writable buffer once per dispatch and copies only
// between buffers), and (b) ops on several MiB give the same bits as on
// the unrestricted device, in more than one dispatch.
func TestSplitBinding(t *testing.T) {
	small := gputest.OpenOrSkip(t, wgpu.Options{MaxStorageBinding: 1 << 20})
	gs, err := ops.NewGPU(small, ops.GPUOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gs.Close)
	gb := newGPU(t, ops.GPUOptions{})
	cfg := opstest.Config{Seed: *seed, Short: true, Random: 2}
	shared := cfg
	shared.Shared = true
	t.Run("Conformance", func(t *testing.T) {
		for _, c := range opstest.Cases(cfg) {
			if err := opstest.Check(gs, c, cfg); err != nil {
				t.Errorf("%s: %v", c.Name(), err)
			}
			if c.Random {
				continue
			}
			if err := opstest.Check(gs, c, shared); err != nil {
				t.Errorf("%s, operands sharing one buffer: %v", c.Name(), err)
			}
		}
	})
	for _, c := range splitCases() {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(*seed, uint64(len(c.name))))
			in := make([][]float32, len(c.in))
			for i, s := range c.in {
				in[i] = make([]float32, tensor.Shape(s).Numel())
				for j := range in[i] {
					in[i][j] = float32(4*rng.Float64() - 2)
				}
			}
			split, nSplit := splitRun(t, gs, c, in)
			whole, nWhole := splitRun(t, gb, c, in)
			t.Logf("bind groups: %d on the 1 MiB device, %d unrestricted", nSplit, nWhole)
			if nSplit < 2 {
				t.Errorf("%d bind groups on the 1 MiB device: the work was not split", nSplit)
			}
			bad := 0
			for i := range whole {
				if math.Float32bits(split[i]) != math.Float32bits(whole[i]) {
					if bad++; bad <= 5 {
						t.Errorf("[%d] split %v, unsplit %v", i, split[i], whole[i])
					}
				}
			}
		})
	}
}
