package sched

import (
	"fmt"
	"math"
	"testing"

	"github.com/luminaweb/lumina/internal/golden"
)

// caseInts reads an integer list from the golden JSON's "case" object.
func caseInts(t *testing.T, c *golden.Case, key string) []int {
	t.Helper()
	cs, _ := c.JSON["case"].(map[string]any)
	raw, ok := cs[key].([]any)
	if !ok || len(raw) == 0 {
		t.Fatalf("golden %s: case.%s missing", c.Name, key)
	}
	out := make([]int, len(raw))
	for i, v := range raw {
		out[i] = int(v.(float64))
	}
	return out
}

func to32(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

// ORIG's torchdiffeq grids, n points, every shift in the golden file.
func TestGridGolden(t *testing.T) {
	c := golden.Open(t, "sampler_lumina")
	for _, n := range caseInts(t, c, "ode_n") {
		for _, s := range caseInts(t, c, "shifts") {
			name := fmt.Sprintf("output.ode_t.n%d.shift%d", n, s)
			c.Compare(t, name, to32(Grid(n, float64(s))), c.Tolerance(t, name).Strict, nil)
		}
	}
}

// The flow DPM-Solver's σ grid (stored as σ, N+1 points; DPMGrid returns
// t = 1 − σ).
func TestDPMGridGolden(t *testing.T) {
	c := golden.Open(t, "sampler_lumina")
	for _, n := range caseInts(t, c, "dpm_n") {
		for _, s := range caseInts(t, c, "shifts") {
			name := fmt.Sprintf("output.dpm_t.n%d.shift%d", n, s)
			g := DPMGrid(n, float64(s))
			sigma := make([]float64, len(g))
			for i, x := range g {
				sigma[i] = 1 - x
			}
			c.Compare(t, name, to32(sigma), c.Tolerance(t, name).Strict, nil)
		}
	}
}

func near(t *testing.T, what string, got, want []float64, atol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if d := math.Abs(got[i] - want[i]); !(d <= atol) {
			t.Errorf("%s[%d] = %.9g, want %.9g (|d| %.3g > %.3g)", what, i, got[i], want[i], d, atol)
		}
	}
}

// The test vectors written in spec §4.3 and §4.4 (6 significant digits).
func TestGridSpecVectors(t *testing.T) {
	want18 := []float64{0, 0.010309, 0.021739, 0.034483, 0.04878, 0.064935, 0.083333, 0.104478,
		0.129032, 0.157895, 0.192308, 0.234043, 0.285714, 0.351351, 0.4375, 0.555556, 0.727273, 1.0}
	near(t, "Grid(18, 6)", Grid(18, 6), want18, 1e-6)

	g := DiffusersGrid(30, 6)
	sigma := func(i int) float64 { return 1 - g[i] }
	got := []float64{sigma(0), sigma(1), sigma(2), sigma(3), sigma(4), sigma(27), sigma(28), sigma(29), sigma(30)}
	want := []float64{1.0, 0.994286, 0.988235, 0.981818, 0.975, 0.4, 0.3, 0.171429, 0}
	near(t, "DiffusersGrid(30, 6) σ", got, want, 1e-6)
	if g[0] != 0 || g[30] != 1 {
		t.Errorf("DiffusersGrid ends: t0 = %v, tN = %v, want exactly 0 and 1", g[0], g[30])
	}
}

// DIFF's N Euler steps use ORIG's grid of N+1 points (spec §4.3, §10.11).
func TestDiffusersGridIsGrid(t *testing.T) {
	for _, n := range []int{1, 4, 30, 50} {
		for _, s := range []float64{1, 3, 6} {
			near(t, fmt.Sprintf("DiffusersGrid(%d, %g)", n, s), DiffusersGrid(n, s), Grid(n+1, s), 1e-15)
		}
	}
}

// Diffusers' dynamic shifting: σ' = e^μ / (e^μ + (1/σ − 1)), with μ on the
// line through (256, 0.5) and (4096, 1.15), written out here as diffusers
// does it.
func TestDynamicShift(t *testing.T) {
	mu := func(seq float64) float64 {
		m := (1.15 - 0.5) / (4096.0 - 256.0)
		return seq*m + (0.5 - m*256)
	}
	for _, seq := range []int{16, 256, 1024, 4096} {
		n := 20
		want := make([]float64, n+1)
		for i := 0; i < n; i++ {
			s := 1.0 - float64(i)/float64(n) // np.linspace(1, 1/n, n)
			e := math.Exp(mu(float64(seq)))
			want[i] = 1 - e/(e+(1/s-1))
		}
		want[n] = 1
		near(t, fmt.Sprintf("DiffusersGrid(%d, DynamicShift(%d))", n, seq), DiffusersGrid(n, DynamicShift(seq)), want, 1e-14)
	}
	if got := DynamicShift(256); math.Abs(got-math.Exp(0.5)) > 1e-15 {
		t.Errorf("DynamicShift(256) = %v, want e^0.5", got)
	}
	if got := DynamicShift(4096); math.Abs(got-math.Exp(1.15)) > 1e-14 {
		t.Errorf("DynamicShift(4096) = %v, want e^1.15", got)
	}
}

func TestShiftEdges(t *testing.T) {
	for _, s := range []float64{0, 1, 3, 6} {
		if Shift(0, s) != 0 || Shift(1, s) != 1 {
			t.Errorf("Shift(0|1, %g) = %v, %v; want 0, 1", s, Shift(0, s), Shift(1, s))
		}
	}
	// σ form and t form agree (spec §4.2).
	for _, tt := range []float64{0.1, 0.5, 0.9} {
		if d := math.Abs(Shift(tt, 6) - (1 - shiftSigma(1-tt, 6))); d > 1e-15 {
			t.Errorf("t form and σ form differ by %g at t=%g", d, tt)
		}
	}
	if g := Grid(1, 6); len(g) != 1 || g[0] != 0 {
		t.Errorf("Grid(1, 6) = %v, want [0]", g)
	}
}
