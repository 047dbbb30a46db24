package ops_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
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
func runOp(b *testing.B, g *ops.GPU, flops float64, fn func()) { runOpWarm(b, g, flops, fn, fn) }

// runOpWarm is runOp with a warm-up of its own (the same kernels on a
// small shape), for ops that run for minutes on a CPU adapter.
func runOpWarm(b *testing.B, g *ops.GPU, flops float64, warm, fn func()) {
	pk, err := measurePeak(g.Device())
	if err != nil {
		b.Fatal(err)
	}
	timeOp(b, g, warm, fn)
	gf := flops * float64(b.N) / b.Elapsed().Seconds() / 1e9
	b.ReportMetric(gf, "GFLOP/s")
	b.ReportMetric(gf/pk, "of-peak")
	b.Logf("adapter %s: %.2f GFLOP/s, %.2f of the measured FMA peak %.1f GFLOP/s", g.Device().Info(), gf, gf/pk, pk)
}

// timeOp runs warm and waits, then times b.N runs of fn and one Sync.
func timeOp(b *testing.B, g *ops.GPU, warm, fn func()) {
	ctx := context.Background()
	warm()
	if err := g.Sync(ctx); err != nil {
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
}

// runBytes times fn like runOp and reports GB/s of the bytes it must move
// at least (one read of each input, one write of the output).
func runBytes(b *testing.B, g *ops.GPU, bytes float64, fn func()) {
	b.SetBytes(int64(bytes))
	timeOp(b, g, fn, fn)
	gbs := bytes * float64(b.N) / b.Elapsed().Seconds() / 1e9
	b.ReportMetric(gbs, "GB/s")
	b.Logf("adapter %s: %.2f GB/s", g.Device().Info(), gbs)
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

// BenchmarkMatMulQ is BenchmarkMatMul16 with q8 and q4 weights read packed
// (8.5 and 5 bits a weight) and dequantized in registers.
func BenchmarkMatMulQ(b *testing.B) {
	const M, K, N = 77, 2304, 9216
	for _, dt := range []tensor.DType{tensor.Q8, tensor.Q4} {
		b.Run(fmt.Sprintf("w=%s,M=%d,K=%d,N=%d", dt, M, K, N), func(b *testing.B) {
			g := benchGPU(b)
			x, y := alloc(b, g, M, K), alloc(b, g, M, N)
			w, err := g.New(dt, N, K)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { g.Release(w) })
			runOp(b, g, 2*M*K*N, func() { g.MatMul(y, x, w, nil) })
		})
	}
}

func BenchmarkAdd(b *testing.B) {
	g := benchGPU(b)
	const rows, cols = 4352, 2304
	x, bias, y := alloc(b, g, rows, cols), alloc(b, g, cols), alloc(b, g, rows, cols)
	b.SetBytes(3 * rows * cols * 4)
	runOp(b, g, rows*cols, func() { g.Add(y, x, bias) })
}

// BenchmarkAttention runs Next-DiT's joint attention (24 query heads of 96
// over 8 KV heads, no mask) at a 1024² image's S = 4352 tokens and at
// S = 1024: 4·S²·H·Dh flops (QKᵀ and PV, a multiply-add each).
func BenchmarkAttention(b *testing.B) {
	const H, Hkv, Dh = 24, 8, 96
	for _, S := range []int{1024, 4352} {
		b.Run(fmt.Sprintf("S=%d,H=%d,Hkv=%d,Dh=%d", S, H, Hkv, Dh), func(b *testing.B) {
			g := benchGPU(b)
			o := ops.AttnOptions{Scale: float32(1 / math.Sqrt(Dh))}
			q, k, v, y := alloc(b, g, 1, S, H, Dh), alloc(b, g, 1, S, Hkv, Dh), alloc(b, g, 1, S, Hkv, Dh), alloc(b, g, 1, S, H, Dh)
			wq, wk, wv, wy := alloc(b, g, 1, 16, H, Dh), alloc(b, g, 1, 16, Hkv, Dh), alloc(b, g, 1, 16, Hkv, Dh), alloc(b, g, 1, 16, H, Dh)
			runOpWarm(b, g, 4*float64(S)*float64(S)*H*Dh,
				func() { g.Attention(wy, wq, wk, wv, o) },
				func() { g.Attention(y, q, k, v, o) })
		})
	}
}

// BenchmarkConv2D runs a VAE decoder resnet convolution: 128→128 channels,
// 3×3, at 256×256 (the last up block of a 256² image; 2·Co·Ci·9·H·W flops).
func BenchmarkConv2D(b *testing.B) {
	const C, HW = 128, 256
	g := benchGPU(b)
	x, w, bias, y := alloc(b, g, 1, C, HW, HW), alloc(b, g, C, C, 3, 3), alloc(b, g, C), alloc(b, g, 1, C, HW, HW)
	wx, wyy := alloc(b, g, 1, C, 8, 8), alloc(b, g, 1, C, 8, 8)
	runOpWarm(b, g, 2*C*C*9*HW*HW,
		func() { g.Conv2D(wyy, wx, w, bias, 1) },
		func() { g.Conv2D(y, x, w, bias, 1) })
}

// BenchmarkGroupNorm runs the VAE's GroupNorm (32 groups) at 128 channels
// of 256² and 512 channels of 64² (its mid block at 512²).
func BenchmarkGroupNorm(b *testing.B) {
	for _, s := range []struct{ C, HW int }{{128, 256}, {512, 64}} {
		b.Run(fmt.Sprintf("C=%d,H=W=%d,groups=32", s.C, s.HW), func(b *testing.B) {
			g := benchGPU(b)
			x, y := alloc(b, g, 1, s.C, s.HW, s.HW), alloc(b, g, 1, s.C, s.HW, s.HW)
			w, bias := alloc(b, g, s.C), alloc(b, g, s.C)
			runBytes(b, g, 2*4*float64(s.C*s.HW*s.HW), func() { g.GroupNorm(y, x, w, bias, 32, 1e-6) })
		})
	}
}

// BenchmarkRMSNorm runs Next-DiT's block norm over a 1024² image's tokens
// (4352 × 2304) and its per-head QK-norm (4352·24 rows of 96).
func BenchmarkRMSNorm(b *testing.B) {
	for _, s := range []struct{ rows, D int }{{4352, 2304}, {4352 * 24, 96}} {
		b.Run(fmt.Sprintf("rows=%d,D=%d", s.rows, s.D), func(b *testing.B) {
			g := benchGPU(b)
			x, y, w := alloc(b, g, s.rows, s.D), alloc(b, g, s.rows, s.D), alloc(b, g, s.D)
			runBytes(b, g, 2*4*float64(s.rows*s.D), func() { g.RMSNorm(y, x, w, 1e-6, false) })
		})
	}
}
