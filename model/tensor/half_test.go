package tensor

import (
	"math"
	"testing"
)

// Every binary16 pattern must survive decode then encode unchanged (NaNs
// compare as NaN), which pins both codecs against each other exhaustively.
func TestF16RoundTripAllPatterns(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		f := F16ToF32(h)
		got := F32ToF16(f)
		if math.IsNaN(float64(f)) {
			if got&0x7c00 != 0x7c00 || got&0x3ff == 0 {
				t.Fatalf("NaN %#04x re-encoded as %#04x", h, got)
			}
			continue
		}
		if got != h {
			t.Fatalf("%#04x -> %g -> %#04x", h, f, got)
		}
	}
}

// Known values from the IEEE 754 tables, including ties that must round to
// even and the overflow threshold.
func TestF16KnownValues(t *testing.T) {
	cases := []struct {
		f float32
		h uint16
	}{
		{1, 0x3c00}, {-2, 0xc000}, {65504, 0x7bff}, {65520, 0x7c00},
		{5.960464477539063e-08, 0x0001}, {6.097555160522461e-05, 0x03ff},
		{1 + 1.0/2048, 0x3c00},           // tie: rounds to even (down)
		{1 + 3.0/2048, 0x3c02},           // tie: rounds to even (up)
		{2.9802322387695312e-08, 0x0000}, // half of the smallest subnormal: tie to even
		{float32(math.Inf(-1)), 0xfc00},
	}
	for _, c := range cases {
		if got := F32ToF16(c.f); got != c.h {
			t.Errorf("F32ToF16(%g) = %#04x, want %#04x", c.f, got, c.h)
		}
	}
}

func TestBF16(t *testing.T) {
	cases := []struct {
		f float32
		h uint16
	}{
		{1, 0x3f80}, {-1, 0xbf80}, {3.140625, 0x4049},
		{math.Float32frombits(0x3f808000), 0x3f80}, // tie to even (down)
		{math.Float32frombits(0x3f818000), 0x3f82}, // tie to even (up)
	}
	for _, c := range cases {
		if got := F32ToBF16(c.f); got != c.h {
			t.Errorf("F32ToBF16(%g) = %#04x, want %#04x", c.f, got, c.h)
		}
		if c.f == BF16ToF32(c.h) && F32ToBF16(BF16ToF32(c.h)) != c.h {
			t.Errorf("round trip of %#04x", c.h)
		}
	}
	if !math.IsNaN(float64(BF16ToF32(F32ToBF16(float32(math.NaN()))))) {
		t.Error("NaN lost")
	}
}
