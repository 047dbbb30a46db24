package ref

// Conv2D is the twin of conv.wgsl, torch.nn.functional.conv2d with stride 1,
// dilation 1, groups 1 and zero padding pad on every side ("same" size, so
// 2·pad = k−1):
//
//	out[b,co,y,x] = bias[co] + sum_{ci,ky,kx} xp[b,ci,y+ky−pad,x+kx−pad]·w[co,ci,ky,kx]
//
// where xp is x extended by zeros outside [0,H)×[0,W). x is (B, Ci, H, W),
// w is (Co, Ci, k, k), bias is (Co) or nil, out is (B, Co, H, W), all
// row-major (NCHW). The sum is accumulated in float64 and rounded once.
// https://pytorch.org/docs/stable/generated/torch.nn.Conv2d.html
func Conv2D(out, x, w, bias []float32, B, Ci, Co, H, W, k, pad int) {
	if k < 1 || 2*pad != k-1 || len(x) != B*Ci*H*W || len(w) != Co*Ci*k*k ||
		len(out) != B*Co*H*W || (bias != nil && len(bias) != Co) {
		panic("ref: Conv2D: bad lengths")
	}
	for b := range B {
		for co := range Co {
			for y := range H {
				for xo := range W {
					var s float64
					for ci := range Ci {
						plane := x[(b*Ci+ci)*H*W : (b*Ci+ci+1)*H*W]
						taps := w[(co*Ci+ci)*k*k : (co*Ci+ci+1)*k*k]
						for ky := range k {
							yy := y + ky - pad
							if yy < 0 || yy >= H {
								continue
							}
							for kx := range k {
								xx := xo + kx - pad
								if xx < 0 || xx >= W {
									continue
								}
								s += float64(plane[yy*W+xx]) * float64(taps[ky*k+kx])
							}
						}
					}
					if bias != nil {
						s += float64(bias[co])
					}
					out[((b*Co+co)*H+y)*W+xo] = float32(s)
				}
			}
		}
	}
}
