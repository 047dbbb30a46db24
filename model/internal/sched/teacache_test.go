package sched

import (
	"errors"
	"math"
	"slices"
	"testing"
)

func TestPoly(t *testing.T) {
	if got := TeaCacheV1.Eval(0); got != 0.86377344 {
		t.Errorf("V1(0) = %v, want c4 = 0.86377344", got)
	}
	for _, p := range []Poly{TeaCacheV1, TeaCacheV2} {
		for _, x := range []float64{0.05, 0.3, 1.7} {
			want := p[0]*math.Pow(x, 4) + p[1]*math.Pow(x, 3) + p[2]*x*x + p[3]*x + p[4]
			if got := p.Eval(x); math.Abs(got-want) > 1e-12*math.Max(1, math.Abs(want)) {
				t.Errorf("%v.Eval(%v) = %v, want %v", p, x, got, want)
			}
		}
	}
}

// A constant δ = 0.05 gives r = 0.163188… per step with V1, so at thresh
// 0.3 the branch alternates; steps 0 and N−1 always compute.
func TestTeaCacheDecide(t *testing.T) {
	if r := TeaCacheV1.Eval(0.05); math.Abs(r-0.1631879) > 1e-6 {
		t.Fatalf("V1(0.05) = %v", r)
	}
	c := NewTeaCache(0.3, 10, Poly{})
	var got []bool
	for step := range 10 {
		got = append(got, c.Decide(step, 0.05))
	}
	want := []bool{true, false, true, false, true, false, true, false, true, true}
	if !slices.Equal(got, want) {
		t.Errorf("decisions %v, want %v", got, want)
	}
	// Off: always compute.
	off := NewTeaCache(0, 10, TeaCacheV1)
	for step := range 10 {
		if !off.Decide(step, 0) || !off.Observe(step, []float32{1}) {
			t.Fatal("thresh 0 skipped a step")
		}
	}
	// δ = +Inf (previous indicator ≈ 0, current not) computes.
	c = NewTeaCache(0.3, 10, Poly{})
	c.Decide(0, 0)
	if !c.Decide(1, math.Inf(1)) {
		t.Error("δ = +Inf skipped")
	}
	// A branch's first call computes even mid-run (CFG truncation lifted).
	c = NewTeaCache(0.3, 10, Poly{})
	if !c.Decide(5, 0.05) || c.Decide(6, 0.05) {
		t.Error("first call mid-run: want compute, then skip")
	}
}

func TestRelL1(t *testing.T) {
	if d := RelL1([]float32{1, -2, 3}, []float32{2, -2, 2}); math.Abs(d-2.0/6) > 1e-15 {
		t.Errorf("RelL1 = %v, want 1/3", d)
	}
	if d := RelL1([]float32{0, 0}, []float32{0, 0}); d != 0 {
		t.Errorf("RelL1(0, 0) = %v, want 0", d)
	}
	if d := RelL1([]float32{1e-3, 0}, []float32{0, 0}); !math.IsInf(d, 1) {
		t.Errorf("RelL1(m, 0) = %v, want +Inf", d)
	}
}

// refTeaCache transliterates TeaCache4Lumina2's per-call logic for one
// cache entry (teacache_forward_working), with the step counter passed in.
type refTeaCache struct {
	acc      float64
	prev     []float64
	residual bool
}

func (r *refTeaCache) call(cnt, numSteps int, m []float32, thresh float64) bool {
	mod := make([]float64, len(m))
	for i, v := range m {
		mod[i] = float64(v)
	}
	meanAbs := func(v []float64) float64 {
		s := 0.0
		for _, x := range v {
			s += math.Abs(x)
		}
		return s / float64(len(v))
	}
	shouldCalc := true
	if cnt == 0 || cnt == numSteps-1 {
		r.acc = 0
	} else if r.prev != nil {
		var rel float64
		if pm := meanAbs(r.prev); pm > 1e-9 {
			diff := make([]float64, len(mod))
			for i := range mod {
				diff[i] = mod[i] - r.prev[i]
			}
			rel = meanAbs(diff) / pm
		} else if meanAbs(mod) < 1e-9 {
			rel = 0
		} else {
			rel = math.Inf(1)
		}
		c := TeaCacheV1
		r.acc += (((c[0]*rel+c[1])*rel+c[2])*rel+c[3])*rel + c[4]
		if r.acc < thresh {
			shouldCalc = false
		} else {
			r.acc = 0
		}
	} else {
		r.acc = 0
	}
	r.prev = mod
	if !shouldCalc && !r.residual {
		shouldCalc = true
	}
	if shouldCalc {
		r.residual = true
	}
	return shouldCalc
}

// Observe/Save/Reuse against the transliteration over a run whose
// indicator drifts by varying amounts, at several thresholds.
func TestTeaCacheHost(t *testing.T) {
	const steps, n = 30, 96
	base, jitter := make([]float32, n), make([]float32, n)
	Noise(base, 21, 0)
	ms := make([][]float32, steps)
	for k := range ms {
		Noise(jitter, 22, uint64(k))
		amp := 0.02 + 0.08*math.Abs(math.Sin(float64(k)/3))
		ms[k] = make([]float32, n)
		for i := range ms[k] {
			ms[k][i] = base[i] + float32(amp*float64(k))*jitter[i]
		}
	}
	for _, thresh := range []float64{0.2, 0.3, 0.5, 1.1} {
		ref := &refTeaCache{}
		c := NewTeaCache(thresh, steps, TeaCacheV1)
		skipped := 0
		in, out, lastIn := make([]float32, n), make([]float32, n), make([]float32, n)
		for k, m := range ms {
			want := ref.call(k, steps, m, thresh)
			got := c.Observe(k, m)
			if got != want {
				t.Fatalf("thresh %g, step %d: compute = %v, TeaCache script says %v", thresh, k, got, want)
			}
			Noise(in, 23, uint64(k))
			if got {
				for i := range out {
					out[i] = 2*in[i] + 1 // stand-in for the 26 joint layers
				}
				c.Save(out, in)
				copy(lastIn, in)
				continue
			}
			skipped++
			if err := c.Reuse(out, in); err != nil {
				t.Fatal(err)
			}
			// Reuse adds the residual of the last computed step,
			// (2·lastIn + 1) − lastIn.
			for i := range out {
				if want := in[i] + ((2*lastIn[i] + 1) - lastIn[i]); out[i] != want {
					t.Fatalf("step %d: reused output[%d] = %v, want %v", k, i, out[i], want)
				}
			}
		}
		t.Logf("thresh %g: %d of %d steps skipped", thresh, skipped, steps)
		if thresh >= 0.5 && skipped == 0 {
			t.Errorf("thresh %g: nothing skipped; the run is meant to exercise skipping", thresh)
		}
	}
	c := NewTeaCache(0.3, 10, Poly{})
	if err := c.Reuse(make([]float32, 2), make([]float32, 2)); !errors.Is(err, ErrNoResidual) {
		t.Errorf("Reuse before Save: %v", err)
	}
	// Residual arithmetic.
	c.Save([]float32{5, 1}, []float32{2, 3})
	dst := []float32{10, 20}
	if err := c.Reuse(dst, dst); err != nil || dst[0] != 13 || dst[1] != 18 {
		t.Errorf("Reuse: %v, %v; want [13 18]", dst, err)
	}
}
