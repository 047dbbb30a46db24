package sched

import (
	"errors"
	"math"
)

// Poly is a degree-4 polynomial, highest power first (numpy.poly1d order):
// p(x) = p[0]·x⁴ + p[1]·x³ + p[2]·x² + p[3]·x + p[4].
type Poly [5]float64

// Eval evaluates p at x by Horner's rule, as numpy.polyval does.
func (p Poly) Eval(x float64) float64 {
	y := 0.0
	for _, c := range p {
		y = y*x + c
	}
	return y
}

// TeaCache's rescaling polynomials for Lumina2, as published in
// ali-vilab/TeaCache TeaCache4Lumina2/teacache_lumina2.py and copied in spec
// §6 ("Rescaling polynomial"). V1 is the one active in that script; V2 is
// its commented alternative. Their calibration model is unclear (spec §10
// item 12: the example loads a Lumina-2 fine-tune).
var (
	TeaCacheV1 = Poly{393.76566581, -603.50993606, 209.10239044, -23.00726601, 0.86377344}
	TeaCacheV2 = Poly{225.7042019806413, -608.8453716535591, 304.1869942338369, 124.21267720116742, -1.4089066892956552}
)

// TeaCache decides, for one guidance branch, which denoising steps run the
// joint transformer layers and which reuse the residual of the last run
// (spec §6). Keep one per branch: the conditional and the unconditional
// streams have separate caches. Unlike the published script, which infers
// the step from its calls, the step index is passed in explicitly (spec §6
// notes that the script's counter stalls under CFG truncation).
//
// The indicator m is layer 0's modulated input
// RMSNorm_{layers.0.attention_norm1}(j) ⊙ (1 + scale_msa) (DIFF:
// layers[0].norm1) over the whole
// joint sequence j. Each call compares it with the previous call's m
// (RelL1), accumulates A += r(δ) with the polynomial r, and skips while
// A < Thresh; a computed step resets A to 0. Steps 0 and Steps−1 and the
// branch's first call always compute.
//
// Two ways to drive it:
//   - on the host: Observe(step, m), then Save(out, in) after computing, or
//     Reuse(dst, in) after a skip; TeaCache keeps m and the residual;
//   - on the GPU: the pipeline keeps m and the residual in buffers,
//     computes δ = RelL1(m, mPrev) there (two sums), and calls
//     Decide(step, δ); Residual and AddResidual define its vector math.
type TeaCache struct {
	thresh float64
	steps  int
	coef   Poly

	acc    float64
	called bool
	prev   []float32 // host path: previous m
	res    []float32 // host path: residual R = out − in
	hasRes bool
}

// NewTeaCache makes the state for one branch of a run of `steps` steps.
// thresh is rel_l1_thresh (the script uses 0.3; the README reports 0.2 to
// 0.5); thresh ≤ 0 turns caching off, so every step computes. A zero coef
// means TeaCacheV1.
func NewTeaCache(thresh float64, steps int, coef Poly) *TeaCache {
	if coef == (Poly{}) {
		coef = TeaCacheV1
	}
	return &TeaCache{thresh: thresh, steps: steps, coef: coef}
}

// Enabled reports whether caching is on.
func (c *TeaCache) Enabled() bool { return c.thresh > 0 }

// Reset forgets everything, for a new image.
func (c *TeaCache) Reset() {
	c.acc, c.called, c.hasRes = 0, false, false
	c.prev = c.prev[:0]
}

// Decide reports whether this branch must run the joint layers at 0-based
// step `step`, given δ = RelL1(m, m of this branch's previous call); δ is
// ignored on the branch's first call and on steps 0 and Steps−1. The
// caller updates its previous m on every call, computed or not, and stores
// the residual whenever Decide returns true.
func (c *TeaCache) Decide(step int, delta float64) bool {
	if c.thresh <= 0 {
		return true
	}
	first := !c.called
	c.called = true
	if first || step == 0 || step == c.steps-1 {
		c.acc = 0
		return true
	}
	c.acc += c.coef.Eval(delta)
	if c.acc < c.thresh {
		return false
	}
	c.acc = 0
	return true
}

// Observe is Decide on the host: it computes δ from m and the m of the
// previous call, keeps a copy of m, and reports whether to compute. A skip
// with no stored residual turns into a compute, as in the script.
func (c *TeaCache) Observe(step int, m []float32) bool {
	if c.thresh <= 0 {
		return true
	}
	delta := 0.0
	if c.called {
		delta = RelL1(m, c.prev)
	}
	c.prev = append(c.prev[:0], m...)
	return c.Decide(step, delta) || !c.hasRes
}

// Save stores the residual out − in of a computed step (host path).
func (c *TeaCache) Save(out, in []float32) {
	c.res = grow(c.res, len(in))
	Residual(c.res, out, in)
	c.hasRes = true
}

// ErrNoResidual is returned by Reuse before any Save.
var ErrNoResidual = errors.New("sched: TeaCache has no residual to reuse")

// Reuse sets dst = in + the stored residual, the joint layers' output on a
// skipped step (host path). dst may alias in.
func (c *TeaCache) Reuse(dst, in []float32) error {
	if !c.hasRes {
		return ErrNoResidual
	}
	if len(in) != len(c.res) {
		return ErrLength
	}
	AddResidual(dst, in, c.res)
	return nil
}

// RelL1 is TeaCache's relative L1 change δ = mean|m − prev| / mean|prev|;
// when mean|prev| ≤ 1e−9 it is 0 if mean|m| < 1e−9 and +Inf otherwise.
// Sums are in float64.
func RelL1(m, prev []float32) float64 {
	if len(m) != len(prev) {
		panic("sched: RelL1 length mismatch")
	}
	if len(m) == 0 {
		return 0
	}
	var d, p, a float64
	for i := range m {
		x, y := float64(m[i]), float64(prev[i])
		d += math.Abs(x - y)
		p += math.Abs(y)
		a += math.Abs(x)
	}
	n := float64(len(m))
	if p/n > 1e-9 {
		return d / p
	}
	if a/n < 1e-9 {
		return 0
	}
	return math.Inf(1)
}

// Residual sets dst = out − in. dst may alias either.
func Residual(dst, out, in []float32) {
	if len(out) != len(dst) || len(in) != len(dst) {
		panic("sched: Residual length mismatch")
	}
	for i := range dst {
		dst[i] = out[i] - in[i]
	}
}

// AddResidual sets dst = in + r. dst may alias either.
func AddResidual(dst, in, r []float32) {
	if len(in) != len(dst) || len(r) != len(dst) {
		panic("sched: AddResidual length mismatch")
	}
	for i := range dst {
		dst[i] = in[i] + r[i]
	}
}
