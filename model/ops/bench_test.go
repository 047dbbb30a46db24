package ops_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/luminaweb/lumina/internal/gputest"
	"github.com/luminaweb/lumina/model/ops"
	"github.com/luminaweb/lumina/model/tensor"
	"github.com/luminaweb/lumina/wgpu"
)

// peakFMA measures what the adapter itself can do: every invocation runs
// independent chains of vec4 fused multiply-adds with no memory traffic, so
// the figure is the compute ceiling that the op benchmarks are reported
// against (fraction of peak).
const peakFMA = `
override WG: u32 = 256u;
const ITERS: u32 = 256u;
@group(0) @binding(0) var<storage, read_write> out: array<vec4<f32>>;
struct Params { seed: f32, _p0: u32, _p1: u32, _p2: u32 }
@group(0) @binding(1) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn peak(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
	let i = gid.x + gid.y * nwg.x * WG;
	let m = vec4<f32>(0.999, 1.001, 0.998, 1.002);
	var a0 = vec4<f32>(params.seed) + f32(i & 7u);
	var a1 = a0 + 1.0; var a2 = a0 + 2.0; var a3 = a0 + 3.0;
	var a4 = a0 + 4.0; var a5 = a0 + 5.0; var a6 = a0 + 6.0; var a7 = a0 + 7.0;
	for (var k = 0u; k < ITERS; k++) {
		a0 = fma(a0, m, m); a1 = fma(a1, m, m); a2 = fma(a2, m, m); a3 = fma(a3, m, m);
		a4 = fma(a4, m, m); a5 = fma(a5, m, m); a6 = fma(a6, m, m); a7 = fma(a7, m, m);
	}
	out[i] = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
}
`

const peakGroups = 4096
const peakFlopsPerRun = peakGroups * 256 * 256 * 8 * 4 * 2 // groups·WG·ITERS·chains·lanes·2

var peak struct {
	once   sync.Once
	gflops float64
	err    error
}

// measurePeak runs the FMA kernel a few times and keeps the best rate.
func measurePeak(d *wgpu.Device) (float64, error) {
	peak.once.Do(func() {
		ctx := context.Background()
		k, err := d.NewKernel(wgpu.KernelSpec{Code: peakFMA, Entry: "peak"})
		if err != nil {
			peak.err = err
			return
		}
		out, err := d.NewBuffer(peakGroups*256*16, "peak")
		if err != nil {
			peak.err = err
			return
		}
		defer out.Destroy()
		p := make([]byte, 16)
		binary.LittleEndian.PutUint32(p, 0x3f800000)
		for range 4 {
			b := d.NewBatch()
			b.Dispatch(k, peakGroups, p, wgpu.Bind(out))
			t0 := time.Now()
			if err := b.Submit(ctx); err != nil {
				peak.err = err
				return
			}
			if err := d.Sync(ctx); err != nil {
				peak.err = err
				return
			}
			peak.gflops = max(peak.gflops, peakFlopsPerRun/time.Since(t0).Seconds()/1e9)
		}
	})
	return peak.gflops, peak.err
}

func benchGPU(b *testing.B) *ops.GPU {
	dev := gputest.OpenOrSkip(b, wgpu.Options{})
	g, err := ops.NewGPU(dev, ops.GPUOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(g.Close)
	return g
}

// runOp times fn on the GPU: one warm-up (kernel compile, first bind), then
// b.N runs submitted together and one Sync. It reports GFLOP/s and the
// fraction of the adapter's measured FMA peak.
func runOp(b *testing.B, g *ops.GPU, flops float64, fn func()) {
	ctx := context.Background()
	fn()
	if err := g.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	pk, err := measurePeak(g.Device())
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		fn()
	}
	if err := g.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	gf := flops * float64(b.N) / b.Elapsed().Seconds() / 1e9
	b.ReportMetric(gf, "GFLOP/s")
	b.ReportMetric(gf/pk, "of-peak")
	b.Logf("adapter %s: %.2f GFLOP/s, %.2f of the measured FMA peak %.1f GFLOP/s", g.Device().Info(), gf, gf/pk, pk)
}

func BenchmarkPeakFMA(b *testing.B) {
	g := benchGPU(b)
	pk, err := measurePeak(g.Device())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(pk, "GFLOP/s")
	b.Logf("adapter %s: FMA peak %.1f GFLOP/s", g.Device().Info(), pk)
}

func alloc(b *testing.B, g *ops.GPU, shape ...int) *ops.Tensor {
	t, err := g.New(tensor.F32, shape...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { g.Release(t) })
	return t
}

// BenchmarkMatMul runs the Linear layers of the real models: Next-DiT's
// FFN up-projection over a 1024² image's 4352 tokens (the headline
// shape), its attention projection, and Gemma's FFN over 77 tokens.
func BenchmarkMatMul(b *testing.B) {
	for _, s := range []struct{ M, K, N int }{
		{77, 2304, 9216},
		{4352, 2304, 2304},
		{4352, 2304, 9216},
	} {
		b.Run(fmt.Sprintf("M=%d,K=%d,N=%d", s.M, s.K, s.N), func(b *testing.B) {
			g := benchGPU(b)
			x, w, y := alloc(b, g, s.M, s.K), alloc(b, g, s.N, s.K), alloc(b, g, s.M, s.N)
			runOp(b, g, 2*float64(s.M)*float64(s.K)*float64(s.N), func() { g.MatMul(y, x, w, nil) })
		})
	}
}

// BenchmarkMatMul16 is BenchmarkMatMul with f16 weights unpacked in the
// shader (half the weight bytes).
func BenchmarkMatMul16(b *testing.B) {
	const M, K, N = 77, 2304, 9216
	g := benchGPU(b)
	x, y := alloc(b, g, M, K), alloc(b, g, M, N)
	w, err := g.New(tensor.F16, N, K)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { g.Release(w) })
	runOp(b, g, 2*M*K*N, func() { g.MatMul(y, x, w, nil) })
}

func BenchmarkAdd(b *testing.B) {
	g := benchGPU(b)
	const rows, cols = 4352, 2304
	x, bias, y := alloc(b, g, rows, cols), alloc(b, g, cols), alloc(b, g, rows, cols)
	b.SetBytes(3 * rows * cols * 4)
	runOp(b, g, rows*cols, func() { g.Add(y, x, bias) })
}
