// layout.wgsl — data movement: patchify and unpatchify of the latent,
// nearest 2× upsampling and batched transposes. Every entry is a gather:
// one invocation per output element reads the one input element it copies,
// so results are bit-exact.
//
// Entry points (o in [base, n), global indices)
//   patchify:   x (B, C, H, W) → out (B, (H/p)·(W/p), p·p·C)
//               out[b, r·(W/p)+q, (i·p+j)·C+ch] = x[b, ch, r·p+i, q·p+j]
//               o indexes x (a scatter: one invocation per input element)
//   unpatchify: x (B, (H/p)·(W/p), p·p·C) → out (B, C, H, W), the inverse
//               o indexes out (a gather); both use token_index
//   upsample2x: x (B, C, H, W) → out (B, C, 2H, 2W), o indexes out
//               out[b, c, y, x] = x[b, c, y/2, x/2]
//   transpose_last2: x (B, R, C) → out (B, C, R), with h = R and w = C;
//               o indexes out
// Patchify iterates over the image so that both patch ops run over the
// image's index space: a band of image rows maps to a band of tokens, which
// lets the host split either op into windows that fit one binding.
//
// Bindings
//   0 x      storage, read        f32, element offset params.x_off
//   1 out    storage, read_write  f32, element offset params.out_off
//   2 params uniform              Params (c, h, w, p: the shapes above; for
//                                 upsample2x, h and w are the input's)
//
// Indices are global even when the host binds only a window of each
// operand: an offset is the window's remainder minus its first global
// element, modulo 2^32 (u32 arithmetic wraps; model/ops split).
//
// Dispatch: ceil((n − base) / WG) workgroups on a 1-D count (2-D split by
// the host).
// Precision: copies only.

override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

struct Params {
	n: u32,
	c: u32,
	h: u32,
	w: u32,
	p: u32,
	x_off: u32,
	out_off: u32,
	base: u32,
}
@group(0) @binding(2) var<uniform> params: Params;

fn flat_id(wg: vec3<u32>, nwg: vec3<u32>, li: u32) -> u32 {
	return params.base + (wg.x + wg.y * nwg.x) * WG + li;
}

// token_index is the (B, (H/p)·(W/p), p·p·C) index of the element of
// (B, C, H, W) at o.
fn token_index(o: u32) -> u32 {
	let p = params.p;
	let col = o % params.w;
	let row = (o / params.w) % params.h;
	let ch = (o / (params.w * params.h)) % params.c;
	let bi = o / (params.w * params.h * params.c);
	let wp = params.w / p;
	let ntok = (params.h / p) * wp;
	let tok = (row / p) * wp + col / p;
	let f = ((row % p) * p + col % p) * params.c + ch;
	return (bi * ntok + tok) * p * p * params.c + f;
}

@compute @workgroup_size(WG)
fn patchify(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) li: u32) {
	let o = flat_id(wg, nwg, li);
	if (o >= params.n) {
		return;
	}
	out[params.out_off + token_index(o)] = x[params.x_off + o];
}

@compute @workgroup_size(WG)
fn unpatchify(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
	let o = flat_id(wg, nwg, li);
	if (o >= params.n) {
		return;
	}
	out[params.out_off + o] = x[params.x_off + token_index(o)];
}

@compute @workgroup_size(WG)
fn upsample2x(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
	let o = flat_id(wg, nwg, li);
	if (o >= params.n) {
		return;
	}
	let w2 = 2u * params.w;
	let h2 = 2u * params.h;
	let col = o % w2;
	let row = (o / w2) % h2;
	let plane = o / (w2 * h2);
	out[params.out_off + o] = x[params.x_off + (plane * params.h + row / 2u) * params.w + col / 2u];
}

@compute @workgroup_size(WG)
fn transpose_last2(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) li: u32) {
	let o = flat_id(wg, nwg, li);
	if (o >= params.n) {
		return;
	}
	// out (B, C, R) with R = h, C = w
	let r = o % params.h;
	let cc = (o / params.h) % params.w;
	let bi = o / (params.h * params.w);
	out[params.out_off + o] = x[params.x_off + (bi * params.h + r) * params.w + cc];
}
