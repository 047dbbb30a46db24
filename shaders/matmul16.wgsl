// matmul16.wgsl — matmul.wgsl with 16-bit weights (f16 or bf16) packed two
// to a u32, unpacked in the shader (no `enable f16` is assumed).
//
// Entry points
//   matmul: out[m, n] = sum_k x[m, k] * w[n, k]  (+ bias[n] when has_bias)
//           x (M, K) f32, w (N, K) 16-bit (element e in word e/2, low half
//           first: the little-endian layout of a safetensors F16/BF16
//           tensor), bias (N) f32, out (M, N) f32.
//
// Bindings
//   0 x      storage, read        f32, element offset params.x_off
//   1 w      storage, read        u32 words, element offset params.w_off
//                                 (16-bit elements)
//   2 bias   storage, read        f32, element offset params.b_off (unread
//                                 when has_bias = 0)
//   3 out    storage, read_write  f32, element offset params.out_off
//   4 params uniform              Params (w_bf16 selects the 16-bit format)
//
// Tiling and dispatch as matmul.wgsl. When K and w_off are even every row of
// w starts on a word boundary and the loop takes k two at a time, one word
// per row; otherwise each element is fetched on its own.
// Precision: the 16-bit weights convert exactly to f32; f32 multiply-add,
// accumulated in k order per output.

override WG_M: u32 = 8u;
override WG_N: u32 = 8u;
const TM: u32 = 4u;
const TN: u32 = 4u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

struct Params {
	m: u32,
	n: u32,
	k: u32,
	tiles_n: u32,
	x_off: u32,
	w_off: u32,
	b_off: u32,
	out_off: u32,
	has_bias: u32,
	w_bf16: u32,
	_pad0: u32,
	_pad1: u32,
}
@group(0) @binding(4) var<uniform> params: Params;

// unpack2 returns both 16-bit values of a word as f32, low half first.
fn unpack2(word: u32) -> vec2<f32> {
	if (params.w_bf16 != 0u) {
		return vec2<f32>(bitcast<f32>(word << 16u), bitcast<f32>(word & 0xffff0000u));
	}
	return unpack2x16float(word);
}

// w_at returns weight element e.
fn w_at(e: u32) -> f32 {
	let p = unpack2(w[e >> 1u]);
	return select(p.x, p.y, (e & 1u) == 1u);
}

@compute @workgroup_size(WG_M * WG_N)
fn matmul(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) li: u32) {
	let t = wg.x + wg.y * nwg.x;
	let tile_m = t / params.tiles_n;
	let tile_n = t % params.tiles_n;
	let m0 = (tile_m * WG_M + li / WG_N) * TM;
	let n0 = (tile_n * WG_N + li % WG_N) * TN;
	if (m0 >= params.m || n0 >= params.n) {
		return;
	}
	var xr: array<u32, TM>;
	var wr: array<u32, TN>;
	for (var i = 0u; i < TM; i++) {
		xr[i] = params.x_off + min(m0 + i, params.m - 1u) * params.k;
	}
	for (var j = 0u; j < TN; j++) {
		wr[j] = params.w_off + min(n0 + j, params.n - 1u) * params.k;
	}
	var acc: array<array<f32, TN>, TM>;
	if (params.k % 2u == 0u && params.w_off % 2u == 0u) {
		for (var kk = 0u; kk < params.k; kk += 2u) {
			var xv: array<vec2<f32>, TM>;
			var wv: array<vec2<f32>, TN>;
			for (var i = 0u; i < TM; i++) {
				xv[i] = vec2<f32>(x[xr[i] + kk], x[xr[i] + kk + 1u]);
			}
			for (var j = 0u; j < TN; j++) {
				wv[j] = unpack2(w[(wr[j] + kk) >> 1u]);
			}
			for (var i = 0u; i < TM; i++) {
				for (var j = 0u; j < TN; j++) {
					acc[i][j] = fma(xv[i].y, wv[j].y, fma(xv[i].x, wv[j].x, acc[i][j]));
				}
			}
		}
	} else {
		for (var kk = 0u; kk < params.k; kk++) {
			var xv: array<f32, TM>;
			var wv: array<f32, TN>;
			for (var i = 0u; i < TM; i++) {
				xv[i] = x[xr[i] + kk];
			}
			for (var j = 0u; j < TN; j++) {
				wv[j] = w_at(wr[j] + kk);
			}
			for (var i = 0u; i < TM; i++) {
				for (var j = 0u; j < TN; j++) {
					acc[i][j] = fma(xv[i], wv[j], acc[i][j]);
				}
			}
		}
	}
	for (var i = 0u; i < TM; i++) {
		let m = m0 + i;
		if (m >= params.m) {
			break;
		}
		for (var j = 0u; j < TN; j++) {
			let n = n0 + j;
			if (n >= params.n) {
				break;
			}
			var v = acc[i][j];
			if (params.has_bias != 0u) {
				v += bias[params.b_off + n];
			}
			out[params.out_off + m * params.n + n] = v;
		}
	}
}
