package sched

import "math"

// DPM is ORIG's flow DPM-Solver++ (`--solver dpm`, transport/dpm_solver.py:
// multistep, order 2, solver_type "dpmsolver", lower_order_final; spec §4.5)
// over DPMGrid. Its noise schedule is α(σ) = 1 − σ, std σ, half-log-SNR
// λ(σ) = ln(α/σ), with σ = 1 − t. One evaluation per step.
//
// Each step evaluates the velocity once at its start and forms the data
// prediction x̂₀ = x + σ·v. ORIG writes the same thing in two stages,
// ε̂ = x − (1−σ)·v and x̂₀ = (x − σ·ε̂)/(1−σ); the one-stage form is equal
// algebraically and avoids dividing by α ≈ 1.7e−4 on the first step.
// The first step and the step that lands on σ = 0 (t = 1, the last step of
// a DPMGrid) are first order; the others are second order with the previous
// step's x̂₀. Coefficients: DPMCoefficients.
type DPM struct {
	cur, prev []float32 // x̂₀ at this step's start and at the previous one's
	prevT     float64
	have      bool
}

// Step implements Solver. Steps must be taken in grid order; Reset starts
// a new trajectory.
func (d *DPM) Step(x []float32, t0, t1 float64, v Velocity) error {
	vel, err := eval(v, x, t0)
	if err != nil {
		return err
	}
	d.cur = grow(d.cur, len(x))
	DataPrediction(d.cur, x, vel, t0)
	second := d.have && t1 < 1
	a, b0, b1 := DPMCoefficients(d.prevT, t0, t1, second)
	for i := range x {
		y := a*float64(x[i]) + b0*float64(d.cur[i])
		if second {
			y += b1 * float64(d.prev[i])
		}
		x[i] = float32(y)
	}
	d.cur, d.prev = d.prev, d.cur
	d.prevT, d.have = t0, true
	return nil
}

// NFE implements Solver.
func (*DPM) NFE(intervals int) int { return intervals }

// Reset implements Solver.
func (d *DPM) Reset() { d.have = false }

// DataPrediction sets dst = x + σ·v with σ = 1 − t: the flow model's data
// prediction x̂₀ from the velocity v at (x, t). dst may alias x or v.
func DataPrediction(dst, x, v []float32, t float64) {
	Axpy(dst, x, 1-t, v)
}

// DPMCoefficients returns the DPM-Solver++ update from model time t0 to t1
// as x_t1 = a·x + b0·m0 + b1·m1, where m0 = x̂₀ at t0 and m1 = x̂₀ at the
// previous grid time tPrev (used only when second is true).
//
// With σ = 1 − t, α = 1 − σ, λ = ln(α/σ), h = λ(t1) − λ(t0), φ = expm1(−h):
//
//	first order:  a = σ₁/σ₀, b0 = −α₁φ, b1 = 0
//	second order: r = (λ(t0) − λ(tPrev))/h, D = (m0 − m1)/r,
//	              x = a·x − α₁φ·m0 − ½α₁φ·D,
//	              so b0 = −α₁φ(1 + 1/(2r)), b1 = α₁φ/(2r)
//
// Landing on σ₁ = 0 (h = ∞) gives a = 0, b0 = 1: x = x̂₀. Second order is
// undefined there; DPM uses first order for that step (lower_order_final).
func DPMCoefficients(tPrev, t0, t1 float64, second bool) (a, b0, b1 float64) {
	s0, s1 := 1-t0, 1-t1
	if s1 == 0 {
		return 0, 1, 0
	}
	lambda := func(s float64) float64 { return math.Log(1-s) - math.Log(s) }
	l0, l1 := lambda(s0), lambda(s1)
	h := l1 - l0
	phi := math.Expm1(-h)
	alpha1 := 1 - s1
	a = s1 / s0
	b0 = -alpha1 * phi
	if second {
		rinv := h / (l0 - lambda(1-tPrev)) // 1/r
		b0 -= 0.5 * alpha1 * phi * rinv
		b1 = 0.5 * alpha1 * phi * rinv
	}
	return a, b0, b1
}
