package ops_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/luminaweb/lumina/internal/gputest"
	"github.com/luminaweb/lumina/model/ops"
	"github.com/luminaweb/lumina/model/tensor"
	"github.com/luminaweb/lumina/wgpu"
)

// convRun uploads the same host operands to b, runs Conv2D and returns the
// output and the number of bind groups the device created for it (one per
// distinct window, so more than one means the work was split).
func convRun(t *testing.T, b ops.Backend, dev *wgpu.Device, xs, ws, bs []float32, B, Ci, Co, H, W, k int) ([]float32, int) {
	t.Helper()
	up := func(v []float32, shape ...int) *ops.Tensor {
		d, err := b.New(tensor.F32, shape...)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Write(d, v); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Release(d) })
		return d
	}
	x, w := up(xs, B, Ci, H, W), up(ws, Co, Ci, k, k)
	var bias *ops.Tensor
	if bs != nil {
		bias = up(bs, Co)
	}
	dst := up(make([]float32, B*Co*H*W), B, Co, H, W)
	ctx := context.Background()
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	var before wgpu.Stats
	if dev != nil {
		before = dev.Stats()
	}
	b.(ops.Conv).Conv2D(dst, x, w, bias, (k-1)/2)
	got, err := b.Read(ctx, dst)
	if err != nil {
		t.Fatalf("%s: %v", b.Name(), err)
	}
	if dev == nil {
		return got, 0
	}
	return got, dev.Stats().BindGroups - before.BindGroups
}

func convRandVec(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(2*rng.Float64() - 1)
	}
	return v
}

func convAbs(v []float32) []float32 {
	a := make([]float32, len(v))
	for i, x := range v {
		a[i] = float32(math.Abs(float64(x)))
	}
	return a
}

// A device capped at 1 MiB per storage binding must split convolutions
// whose x or dst are several MiB into windows (channel chunks, or row bands
// with their halo when one channel plane is above 1 MiB), and get the same
// bits as the unsplit path on a device with the full limit, within the
// dot-product bound of the float64 reference.
func TestConvSplitBinding(t *testing.T) {
	small := gputest.OpenOrSkip(t, wgpu.Options{MaxStorageBinding: 1 << 20})
	gs, err := ops.NewGPU(small, ops.GPUOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gs.Close)
	gb := newGPU(t, ops.GPUOptions{})
	cpu := ops.NewCPU()
	for _, c := range []struct {
		B, Ci, Co, H, W, k int
		bias               bool
	}{
		{1, 64, 64, 96, 96, 3, true},  // 2.25 MiB x and dst: chunks of 28 channel planes
		{1, 64, 32, 96, 96, 1, false}, // 1×1 shortcut
		{2, 2, 3, 520, 520, 3, true},  // a 1.03 MiB plane: bands of rows plus halo
		{1, 3, 2, 530, 517, 1, true},  // bands without halo, W odd
		{3, 5, 7, 40, 40, 3, false},   // fits: one dispatch on both devices
	} {
		name := fmt.Sprintf("B=%d,Ci=%d,Co=%d,H=%d,W=%d,k=%d", c.B, c.Ci, c.Co, c.H, c.W, c.k)
		t.Run(name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(c.Ci*1000+c.H)))
			xs := convRandVec(rng, c.B*c.Ci*c.H*c.W)
			ws := convRandVec(rng, c.Co*c.Ci*c.k*c.k)
			var bs []float32
			if c.bias {
				bs = convRandVec(rng, c.Co)
			}
			split, nSplit := convRun(t, gs, small, xs, ws, bs, c.B, c.Ci, c.Co, c.H, c.W, c.k)
			whole, nWhole := convRun(t, gb, gb.Device(), xs, ws, bs, c.B, c.Ci, c.Co, c.H, c.W, c.k)
			want, _ := convRun(t, cpu, nil, xs, ws, bs, c.B, c.Ci, c.Co, c.H, c.W, c.k)
			var absB []float32
			if c.bias {
				absB = convAbs(bs)
			}
			scale, _ := convRun(t, cpu, nil, convAbs(xs), convAbs(ws), absB, c.B, c.Ci, c.Co, c.H, c.W, c.k)
			bigX := uint64(c.B*max(c.Ci, c.Co)*c.H*c.W)*4 > small.Limits().MaxStorageBufferBindingSize
			t.Logf("bind groups: %d split (limit %d B), %d unsplit", nSplit, small.Limits().MaxStorageBufferBindingSize, nWhole)
			if bigX && nSplit < 2 || nWhole != 1 {
				t.Errorf("expected a split only on the 1 MiB device: %d and %d bind groups", nSplit, nWhole)
			}
			rel := 2 * float64(c.Ci*c.k*c.k+1) / (1 << 24)
			bad := 0
			for i := range want {
				if math.Float32bits(split[i]) != math.Float32bits(whole[i]) {
					if bad++; bad <= 5 {
						t.Errorf("[%d] split %v, unsplit %v", i, split[i], whole[i])
					}
				}
				if d := math.Abs(float64(split[i]) - float64(want[i])); !(d <= rel*float64(scale[i])*(1+1e-6)) {
					if bad++; bad <= 5 {
						t.Errorf("[%d] split %v, reference %v: diff %.3g above %.3g", i, split[i], want[i], d, rel*float64(scale[i]))
					}
				}
			}
		})
	}
}

// Gather from a table of 9 MiB on a 1 MiB-binding device: windows of rows,
// bit-exact, with invalid ids giving zero rows.
func TestGatherSplitBinding(t *testing.T) {
	small := gputest.OpenOrSkip(t, wgpu.Options{MaxStorageBinding: 1 << 20})
	gs, err := ops.NewGPU(small, ops.GPUOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gs.Close)
	const V, D, N = 1000, 2304, 77
	rng := rand.New(rand.NewPCG(2, 3))
	table := convRandVec(rng, V*D)
	ids := make([]float32, N)
	for i := range ids {
		ids[i] = float32(rng.IntN(V))
	}
	ids[3], ids[40], ids[76] = -1, V, 999
	var out [2][]float32
	for j, b := range []ops.Backend{gs, ops.NewCPU()} {
		tt, _ := b.New(tensor.F32, V, D)
		it, _ := b.New(tensor.F32, N)
		dt, _ := b.New(tensor.F32, N, D)
		if err := b.Write(tt, table); err != nil {
			t.Fatal(err)
		}
		if err := b.Write(it, ids); err != nil {
			t.Fatal(err)
		}
		b.(ops.Conv).Gather(dt, tt, it)
		if out[j], err = b.Read(context.Background(), dt); err != nil {
			t.Fatal(err)
		}
	}
	for i := range out[1] {
		if math.Float32bits(out[0][i]) != math.Float32bits(out[1][i]) {
			t.Fatalf("[%d] (row %d, id %v): GPU %v, CPU %v", i, i/D, ids[i/D], out[0][i], out[1][i])
		}
	}
}
