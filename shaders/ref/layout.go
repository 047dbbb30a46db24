package ref

// Patchify is the twin of layout.wgsl's patchify, Next-DiT's patchify
// (spec §3.4; models/model.py patchify_and_embed: view(C, H/p, p, W/p, p),
// permute(1, 3, 2, 4, 0), flatten): x is (B, C, H, W), out is
// (B, N, p·p·C) with N = (H/p)·(W/p) tokens in row-major patch order:
//
//	out[b, r·(W/p)+q, (i·p+j)·C+ch] = x[b, ch, r·p+i, q·p+j]
func Patchify(out, x []float32, B, C, H, W, p int) {
	if p <= 0 || H%p != 0 || W%p != 0 || len(x) != B*C*H*W || len(out) != len(x) {
		panic("ref: Patchify: bad lengths")
	}
	hp, wp := H/p, W/p
	for b := range B {
		for r := range hp {
			for q := range wp {
				for i := range p {
					for j := range p {
						for ch := range C {
							out[((b*hp+r)*wp+q)*p*p*C+(i*p+j)*C+ch] = x[((b*C+ch)*H+r*p+i)*W+q*p+j]
						}
					}
				}
			}
		}
	}
}

// Unpatchify is the twin of layout.wgsl's unpatchify, the exact inverse of
// Patchify (Next-DiT's unpatchify): x is (B, N, p·p·C), out is (B, C, H, W):
//
//	out[b, ch, r·p+i, q·p+j] = x[b, r·(W/p)+q, (i·p+j)·C+ch]
func Unpatchify(out, x []float32, B, C, H, W, p int) {
	if p <= 0 || H%p != 0 || W%p != 0 || len(x) != B*C*H*W || len(out) != len(x) {
		panic("ref: Unpatchify: bad lengths")
	}
	hp, wp := H/p, W/p
	for b := range B {
		for r := range hp {
			for q := range wp {
				for i := range p {
					for j := range p {
						for ch := range C {
							out[((b*C+ch)*H+r*p+i)*W+q*p+j] = x[((b*hp+r)*wp+q)*p*p*C+(i*p+j)*C+ch]
						}
					}
				}
			}
		}
	}
}

// Upsample2x is the twin of layout.wgsl's upsample2x, the VAE decoder's
// F.interpolate(x, scale_factor=2.0, mode="nearest"): x is (B, C, H, W),
// out is (B, C, 2H, 2W), each pixel copied to a 2×2 block:
//
//	out[b, c, y, x] = in[b, c, y/2, x/2]
func Upsample2x(out, x []float32, B, C, H, W int) {
	if len(x) != B*C*H*W || len(out) != 4*len(x) {
		panic("ref: Upsample2x: bad lengths")
	}
	for bc := range B * C {
		for y := range 2 * H {
			for xx := range 2 * W {
				out[(bc*2*H+y)*2*W+xx] = x[(bc*H+y/2)*W+xx/2]
			}
		}
	}
}

// Transpose is the twin of layout.wgsl's transpose, x.transpose(1, 2)
// made contiguous: x is (B, R, C), out is (B, C, R):
//
//	out[b, c, r] = x[b, r, c]
func Transpose(out, x []float32, B, R, C int) {
	if len(x) != B*R*C || len(out) != len(x) {
		panic("ref: Transpose: bad lengths")
	}
	for b := range B {
		for r := range R {
			for c := range C {
				out[(b*C+c)*R+r] = x[(b*R+r)*C+c]
			}
		}
	}
}
