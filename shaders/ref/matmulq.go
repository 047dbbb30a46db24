package ref

import (
	"encoding/binary"
	"math"
)

// The quantized weight layouts, the twins of matmulq.wgsl (written from
// the layout description, not from model/weights' code). A weight of N
// rows of K values is cut into groups of 32 along K (G = ceil(K/32) groups a
// row, the last one padded; group index gi = n·G + g), stored as two
// sections of little-endian bytes:
//
//	q8  values: byte gi·32 + j holds value j of group gi (int8);
//	    scales at byte N·G·32: binary16 d of group gi at bytes +2·gi.
//	    w = q·d.
//	q4  values: word gi·4 + j/8 holds value j of group gi at bits
//	    4·(j%8) (unsigned 0..15), i.e. byte gi·16 + j/2, low nibble for
//	    even j; then at byte N·G·16 one word per group: binary16 d in
//	    bytes +4·gi, binary16 m in bytes +4·gi+2. w = q·d + m.
//
// Both lengths are padded to a multiple of 4 bytes.
const qGroup = 32

// QuantBytes is the length of a q8 (q4 false) or q4 weight of rows×K.
func QuantBytes(q4 bool, rows, K int) int {
	ng := rows * ((K + qGroup - 1) / qGroup)
	if q4 {
		return ng*qGroup/2 + 4*ng
	}
	return ng*qGroup + (2*ng+3)&^3
}

// DequantQ8 writes the exact values of the q8 weight raw (rows×K) into w
// (rows·K, row-major).
func DequantQ8(w []float64, raw []byte, rows, K int) { dequant(w, raw, rows, K, false) }

// DequantQ4 writes the exact values of the q4 weight raw (rows×K) into w.
// q·d and q·d + m are exact in float64 (binary16 operands).
func DequantQ4(w []float64, raw []byte, rows, K int) { dequant(w, raw, rows, K, true) }

func dequant(w []float64, raw []byte, rows, K int, q4 bool) {
	if len(w) != rows*K || len(raw) != QuantBytes(q4, rows, K) {
		panic("ref: Dequant: bad lengths")
	}
	for r := range rows {
		dequantRow(w[r*K:(r+1)*K], raw, r, rows, K, q4)
	}
}

// dequantRow decodes row r of a rows×K weight into w (K values).
func dequantRow(w []float64, raw []byte, r, rows, K int, q4 bool) {
	G := (K + qGroup - 1) / qGroup
	for k := range K {
		g, j := k/qGroup, k%qGroup
		gi := r*G + g
		if q4 {
			second := rows * G * qGroup / 2
			b := raw[gi*qGroup/2+j/2]
			q := float64(b >> (4 * (j % 2)) & 0xf)
			d := half(binary.LittleEndian.Uint16(raw[second+4*gi:]))
			m := half(binary.LittleEndian.Uint16(raw[second+4*gi+2:]))
			w[k] = q*d + m
		} else {
			second := rows * G * qGroup
			q := float64(int8(raw[gi*qGroup+j]))
			w[k] = q * half(binary.LittleEndian.Uint16(raw[second+2*gi:]))
		}
	}
}

// half decodes an IEEE 754 binary16 value by its definition:
// (-1)^s · 2^(e-15) · (1 + f/1024) for 0 < e < 31, (-1)^s · 2^-14 · f/1024
// for e = 0, ±Inf or NaN for e = 31.
func half(h uint16) float64 {
	e, f := int(h>>10&0x1f), float64(h&0x3ff)
	var v float64
	switch e {
	case 0x1f:
		v = math.Inf(1)
		if f != 0 {
			return math.NaN()
		}
	case 0:
		v = math.Ldexp(f, -24)
	default:
		v = math.Ldexp(1024+f, e-25)
	}
	if h&0x8000 != 0 {
		v = -v
	}
	return v
}

// MatMulQ8 is the twin of matmulq.wgsl's matmul_q8: MatMul (out = x·wᵀ +
// bias) with the q8 weight w (N×K) dequantized exactly, accumulated in
// float64 and rounded once.
func MatMulQ8(out, x []float32, w []byte, bias []float32, M, N, K int) {
	matmulQ(out, x, w, bias, M, N, K, false)
}

// MatMulQ4 is MatMulQ8 for a q4 weight (matmul_q4).
func MatMulQ4(out, x []float32, w []byte, bias []float32, M, N, K int) {
	matmulQ(out, x, w, bias, M, N, K, true)
}

func matmulQ(out, x []float32, w []byte, bias []float32, M, N, K int, q4 bool) {
	MatMulQRows(out, x, w, bias, M, N, K, N, 0, q4)
}

// MatMulQRows is MatMulQ8 (or, with q4, MatMulQ4) on rows row0 … row0+N−1
// of a packed weight of R rows: the weight rows of a view.
func MatMulQRows(out, x []float32, w []byte, bias []float32, M, N, K, R, row0 int, q4 bool) {
	if len(x) != M*K || len(w) != QuantBytes(q4, R, K) || row0 < 0 || row0+N > R || len(out) != M*N || (bias != nil && len(bias) != N) {
		panic("ref: MatMulQ: bad lengths")
	}
	wr := make([]float64, K)
	for n := range N {
		dequantRow(wr, w, row0+n, R, K, q4)
		for m := range M {
			var s float64
			for k, xv := range x[m*K : (m+1)*K] {
				s += float64(xv) * wr[k]
			}
			if bias != nil {
				s += float64(bias[n])
			}
			out[m*N+n] = float32(s)
		}
	}
}
