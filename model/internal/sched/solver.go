package sched

import (
	"errors"
	"fmt"
)

// Velocity evaluates the (guided) velocity dx/dt at state x and model time
// t. It must not modify x. The solvers use the returned slice before their
// next call and copy what they keep, so v may return the same buffer every
// time.
type Velocity func(x []float32, t float64) ([]float32, error)

// Solver advances a state across one interval of a time grid.
type Solver interface {
	// Step integrates dx/dt = v from model time t0 to t1, updating x in
	// place.
	Step(x []float32, t0, t1 float64, v Velocity) error
	// NFE is the number of velocity evaluations for `intervals` steps.
	NFE(intervals int) int
	// Reset forgets the state kept between steps (multistep solvers).
	Reset()
}

// ErrLength reports a velocity whose length differs from the state's.
var ErrLength = errors.New("sched: velocity length differs from state length")

// Integrate runs s over every interval of grid, starting from x (updated in
// place), and returns the number of velocity evaluations it made.
func Integrate(s Solver, x []float32, grid []float64, v Velocity) (nfe int, err error) {
	s.Reset()
	counted := func(x []float32, t float64) ([]float32, error) {
		nfe++
		return v(x, t)
	}
	for k := 0; k+1 < len(grid); k++ {
		if err := s.Step(x, grid[k], grid[k+1], counted); err != nil {
			return nfe, fmt.Errorf("sched: step %d (t=%g→%g): %w", k, grid[k], grid[k+1], err)
		}
	}
	return nfe, nil
}

// eval calls v and checks the length of what it returns.
func eval(v Velocity, x []float32, t float64) ([]float32, error) {
	out, err := v(x, t)
	if err != nil {
		return nil, err
	}
	if len(out) != len(x) {
		return nil, fmt.Errorf("%w (%d vs %d)", ErrLength, len(out), len(x))
	}
	return out, nil
}

// Axpy sets dst[i] = x[i] + a·y[i], computed in float64 and rounded to
// float32. dst may alias x. It is the vector operation of every explicit
// step (the GPU runs the same).
func Axpy(dst, x []float32, a float64, y []float32) {
	if len(x) != len(dst) || len(y) != len(dst) {
		panic("sched: Axpy length mismatch")
	}
	for i := range dst {
		dst[i] = float32(float64(x[i]) + a*float64(y[i]))
	}
}

// grow returns buf resized to n, reusing its memory when it can.
func grow(buf []float32, n int) []float32 {
	if cap(buf) < n {
		return make([]float32, n)
	}
	return buf[:n]
}

// Euler is the explicit Euler step, ORIG `euler` and DIFF's
// FlowMatchEulerDiscreteScheduler (spec §4.3, §4.4):
// x ← x + Δ·v(x, t0), Δ = t1 − t0. One evaluation per step.
type Euler struct{}

// Step implements Solver.
func (Euler) Step(x []float32, t0, t1 float64, v Velocity) error {
	k1, err := eval(v, x, t0)
	if err != nil {
		return err
	}
	Axpy(x, x, t1-t0, k1)
	return nil
}

// NFE implements Solver.
func (Euler) NFE(intervals int) int { return intervals }

// Reset implements Solver.
func (Euler) Reset() {}

// Midpoint is torchdiffeq's fixed-grid "midpoint" (the ORIG default in
// scripts/sample.sh and demo.py, spec §4.4): k1 = v(x, t0);
// x_mid = x + (Δ/2)·k1; k2 = v(x_mid, t0 + Δ/2); x ← x + Δ·k2. The midpoint
// time is the arithmetic midpoint of the (shifted) grid times. Two
// evaluations per step.
type Midpoint struct {
	mid []float32
}

// Step implements Solver.
func (m *Midpoint) Step(x []float32, t0, t1 float64, v Velocity) error {
	dt := t1 - t0
	half := 0.5 * dt
	k1, err := eval(v, x, t0)
	if err != nil {
		return err
	}
	m.mid = grow(m.mid, len(x))
	Axpy(m.mid, x, half, k1)
	k2, err := eval(v, m.mid, t0+half)
	if err != nil {
		return err
	}
	Axpy(x, x, dt, k2)
	return nil
}

// NFE implements Solver.
func (*Midpoint) NFE(intervals int) int { return 2 * intervals }

// Reset implements Solver.
func (*Midpoint) Reset() {}

// RK4 is torchdiffeq's fixed-grid "rk4", which is the 3/8-rule variant
// (rk4_alt_step_func, spec §4.4): k1 = v(x, t0), k2 = v(x + Δk1/3, t0 + Δ/3),
// k3 = v(x + Δ(k2 − k1/3), t0 + 2Δ/3), k4 = v(x + Δ(k1 − k2 + k3), t1),
// x ← x + Δ(k1 + 3k2 + 3k3 + k4)/8. Four evaluations per step.
type RK4 struct {
	k1, k2, k3, y []float32
}

// Step implements Solver.
func (r *RK4) Step(x []float32, t0, t1 float64, v Velocity) error {
	n := len(x)
	dt := t1 - t0
	r.k1, r.k2, r.k3, r.y = grow(r.k1, n), grow(r.k2, n), grow(r.k3, n), grow(r.y, n)
	k, err := eval(v, x, t0)
	if err != nil {
		return err
	}
	copy(r.k1, k)
	Axpy(r.y, x, dt/3, r.k1)
	if k, err = eval(v, r.y, t0+dt/3); err != nil {
		return err
	}
	copy(r.k2, k)
	for i := range r.y {
		r.y[i] = float32(float64(x[i]) + dt*(float64(r.k2[i])-float64(r.k1[i])/3))
	}
	if k, err = eval(v, r.y, t0+2*dt/3); err != nil {
		return err
	}
	copy(r.k3, k)
	for i := range r.y {
		r.y[i] = float32(float64(x[i]) + dt*(float64(r.k1[i])-float64(r.k2[i])+float64(r.k3[i])))
	}
	k4, err := eval(v, r.y, t1)
	if err != nil {
		return err
	}
	for i := range x {
		s := float64(r.k1[i]) + 3*(float64(r.k2[i])+float64(r.k3[i])) + float64(k4[i])
		x[i] = float32(float64(x[i]) + s*dt*0.125)
	}
	return nil
}

// NFE implements Solver.
func (*RK4) NFE(intervals int) int { return 4 * intervals }

// Reset implements Solver.
func (*RK4) Reset() {}
