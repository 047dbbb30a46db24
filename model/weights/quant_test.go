package weights

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/luminaweb/lumina/model/tensor"
)

// randn returns n Gaussian values of standard deviation sd.
func randn(rng *rand.Rand, n int, sd float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64() * sd)
	}
	return v
}

// randt returns n Student-t values (ν = 3, heavy tails) scaled by sd.
func randt(rng *rand.Rand, n int, sd float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		z := rng.NormFloat64()
		c := 0.0
		for range 3 {
			g := rng.NormFloat64()
			c += g * g
		}
		v[i] = float32(z / math.Sqrt(c/3) * sd)
	}
	return v
}

// groupScale returns the f16 scale of the group holding element (r, c).
func groupScale(d PackDType, l QuantLayout, b []byte, r, c int) float64 {
	gi := int64(r*l.Groups + c/QuantGroup)
	if d == PackQ8 {
		return float64(tensor.F16ToF32(binary.LittleEndian.Uint16(b[l.Second+2*gi:])))
	}
	return float64(tensor.F16ToF32(binary.LittleEndian.Uint16(b[l.Second+4*gi:])))
}

// Quantize → dequantize stays within half a step of every group (plus the
// f16 rounding of the scale over the 15 steps of q4), for shapes whose last
// dimension is and is not a multiple of 32, scalars and 1-D included.
func TestQuantRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, shape := range []tensor.Shape{{1}, {7}, {32}, {3, 45}, {2, 3, 64}, {5, 33}, {4, 96}, {1, 1000}, {}} {
		for _, d := range []PackDType{PackQ8, PackQ4} {
			v := randt(rng, shape.Numel(), 0.05)
			if len(v) > 3 {
				v[2] = 0
				v[3] = -v[1]
			}
			b, err := Encode(d, shape, v)
			if err != nil {
				t.Fatal(err)
			}
			l, _ := d.Layout(shape)
			if int64(len(b)) != l.Length || l.Length%4 != 0 || l.Second%4 != 0 {
				t.Fatalf("%s %v: %d bytes, layout %+v", d, shape, len(b), l)
			}
			got, err := Dequantize(d, shape, b)
			if err != nil {
				t.Fatal(err)
			}
			for i, x := range v {
				r, c := i/l.K, i%l.K
				s := groupScale(d, l, b, r, c)
				bound := 0.5 * s * (1 + 1e-9)
				if d == PackQ4 {
					bound = 0.5*s + 15*s/2048 + 1e-12
				}
				if e := math.Abs(got[i] - float64(x)); e > bound {
					t.Fatalf("%s %v [%d]: %v → %v, error %g > %g", d, shape, i, x, got[i], e, bound)
				}
			}
			// Float32 decoding is the float64 reference rounded.
			f := make([]float32, len(v))
			decodeFloat32(d, shape, b, f)
			for i := range f {
				if f[i] != float32(got[i]) {
					t.Fatalf("%s %v [%d]: decodeFloat32 %v, reference %v", d, shape, i, f[i], got[i])
				}
			}
		}
	}
	// Constant groups, zeros, f16 extremes.
	for _, d := range []PackDType{PackQ8, PackQ4} {
		for _, c := range []float32{0, 1, -3.25, 60000, -1e-6} {
			v := []float32{c, c, c, c}
			b, err := Encode(d, tensor.Shape{4}, v)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := Dequantize(d, tensor.Shape{4}, b)
			if e := math.Abs(got[0] - float64(c)); e > math.Abs(float64(c))*1e-3+1e-7 {
				t.Errorf("%s constant %v → %v", d, c, got[0])
			}
		}
		for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), 1e30} {
			if _, err := Encode(d, tensor.Shape{2}, []float32{1, bad}); err == nil {
				t.Errorf("%s accepted %v", d, bad)
			}
		}
	}
}

// The documented byte positions, pinned for the kernel author: shape
// [2,40] has 2 groups a row (the second padded), group (1,1) holds column 33.
func TestQuantLayoutPositions(t *testing.T) {
	shape := tensor.Shape{2, 40}
	v := make([]float32, 80)
	v[40+33] = 1  // (r=1, c=33): group 3, j=1
	v[40+32] = -1 // (r=1, c=32): group 3, j=0
	b, _ := Encode(PackQ8, shape, v)
	l, _ := PackQ8.Layout(shape)
	if l.Groups != 2 || l.Second != 128 || l.Length != 136 {
		t.Fatalf("q8 layout %+v", l)
	}
	w := binary.LittleEndian.Uint32(b[4*(3*8+1/4):])
	if int8(w>>(8*(1%4))) != 127 || int8(w) != -127 {
		t.Errorf("q8 word %08x", w)
	}
	if s := binary.LittleEndian.Uint32(b[l.Second+4*(3/2):]); tensor.F16ToF32(uint16(s>>16)) != tensor.F16ToF32(tensor.F32ToF16(1.0/127)) {
		t.Errorf("q8 scale word %08x", s)
	}
	b, _ = Encode(PackQ4, shape, v)
	l, _ = PackQ4.Layout(shape)
	if l.Second != 64 || l.Length != 80 {
		t.Fatalf("q4 layout %+v", l)
	}
	w = binary.LittleEndian.Uint32(b[4*(3*4+1/8):])
	if w&0xf != 0 || w>>4&0xf != 15 || w>>8&0xf != 8 {
		t.Errorf("q4 word %08x", w)
	}
	dm := binary.LittleEndian.Uint32(b[l.Second+4*3:])
	if tensor.F16ToF32(uint16(dm>>16)) != -1 || tensor.F16ToF32(uint16(dm)) != tensor.F16ToF32(tensor.F32ToF16(2.0/15)) {
		t.Errorf("q4 dm word %08x", dm)
	}
}

// q4's format was chosen by this measurement: symmetric (Q4_0-style, 4.5
// bits a weight) against asymmetric (scale and min, 5.0 bits), on
// Gaussian and Student-t (ν=3) weights of real Next-DiT and Gemma shapes.
// Run with -v for the figures; the asymmetric error must be lower.
func TestQ4SymmetricVsAsymmetric(t *testing.T) {
	shapes := []struct {
		name string
		rows int
		k    int
	}{
		{"dit attention.out [2304,2304]", 2304, 2304},
		{"dit feed_forward.w2 [2304,9216]", 2304, 9216},
		{"gemma mlp.up_proj [9216,2304]", 9216, 2304},
	}
	if testing.Short() {
		for i := range shapes {
			shapes[i].rows = 64
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for _, s := range shapes {
		for _, dist := range []string{"gaussian", "student-t3"} {
			var v []float32
			if dist == "gaussian" {
				v = randn(rng, s.rows*s.k, 0.02)
			} else {
				v = randt(rng, s.rows*s.k, 0.02)
			}
			var sym, asym, q8, ss float64
			qs := make([]byte, 16)
			for g := 0; g < len(v); g += 32 {
				x := v[g : g+32]
				d16, err := quantQ4Symmetric(x, qs)
				if err != nil {
					t.Fatal(err)
				}
				d := float64(tensor.F16ToF32(d16))
				for j, f := range x {
					q := float64(qs[j/2] >> (4 * (j % 2)) & 15)
					e := (q-8)*d - float64(f)
					sym += e * e
					ss += float64(f) * float64(f)
				}
				d16, m16, _ := quantQ4(x, qs)
				d, m := float64(tensor.F16ToF32(d16)), float64(tensor.F16ToF32(m16))
				for j, f := range x {
					q := float64(qs[j/2] >> (4 * (j % 2)) & 15)
					e := q*d + m - float64(f)
					asym += e * e
				}
				q8b := make([]byte, 32)
				d16, _ = quantQ8(x, q8b)
				d = float64(tensor.F16ToF32(d16))
				for j, f := range x {
					e := float64(int8(q8b[j]))*d - float64(f)
					q8 += e * e
				}
			}
			rs, ra, r8 := math.Sqrt(sym/ss), math.Sqrt(asym/ss), math.Sqrt(q8/ss)
			t.Logf("%-34s %-10s rel RMS: q4 symmetric %.4f (4.5 b/w), q4 asymmetric %.4f (5.0 b/w, %.0f%% lower), q8 %.5f (8.5 b/w)",
				s.name, dist, rs, ra, 100*(1-ra/rs), r8)
			if ra >= rs {
				t.Errorf("%s %s: asymmetric q4 error %.4f is not below symmetric %.4f: revisit the q4 format", s.name, dist, ra, rs)
			}
		}
	}
}
