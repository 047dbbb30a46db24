package ops_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/luminaweb/lumina/internal/gputest"
	"github.com/luminaweb/lumina/model/ops"
	"github.com/luminaweb/lumina/model/tensor"
	"github.com/luminaweb/lumina/model/weights"
	"github.com/luminaweb/lumina/wgpu"
)

// packedShapes are (N, K) weights: K = 1, ragged groups, whole groups, and
// a Next-DiT row length.
var packedShapes = [][2]int{{1, 1}, {5, 31}, {3, 32}, {7, 33}, {67, 100}, {40, 2304}}

// packed quantizes random values of shape (N, K) with model/weights'
// encoder, the writer of packs.
func packed(t *testing.T, dt tensor.DType, N, K int, rng *rand.Rand) []byte {
	t.Helper()
	v := make([]float32, N*K)
	for i := range v {
		v[i] = float32(rng.NormFloat64() * 0.05)
	}
	raw, err := weights.Encode(weights.PackDType(dt.String()), tensor.Shape{N, K}, v)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// The sizes in package tensor, the CPU backend's decoding (shaders/ref,
// written from the layout description) and its MatMul agree with
// model/weights, which writes the packs.
func TestPackedLayoutMatchesWeights(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	c := ops.NewCPU()
	for _, dt := range []tensor.DType{tensor.Q8, tensor.Q4} {
		for _, s := range append(packedShapes, [2]int{2304, 9216}, [2]int{9216, 2304}, [2]int{1, 4097}) {
			shape := tensor.Shape{s[0], s[1]}
			want, err := weights.PackedLength(weights.PackDType(dt.String()), shape)
			if err != nil {
				t.Fatal(err)
			}
			if got := dt.Bytes(shape); got != want {
				t.Errorf("%s%v: tensor says %d bytes, weights.PackedLength %d", dt, shape, got, want)
			}
		}
		for _, s := range packedShapes {
			N, K, M := s[0], s[1], 9
			raw := packed(t, dt, N, K, rng)
			wv, err := weights.Dequantize(weights.PackDType(dt.String()), tensor.Shape{N, K}, raw)
			if err != nil {
				t.Fatal(err)
			}
			w, _ := c.New(dt, N, K)
			if err := c.WriteRaw(w, raw); err != nil {
				t.Fatal(err)
			}
			got, _ := c.Read(ctx, w)
			for i := range got {
				if got[i] != float32(wv[i]) {
					t.Fatalf("%s(%d,%d): element %d reads %v, weights.Dequantize %v", dt, N, K, i, got[i], wv[i])
				}
			}
			x, _ := c.New(tensor.F32, M, K)
			xv := make([]float32, M*K)
			for i := range xv {
				xv[i] = float32(rng.Float64()*2 - 1)
			}
			c.Write(x, xv)
			y, _ := ops.MatMul(c, x, w, nil)
			yv, _ := c.Read(ctx, y)
			for m := range M {
				for n := range N {
					var sum float64
					for k := range K {
						sum += float64(xv[m*K+k]) * wv[n*K+k]
					}
					if yv[m*N+n] != float32(sum) {
						t.Fatalf("%s(%d,%d): CPU MatMul [%d,%d] = %v, float64 product with weights.Dequantize %v", dt, N, K, m, n, yv[m*N+n], float32(sum))
					}
				}
			}
		}
	}
}

// The kernel reads exactly the pack layout: weights written by
// model/weights.Encode and uploaded with WriteRaw give the CPU's result
// within the f32 dot-product bound (opstest's matmulQCase derives it).
func TestMatMulQGPUMatchesPack(t *testing.T) {
	g := newGPU(t, ops.GPUOptions{})
	c := ops.NewCPU()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 4))
	const u = 1.0 / (1 << 24)
	for _, dt := range []tensor.DType{tensor.Q8, tensor.Q4} {
		for _, s := range packedShapes {
			N, K, M := s[0], s[1], 33
			t.Run(fmt.Sprintf("%s,M=%d,K=%d,N=%d", dt, M, K, N), func(t *testing.T) {
				raw := packed(t, dt, N, K, rng)
				wv, _ := weights.Dequantize(weights.PackDType(dt.String()), tensor.Shape{N, K}, raw)
				xv := make([]float32, M*K)
				for i := range xv {
					xv[i] = float32(rng.Float64()*2 - 1)
				}
				var res [2][]float32
				for i, b := range []ops.Backend{c, g} {
					w, err := b.New(dt, N, K)
					if err != nil {
						t.Fatal(err)
					}
					defer b.Release(w)
					if err := b.WriteRaw(w, raw); err != nil {
						t.Fatal(err)
					}
					x, _ := b.New(tensor.F32, M, K)
					defer b.Release(x)
					if err := b.Write(x, xv); err != nil {
						t.Fatal(err)
					}
					y, err := ops.MatMul(b, x, w, nil)
					if err != nil {
						t.Fatal(err)
					}
					defer b.Release(y)
					if res[i], err = b.Read(ctx, y); err != nil {
						t.Fatal(err)
					}
				}
				for m := range M {
					for n := range N {
						var scale float64
						for k := range K {
							scale += math.Abs(float64(xv[m*K+k]) * wv[n*K+k])
						}
						want, got := float64(res[0][m*N+n]), float64(res[1][m*N+n])
						if d := math.Abs(got - want); !(d <= 2*float64(K+2)*u*scale) {
							t.Fatalf("[%d,%d]: GPU %v, CPU %v (diff %.3g > %.3g)", m, n, got, want, d, 2*float64(K+2)*u*scale)
						}
					}
				}
			})
		}
	}
}

// Packed tensors: views of whole rows only, no float writes, byte counts
// checked;
// a packed weight above the binding limit is a *wgpu.LimitError.
func TestPackedMisuse(t *testing.T) {
	c := ops.NewCPU()
	w, _ := c.New(tensor.Q8, 4, 64)
	msg := func(f func()) (msg string) {
		defer func() {
			if r := recover(); r != nil {
				msg = fmt.Sprint(r)
			}
		}()
		f()
		return ""
	}
	if m := msg(func() { c.View(w, 32, 1, 32) }); !strings.Contains(m, "packed") {
		t.Errorf("a view of part of a row of a q8 tensor: %q", m)
	}
	if m := msg(func() { c.View(w, 0, 256) }); !strings.Contains(m, "packed") {
		t.Errorf("a flat view of a q8 tensor: %q", m)
	}
	if m := msg(func() { c.View(w, 64, 1, 64) }); m != "" {
		t.Errorf("a view of one whole row of a q8 tensor: %q", m)
	}
	if m := msg(func() { c.View(w, 0, 4, 64) }); m != "" {
		t.Errorf("the whole view of a q8 tensor: %q", m)
	}
	if err := c.Write(w, make([]float32, 4*64)); err == nil || !strings.Contains(err.Error(), "WriteRaw") {
		t.Errorf("Write into a q8 tensor: %v", err)
	}
	if err := c.WriteRaw(w, make([]byte, 10)); err == nil {
		t.Error("WriteRaw of the wrong length accepted")
	}
	h, _ := c.New(tensor.F16, 3)
	if err := c.WriteRaw(h, []byte{0, 0x3c, 0, 0xc0, 0, 0x38}); err != nil { // 1, -2, 0.5 without the pad half
		t.Fatal(err)
	}
	if v, _ := c.Read(context.Background(), h); v[0] != 1 || v[1] != -2 || v[2] != 0.5 {
		t.Errorf("f16 WriteRaw read back %v", v)
	}

	small, err := ops.NewGPU(gputest.OpenOrSkip(t, wgpu.Options{MaxStorageBinding: 1 << 20}), ops.GPUOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	big, err := small.New(tensor.Q4, 2048, 1024) // 1.25 MiB
	if err != nil {
		t.Fatal(err)
	}
	x, _ := small.New(tensor.F32, 2, 1024)
	y, _ := small.New(tensor.F32, 2, 2048)
	small.MatMul(y, x, big, nil)
	var le *wgpu.LimitError
	if err := small.Sync(context.Background()); !errors.As(err, &le) || le.Name != "maxStorageBufferBindingSize" {
		t.Errorf("a q4 weight above the binding limit: %v", err)
	} else {
		t.Logf("as expected: %v", err)
	}
}
