package ops_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/luminaweb/lumina/internal/gputest"
	"github.com/luminaweb/lumina/model/ops"
	"github.com/luminaweb/lumina/model/ops/opstest"
	"github.com/luminaweb/lumina/model/tensor"
	"github.com/luminaweb/lumina/shaders"
	"github.com/luminaweb/lumina/wgpu"
)

func TestMain(m *testing.M) { gputest.Main(m) }

func newGPU(t *testing.T, opt ops.GPUOptions) *ops.GPU {
	t.Helper()
	dev := gputest.OpenOrSkip(t, wgpu.Options{})
	g, err := ops.NewGPU(dev, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g
}

func TestConformanceGPU(t *testing.T) {
	g := newGPU(t, ops.GPUOptions{})
	cfg := opstest.Config{Seed: *seed, Short: testing.Short(), Tile: 32}
	if *digests != "" {
		var lines []string
		cfg.Digest = func(name string, sum [32]byte) { lines = append(lines, fmt.Sprintf("%x %s", sum, name)) }
		defer func() {
			if err := os.WriteFile(*digests, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
				t.Error(err)
			}
			t.Logf("%d output digests written to %s", len(lines), *digests)
		}()
	}
	opstest.Run(t, g, cfg)
}

// With one invocation per workgroup the matmul tile is 4×4, so the
// M=N=1030 case needs 66,306 workgroups: the 2-D split is exercised, and so
// is a non-default override value.
func TestConformanceGPUSmallTiles(t *testing.T) {
	g := newGPU(t, ops.GPUOptions{MatMulWG: [2]uint32{1, 1}})
	opstest.Run(t, g, opstest.Config{Seed: *seed, Short: true, Tile: 4, Random: 2})
}

// A deliberately wrong kernel must be caught: each mutant below is an
// off-by-one that a weak suite would let through.
func TestConformanceCatchesMutants(t *testing.T) {
	mutants := []struct {
		family, from, to string
		op               string
	}{
		{"add", "i % params.b_n]", "(i + 1u) % params.b_n]", "Add"},
		{"add", "a[params.a_off + i]", "a[params.a_off + i + 1u]", "Add"},
		{"matmul", "kk < params.k;", "kk + 1u < params.k;", "MatMul"},
		{"matmul4", "kk < k4;", "kk + 1u < k4;", "MatMul"},
		{"matmul4", "min(n0 + j, params.n - 1u) * k4", "min(n0 + j, params.n - 1u) * k4 + 1u", "MatMul"},
		{"matmul", "if (n >= params.n) {\n\t\t\t\tbreak;", "if (n > params.n) {\n\t\t\t\tbreak;", "MatMul"},
		{"matmul16", "fma(xv[i].y, wv[j].y,", "fma(xv[i].y, wv[j].x,", "MatMul"},
		{"matmul16", "bitcast<f32>(word << 16u), bitcast<f32>(word & 0xffff0000u)", "bitcast<f32>(word & 0xffff0000u), bitcast<f32>(word << 16u)", "MatMul"},
		{"matmul16", "return select(p.x, p.y, (e & 1u) == 1u);", "return select(p.y, p.x, (e & 1u) == 1u);", "MatMul"},
		{"conv", "ky < params.k;", "ky + 1u < params.k;", "Conv2D"},
		{"conv", "i32(px0 + j) - i32(params.pad)", "i32(px0 + j + 1u) - i32(params.pad)", "Conv2D"},
		{"conv", "if (px0 + j >= params.w) {", "if (px0 + j > params.w) {", "Conv2D"},
		{"conv", "v = bias[params.b_off + co];", "v = bias[params.b_off + co0];", "Conv2D"},
		{"gather", "floor(f) == f", "true", "Gather"},
		{"gather", "(id - params.row0) * params.d + col]", "(id - params.row0) * params.d + col + 1u]", "Gather"},
		// Quantized weights (op "MatMul/w=q8" runs only the q8 cases):
		// sign extension, nibble and half-word order, scale index, the
		// ragged end of a group, padding read as values.
		{"matmulq", "bitcast<vec4<i32>>(vec4<u32>(word << 24u, word << 16u, word << 8u, word)) >> vec4<u32>(24u)",
			"vec4<i32>(vec4<u32>(word << 24u, word << 16u, word << 8u, word) >> vec4<u32>(24u))", "MatMul/w=q8"},
		{"matmulq", "bitcast<i32>(w[qw + (j >> 2u)] << (24u - 8u * (j & 3u))) >> 24u",
			"i32((w[qw + (j >> 2u)] << (24u - 8u * (j & 3u))) >> 24u)", "MatMul/w=q8"},
		{"matmulq", "vec4<u32>(0u, 4u, 8u, 12u)", "vec4<u32>(12u, 8u, 4u, 0u)", "MatMul/w=q4"},
		{"matmulq", ">> (16u * (t & 1u))", ">> (16u * (1u - (t & 1u)))", "MatMul/w=q4"},
		{"matmulq", ">> (4u * (j & 7u))", ">> (4u * (7u - (j & 7u)))", "MatMul/w=q4"},
		{"matmulq", "select(p.x, p.y, (gi & 1u) == 1u)", "select(p.y, p.x, (gi & 1u) == 1u)", "MatMul/w=q8"},
		{"matmulq", "unpack2x16float(w[params.second + gi])", "unpack2x16float(w[params.second + gi + 1u])", "MatMul/w=q4"},
		{"matmulq", "vec4<f32>(s.x), vec4<f32>(s.y)", "vec4<f32>(s.y), vec4<f32>(s.x)", "MatMul/w=q4"},
		{"matmulq", "jj < kn;", "jj + 1u < kn;", "MatMul/w=q8"},
		{"matmulq", "min(GROUP, params.k - k0)", "GROUP", "MatMul/w=q4"},
	}
	for _, mu := range mutants {
		src := shaders.MustSource(mu.family)
		if !strings.Contains(src, mu.from) {
			t.Fatalf("mutant %q no longer applies to %s.wgsl", mu.from, mu.family)
		}
		bad := strings.Replace(src, mu.from, mu.to, 1)
		g := newGPU(t, ops.GPUOptions{Source: func(f string) string {
			if f == mu.family {
				return bad
			}
			return shaders.MustSource(f)
		}})
		caught := 0
		var cases int
		for _, c := range opstest.Cases(opstest.Config{Seed: 1, Short: true}) {
			if c.Op != mu.op && !strings.HasPrefix(c.Name(), mu.op+",") {
				continue
			}
			cases++
			if err := opstest.Check(g, c, opstest.Config{Seed: 1}); err != nil {
				caught++
			}
		}
		if caught == 0 {
			t.Errorf("mutant %s: %q -> %q passed all %d %s cases", mu.family, mu.from, mu.to, cases, mu.op)
		} else {
			t.Logf("mutant %s %q caught by %d of %d cases", mu.family, mu.to, caught, cases)
		}
	}
}

func TestGPUBadInput(t *testing.T) {
	g := newGPU(t, ops.GPUOptions{})
	var le *wgpu.LimitError
	huge := int(g.Device().Limits().MaxBufferSize/4) + 1
	if _, err := g.New(tensor.F32, huge); !errors.As(err, &le) || le.Name != "maxBufferSize" {
		t.Errorf("tensor above maxBufferSize: %v", err)
	} else {
		t.Logf("as expected: %v", err)
	}
	if _, err := g.New(tensor.F32, 3, 0); err == nil {
		t.Error("shape with a zero dimension accepted")
	}
	// Ops split their work into windows that fit one binding; when a
	// single unit of work does not fit (here one RMSNorm row above a 1 MiB
	// binding), the error surfaces at Sync, names the limit and the
	// operand, and nothing runs.
	small, err := ops.NewGPU(gputest.OpenOrSkip(t, wgpu.Options{MaxStorageBinding: 1 << 20}), ops.GPUOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	const row = 1<<18 + 64
	x, err := small.New(tensor.F32, 2, row)
	if err != nil {
		t.Fatal(err)
	}
	w, _ := small.New(tensor.F32, row)
	y, _ := small.New(tensor.F32, 2, row)
	small.RMSNorm(y, x, w, 1e-6, false)
	if err := small.Sync(context.Background()); !errors.As(err, &le) || le.Name != "maxStorageBufferBindingSize" ||
		!strings.Contains(err.Error(), "RMSNorm") {
		t.Errorf("a row above the binding limit: %v", err)
	} else {
		t.Logf("as expected: %v", err)
	}
	if _, err := ops.NewGPU(nil, ops.GPUOptions{}); !errors.Is(err, wgpu.ErrUnavailable) {
		t.Errorf("NewGPU(nil): %v", err)
	}
}

func TestGPUSteadyState(t *testing.T) {
	g := newGPU(t, ops.GPUOptions{})
	ctx := context.Background()
	x, _ := g.New(tensor.F32, 8, 16)
	w, _ := g.New(tensor.F32, 4, 16)
	var first wgpu.Stats
	for step := range 3 {
		h, err := ops.MatMul(g, x, w, nil)
		if err != nil {
			t.Fatal(err)
		}
		y, err := ops.Add(g, h, h)
		if err != nil {
			t.Fatal(err)
		}
		g.Release(h)
		g.Release(y)
		if err := g.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if step == 0 {
			first = g.Device().Stats()
		} else if s := g.Device().Stats(); s.Buffers != first.Buffers || s.BindGroups != first.BindGroups || s.Kernels != first.Kernels {
			t.Fatalf("step %d created GPU objects: %+v then %+v", step, first, s)
		}
	}
}

// With a 1 MiB storage binding limit, MatMul splits x and dst into bands
// of rows; every MatMul case must still pass, including one whose x and
// dst are several MiB.
func TestMatMulSplitBinding(t *testing.T) {
	dev := gputest.OpenOrSkip(t, wgpu.Options{MaxStorageBinding: 1 << 20})
	g, err := ops.NewGPU(dev, ops.GPUOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	cfg := opstest.Config{Seed: *seed, Short: true}
	n := 0
	for _, c := range opstest.Cases(cfg) {
		if c.Op != "MatMul" {
			continue
		}
		n++
		if err := opstest.Check(g, c, cfg); err != nil {
			t.Errorf("%s: %v", c.Name(), err)
		}
	}
	big := opstest.MatMulCase(1500, 256, 700, true)
	if err := opstest.Check(g, big, cfg); err != nil {
		t.Errorf("%s: %v", big.Name(), err)
	}
	if s := dev.Stats(); s.BindGroups < 3 {
		t.Errorf("%d MatMul cases made only %d bind groups: the split did not happen", n+1, s.BindGroups)
	}
}

// A context set with WithContext stops the backend between dispatches: the
// ops after its end record nothing and Sync reports it; the backend works
// again afterwards.
func TestGPUWithContext(t *testing.T) {
	g := newGPU(t, ops.GPUOptions{})
	x, _ := g.New(tensor.F32, 64, 64)
	y, _ := g.New(tensor.F32, 64, 64)
	ctx, cancel := context.WithCancel(context.Background())
	restore := g.WithContext(ctx)
	g.MatMul(y, x, x, nil)
	cancel()
	before := g.Device().Stats().Submits
	for range 200 { // past FlushEvery: nothing may be submitted now
		g.MatMul(y, x, x, nil)
	}
	if err := g.Sync(context.Background()); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sync after the context ended: %v", err)
	}
	if s := g.Device().Stats().Submits; s != before {
		t.Errorf("%d submissions after the context ended", s-before)
	}
	restore()
	g.MatMul(y, x, x, nil)
	if err := g.Sync(context.Background()); err != nil {
		t.Fatalf("after restore: %v", err)
	}
}
