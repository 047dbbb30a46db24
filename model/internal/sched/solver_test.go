package sched

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"
)

// gaussFlow is the exact flow of data x1 ~ N(μ_i, s_i²) per dimension under
// x_t = t·x1 + (1−t)·ε (spec §3.11): the velocity E[x1 − ε | x_t = x] is
// v = μ + (t·s² − (1−t)) / (t²s² + (1−t)²) · (x − tμ), and the ODE started
// from noise x0 at t = 0 reaches x(t) = tμ + √(t²s² + (1−t)²)·x0.
type gaussFlow struct{ mu, s []float64 }

func newGaussFlow(n int) gaussFlow {
	g := gaussFlow{make([]float64, n), make([]float64, n)}
	for i := range n {
		g.mu[i] = 1.5*math.Sin(float64(i)) + 0.3
		g.s[i] = 0.6 + 0.15*float64(i%5)
	}
	return g
}

func (g gaussFlow) v64(x []float64, t float64) []float64 {
	out := make([]float64, len(x))
	for i := range x {
		s2 := g.s[i] * g.s[i]
		k := (t*s2 - (1 - t)) / (t*t*s2 + (1-t)*(1-t))
		out[i] = g.mu[i] + k*(x[i]-t*g.mu[i])
	}
	return out
}

func (g gaussFlow) velocity(calls *[]float64) Velocity {
	return func(x []float32, t float64) ([]float32, error) {
		if calls != nil {
			*calls = append(*calls, t)
		}
		x64 := make([]float64, len(x))
		for i, v := range x {
			x64[i] = float64(v)
		}
		return to32(g.v64(x64, t)), nil
	}
}

func (g gaussFlow) exact(x0 []float32, t float64) []float64 {
	out := make([]float64, len(x0))
	for i := range x0 {
		out[i] = t*g.mu[i] + math.Sqrt(t*t*g.s[i]*g.s[i]+(1-t)*(1-t))*float64(x0[i])
	}
	return out
}

func maxDiff(a []float32, b []float64) float64 {
	m := 0.0
	for i := range a {
		m = max(m, math.Abs(float64(a[i])-b[i]))
	}
	return m
}

// run integrates the Gaussian flow from seeded noise and returns the final
// error against the exact solution and the evaluation count.
func run(t *testing.T, s Solver, grid []float64) (float64, int) {
	t.Helper()
	const n = 48
	g := newGaussFlow(n)
	x := make([]float32, n)
	Noise(x, 7, 0)
	x0 := slices.Clone(x)
	nfe, err := Integrate(s, x, grid, g.velocity(nil))
	if err != nil {
		t.Fatal(err)
	}
	return maxDiff(x, g.exact(x0, grid[len(grid)-1])), nfe
}

// Each solver converges at least at its order, and makes the evaluations
// it announces (midpoint with 18 points: 34, spec §4.4). On this linear
// problem midpoint and RK4 converge faster than their order at these step
// sizes, so the check is one-sided; TestSolverStepFormulas pins the exact
// formulas.
func TestSolverOrder(t *testing.T) {
	for _, tc := range []struct {
		name    string
		s       Solver
		n       int // grid points of the coarse run
		shift   float64
		order   float64
		nfePerN int
	}{
		{"euler", Euler{}, 33, 6, 1, 1},
		{"midpoint", &Midpoint{}, 18, 6, 2, 2},
		{"rk4", &RK4{}, 5, 1, 4, 4},
	} {
		e1, nfe := run(t, tc.s, Grid(tc.n, tc.shift))
		e2, _ := run(t, tc.s, Grid(2*tc.n-1, tc.shift)) // half the interval width
		if want := tc.nfePerN * (tc.n - 1); nfe != want || tc.s.NFE(tc.n-1) != want {
			t.Errorf("%s: %d evaluations (NFE says %d), want %d", tc.name, nfe, tc.s.NFE(tc.n-1), want)
		}
		rate := math.Log2(e1 / e2)
		t.Logf("%s: error %.3g with %d points, %.3g with %d: observed order %.2f", tc.name, e1, tc.n, e2, 2*tc.n-1, rate)
		if rate < tc.order-0.3 {
			t.Errorf("%s: observed order %.2f, want at least %g", tc.name, rate, tc.order)
		}
	}
	if _, nfe := run(t, &Midpoint{}, Grid(18, 6)); nfe != 34 {
		t.Errorf("midpoint, 18 points: %d evaluations, spec says 34", nfe)
	}
}

// One step of each explicit solver, against its formula written out, with
// the evaluation times it uses.
func TestSolverStepFormulas(t *testing.T) {
	const n = 8
	g := newGaussFlow(n)
	x0 := make([]float32, n)
	Noise(x0, 9, 0)
	t0, t1 := 0.2, 0.45
	dt := t1 - t0
	f := func(x []float64, tt float64) []float64 { return g.v64(x, tt) }
	x64 := make([]float64, n)
	for i, v := range x0 {
		x64[i] = float64(v)
	}
	axpy := func(x []float64, a float64, ys ...[]float64) []float64 {
		out := slices.Clone(x)
		for _, y := range ys {
			for i := range out {
				out[i] += a * y[i]
			}
		}
		return out
	}
	k1 := f(x64, t0)
	euler := axpy(x64, dt, k1)
	k2m := f(axpy(x64, dt/2, k1), t0+dt/2)
	mid := axpy(x64, dt, k2m)
	// torchdiffeq rk4_alt_step_func (3/8 rule).
	k2 := f(axpy(x64, dt/3, k1), t0+dt/3)
	y3 := make([]float64, n)
	for i := range y3 {
		y3[i] = x64[i] + dt*(k2[i]-k1[i]/3)
	}
	k3 := f(y3, t0+2*dt/3)
	y4 := make([]float64, n)
	for i := range y4 {
		y4[i] = x64[i] + dt*(k1[i]-k2[i]+k3[i])
	}
	k4 := f(y4, t1)
	rk4 := make([]float64, n)
	for i := range rk4 {
		rk4[i] = x64[i] + dt*(k1[i]+3*(k2[i]+k3[i])+k4[i])/8
	}
	for _, tc := range []struct {
		name  string
		s     Solver
		want  []float64
		times []float64
	}{
		{"euler", Euler{}, euler, []float64{t0}},
		{"midpoint", &Midpoint{}, mid, []float64{t0, t0 + dt/2}},
		{"rk4", &RK4{}, rk4, []float64{t0, t0 + dt/3, t0 + 2*dt/3, t1}},
	} {
		var calls []float64
		x := slices.Clone(x0)
		if err := tc.s.Step(x, t0, t1, g.velocity(&calls)); err != nil {
			t.Fatal(err)
		}
		// The state is float32 and so are the velocities handed over.
		if d := maxDiff(x, tc.want); d > 2e-6 {
			t.Errorf("%s: step differs from its formula by %.3g", tc.name, d)
		}
		if len(calls) != len(tc.times) {
			t.Fatalf("%s: evaluated at %v, want %v", tc.name, calls, tc.times)
		}
		for i := range calls {
			if math.Abs(calls[i]-tc.times[i]) > 1e-15 {
				t.Errorf("%s: evaluation %d at t=%v, want %v", tc.name, i, calls[i], tc.times[i])
			}
		}
	}
}

// refDPM transliterates ORIG's DPM_Solver.sample (multistep, order 2,
// "dpmsolver++", solver_type "dpmsolver", lower_order_final) over a σ grid,
// in float64, with sample_dpm's noise wrapper: ε̂ = x − (1−σ)·v(x, 1−σ),
// x̂₀ = (x − σ·ε̂)/α.
func refDPM(x []float64, sigma []float64, vel func([]float64, float64) []float64) []float64 {
	lambda := func(s float64) float64 { return math.Log(1-s) - math.Log(s) }
	model := func(x []float64, s float64) []float64 {
		v := vel(x, 1-s)
		out := make([]float64, len(x))
		for i := range x {
			noise := x[i] - (1-s)*v[i]
			out[i] = (x[i] - s*noise) / (1 - s)
		}
		return out
	}
	first := func(x []float64, s, t float64, m []float64) []float64 {
		h := lambda(t) - lambda(s)
		phi := math.Expm1(-h)
		out := make([]float64, len(x))
		for i := range x {
			out[i] = t/s*x[i] - (1-t)*phi*m[i]
		}
		return out
	}
	second := func(x []float64, ms [2][]float64, ts [2]float64, t float64) []float64 {
		h0 := lambda(ts[1]) - lambda(ts[0])
		h := lambda(t) - lambda(ts[1])
		r0 := h0 / h
		phi := math.Expm1(-h)
		out := make([]float64, len(x))
		for i := range x {
			d := (1 / r0) * (ms[1][i] - ms[0][i])
			out[i] = t/ts[1]*x[i] - (1-t)*phi*ms[1][i] - 0.5*(1-t)*phi*d
		}
		return out
	}
	steps, order := len(sigma)-1, 2
	x = slices.Clone(x)
	ts := [2]float64{0, sigma[0]}
	ms := [2][]float64{nil, model(x, sigma[0])}
	// Warm-up: step 1 at order 1.
	x = first(x, ts[1], sigma[1], ms[1])
	ts = [2]float64{ts[1], sigma[1]}
	ms = [2][]float64{ms[1], model(x, sigma[1])}
	for step := order; step <= steps; step++ {
		t := sigma[step]
		if min(order, steps+1-step) == 1 {
			x = first(x, ts[1], t, ms[1])
		} else {
			x = second(x, ms, ts, t)
		}
		ts[0], ms[0] = ts[1], ms[1]
		ts[1] = t
		if step < steps {
			ms[1] = model(x, t)
		}
	}
	return x
}

// DPM over DPMGrid reproduces the original algorithm (written out above)
// and converges at second order; its last step lands on x̂₀.
func TestDPM(t *testing.T) {
	const n = 48
	g := newGaussFlow(n)
	x0 := make([]float32, n)
	Noise(x0, 11, 0)
	x64 := make([]float64, n)
	for i, v := range x0 {
		x64[i] = float64(v)
	}
	var errs []float64
	for _, steps := range []int{8, 18, 30, 32} {
		grid := DPMGrid(steps, 6)
		sigma := make([]float64, len(grid))
		for i, tt := range grid {
			sigma[i] = 1 - tt
		}
		want := refDPM(x64, sigma, g.v64)
		x := slices.Clone(x0)
		nfe, err := Integrate(&DPM{}, x, grid, g.velocity(nil))
		if err != nil {
			t.Fatal(err)
		}
		if nfe != steps {
			t.Errorf("DPM, %d steps: %d evaluations", steps, nfe)
		}
		d := maxDiff(x, want)
		t.Logf("DPM %d steps: max |ours − ORIG transliteration| = %.3g, error vs exact %.3g", steps, d, maxDiff(x, g.exact(x0, 1)))
		if d > 2e-6 {
			t.Errorf("DPM, %d steps: differs from the original algorithm by %.3g", steps, d)
		}
		if steps == 8 || steps == 32 {
			errs = append(errs, maxDiff(x, g.exact(x0, 1)))
		}
	}
	// The last step jumps to σ = 0 at first order (x = x̂₀), so the global
	// error falls about as 1/N at these step counts; a broken update does
	// not converge at all.
	if errs[1] > errs[0]/4 {
		t.Errorf("DPM: error %.3g with 8 steps, %.3g with 32: not converging", errs[0], errs[1])
	}
}

func TestDPMCoefficientsFinal(t *testing.T) {
	a, b0, b1 := DPMCoefficients(0.3, 0.6, 1, false)
	if a != 0 || b0 != 1 || b1 != 0 {
		t.Errorf("landing on σ=0: (%v, %v, %v), want (0, 1, 0)", a, b0, b1)
	}
	// Second-order coefficients sum to the first-order b0 (D is a difference).
	_, f0, _ := DPMCoefficients(0.3, 0.5, 0.7, false)
	_, s0, s1 := DPMCoefficients(0.3, 0.5, 0.7, true)
	if math.Abs(s0+s1-f0) > 1e-15 {
		t.Errorf("second order b0+b1 = %v, first order b0 = %v", s0+s1, f0)
	}
}

func TestIntegrateErrors(t *testing.T) {
	boom := errors.New("boom")
	x := make([]float32, 4)
	_, err := Integrate(Euler{}, x, Grid(3, 6), func([]float32, float64) ([]float32, error) { return nil, boom })
	if !errors.Is(err, boom) {
		t.Errorf("velocity error: got %v", err)
	}
	for _, s := range []Solver{Euler{}, &Midpoint{}, &RK4{}, &DPM{}} {
		_, err = Integrate(s, x, Grid(3, 6), func([]float32, float64) ([]float32, error) { return make([]float32, 3), nil })
		if !errors.Is(err, ErrLength) {
			t.Errorf("%T, short velocity: got %v", s, err)
		}
	}
}

func ExampleIntegrate() {
	// dx/dt = 1 from t = 0 to 1 on the shifted 18-point grid, with ORIG's
	// default midpoint solver.
	x := []float32{-1}
	nfe, _ := Integrate(&Midpoint{}, x, Grid(18, 6), func(x []float32, t float64) ([]float32, error) {
		return []float32{1}, nil
	})
	fmt.Printf("%.5f %d\n", x[0], nfe)
	// Output: 0.00000 34
}
