package sched

import "math"

// Shift is the static time shift of spec §4.2 in model time:
// t' = t / (t + s − s·t), which is σ' = s·σ / (1 + (s−1)·σ) with σ = 1 − t.
// It maps 0 to 0 and 1 to 1; s = 1 (and s = 0, ORIG's "no shift") is the
// identity. The default for Lumina-Image 2.0 is s = 6.
func Shift(t, s float64) float64 {
	if s == 0 || s == 1 {
		return t
	}
	return t / (t + s - s*t)
}

// shiftSigma is the same map in σ form: σ' = s·σ / (1 + (s−1)·σ).
func shiftSigma(sigma, s float64) float64 {
	if s == 0 || s == 1 {
		return sigma
	}
	return s * sigma / (1 + (s-1)*sigma)
}

func checkShift(s float64) {
	if s < 0 || math.IsNaN(s) {
		panic("sched: negative or NaN time shift")
	}
}

// Grid is ORIG's fixed ODE grid (transport/integrators.py `ode`, spec §4.4):
// n points τ_k = k/(n−1), k = 0..n−1 (torch.linspace(0, 1, n)), each shifted
// with Shift. n points give n−1 solver intervals; ORIG's
// `num_sampling_steps` is n. shift 0 means no shift, as in ORIG.
//
// For n = 18, shift 6: 0, 0.010309, 0.021739, …, 0.555556, 0.727273, 1.
func Grid(n int, shift float64) []float64 {
	checkShift(shift)
	if n < 0 {
		panic("sched: negative grid size")
	}
	t := make([]float64, n)
	for k := range t {
		tau := 0.0
		if n > 1 {
			tau = float64(k) / float64(n-1)
		}
		t[k] = Shift(tau, shift)
	}
	return t
}

// DiffusersGrid is DIFF's Lumina2Pipeline schedule (spec §4.3) for `steps`
// Euler steps, as steps+1 model times: σ_i = linspace(1, 1/N, N) shifted in
// σ form, then a terminal σ = 0, and t_i = 1 − σ_i. It equals
// Grid(steps+1, shift) up to rounding (DIFF's N steps = ORIG's N+1 points).
//
// With diffusers' dynamic shifting (use_dynamic_shifting, off in the
// Lumina-Image 2.0 scheduler config) pass DynamicShift(seqLen) as shift:
// diffusers' σ' = e^μ / (e^μ + (1/σ − 1)) is exactly the static shift with
// s = e^μ.
func DiffusersGrid(steps int, shift float64) []float64 {
	checkShift(shift)
	if steps < 0 {
		panic("sched: negative step count")
	}
	t := make([]float64, steps+1)
	for i := 0; i < steps; i++ {
		sigma := 1 - float64(i)/float64(steps)
		t[i] = 1 - shiftSigma(sigma, shift)
	}
	t[steps] = 1
	return t
}

// Diffusers' calculate_shift defaults (scheduler config of
// Alpha-VLLM/Lumina-Image-2.0, spec §4.2).
const (
	dynBaseSeqLen = 256
	dynMaxSeqLen  = 4096
	dynBaseShift  = 0.5
	dynMaxShift   = 1.15
)

// DynamicShift returns the static shift e^μ equivalent to diffusers'
// dynamic shifting for an image sequence length, with
// μ = calculate_shift(seqLen, 256, 4096, 0.5, 1.15), a line through
// (256, 0.5) and (4096, 1.15). Lumina2Pipeline passes the latent's channel
// count (16) as seqLen, a harmless bug since the shipped config turns
// dynamic shifting off (spec §4.2).
func DynamicShift(seqLen int) float64 {
	m := (dynMaxShift - dynBaseShift) / (dynMaxSeqLen - dynBaseSeqLen)
	b := dynBaseShift - m*dynBaseSeqLen
	return math.Exp(float64(seqLen)*m + b)
}

// dpmEps is the end time of ORIG's flow DPM-Solver schedule
// (NoiseScheduleFlow: t_0 = 1/total_N = 0.001).
const dpmEps = 0.001

// DPMGrid is the time grid of ORIG's flow DPM-Solver++ (`--solver dpm`,
// DPM_Solver.get_time_steps("time_uniform_flow", t_T=1, t_0=0.001, N,
// shift), spec §4.5), returned as steps+1 model times t_k = 1 − σ_k:
// β = linspace(1, 0.001, N+1), σ = 1 − β shifted in σ form, reversed. So σ
// runs from 0.999 shifted (0.999833 at shift 6) down to exactly 0, and the
// grid ends at t = 1. The model is evaluated at t = 1 − σ.
func DPMGrid(steps int, shift float64) []float64 {
	checkShift(shift)
	if steps < 1 {
		panic("sched: DPM-Solver needs at least one step")
	}
	t := make([]float64, steps+1)
	for k := range t {
		// β_{N−k} = 1 − (1−eps)·(N−k)/N, so σ = 1 − β = (1−eps)·(N−k)/N.
		sigma := (1 - dpmEps) * float64(steps-k) / float64(steps)
		t[k] = 1 - shiftSigma(sigma, shift)
	}
	return t
}
