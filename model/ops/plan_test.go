package ops_test

import (
	"context"
	"strings"
	"testing"

	"github.com/luminaweb/lumina/model/ops"
	"github.com/luminaweb/lumina/model/tensor"
)

// A memory plan counts what a GPU would hold, computes nothing, and still
// checks every op's shapes.
func TestPlan(t *testing.T) {
	p := ops.NewPlan()
	x, _ := p.New(tensor.F32, 1000, 2304)
	w, _ := p.New(tensor.F16, 9216, 2304)
	y, err := ops.MatMul(p, x, w, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := p.PlanStats()
	want := uint64(1000*2304*4 + 9216*2304*2 + 1000*9216*4)
	if s.Live != want || s.Peak != want || s.Tensors != 3 || s.Largest != 9216*2304*2 || s.LargestShape.String() != "[9216,2304]" {
		t.Fatalf("stats %+v, want live=peak=%d", s, want)
	}
	p.Release(y)
	p.Release(y) // twice: counted once
	if s := p.PlanStats(); s.Live != want-1000*9216*4 || s.Peak != want {
		t.Fatalf("after release %+v", s)
	}
	p.ResetPeak()
	if s := p.PlanStats(); s.Peak != s.Live {
		t.Fatalf("ResetPeak: %+v", s)
	}
	if v, err := p.Read(context.Background(), x); err != nil || len(v) != x.Numel() {
		t.Fatalf("read %d values, %v", len(v), err)
	}
	msg := func() (m string) {
		defer func() { m, _ = recover().(string) }()
		p.MatMul(y, w, x, nil) // wrong shapes still panic
		return ""
	}()
	if !strings.Contains(msg, "MatMul") {
		t.Errorf("shape misuse on a plan: %q", msg)
	}
}
