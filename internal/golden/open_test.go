package golden

import "testing"

// The reader must find the files, decode F32 tensors and the tolerances.
func TestOpen(t *testing.T) {
	c := Open(t, "nextdit_tiny")
	info, ok := c.Info("input.x")
	if !ok || info.Shape.String() != "[2,16,16,16]" {
		t.Fatalf("input.x: %+v %v", info, ok)
	}
	if v := c.Must(t, "input.x"); len(v) != info.Shape.Numel() {
		t.Fatalf("input.x: %d values", len(v))
	}
	if tol := c.Tolerance(t, "output.x"); tol.Strict <= 0 || tol.GPU < tol.Strict {
		t.Fatalf("output.x tolerance %+v", tol)
	}
}
