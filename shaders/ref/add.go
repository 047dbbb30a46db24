package ref

// Add is the twin of add.wgsl:
//
//	for i := range a {
//		out[i] = a[i] + b[i%len(b)]
//	}
//
// with the sum formed in float64 and rounded once to float32. len(b) must
// divide len(a) (b repeats along a, e.g. a bias over rows).
func Add(out, a, b []float32) {
	if len(out) != len(a) || len(b) == 0 || len(a)%len(b) != 0 {
		panic("ref: Add: bad lengths")
	}
	for i := range a {
		out[i] = float32(float64(a[i]) + float64(b[i%len(b)]))
	}
}
