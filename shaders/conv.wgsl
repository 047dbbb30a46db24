// conv.wgsl — 2-D convolution, stride 1, zero padding ("same" size), NCHW.
//
// Entry points
//   conv2d: out[b, co, y, px] = bias[co]
//             + sum_{ci, ky, kx} x[b, ci, y + ky - pad, px + kx - pad] * w[co, ci, ky, kx]
//           (taps outside the image read zero; k = 2·pad + 1, 1 or 3 in the model)
//
// Bindings
//   0 x      storage, read        f32 (B, Ci, H, W), a window of it (see below)
//   1 w      storage, read        f32 (Co, Ci, k, k), from element params.w_off
//   2 bias   storage, read        f32 (Co), from element params.b_off (any
//                                 buffer when has_bias = 0; it is not read)
//   3 out    storage, read_write  f32 (B, Co, H, W), a window of it
//   4 params uniform              Params
//
// Windows: one dispatch computes nb batches × nco output channels × rows
// output rows [y0, y0 + rows), summing input channels [ci0, ci0 + nci). x_off
// is the element of (b0, ci0, x_row0, 0) in binding x and out_off that of
// (b0, co0, y0, 0) in binding out, so the host can bind only the part of a
// tensor a dispatch touches when the whole would exceed the device's storage
// binding limit: either whole channel planes (x_row0 = y0 = 0), or one
// channel and a band of rows plus its halo. With accumulate = 1 the sum
// starts from what out holds (the previous input-channel chunk) instead of
// the bias; the per-output sequence of f32 operations is then the same as
// in one dispatch, so a split result is bit-identical to an unsplit one.
//
// Tiling: register-tiled direct convolution, no im2col and no workgroup
// memory (barriers are expensive on lavapipe). Each invocation owns TCO
// output channels × TP consecutive pixels of one row; per input channel and
// kernel row it loads TP + k − 1 inputs once and reuses them for the k taps
// of that row. A workgroup of WG_CO × WG_P invocations owns
// (WG_CO·TCO) channels × (WG_P) pixel blocks.
//
// Dispatch: nb · tiles_co · tiles_p workgroups on a 1-D count, tiles_p =
// ceil(rows · xblocks / WG_P), xblocks = ceil(W / TP).
// Precision: f32 fma, accumulated in (ci, ky, kx) order per output, starting
// from the bias.

override WG_CO: u32 = 4u;
override WG_P: u32 = 16u;
const TCO: u32 = 4u;
const TP: u32 = 4u;
const TPX: u32 = 6u; // TP + k − 1 for k ≤ 3

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

struct Params {
	nb: u32,
	h: u32,
	w: u32,
	ci: u32,
	k: u32,
	pad: u32,
	ci0: u32,
	nci: u32,
	nco: u32,
	y0: u32,
	rows: u32,
	x_row0: u32,
	x_off: u32,
	x_bstride: u32,
	w_off: u32,
	b_off: u32,
	out_off: u32,
	out_bstride: u32,
	has_bias: u32,
	accumulate: u32,
	tiles_co: u32,
	tiles_p: u32,
	xblocks: u32,
	_pad0: u32,
}
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size(WG_CO * WG_P)
fn conv2d(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) li: u32) {
	let t = wg.x + wg.y * nwg.x;
	let per_b = params.tiles_co * params.tiles_p;
	let b = t / per_b;
	let tile_co = (t % per_b) / params.tiles_p;
	let tile_p = t % params.tiles_p;
	let co0 = (tile_co * WG_CO + li / WG_P) * TCO;
	let q = tile_p * WG_P + li % WG_P;
	if (b >= params.nb || co0 >= params.nco || q >= params.rows * params.xblocks) {
		return;
	}
	let ly = q / params.xblocks;
	let y = params.y0 + ly;
	let px0 = (q % params.xblocks) * TP;
	let hw = params.h * params.w;
	let kk = params.k * params.k;
	let obase = params.out_off + b * params.out_bstride + ly * params.w + px0;

	// Weight rows, clamped so ragged channel edges read valid memory; their
	// results are discarded by the guarded store.
	var wr: array<u32, TCO>;
	var acc: array<array<f32, TP>, TCO>;
	for (var i = 0u; i < TCO; i++) {
		let co = min(co0 + i, params.nco - 1u);
		wr[i] = params.w_off + co * params.ci * kk + params.ci0 * kk;
		for (var j = 0u; j < TP; j++) {
			var v = 0.0;
			if (params.accumulate != 0u) {
				if (co0 + i < params.nco && px0 + j < params.w) {
					v = out[obase + (co0 + i) * hw + j];
				}
			} else if (params.has_bias != 0u) {
				v = bias[params.b_off + co];
			}
			acc[i][j] = v;
		}
	}
	for (var c = 0u; c < params.nci; c++) {
		let xplane = params.x_off + b * params.x_bstride + c * hw;
		for (var ky = 0u; ky < params.k; ky++) {
			let yy = i32(y + ky) - i32(params.pad);
			if (yy < 0 || yy >= i32(params.h)) {
				continue;
			}
			let xrow = xplane + (u32(yy) - params.x_row0) * params.w;
			var xv: array<f32, TPX>;
			for (var j = 0u; j < TP + params.k - 1u; j++) {
				let xx = i32(px0 + j) - i32(params.pad);
				if (xx >= 0 && xx < i32(params.w)) {
					xv[j] = x[xrow + u32(xx)];
				}
			}
			for (var kx = 0u; kx < params.k; kx++) {
				let tap = c * kk + ky * params.k + kx;
				var wv: array<f32, TCO>;
				for (var i = 0u; i < TCO; i++) {
					wv[i] = w[wr[i] + tap];
				}
				for (var i = 0u; i < TCO; i++) {
					for (var j = 0u; j < TP; j++) {
						acc[i][j] = fma(xv[j + kx], wv[i], acc[i][j]);
					}
				}
			}
		}
	}
	for (var i = 0u; i < TCO; i++) {
		if (co0 + i >= params.nco) {
			break;
		}
		for (var j = 0u; j < TP; j++) {
			if (px0 + j >= params.w) {
				break;
			}
			out[obase + (co0 + i) * hw + j] = acc[i][j];
		}
	}
}
