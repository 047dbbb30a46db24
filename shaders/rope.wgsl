// rope.wgsl — rotary position embedding on pairs of each head vector.
//
// Entry points
//   rope: for each pair m < Dh/2 of each head row of x (B, L, H, Dh):
//           c, s = cs[b', l, m, 0], cs[b', l, m, 1]   (b' = b, or 0: broadcast)
//           out[i] = x[i]·c − x[j]·s,  out[j] = x[j]·c + x[i]·s
//         with (i, j) = (2m, 2m+1) when interleaved = 1 (Lumina / Next-DiT)
//         and (m, m + Dh/2) when interleaved = 0 (rotate_half, Gemma-2).
//
// Bindings
//   0 x      storage, read        f32 (B, L, H, Dh), element offset params.x_off
//   1 cs     storage, read        f32 (Bc, L, Dh/2, 2), element offset params.cs_off;
//                                 params.cs_bstride is L·Dh (Bc = B) or 0 (Bc = 1)
//   2 out    storage, read_write  f32 (B, L, H, Dh), element offset params.out_off
//   3 params uniform              Params
//
// Dispatch: ceil((pairs − base) / WG) workgroups on a 1-D count (2-D split
// by the host), one invocation per pair t in [base, pairs); pairs is at
// most B·L·H·Dh/2. Indices are global even when the host binds only a
// window of each operand: an offset is the window's remainder minus its
// first global element, modulo 2^32 (u32 arithmetic wraps; model/ops split).
// Precision: two f32 products and one add per output (a fused multiply-add
// where the compiler forms one).

override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> cs: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

struct Params {
	pairs: u32,
	l: u32,
	h: u32,
	half_dh: u32,
	interleaved: u32,
	cs_bstride: u32,
	x_off: u32,
	cs_off: u32,
	out_off: u32,
	base: u32,
	_pad1: u32,
	_pad2: u32,
}
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn rope(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
	let t = params.base + (wg.x + wg.y * nwg.x) * WG + li;
	if (t >= params.pairs) {
		return;
	}
	let m = t % params.half_dh;
	let row = t / params.half_dh; // (b, l, h) flattened
	let bl = row / params.h;
	let b = bl / params.l;
	let l = bl % params.l;
	let c0 = params.cs_off + b * params.cs_bstride + (l * params.half_dh + m) * 2u;
	let c = cs[c0];
	let s = cs[c0 + 1u];
	let base = row * params.half_dh * 2u;
	var i = base + m;
	var j = base + m + params.half_dh;
	if (params.interleaved != 0u) {
		i = base + 2u * m;
		j = i + 1u;
	}
	let xi = x[params.x_off + i];
	let xj = x[params.x_off + j];
	out[params.out_off + i] = xi * c - xj * s;
	out[params.out_off + j] = xj * c + xi * s;
}
