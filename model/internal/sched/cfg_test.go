package sched

import (
	"math"
	"slices"
	"testing"

	"github.com/luminaweb/lumina/internal/golden"
)

// forwardWithCFG mirrors what NextDiT.forward_with_cfg returns for a
// [2, …] model output [cond; uncond]: the guided sample twice.
func forwardWithCFG(out []float32, scale, renorm float64) ([]float32, bool) {
	n := len(out) / 2
	g := make([]float32, n)
	clamped := Guide(g, out[:n], out[n:], scale, renorm)
	return slices.Concat(g, g), clamped
}

// The four stubbed-model cases of sampler_lumina (clamp firing, not firing,
// off, renorm 1.5 with scale 5).
func TestGuideGolden(t *testing.T) {
	c := golden.Open(t, "sampler_lumina")
	cases, _ := c.JSON["cfg_cases"].(map[string]any)
	if len(cases) == 0 {
		t.Fatal("sampler_lumina: no cfg_cases")
	}
	for name, raw := range cases {
		meta := raw.(map[string]any)
		in := "input.cfg." + name + "."
		scale := float64(c.Must(t, in+"cfg_scale")[0])
		renorm := float64(c.Must(t, in+"renorm_cfg")[0])
		if scale != meta["cfg_scale"].(float64) || renorm != meta["renorm_cfg"].(float64) {
			t.Fatalf("%s: stored scalars %g, %g disagree with the JSON", name, scale, renorm)
		}
		got, clamped := forwardWithCFG(c.Must(t, in+"model_out"), scale, renorm)
		if want := meta["rescaled"].(bool); clamped != want {
			t.Errorf("%s: clamp fired = %v, oracle %v", name, clamped, want)
		}
		out := "output.cfg." + name
		c.Compare(t, out, got, c.Tolerance(t, out).Strict, nil)
	}
}

// The CFG step of nextdit_tiny, from its stored raw [cond; uncond]
// prediction (no network needed): renorm 1 (clamp active) and renorm 0.
func TestGuideNextDiT(t *testing.T) {
	c := golden.Open(t, "nextdit_tiny")
	raw := c.Must(t, "output.cfg.raw")
	scale := float64(c.Must(t, "input.cfg.cfg_scale")[0])
	got, clamped := forwardWithCFG(raw, scale, 1)
	if !clamped {
		t.Error("renorm 1: clamp did not fire; the oracle's did (checks.cfg_renorm_active_in_output.cfg.x)")
	}
	c.Compare(t, "output.cfg.x", got, c.Tolerance(t, "output.cfg.x").Strict, nil)
	got, _ = forwardWithCFG(raw, scale, 0)
	// The JSON gives no tolerance for x_norenorm. It is plain float32
	// arithmetic on the stored raw output, which sampler_lumina's renorm_off
	// case reproduces bit for bit, so 1e-6 (≈ 2 ulp at its max |ref| ≈ 4)
	// leaves room only for a different rounding order.
	c.Compare(t, "output.cfg.x_norenorm", got, 1e-6, nil)
}

func norm(v []float32) float64 {
	s := 0.0
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

// Guide's clamp never scales up and lands on renorm·‖c‖; aliasing dst with
// cond gives the same result.
func TestGuideClamp(t *testing.T) {
	n := 64
	c, u := make([]float32, n), make([]float32, n)
	Noise(c, 1, 0)
	Noise(u, 2, 0)
	g := make([]float32, n)
	if !Guide(g, c, u, 4, 1) {
		t.Fatal("independent cond/uncond at scale 4: clamp should fire")
	}
	if r := norm(g) / norm(c); math.Abs(r-1) > 1e-6 {
		t.Errorf("‖guided‖/‖cond‖ = %v after the clamp, want 1", r)
	}
	alias := slices.Clone(c)
	Guide(alias, alias, u, 4, 1)
	if !slices.Equal(alias, g) {
		t.Error("Guide with dst aliasing cond differs")
	}
	// Scale 1: guided = cond, norm ratio exactly 1 ≥ 1 fires with factor 1.
	Guide(g, c, u, 1, 1)
	for i := range g {
		if math.Abs(float64(g[i]-c[i])) > 1e-6 {
			t.Fatalf("scale 1: guided[%d] = %v, want cond %v", i, g[i], c[i])
		}
	}
	// A large renorm never scales up.
	Guide(g, c, u, 4, 100)
	plain := make([]float32, n)
	Guide(plain, c, u, 4, 0)
	if !slices.Equal(g, plain) {
		t.Error("renorm 100 changed the guided velocity")
	}
}

// DIFF's per-row normalisation: every row of W values ends with the norm of
// the same row of cond, scaled up or down.
func TestGuideRows(t *testing.T) {
	const C, H, W = 3, 4, 5
	c, u := make([]float32, C*H*W), make([]float32, C*H*W)
	Noise(c, 3, 0)
	Noise(u, 4, 0)
	for i := range u[:W] { // a row where guidance shrinks the norm
		u[i] = 1.1 * c[i]
	}
	g := make([]float32, len(c))
	GuideRows(g, c, u, 4, W)
	for r := 0; r < len(c); r += W {
		want := norm(c[r : r+W])
		if got := norm(g[r : r+W]); math.Abs(got-want) > 1e-6*want {
			t.Errorf("row %d: ‖guided‖ = %v, want ‖cond‖ = %v", r/W, got, want)
		}
		// Direction is that of u + g(c − u).
		var dot float64
		for i := r; i < r+W; i++ {
			v := float64(u[i]) + 4*(float64(c[i])-float64(u[i]))
			dot += v * float64(g[i])
		}
		if dot <= 0 {
			t.Errorf("row %d: guided points away from u + g(c − u)", r/W)
		}
	}
}

func TestTrunc(t *testing.T) {
	// Zero value: always guided.
	for _, tt := range []float64{0, 0.5, 1} {
		if !(Trunc{}).Guided(tt, 49, 50) {
			t.Errorf("zero Trunc truncated at t=%g", tt)
		}
	}
	// ORIG demo: cfg_trunc 0.25 on model time; midpoint, 18 points, shift 6
	// ⇒ 23 of 34 evaluations guided (spec §4.6).
	grid := Grid(18, 6)
	orig := Trunc{Time: 0.25}
	guided := 0
	for k := 0; k+1 < len(grid); k++ {
		t0, t1 := grid[k], grid[k+1]
		for _, tt := range []float64{t0, t0 + 0.5*(t1-t0)} {
			if orig.Guided(tt, k, len(grid)-1) {
				guided++
			}
		}
	}
	if guided != 23 {
		t.Errorf("ORIG cfg_trunc 0.25, midpoint M=18: %d guided evaluations, spec says 23", guided)
	}
	// DIFF: ratio 0.25 over 50 steps ⇒ the first 12 steps.
	diff := Trunc{Ratio: 0.25}
	n := 0
	for i := 0; i < 50; i++ {
		if diff.Guided(0, i, 50) {
			if i != n {
				t.Errorf("DIFF truncation: step %d guided after an unguided step", i)
			}
			n++
		}
	}
	if n != 12 {
		t.Errorf("DIFF cfg_trunc_ratio 0.25, 50 steps: %d guided steps, want 12", n)
	}
	if !(Trunc{Ratio: 1}).Guided(0, 29, 30) {
		t.Error("ratio 1 truncated the last step")
	}
}

func TestGuidedVelocity(t *testing.T) {
	buf := make([]float32, 3) // both branches return the same buffer
	cond := func(x []float32, _ float64) ([]float32, error) {
		for i := range buf {
			buf[i] = x[i] + 1
		}
		return buf, nil
	}
	uncond := func(x []float32, _ float64) ([]float32, error) {
		for i := range buf {
			buf[i] = 0.5 * x[i]
		}
		return buf, nil
	}
	x := []float32{1, -2, 3}
	v := GuidedVelocity(cond, uncond, 4, 1, 0.25)
	got, err := v(x, 0.1)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]float32, 3)
	Guide(want, []float32{2, -1, 4}, []float32{0.5, -1, 1.5}, 4, 1)
	if !slices.Equal(got, want) {
		t.Errorf("t < trunc: %v, want %v", got, want)
	}
	got, _ = v(x, 0.25)
	if !slices.Equal(got, []float32{2, -1, 4}) {
		t.Errorf("t ≥ trunc: %v, want the conditional velocity", got)
	}
}
