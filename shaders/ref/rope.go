package ref

// Rope is the twin of rope.wgsl: a rotary position embedding applied to
// pairs of each head vector of x, (B, L, H, Dh) row-major, by the angles
// whose cosines and sines are in cs, (Bc, L, Dh/2, 2) with Bc = B or 1 (one
// table broadcast over the batch):
//
//	for b, l, h, m (m < Dh/2):
//		c, s := cs[b', l, m, 0], cs[b', l, m, 1]   // b' = b, or 0 when Bc = 1
//		i, j := pair(m)
//		out[b,l,h,i] = x[b,l,h,i]*c - x[b,l,h,j]*s
//		out[b,l,h,j] = x[b,l,h,j]*c + x[b,l,h,i]*s
//
// pair(m) = (2m, 2m+1) when interleaved (Lumina's apply_rotary_emb: the head
// viewed as Dh/2 complex numbers times e^{iφ}) and (m, m+Dh/2) otherwise
// (HF transformers' rotate_half, as in Gemma-2's apply_rotary_pos_emb).
// Each output is formed in float64 and rounded once. out may be x.
func Rope(out, x, cs []float32, B, L, H, Dh int, interleaved bool) {
	half := Dh / 2
	if Dh%2 != 0 || len(x) != B*L*H*Dh || len(out) != len(x) ||
		(len(cs) != B*L*half*2 && len(cs) != L*half*2) {
		panic("ref: Rope: bad lengths")
	}
	csB := 0 // cs batch stride: 0 broadcasts one table
	if len(cs) == B*L*half*2 {
		csB = L * half * 2
	}
	for b := range B {
		for l := range L {
			t := cs[b*csB+l*half*2:]
			for h := range H {
				row := ((b*L+l)*H + h) * Dh
				for m := range half {
					i, j := row+m, row+m+half
					if interleaved {
						i, j = row+2*m, row+2*m+1
					}
					c, s := float64(t[2*m]), float64(t[2*m+1])
					xi, xj := float64(x[i]), float64(x[j])
					out[i] = float32(xi*c - xj*s)
					out[j] = float32(xj*c + xi*s)
				}
			}
		}
	}
}
