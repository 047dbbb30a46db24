package ref

import "math"

// AttnShape describes one attention call: q (B, Lq, H, Dh), k and v
// (B, Lk, Hkv, Dh), out (B, Lq, H, Dh), all row-major; query head h reads
// key/value head h / (H/Hkv) (contiguous grouping, as repeat_interleave in
// PyTorch's GQA).
type AttnShape struct {
	B, Lq, Lk, H, Hkv, Dh int
}

// AttnMask is the logit transform and mask of attention.wgsl.
type AttnMask struct {
	Scale   float64 // logit scale, e.g. 1/√Dh
	SoftCap float64 // 0: none; else s = SoftCap·tanh(s/SoftCap)
	Causal  bool    // key j visible to query i only if j ≤ i + Lk − Lq
	Window  int     // 0: none; else key j visible only if i + Lk − Lq − j < Window
	KeyLen  []int   // nil: all keys; else keys j ≥ KeyLen[b] are invisible
}

// Visible reports whether key j is visible to query i of batch entry b.
func (m AttnMask) Visible(b, i, j int, sh AttnShape) bool {
	pos := i + sh.Lk - sh.Lq // the query's position on the key axis
	switch {
	case m.KeyLen != nil && j >= m.KeyLen[b]:
		return false
	case m.Causal && j > pos:
		return false
	case m.Window > 0 && pos-j >= m.Window:
		return false
	}
	return true
}

// Attention is the twin of attention.wgsl, PyTorch's
// scaled_dot_product_attention with grouped-query heads (enable_gqa), an
// optional Gemma-2 logit soft-cap (HF Gemma2 eager_attention_forward) and
// boolean masks:
//
//	for b, i < Lq, h < H (g = h / (H/Hkv)):
//		s[j] = Scale · Σ_e q[b,i,h,e]·k[b,j,g,e]
//		s[j] = SoftCap·tanh(s[j]/SoftCap)        if SoftCap ≠ 0
//		p    = softmax over the visible j (AttnMask.Visible) of s
//		out[b,i,h,e] = Σ_j p[j]·v[b,j,g,e]
//
// in float64, rounded once. A query row with no visible key gets zeros
// (PyTorch would give NaN; padded rows are discarded by the models anyway).
// rows, when not nil, limits the work to those query indices i (the other
// rows of out are left alone), so large shapes can be spot-checked.
func Attention(out, q, k, v []float32, sh AttnShape, m AttnMask, rows []int) {
	B, Lq, Lk, H, Hkv, Dh := sh.B, sh.Lq, sh.Lk, sh.H, sh.Hkv, sh.Dh
	if Hkv <= 0 || H%Hkv != 0 || len(q) != B*Lq*H*Dh || len(out) != len(q) ||
		len(k) != B*Lk*Hkv*Dh || len(v) != len(k) || (m.KeyLen != nil && len(m.KeyLen) != B) {
		panic("ref: Attention: bad lengths")
	}
	if rows == nil {
		rows = make([]int, Lq)
		for i := range rows {
			rows[i] = i
		}
	}
	G := H / Hkv
	s := make([]float64, Lk)
	acc := make([]float64, Dh)
	for b := range B {
		for _, i := range rows {
			for h := range H {
				g := h / G
				qr := q[((b*Lq+i)*H+h)*Dh:][:Dh]
				mx := math.Inf(-1)
				for j := range Lk {
					s[j] = math.Inf(-1)
					if !m.Visible(b, i, j, sh) {
						continue
					}
					kr := k[((b*Lk+j)*Hkv+g)*Dh:][:Dh]
					var d float64
					for e, qv := range qr {
						d += float64(qv) * float64(kr[e])
					}
					d *= m.Scale
					if m.SoftCap != 0 {
						d = m.SoftCap * math.Tanh(d/m.SoftCap)
					}
					s[j] = d
					mx = max(mx, d)
				}
				clear(acc)
				var sum float64
				if !math.IsInf(mx, -1) {
					for j := range Lk {
						if math.IsInf(s[j], -1) {
							continue
						}
						p := math.Exp(s[j] - mx)
						sum += p
						vr := v[((b*Lk+j)*Hkv+g)*Dh:][:Dh]
						for e, vv := range vr {
							acc[e] += p * float64(vv)
						}
					}
				}
				o := out[((b*Lq+i)*H+h)*Dh:][:Dh]
				for e := range o {
					o[e] = 0
					if sum > 0 {
						o[e] = float32(acc[e] / sum)
					}
				}
			}
		}
	}
}
