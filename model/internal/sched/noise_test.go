package sched

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// The first values of the generator, as bits. They were reproduced by an
// independent Python implementation written from Noise's doc comment.
// Changing them changes every image a seed ever produced.
func TestNoiseFirstValues(t *testing.T) {
	for _, tc := range []struct {
		seed, stream uint64
		bits         []uint32
	}{
		{0, 0, []uint32{0xbf8c3e6c, 0x3f31b7a6, 0xbffa64bc, 0xbf3dce15, 0xbe30a9b1, 0xbf3a2bf0}},
		{42, 0, []uint32{0x3f1e8695, 0xbe499f01, 0x3de03d16, 0x3eaf4557, 0x3f39eb3d, 0x4013dd49}},
		{42, 1, []uint32{0xbfa2716b, 0x3e954949, 0x3f58a16e, 0x3fecd041, 0xbfa76edc, 0xbe40688c}},
	} {
		got := make([]float32, len(tc.bits))
		Noise(got, tc.seed, tc.stream)
		for i, b := range tc.bits {
			if math.Float32bits(got[i]) != b {
				t.Errorf("Noise(seed %d, stream %d)[%d] = %v (%#08x), want %v (%#08x)",
					tc.seed, tc.stream, i, got[i], math.Float32bits(got[i]), math.Float32frombits(b), b)
			}
		}
	}
}

// Our PCG is math/rand/v2's, step for step.
func TestPCGIsGoPCG(t *testing.T) {
	for _, s := range [][2]uint64{{0, 0}, {1, 2}, {42, 0}, {math.MaxUint64, 12345}} {
		ours, std := pcg{hi: s[0], lo: s[1]}, rand.NewPCG(s[0], s[1])
		for i := range 1000 {
			if a, b := ours.uint64(), std.Uint64(); a != b {
				t.Fatalf("seed %v, draw %d: %#x, math/rand/v2 gives %#x", s, i, a, b)
			}
		}
	}
}

// ln agrees with math.Log to within 1 ulp (both are fdlibm's algorithm;
// math.Log may be assembly).
func TestLn(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	xs := []float64{1, 0.5, math.Sqrt2 / 2, 0x1p-104, 0.9999999999999999, 1e-300, 3, 1e300}
	for range 100000 {
		xs = append(xs, r.Float64())
	}
	for _, x := range xs {
		if x == 0 {
			continue
		}
		got, want := ln(x), math.Log(x)
		if got != want && math.Abs(got-want) > math.Abs(math.Nextafter(want, 0)-want) {
			t.Fatalf("ln(%v) = %v, math.Log = %v: more than 1 ulp apart", x, got, want)
		}
	}
}

func TestNoiseDistribution(t *testing.T) {
	const n = 1 << 17
	v := make([]float32, n)
	Noise(v, 3, 0)
	var m1, m2, m4 float64
	for _, x := range v {
		f := float64(x)
		m1 += f
		m2 += f * f
		m4 += f * f * f * f
	}
	m1, m2, m4 = m1/n, m2/n, m4/n
	// Standard errors at n = 2^17: mean 0.003, variance 0.004, 4th moment 0.03.
	if math.Abs(m1) > 0.015 || math.Abs(m2-1) > 0.02 || math.Abs(m4-3) > 0.15 {
		t.Errorf("moments: mean %.4f, E[x²] %.4f, E[x⁴] %.4f; want 0, 1, 3", m1, m2, m4)
	}
	// Same arguments, same values; a prefix is the prefix (odd lengths too).
	again := make([]float32, 1001)
	Noise(again, 3, 0)
	if !slices.Equal(again, v[:1001]) {
		t.Error("Noise is not a deterministic stream")
	}
	other := make([]float32, 1001)
	Noise(other, 3, 1)
	same := 0
	for i := range other {
		if other[i] == again[i] {
			same++
		}
	}
	if same > 2 {
		t.Errorf("streams 0 and 1 share %d of 1001 values", same)
	}
}

func TestLatentShape(t *testing.T) {
	s, err := LatentShape(1216, 832)
	if err != nil || len(s) != 3 || s[0] != 16 || s[1] != 104 || s[2] != 152 {
		t.Errorf("LatentShape(1216, 832) = %v, %v; want [16 104 152]", s, err)
	}
	for _, wh := range [][2]int{{1000, 1024}, {0, 64}, {8208, 64}, {-16, 64}} {
		if _, err := LatentShape(wh[0], wh[1]); err == nil {
			t.Errorf("LatentShape(%d, %d): no error", wh[0], wh[1])
		}
	}
	z := []float32{0, 0.3611, -1}
	LatentToVAE(z, z)
	want := []float64{0.1159, 1.1159, -1/0.3611 + 0.1159}
	for i := range z {
		if math.Abs(float64(z[i])-want[i]) > 1e-6 {
			t.Errorf("LatentToVAE[%d] = %v, want %v", i, z[i], want[i])
		}
	}
}
