// matmulq.wgsl — matmul.wgsl with quantized weights (q8, q4) read packed
// and dequantized in registers.
//
// Entry points
//   matmul_q8: out[m, n] = sum_k x[m, k] * w[n, k]  (+ bias[n] when has_bias)
//              w[n, k] = q · d, q int8, d the f16 scale of its group.
//   matmul_q4: the same with w[n, k] = q · d + m, q in 0..15, (d, m) the
//              f16 pair of its group.
//   x (M, K) f32, w (N, K) packed (below), bias (N) f32, out (M, N) f32.
//
// Weight layout (model/weights' pack dtypes; tensor.Q8/Q4; shaders/ref
// matmulq.go): groups of 32 along K, G = params.groups = ceil(K/32) a row,
// group gi = (row0 + n)·G + g (row0: the first row of a view of whole
// rows), a row's last group padded (its padding never read).
//   q8  words gi·8 .. gi·8+7 hold the group's 32 int8 values, value j at
//       bits 8·(j%4) of word gi·8 + j/4 (sign-extended); the scales start at
//       word params.second: d of group gi is half (gi & 1) of word
//       params.second + gi/2.
//   q4  words gi·4 .. gi·4+3 hold its 32 nibbles, value j at bits 4·(j%8) of
//       word gi·4 + j/8; word params.second + gi is (d, m), d in bits 0-15.
//
// Bindings
//   0 x      storage, read        f32, element offset params.x_off
//   1 w      storage, read        u32 words, the whole packed weight (no
//                                 offset: packed tensors are never viewed)
//   2 bias   storage, read        f32, element offset params.b_off (unread
//                                 when has_bias = 0)
//   3 out    storage, read_write  f32, element offset params.out_off
//   4 params uniform              Params
//
// Tiling and dispatch as matmul.wgsl: each invocation owns a TM×TN block of
// out in registers, a workgroup a (WG_M·TM)×(WG_N·TN) tile, tiles_m·tiles_n
// workgroups on a 1-D count. The k loop runs by group: the TN groups' scales
// are loaded once, then each quad of 4 values is unpacked from one word
// (q8: four bytes; q4: four nibbles of one half-word) into a vec4 with
// shifts, and the ragged end of a group (K % 4) one value at a time.
// Precision: q·d is exact in f32 and q·d + m rounds once (fma), so each
// weight is the float64 dequantization rounded to f32; f32 multiply-add,
// accumulated in k order per output. f16 scales are expected normal
// (a device may flush subnormal halves in unpack2x16float).

override WG_M: u32 = 8u;
override WG_N: u32 = 8u;
const TM: u32 = 4u;
const TN: u32 = 4u;
const GROUP: u32 = 32u;

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
	b_off: u32,
	out_off: u32,
	has_bias: u32,
	groups: u32,
	second: u32,
	row0: u32,
	_pad1: u32,
}
@group(0) @binding(4) var<uniform> params: Params;

// scale returns (d, m) of group gi (m = 0 for q8).
fn scale(gi: u32, q4: bool) -> vec2<f32> {
	if (q4) {
		return unpack2x16float(w[params.second + gi]);
	}
	let p = unpack2x16float(w[params.second + (gi >> 1u)]);
	return vec2<f32>(select(p.x, p.y, (gi & 1u) == 1u), 0.0);
}

// quad returns values 4t .. 4t+3 of the group whose words start at qw.
fn quad(qw: u32, t: u32, s: vec2<f32>, q4: bool) -> vec4<f32> {
	if (q4) {
		let h = w[qw + (t >> 1u)] >> (16u * (t & 1u));
		let q = (vec4<u32>(h) >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(0xfu);
		return fma(vec4<f32>(q), vec4<f32>(s.x), vec4<f32>(s.y));
	}
	let word = w[qw + t];
	// Each byte moved to the top, then an arithmetic shift back: sign extension.
	let q = bitcast<vec4<i32>>(vec4<u32>(word << 24u, word << 16u, word << 8u, word)) >> vec4<u32>(24u);
	return vec4<f32>(q) * s.x;
}

// one returns value j of the group whose words start at qw.
fn one(qw: u32, j: u32, s: vec2<f32>, q4: bool) -> f32 {
	if (q4) {
		let q = (w[qw + (j >> 3u)] >> (4u * (j & 7u))) & 0xfu;
		return fma(f32(q), s.x, s.y);
	}
	let q = bitcast<i32>(w[qw + (j >> 2u)] << (24u - 8u * (j & 3u))) >> 24u;
	return f32(q) * s.x;
}

fn run(wg: vec3<u32>, nwg: vec3<u32>, li: u32, q4: bool) {
	let t = wg.x + wg.y * nwg.x;
	let tile_m = t / params.tiles_n;
	let tile_n = t % params.tiles_n;
	let m0 = (tile_m * WG_M + li / WG_N) * TM;
	let n0 = (tile_n * WG_N + li % WG_N) * TN;
	if (m0 >= params.m || n0 >= params.n) {
		return;
	}
	let words = select(GROUP / 4u, GROUP / 8u, q4); // words of values a group
	var xr: array<u32, TM>;
	var wg0: array<u32, TN>; // group index of each row's first group
	for (var i = 0u; i < TM; i++) {
		xr[i] = params.x_off + min(m0 + i, params.m - 1u) * params.k;
	}
	for (var j = 0u; j < TN; j++) {
		wg0[j] = (params.row0 + min(n0 + j, params.n - 1u)) * params.groups;
	}
	var acc: array<array<f32, TN>, TM>;
	for (var g = 0u; g < params.groups; g++) {
		let k0 = g * GROUP;
		let kn = min(GROUP, params.k - k0); // values in this group
		var s: array<vec2<f32>, TN>;
		var qw: array<u32, TN>;
		for (var j = 0u; j < TN; j++) {
			let gi = wg0[j] + g;
			s[j] = scale(gi, q4);
			qw[j] = gi * words;
		}
		let nq = kn >> 2u;
		for (var tq = 0u; tq < nq; tq++) {
			let k = k0 + 4u * tq;
			var xv: array<vec4<f32>, TM>;
			var wv: array<vec4<f32>, TN>;
			for (var i = 0u; i < TM; i++) {
				xv[i] = vec4<f32>(x[xr[i] + k], x[xr[i] + k + 1u], x[xr[i] + k + 2u], x[xr[i] + k + 3u]);
			}
			for (var j = 0u; j < TN; j++) {
				wv[j] = quad(qw[j], tq, s[j], q4);
			}
			for (var i = 0u; i < TM; i++) {
				for (var j = 0u; j < TN; j++) {
					var a = fma(xv[i].x, wv[j].x, acc[i][j]);
					a = fma(xv[i].y, wv[j].y, a);
					a = fma(xv[i].z, wv[j].z, a);
					acc[i][j] = fma(xv[i].w, wv[j].w, a);
				}
			}
		}
		for (var jj = nq * 4u; jj < kn; jj++) {
			var wv: array<f32, TN>;
			for (var j = 0u; j < TN; j++) {
				wv[j] = one(qw[j], jj, s[j], q4);
			}
			for (var i = 0u; i < TM; i++) {
				let xk = x[xr[i] + k0 + jj];
				for (var j = 0u; j < TN; j++) {
					acc[i][j] = fma(xk, wv[j], acc[i][j]);
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

@compute @workgroup_size(WG_M * WG_N)
fn matmul_q8(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) li: u32) {
	run(wg, nwg, li, false);
}

@compute @workgroup_size(WG_M * WG_N)
fn matmul_q4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) li: u32) {
	run(wg, nwg, li, true);
}
