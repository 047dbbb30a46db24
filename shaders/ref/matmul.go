package ref

// MatMul is the twin of matmul.wgsl, torch.nn.functional.linear:
//
//	out[m,n] = sum_k x[m,k]*w[n,k] + bias[n]
//
// x is (M, K), w is (N, K), bias is (N) or nil, out is (M, N), all
// row-major. The sum is accumulated in float64 and rounded once.
func MatMul(out, x, w, bias []float32, M, N, K int) {
	if len(x) != M*K || len(w) != N*K || len(out) != M*N || (bias != nil && len(bias) != N) {
		panic("ref: MatMul: bad lengths")
	}
	for m := range M {
		xr := x[m*K : (m+1)*K]
		for n := range N {
			wr := w[n*K : (n+1)*K]
			var s float64
			for k, xv := range xr {
				s += float64(xv) * float64(wr[k])
			}
			if bias != nil {
				s += float64(bias[n])
			}
			out[m*N+n] = float32(s)
		}
	}
}
