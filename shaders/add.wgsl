// add.wgsl — elementwise addition with a repeating second operand.
//
// Entry points
//   add: out[i] = a[i] + b[i % b_n], for i in [base, n)
//        (b_n = the tensor's size: plain add; b_n = row length: a bias
//        broadcast over rows)
//
// Bindings
//   0 a      storage, read        f32, element offset params.a_off
//   1 b      storage, read        f32, element offset params.b_off
//   2 out    storage, read_write  f32, element offset params.out_off
//   3 params uniform              Params
//
// Indices are global (over the whole tensor) even when the host binds only
// a window of each operand: an offset is the window's remainder minus its
// first global element, modulo 2^32 (u32 arithmetic wraps), so off + i
// lands inside the window (model/ops split).
//
// Dispatch: ceil((n − base) / WG) workgroups on a 1-D count (2-D split by
// the host).
// Precision: one f32 add per element, correctly rounded.

override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

struct Params {
	n: u32,
	b_n: u32,
	a_off: u32,
	b_off: u32,
	out_off: u32,
	base: u32,
	_pad1: u32,
	_pad2: u32,
}
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn add(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) li: u32) {
	let i = params.base + (wg.x + wg.y * nwg.x) * WG + li;
	if (i >= params.n) {
		return;
	}
	out[params.out_off + i] = a[params.a_off + i] + b[params.b_off + i % params.b_n];
}
