// matmul4.wgsl — matmul.wgsl reading x and w as vec4 along K.
//
// The same product, tiling and dispatch as matmul.wgsl, for K a multiple of
// 4 with x_off and w_off multiples of 4 (the host picks this file then):
// one vec4 load feeds four multiply-adds, which doubled the rate on
// lavapipe, whose loads across invocations are gathers.
//
// Entry points
//   matmul: out[m, n] = sum_k x[m, k] * w[n, k]  (+ bias[n] when has_bias)
//           x (M, K) row-major, w (N, K) row-major (PyTorch Linear weight),
//           out (M, N) row-major.
//
// Bindings
//   0 x      storage, read        vec4<f32>, element offset params.x_off (f32 elements, multiple of 4)
//   1 w      storage, read        vec4<f32>, element offset params.w_off (f32 elements, multiple of 4)
//   2 bias   storage, read        f32, element offset params.b_off (any
//                                 buffer when has_bias = 0; it is not read)
//   3 out    storage, read_write  f32, element offset params.out_off
//   4 params uniform              Params
//
// Tiling: register tiling without workgroup memory (barriers are expensive
// on CPU adapters such as lavapipe; see DESIGN.md). Each invocation owns a
// TM×TN block of out and keeps it in registers; a workgroup of WG_M×WG_N
// invocations owns a (WG_M·TM)×(WG_N·TN) tile. Loads at the ragged edges are
// clamped to valid rows and the stores guarded, so any M, N, K ≥ 1 works.
//
// Dispatch: tiles_m · tiles_n workgroups on a 1-D count (tiles_n in params);
// workgroup t computes tile (t / tiles_n, t % tiles_n).
// Precision: f32 products, summed four at a time (dot) then accumulated in
// k order per output.

override WG_M: u32 = 8u;
override WG_N: u32 = 8u;
const TM: u32 = 4u;
const TN: u32 = 4u;

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> w: array<vec4<f32>>;
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
	_pad0: u32,
	_pad1: u32,
	_pad2: u32,
}
@group(0) @binding(4) var<uniform> params: Params;

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
	let k4 = params.k / 4u;
	var xr: array<u32, TM>;
	var wr: array<u32, TN>;
	for (var i = 0u; i < TM; i++) {
		xr[i] = params.x_off / 4u + min(m0 + i, params.m - 1u) * k4;
	}
	for (var j = 0u; j < TN; j++) {
		wr[j] = params.w_off / 4u + min(n0 + j, params.n - 1u) * k4;
	}
	var acc: array<array<f32, TN>, TM>;
	for (var kk = 0u; kk < k4; kk++) {
		var xv: array<vec4<f32>, TM>;
		var wv: array<vec4<f32>, TN>;
		for (var i = 0u; i < TM; i++) {
			xv[i] = x[xr[i] + kk];
		}
		for (var j = 0u; j < TN; j++) {
			wv[j] = w[wr[j] + kk];
		}
		for (var i = 0u; i < TM; i++) {
			for (var j = 0u; j < TN; j++) {
				acc[i][j] += dot(xv[i], wv[j]);
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
