package sched

import (
	"fmt"
	"math"
	"math/bits"

	"github.com/luminaweb/lumina/model/tensor"
)

// Noise fills dst, in order, with independent standard normal values
// determined by (seed, stream) alone. The same arguments give the same bits
// on every target (native amd64/arm64, js/wasm, wasip1), because the
// generator uses only integer arithmetic, IEEE-exact float64 operations
// (+ − × ÷ √, each rounded explicitly so no compiler fuses them into FMA)
// and its own logarithm. The latent for one image is dst of 16·(H/8)·(W/8)
// values in NCHW order, stream 0; use other streams for other images of a
// batch.
//
// The generator, exactly:
//
//  1. Uniform bits: PCG-DXSM with 128-bit state (the algorithm of Go's
//     math/rand/v2 PCG, reimplemented here so that it cannot drift). The
//     state starts as hi = seed, lo = stream. Each draw first advances
//     state ← state·M + I mod 2¹²⁸ with M = 0x2360ed051fc65da4_4385df649fccf645
//     and I = 0x5851f42d4c957f2d_14057b7ef767814f, then outputs, from the
//     new state, h = hi; h ^= h>>32; h *= 0xda942042e4dd58b5; h ^= h>>48;
//     h *= lo|1 (all mod 2⁶⁴).
//  2. Uniform in (−1, 1): from a draw x, k = x>>12 (52 bits) and
//     u = (2k+1)·2⁻⁵² − 1, exact in float64, never 0 or ±1.
//  3. Normal pairs: the polar form of the Box–Muller transform (Marsaglia
//     1964). Take u then w from two consecutive draws; s = u² + w²; if
//     s ≥ 1 reject both and draw again; otherwise f = √(−2·ln(s)/s) and the
//     next two outputs are u·f then w·f, each computed in float64 and then
//     rounded to float32. An odd-length dst drops the last w·f.
//  4. ln is the FreeBSD/fdlibm e_log.c algorithm (as in Go's pure-Go
//     math.Log), with every product rounded explicitly; Go's math.Log
//     itself has an assembly version on amd64 that need not match the
//     pure-Go one used on wasm bit for bit.
//
// TestNoiseFirstValues pins the first values of seed 0 stream 0 and seed 42
// streams 0 and 1.
func Noise(dst []float32, seed, stream uint64) {
	g := pcg{hi: seed, lo: stream}
	for i := 0; i < len(dst); {
		u, w := g.symUniform(), g.symUniform()
		s := float64(u*u) + float64(w*w)
		if s >= 1 {
			continue
		}
		f := math.Sqrt(-2 * ln(s) / s)
		dst[i] = float32(u * f)
		i++
		if i < len(dst) {
			dst[i] = float32(w * f)
			i++
		}
	}
}

// pcg is PCG-DXSM with a 128-bit LCG state (see Noise).
type pcg struct{ hi, lo uint64 }

func (p *pcg) uint64() uint64 {
	const (
		mulHi = 0x2360ed051fc65da4
		mulLo = 0x4385df649fccf645
		incHi = 0x5851f42d4c957f2d
		incLo = 0x14057b7ef767814f
	)
	hi, lo := bits.Mul64(p.lo, mulLo)
	hi += p.hi*mulLo + p.lo*mulHi
	lo, c := bits.Add64(lo, incLo, 0)
	hi, _ = bits.Add64(hi, incHi, c)
	p.hi, p.lo = hi, lo

	const cheapMul = 0xda942042e4dd58b5
	hi ^= hi >> 32
	hi *= cheapMul
	hi ^= hi >> 48
	hi *= lo | 1
	return hi
}

// symUniform returns (2k+1)·2⁻⁵² − 1 for the top 52 bits k of a draw.
func (p *pcg) symUniform() float64 {
	k := p.uint64() >> 12
	return float64(2*k+1)*0x1p-52 - 1
}

// ln is the natural logarithm for finite x > 0: FreeBSD's e_log.c as in
// Go's math/log.go, with each product wrapped in float64() so that no
// target fuses it into an FMA (Go spec, "Floating-point operators"). Error
// below 1 ulp.
func ln(x float64) float64 {
	const (
		ln2Hi = 6.93147180369123816490e-01 // 3fe62e42 fee00000
		ln2Lo = 1.90821492927058770002e-10 // 3dea39ef 35793c76
		l1    = 6.666666666666735130e-01   // 3FE55555 55555593
		l2    = 3.999999999940941908e-01   // 3FD99999 9997FA04
		l3    = 2.857142874366239149e-01   // 3FD24924 94229359
		l4    = 2.222219843214978396e-01   // 3FCC71C5 1D8E78AF
		l5    = 1.818357216161805012e-01   // 3FC74664 96CB03DE
		l6    = 1.531383769920937332e-01   // 3FC39A09 D078C69F
		l7    = 1.479819860511658591e-01   // 3FC2F112 DF3E5244
	)
	f1, ki := math.Frexp(x)
	if f1 < math.Sqrt2/2 {
		f1 *= 2
		ki--
	}
	f := f1 - 1
	k := float64(ki)
	s := f / (2 + f)
	s2 := float64(s * s)
	s4 := float64(s2 * s2)
	t1 := float64(s2 * (l1 + float64(s4*(l3+float64(s4*(l5+float64(s4*l7)))))))
	t2 := float64(s4 * (l2 + float64(s4*(l4+float64(s4*l6)))))
	r := t1 + t2
	hfsq := float64(float64(0.5*f) * f)
	return float64(k*ln2Hi) - ((hfsq - (float64(s*(hfsq+r)) + float64(k*ln2Lo))) - f)
}

// LatentChannels is the number of latent channels of the FLUX VAE.
const LatentChannels = 16

// MaxSide is the largest image side in pixels: the RoPE tables cover 512
// patches of 16 pixels (spec §4.8).
const MaxSide = 8192

// LatentShape returns the latent shape [16, height/8, width/8] of an image
// (spec §4.8). Both sides must be positive multiples of 16 (each latent
// side even, for 2×2 patches) and at most MaxSide.
func LatentShape(width, height int) (tensor.Shape, error) {
	for _, d := range [2]int{width, height} {
		if d <= 0 || d%16 != 0 || d > MaxSide {
			return nil, fmt.Errorf("sched: image size %d×%d: each side must be a positive multiple of 16 up to %d", width, height, MaxSide)
		}
	}
	return tensor.Shape{LatentChannels, height / 8, width / 8}, nil
}

// The VAE's latent scaling (spec §4.9, FLUX VAE config).
const (
	VAEScale = 0.3611
	VAEShift = 0.1159
)

// LatentToVAE sets dst = z/VAEScale + VAEShift, the sampled latent as the
// VAE decoder takes it. dst may alias z.
func LatentToVAE(dst, z []float32) {
	if len(dst) != len(z) {
		panic("sched: LatentToVAE length mismatch")
	}
	for i, v := range z {
		dst[i] = float32(float64(v)/VAEScale + VAEShift)
	}
}
