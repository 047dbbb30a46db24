// gather.wgsl — row gather (embedding lookup).
//
// Entry points
//   gather: out[i, :] = table[ids[i], :] for i in [0, n), rows of d elements.
//           ids are f32 holding integers (exact below 2^24). An id that is
//           not an integer in [0, v) (negative, too large, fractional, NaN)
//           yields a zero row, and the table is not read for it.
//
// Bindings
//   0 table  storage, read        f32 rows [row0, row0 + rows) of the (v, d)
//                                 table, row row0 at element params.t_off
//   1 ids    storage, read        f32 (n), from element params.ids_off
//   2 out    storage, read_write  f32 (n, d), from element params.out_off
//   3 params uniform              Params
//
// Windows: a table larger than one storage binding is bound a window of
// rows at a time; a dispatch writes only the output rows whose id falls in
// its window, and the dispatch with write_invalid = 1 (the first) also
// writes the zero rows, so every output row is written exactly once.
//
// Dispatch: ceil(n · d / WG) workgroups on a 1-D count (2-D split by the
// host); one invocation per output element.
// Precision: a copy, bit-exact.

override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> table: array<f32>;
@group(0) @binding(1) var<storage, read> ids: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

struct Params {
	n: u32,
	d: u32,
	v: u32,
	row0: u32,
	rows: u32,
	t_off: u32,
	ids_off: u32,
	out_off: u32,
	write_invalid: u32,
	_pad0: u32,
	_pad1: u32,
	_pad2: u32,
}
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn gather(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) li: u32) {
	let e = (wg.x + wg.y * nwg.x) * WG + li;
	if (e >= params.n * params.d) {
		return;
	}
	let i = e / params.d;
	let col = e % params.d;
	let f = ids[params.ids_off + i];
	// NaN fails every comparison, so it is invalid too.
	let valid = f >= 0.0 && f < f32(params.v) && floor(f) == f;
	if (!valid) {
		if (params.write_invalid != 0u) {
			out[params.out_off + e] = 0.0;
		}
		return;
	}
	let id = u32(f);
	if (id >= params.row0 && id < params.row0 + params.rows) {
		out[params.out_off + e] = table[params.t_off + (id - params.row0) * params.d + col];
	}
}
