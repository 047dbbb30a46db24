package wgpu_test

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/luminaweb/lumina/internal/gputest"
	"github.com/luminaweb/lumina/wgpu"
)

func TestMain(m *testing.M) { gputest.Main(m) }

const axpy = `
override SCALE: f32 = 1.0;
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
struct Params { n: u32, a: f32, _p0: u32, _p1: u32 }
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(64)
fn axpy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
	let i = gid.x + gid.y * nwg.x * 64u;
	if (i >= params.n) { return; }
	out[i] = SCALE * (params.a * x[i] + y[i]);
}

// One workgroup of one invocation per element: 70,000 workgroups forces the
// 2-D split. Each writes its linear workgroup id.
@compute @workgroup_size(1)
fn ids(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
	let i = wg.x + wg.y * nwg.x;
	if (i >= params.n) { return; }
	out[i] = f32(i) + x[0] * 0.0 + y[0] * 0.0;
}
`

func f32bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return b
}

func bytesF32(b []byte) []float32 {
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

func params(n uint32, a float32) []byte {
	p := make([]byte, 16)
	binary.LittleEndian.PutUint32(p, n)
	binary.LittleEndian.PutUint32(p[4:], math.Float32bits(a))
	return p
}

func newFilled(t *testing.T, d *wgpu.Device, v []float32, label string) *wgpu.Buffer {
	t.Helper()
	b, err := d.NewBuffer(uint64(4*len(v)), label)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Write(b, 0, f32bytes(v)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Destroy)
	return b
}

func TestDispatchAndReadBack(t *testing.T) {
	d := gputest.OpenOrSkip(t, wgpu.Options{})
	ctx := context.Background()
	const n = 1000
	x, y := make([]float32, n), make([]float32, n)
	for i := range x {
		x[i], y[i] = float32(i), float32(2*i+1)
	}
	bx, by := newFilled(t, d, x, "x"), newFilled(t, d, y, "y")
	out := newFilled(t, d, make([]float32, n), "out")
	for _, scale := range []float64{1, 0.5} {
		k, err := d.NewKernel(wgpu.KernelSpec{Code: axpy, Entry: "axpy", Constants: map[string]float64{"SCALE": scale}})
		if err != nil {
			t.Fatal(err)
		}
		b := d.NewBatch()
		b.Dispatch(k, (n+63)/64, params(n, 3), wgpu.Bind(bx), wgpu.Bind(by), wgpu.Bind(out))
		if err := b.Submit(ctx); err != nil {
			t.Fatal(err)
		}
		raw, err := d.Read(ctx, out, 0, 4*n)
		if err != nil {
			t.Fatal(err)
		}
		for i, got := range bytesF32(raw) {
			if want := float32(scale) * (3*x[i] + y[i]); got != want {
				t.Fatalf("SCALE=%v: out[%d] = %v, want %v", scale, i, got, want)
			}
		}
	}
}

// More than 65,535 workgroups are split into a 2-D grid; every linear id
// must be visited exactly once and the overshoot guarded.
func TestGridSplit(t *testing.T) {
	d := gputest.OpenOrSkip(t, wgpu.Options{})
	ctx := context.Background()
	const n = 70001 // prime-ish, above the 65,535 per-dimension limit
	if x, y := d.Grid(n); y < 2 || x*y < n || x > d.Limits().MaxComputeWorkgroupsPerDimension {
		t.Fatalf("Grid(%d) = %d×%d", n, x, y)
	}
	zero := newFilled(t, d, []float32{0}, "zero")
	out := newFilled(t, d, make([]float32, n+1), "out")
	sentinel := float32(-7)
	if err := d.Write(out, 4*n, f32bytes([]float32{sentinel})); err != nil {
		t.Fatal(err)
	}
	k, err := d.NewKernel(wgpu.KernelSpec{Code: axpy, Entry: "ids"})
	if err != nil {
		t.Fatal(err)
	}
	b := d.NewBatch()
	b.Dispatch(k, n, params(n, 0), wgpu.Bind(zero), wgpu.Bind(zero), wgpu.Bind(out))
	if err := b.Submit(ctx); err != nil {
		t.Fatal(err)
	}
	raw, err := d.Read(ctx, out, 0, 4*(n+1))
	if err != nil {
		t.Fatal(err)
	}
	v := bytesF32(raw)
	for i := range n {
		if v[i] != float32(i) {
			t.Fatalf("out[%d] = %v: workgroup not visited or visited twice", i, v[i])
		}
	}
	if v[n] != sentinel {
		t.Fatalf("overshoot wrote past the end: %v", v[n])
	}
}

// A loop that repeats the same dispatches creates no bind group, kernel or
// buffer after its first pass.
func TestSteadyStateCreatesNothing(t *testing.T) {
	d := gputest.OpenOrSkip(t, wgpu.Options{})
	ctx := context.Background()
	bx := newFilled(t, d, make([]float32, 64), "x")
	out := newFilled(t, d, make([]float32, 64), "out")
	var first wgpu.Stats
	for step := range 4 {
		k, err := d.NewKernel(wgpu.KernelSpec{Code: axpy, Entry: "axpy"})
		if err != nil {
			t.Fatal(err)
		}
		b := d.NewBatch()
		for i := range 10 {
			b.Dispatch(k, 1, params(64, float32(step*10+i)), wgpu.Bind(bx), wgpu.Bind(bx), wgpu.Bind(out))
		}
		if err := b.Submit(ctx); err != nil {
			t.Fatal(err)
		}
		if step == 0 {
			first = d.Stats()
			continue
		}
		s := d.Stats()
		if s.BindGroups != first.BindGroups || s.Kernels != first.Kernels || s.Buffers != first.Buffers {
			t.Fatalf("step %d created objects: first %+v, now %+v", step, first, s)
		}
	}
	if first.BindGroups != 1 {
		t.Errorf("10 identical dispatches made %d bind groups, want 1", first.BindGroups)
	}
}

func TestBadInput(t *testing.T) {
	d := gputest.OpenOrSkip(t, wgpu.Options{MaxStorageBinding: 1 << 20})
	ctx := context.Background()
	var le *wgpu.LimitError

	if _, err := d.NewBuffer(d.Limits().MaxBufferSize+4, "huge"); !errors.As(err, &le) || le.Name != "maxBufferSize" {
		t.Errorf("buffer above maxBufferSize: got %v", err)
	}
	big, err := d.NewBuffer(2<<20, "big")
	if err != nil {
		t.Fatal(err)
	}
	defer big.Destroy()
	small := newFilled(t, d, make([]float32, 16), "small")
	small2 := newFilled(t, d, make([]float32, 16), "small2")
	k, err := d.NewKernel(wgpu.KernelSpec{Code: axpy, Entry: "axpy"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		rec  func(b *wgpu.Batch)
		want string
	}{
		{"binding above the storage binding limit", func(b *wgpu.Batch) {
			b.Dispatch(k, 1, params(1, 1), wgpu.Bind(big), wgpu.Bind(small), wgpu.Bind(small))
		}, "maxStorageBufferBindingSize"},
		{"too few bindings", func(b *wgpu.Batch) { b.Dispatch(k, 1, params(1, 1), wgpu.Bind(small)) }, "the kernel declares 3"},
		{"missing params", func(b *wgpu.Batch) { b.Dispatch(k, 1, nil, wgpu.Bind(small), wgpu.Bind(small), wgpu.Bind(small2)) }, "no params"},
		{"writable overlap", func(b *wgpu.Batch) {
			b.Dispatch(k, 1, params(1, 1), wgpu.Bind(small), wgpu.Bind(small), wgpu.Bind(small))
		}, "one is writable"},
		{"writable buffer bound twice at disjoint ranges", func(b *wgpu.Batch) {
			b.Dispatch(k, 1, params(1, 1), wgpu.Bind(small2), wgpu.Binding{Buffer: big, Size: 256}, wgpu.Binding{Buffer: big, Offset: 512, Size: 256})
		}, "one is writable"},
		{"range outside buffer", func(b *wgpu.Batch) {
			b.Dispatch(k, 1, params(1, 1), wgpu.Bind(small), wgpu.Bind(small), wgpu.Binding{Buffer: big, Offset: 256, Size: 2 << 20})
		}, "outside buffer"},
	}
	for _, c := range cases {
		b := d.NewBatch()
		c.rec(b)
		err := b.Submit(ctx)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error mentioning %q", c.name, err, c.want)
		}
	}
	if _, err := d.NewKernel(wgpu.KernelSpec{Code: "@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; }", Entry: "main"}); err == nil {
		t.Error("a WGSL type error compiled")
	} else {
		t.Logf("compile error reported as: %v", err)
	}
	if _, err := d.NewKernel(wgpu.KernelSpec{Code: axpy, Entry: "axpy", Constants: map[string]float64{"NOPE": 1}}); err == nil {
		t.Error("a constant naming no override was accepted")
	}
	if _, err := d.Read(ctx, small, 0, 1<<20); err == nil {
		t.Error("read past the end was accepted")
	}
	if err := d.Write(small, 2, []byte{1, 2}); err == nil {
		t.Error("unaligned write was accepted")
	}
	small.Destroy()
	if err := d.Write(small, 0, make([]byte, 4)); err == nil || !strings.Contains(err.Error(), "destroyed") {
		t.Errorf("write to a destroyed buffer: %v", err)
	}
}

// A build without a WebGPU implementation (CGO_ENABLED=0, wasip1) answers
// Open with ErrUnavailable and says which build it is and what to do.
func TestOpenWithoutImplementation(t *testing.T) {
	if wgpu.Implemented() {
		t.Skip("this build has a WebGPU implementation; run with CGO_ENABLED=0")
	}
	_, err := wgpu.Open(context.Background(), wgpu.Options{})
	if !errors.Is(err, wgpu.ErrUnavailable) || !strings.Contains(err.Error(), "CGO_ENABLED=1") {
		t.Fatalf("got %v", err)
	}
}
