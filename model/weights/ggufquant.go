package weights

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/luminaweb/lumina/model/tensor"
)

// Dequantization of ggml blocks, written from the block layouts of
// ggml-common.h (docs: ggml-org/ggml docs/gguf.md, the block_* structs).
// Arithmetic is float32 in ggml's order; every product is rounded
// explicitly so that no FMA is fused in.
//
//	Q4_0 (32 values, 18 B): d f16 | qs[16]. Value j<16 is qs[j]&15, value
//	     j+16 is qs[j]>>4; x = (q-8)*d.
//	Q4_1 (32, 20 B): d f16 | m f16 | qs[16] (as Q4_0); x = q*d + m.
//	Q5_0 (32, 22 B): d f16 | qh u32 | qs[16]. Bit j of qh is bit 4 of value
//	     j (j<32; values j<16 take the low nibble of qs[j], j>=16 the high
//	     nibble of qs[j-16]); x = (q-16)*d.
//	Q5_1 (32, 24 B): d f16 | m f16 | qh u32 | qs[16]; x = q*d + m.
//	Q8_0 (32, 34 B): d f16 | qs int8[32]; x = q*d.
//	Q4_K (256, 144 B): d f16 | dmin f16 | scales[12] | qs[128]. Eight
//	     sub-blocks of 32 with 6-bit scale sc and min mn (see scaleMinK4).
//	     Values 64c..64c+31 are the low nibbles of qs[32c..32c+31] (sub-block
//	     2c), values 64c+32..64c+63 their high nibbles (sub-block 2c+1);
//	     x = (d*sc)*q - dmin*mn.
//	Q5_K (256, 176 B): d | dmin | scales[12] | qh[32] | qs[128]. As Q4_K,
//	     plus bit 4 of value 64c+l from bit 2c of qh[l], of value 64c+32+l
//	     from bit 2c+1 of qh[l].
//	Q6_K (256, 210 B): ql[128] | qh[64] | scales int8[16] | d f16. Two
//	     halves of 128; in half h (ql += 64h, qh += 32h, sc += 8h), for
//	     l<32: q0 = ql[l]&15 | (qh[l]&3)<<4, q1 = ql[l+32]&15 |
//	     (qh[l]>>2&3)<<4, q2 = ql[l]>>4 | (qh[l]>>4&3)<<4, q3 = ql[l+32]>>4 |
//	     (qh[l]>>6&3)<<4; value 128h+32i+l = (d*sc[l/16+2i])*(qi-32).

func canDequant(t GGMLType) bool {
	switch t {
	case GGMLF32, GGMLF16, GGMLBF16, GGMLQ4_0, GGMLQ4_1, GGMLQ5_0, GGMLQ5_1, GGMLQ8_0, GGMLQ4_K, GGMLQ5_K, GGMLQ6_K:
		return true
	}
	return false
}

func f16At(b []byte, i int) float32 { return tensor.F16ToF32(binary.LittleEndian.Uint16(b[i:])) }

// mul rounds a float32 product (no FMA contraction across it).
func mul(a, b float32) float32 { return float32(a * b) }

// scaleMinK4 unpacks the 6-bit scale and min of sub-block j (0..7) from
// the 12 bytes of a Q4_K/Q5_K block: for j<4, sc = s[j]&63 and mn =
// s[j+4]&63; for j>=4, the low 4 bits come from s[j+4] (sc: low nibble,
// mn: high nibble) and the top 2 bits from the top bits of s[j-4] (sc)
// and s[j] (mn).
func scaleMinK4(s []byte, j int) (sc, mn uint8) {
	if j < 4 {
		return s[j] & 63, s[j+4] & 63
	}
	return s[j+4]&0xf | (s[j-4]>>6)<<4, s[j+4]>>4 | (s[j]>>6)<<4
}

// dequantGGML decodes whole blocks of type t from b into out
// (len(out) = values in b).
func dequantGGML(t GGMLType, b []byte, out []float32) {
	switch t {
	case GGMLF32:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
	case GGMLF16:
		for i := range out {
			out[i] = f16At(b, 2*i)
		}
	case GGMLBF16:
		for i := range out {
			out[i] = tensor.BF16ToF32(binary.LittleEndian.Uint16(b[2*i:]))
		}
	case GGMLQ4_0, GGMLQ4_1, GGMLQ5_0, GGMLQ5_1, GGMLQ8_0:
		_, size, _ := t.BlockSize()
		for k := 0; k < len(out)/32; k++ {
			dequant32(t, b[k*size:(k+1)*size], out[32*k:32*k+32])
		}
	case GGMLQ4_K, GGMLQ5_K, GGMLQ6_K:
		_, size, _ := t.BlockSize()
		for k := 0; k < len(out)/256; k++ {
			dequant256(t, b[k*size:(k+1)*size], out[256*k:256*k+256])
		}
	}
}

// dequant32 decodes one block of a 32-value type.
func dequant32(t GGMLType, b []byte, y []float32) {
	d := f16At(b, 0)
	switch t {
	case GGMLQ8_0:
		for j := range 32 {
			y[j] = mul(float32(int8(b[2+j])), d)
		}
	case GGMLQ4_0:
		qs := b[2:18]
		for j := range 16 {
			y[j] = mul(float32(int(qs[j]&15)-8), d)
			y[j+16] = mul(float32(int(qs[j]>>4)-8), d)
		}
	case GGMLQ4_1:
		m := f16At(b, 2)
		qs := b[4:20]
		for j := range 16 {
			y[j] = mul(float32(qs[j]&15), d) + m
			y[j+16] = mul(float32(qs[j]>>4), d) + m
		}
	case GGMLQ5_0, GGMLQ5_1:
		var m float32
		off, bias := 2, 16
		if t == GGMLQ5_1 {
			m, off, bias = f16At(b, 2), 4, 0
		}
		qh := binary.LittleEndian.Uint32(b[off:])
		qs := b[off+4 : off+20]
		for j := range 16 {
			lo := int(qs[j]&15) | int(qh>>j&1)<<4
			hi := int(qs[j]>>4) | int(qh>>(j+16)&1)<<4
			y[j] = mul(float32(lo-bias), d) + m
			y[j+16] = mul(float32(hi-bias), d) + m
		}
	}
}

// dequant256 decodes one block of a K-quant type.
func dequant256(t GGMLType, b []byte, y []float32) {
	switch t {
	case GGMLQ4_K, GGMLQ5_K:
		d, dmin := f16At(b, 0), f16At(b, 2)
		scales := b[4:16]
		var qh, qs []byte
		if t == GGMLQ4_K {
			qs = b[16:144]
		} else {
			qh, qs = b[16:48], b[48:176]
		}
		for c := range 4 {
			sc1, m1 := scaleMinK4(scales, 2*c)
			sc2, m2 := scaleMinK4(scales, 2*c+1)
			d1, min1 := mul(d, float32(sc1)), mul(dmin, float32(m1))
			d2, min2 := mul(d, float32(sc2)), mul(dmin, float32(m2))
			q := qs[32*c : 32*c+32]
			for l := range 32 {
				lo, hi := int(q[l]&15), int(q[l]>>4)
				if qh != nil {
					lo |= int(qh[l]>>(2*c)&1) << 4
					hi |= int(qh[l]>>(2*c+1)&1) << 4
				}
				y[64*c+l] = mul(d1, float32(lo)) - min1
				y[64*c+32+l] = mul(d2, float32(hi)) - min2
			}
		}
	case GGMLQ6_K:
		d := f16At(b, 208)
		for h := range 2 {
			ql, qh, sc := b[64*h:64*h+64], b[128+32*h:128+32*h+32], b[192+8*h:192+8*h+8]
			for l := range 32 {
				q := [4]int{
					int(ql[l]&15) | int(qh[l]&3)<<4,
					int(ql[l+32]&15) | int(qh[l]>>2&3)<<4,
					int(ql[l]>>4) | int(qh[l]>>4&3)<<4,
					int(ql[l+32]>>4) | int(qh[l]>>6&3)<<4,
				}
				for i := range 4 {
					s := mul(d, float32(int8(sc[l/16+2*i])))
					y[128*h+32*i+l] = mul(s, float32(q[i]-32))
				}
			}
		}
	}
}

// RepackReport says how a GGUF tensor became a pack tensor: Exact when
// every value is the same, else the error of the requantization against
// the GGUF values: the largest absolute difference and the RMS of the
// difference relative to the RMS of the values.
type RepackReport struct {
	Name   string
	From   GGMLType
	To     PackDType
	Exact  bool
	MaxAbs float64
	RelRMS float64
}

// Repack converts a GGUF tensor to a pack dtype: F32, F16 and BF16 to
// themselves, Q8_0 to q8 and Q4_0 and Q4_1 to q4 block for block (exact:
// the same int values and f16 scales, Q4_0's offset -8d in f16); any
// other readable type is dequantized and encoded as fallback (q8, q4, f16,
// bf16 or f32), with the error reported.
func (g *GGUF) Repack(name string, fallback PackDType) ([]byte, RepackReport, error) {
	t, err := g.tensor(name)
	if err != nil {
		return nil, RepackReport{}, err
	}
	if !fallback.Valid() {
		return nil, RepackReport{}, fmt.Errorf("weights: %s: repacking %q: unknown pack dtype %q", g.name, name, fallback)
	}
	raw, _, err := g.Raw(name)
	if err != nil {
		return nil, RepackReport{}, err
	}
	rep := RepackReport{Name: name, From: t.Type, Exact: true}
	var out []byte
	switch t.Type {
	case GGMLF32, GGMLF16, GGMLBF16:
		rep.To = map[GGMLType]PackDType{GGMLF32: PackF32, GGMLF16: PackF16, GGMLBF16: PackBF16}[t.Type]
		out = make([]byte, align4(int64(len(raw))))
		copy(out, raw)
		return out, rep, nil
	case GGMLQ8_0:
		rep.To = PackQ8
		out = repackQ8_0(t.Shape, raw)
		return out, rep, nil
	case GGMLQ4_0, GGMLQ4_1:
		rep.To = PackQ4
		if out = repackQ4(t.Type, t.Shape, raw); out != nil {
			return out, rep, nil
		}
	}
	// Dequantize and requantize.
	v := make([]float32, t.Shape.Numel())
	dequantGGML(t.Type, raw, v)
	rep.To, rep.Exact = fallback, false
	out, err = Encode(fallback, t.Shape, v)
	if err != nil {
		return nil, RepackReport{}, fmt.Errorf("weights: %s: repacking %q as %s: %w", g.name, name, fallback, err)
	}
	back, _ := Dequantize(fallback, t.Shape, out)
	var se, ss float64
	for i, x := range v {
		e := back[i] - float64(x)
		rep.MaxAbs = max(rep.MaxAbs, math.Abs(e))
		se += e * e
		ss += float64(x) * float64(x)
	}
	if ss > 0 {
		rep.RelRMS = math.Sqrt(se / ss)
	}
	rep.Exact = se == 0
	return out, rep, nil
}

// repackQ8_0 moves Q8_0 blocks into q8: a block is one group (ne0 is a
// multiple of 32, so groups and blocks are in the same order).
func repackQ8_0(shape tensor.Shape, raw []byte) []byte {
	l, _ := PackQ8.Layout(shape)
	out := make([]byte, l.Length)
	for gi := int64(0); gi < int64(len(raw)/34); gi++ {
		blk := raw[34*gi : 34*gi+34]
		copy(out[32*gi:], blk[2:34])
		copy(out[l.Second+2*gi:], blk[0:2])
	}
	return out
}

// repackQ4 moves Q4_0 or Q4_1 blocks into q4, reordering the nibbles
// (ggml: value j and j+16 share byte j; q4: values 2i and 2i+1 share byte
// i). Q4_0's x = (q-8)*d becomes q*d + m with m = -8d, exact in f16 unless
// 8d overflows; then it returns nil.
func repackQ4(t GGMLType, shape tensor.Shape, raw []byte) []byte {
	l, _ := PackQ4.Layout(shape)
	out := make([]byte, l.Length)
	size := 18
	if t == GGMLQ4_1 {
		size = 20
	}
	for gi := int64(0); gi < int64(len(raw)/size); gi++ {
		blk := raw[int64(size)*gi : int64(size)*(gi+1)]
		d16 := binary.LittleEndian.Uint16(blk)
		var m16 uint16
		qs := blk[size-16:]
		if t == GGMLQ4_1 {
			m16 = binary.LittleEndian.Uint16(blk[2:])
		} else {
			if math.IsInf(float64(tensor.F16ToF32(d16)), 0) {
				return nil
			}
			m := -8 * tensor.F16ToF32(d16)
			m16 = tensor.F32ToF16(m)
			if tensor.F16ToF32(m16) != m && !(math.IsNaN(float64(m))) {
				return nil
			}
		}
		dst := out[16*gi : 16*gi+16]
		for j := range 32 {
			var q byte
			if j < 16 {
				q = qs[j] & 15
			} else {
				q = qs[j-16] >> 4
			}
			dst[j/2] |= q << (4 * (j % 2))
		}
		binary.LittleEndian.PutUint16(out[l.Second+4*gi:], d16)
		binary.LittleEndian.PutUint16(out[l.Second+4*gi+2:], m16)
	}
	return out
}
