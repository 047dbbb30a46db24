package ref

import "math"

// RMSNorm is the twin of norm.wgsl's rms_norm: each row of D elements of x
// (len(x)/D rows, row-major) is scaled by the inverse root mean square,
// then by the weight w (D), or by 1 + w when plusOne (Gemma's stored offset
// from 1):
//
//	for each row r:
//		ms := Σ_i x[r,i]² / D
//		out[r,i] = x[r,i] / sqrt(ms + eps) · w[i]        (· (1 + w[i]) if plusOne)
//
// in float64, rounded once. Lumina's RMSNorm (models/components.py:
// x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight) and HF
// Gemma2RMSNorm (the same with (1.0 + weight)).
func RMSNorm(out, x, w []float32, D int, eps float32, plusOne bool) {
	if D <= 0 || len(x)%D != 0 || len(out) != len(x) || len(w) != D {
		panic("ref: RMSNorm: bad lengths")
	}
	for r := 0; r < len(x); r += D {
		row := x[r : r+D]
		var ss float64
		for _, v := range row {
			ss += float64(v) * float64(v)
		}
		inv := 1 / math.Sqrt(ss/float64(D)+float64(eps))
		for i, v := range row {
			g := float64(w[i])
			if plusOne {
				g++
			}
			out[r+i] = float32(float64(v) * inv * g)
		}
	}
}

// meanRstd returns the mean of v and 1/sqrt(var + eps) with the biased
// variance, both computed in two passes in float64.
func meanRstd(v []float32, eps float32) (mean, rstd float64) {
	for _, e := range v {
		mean += float64(e)
	}
	mean /= float64(len(v))
	var q float64
	for _, e := range v {
		d := float64(e) - mean
		q += d * d
	}
	return mean, 1 / math.Sqrt(q/float64(len(v))+float64(eps))
}

// LayerNorm is the twin of norm.wgsl's layer_norm,
// torch.nn.functional.layer_norm over the last dimension without weight or
// bias (Next-DiT's final layer, elementwise_affine=False):
//
//	for each row r of D elements:
//		mean := Σ_i x[r,i] / D
//		var  := Σ_i (x[r,i] − mean)² / D           (biased)
//		out[r,i] = (x[r,i] − mean) / sqrt(var + eps)
//
// in float64, rounded once.
// https://pytorch.org/docs/stable/generated/torch.nn.LayerNorm.html
func LayerNorm(out, x []float32, D int, eps float32) {
	if D <= 0 || len(x)%D != 0 || len(out) != len(x) {
		panic("ref: LayerNorm: bad lengths")
	}
	for r := 0; r < len(x); r += D {
		mean, rstd := meanRstd(x[r:r+D], eps)
		for i, v := range x[r : r+D] {
			out[r+i] = float32((float64(v) - mean) * rstd)
		}
	}
}

// GroupNorm is the twin of norm.wgsl's group_norm, torch.nn.GroupNorm
// (the VAE's 32 groups, eps 1e-6, affine): x and out are (B, C, S) with S
// the product of the spatial dimensions, row-major; the C channels fall
// into G groups of C/G consecutive channels; w and b are (C):
//
//	for b, g:
//		mean, var := mean and biased variance of x[b, c, s]
//		             over c in [g·C/G, (g+1)·C/G), s in [0, S)
//		out[b,c,s] = (x[b,c,s] − mean) / sqrt(var + eps) · w[c] + b[c]
//
// in float64 (two passes), rounded once.
// https://pytorch.org/docs/stable/generated/torch.nn.GroupNorm.html
func GroupNorm(out, x, w, b []float32, B, C, S, G int, eps float32) {
	if G <= 0 || C%G != 0 || len(x) != B*C*S || len(out) != len(x) || len(w) != C || len(b) != C {
		panic("ref: GroupNorm: bad lengths")
	}
	n := C / G * S // elements of one group, contiguous
	for r := 0; r < B*G; r++ {
		mean, rstd := meanRstd(x[r*n:(r+1)*n], eps)
		c0 := r % G * (C / G)
		for i, v := range x[r*n : (r+1)*n] {
			c := c0 + i/S
			out[r*n+i] = float32((float64(v)-mean)*rstd*float64(w[c]) + float64(b[c]))
		}
	}
}

// Softmax is the twin of norm.wgsl's softmax, torch.softmax over the last
// dimension of rows of D elements, with the row maximum subtracted first:
//
//	for each row r:
//		m := max_i x[r,i]
//		out[r,i] = exp(x[r,i] − m) / Σ_j exp(x[r,j] − m)
//
// in float64, rounded once.
// https://pytorch.org/docs/stable/generated/torch.nn.Softmax.html
func Softmax(out, x []float32, D int) {
	if D <= 0 || len(x)%D != 0 || len(out) != len(x) {
		panic("ref: Softmax: bad lengths")
	}
	e := make([]float64, D)
	for r := 0; r < len(x); r += D {
		m := math.Inf(-1)
		for _, v := range x[r : r+D] {
			m = max(m, float64(v))
		}
		var s float64
		for i, v := range x[r : r+D] {
			e[i] = math.Exp(float64(v) - m)
			s += e[i]
		}
		for i := range e {
			out[r+i] = float32(e[i] / s)
		}
	}
}
