package ref

import "math"

// Gather is the twin of gather.wgsl, torch.nn.functional.embedding (an
// index_select of rows):
//
//	out[i,:] = table[ids[i],:]
//
// table is (V, D), ids is (N) holding integer ids as float32 (exact below
// 2^24), out is (N, D). An id that is not an integer in [0, V) (negative,
// too large, fractional, NaN) yields a row of zeros, where PyTorch would
// raise an index error.
// https://pytorch.org/docs/stable/generated/torch.nn.functional.embedding.html
func Gather(out, table, ids []float32, V, D int) {
	if len(table) != V*D || len(out) != len(ids)*D {
		panic("ref: Gather: bad lengths")
	}
	for i, f := range ids {
		row := out[i*D : (i+1)*D]
		id := float64(f)
		if !(id >= 0 && id < float64(V) && id == math.Floor(id)) {
			clear(row)
			continue
		}
		copy(row, table[int(id)*D:(int(id)+1)*D])
	}
}
