// Package sched holds the sampling math of Lumina-Image 2.0 (spec §4, §6):
// time grids with the time shift, the ODE solvers over a velocity function,
// classifier-free guidance with its renormalisation and truncation, the
// seed → noise generator, and the TeaCache step-skipping decision.
//
// Time convention (spec §4.1): model time t runs from 0 (pure noise) to 1
// (clean data); σ = 1 − t is the diffusers noise level. Every grid here is
// returned in model time, and the network output is the velocity dx/dt in
// that time (§3.11), so every solver integrates dx/dt = v(x, t) forward.
//
// Everything here is plain Go on host slices: float64 for times and
// coefficients, float32 for states. The pipeline runs the per-step vector
// math on the GPU; the functions here are the definitions it mirrors and
// the reference its tests compare with. Where the original repository
// (ORIG, Alpha-VLLM/Lumina-Image-2.0 sample.py) and diffusers (DIFF) differ
// (spec §10), the default follows ORIG and the other is an option.
package sched
