// norm.wgsl — row normalisations and softmax: one workgroup per row.
//
// Entry points (row r holds n consecutive elements starting at r·n)
//   rms_norm:   out[r,i] = x[r,i] · inverseSqrt(Σ_i x[r,i]² / n + eps) · g[i]
//               g[i] = w[i], or 1 + w[i] when plus_one ≠ 0 (Gemma)
//   layer_norm: out[r,i] = (x[r,i] − mean) · inverseSqrt(var + eps)
//               mean and biased var of row r (LayerNorm without affine)
//   group_norm: as layer_norm, then · w[c] + b[c], where a row is one
//               (batch, group) pair r = batch·groups + group of an NCHW
//               tensor (its cpg channels × spatial elements are
//               contiguous) and c = (r % groups)·cpg + i / spatial
//   softmax:    out[r,i] = exp(x[r,i] − m) / Σ_j exp(x[r,j] − m), m the
//               row maximum
//
// Bindings (entries that read no w or b get x bound there; it is not read)
//   0 x      storage, read        f32, element offset params.x_off
//   1 w      storage, read        f32, element offset params.w_off
//   2 b      storage, read        f32, element offset params.b_off
//   3 out    storage, read_write  f32, element offset params.out_off
//   4 params uniform              Params
//
// Dispatch: rows − row0 workgroups on a 1-D count (2-D split by the host),
// one per row r in [row0, rows). Indices are global even when the host
// binds only a window of x and out: an offset is the window's remainder
// minus its first global element, modulo 2^32 (u32 arithmetic wraps;
// model/ops split).
// Each of the WG invocations walks the row with stride WG (rows may be far
// longer than WG: a VAE group is 16 channels × 16384 positions), then a
// workgroup-memory tree reduction combines the WG partials.
// Precision: f32 throughout. Means and variances are two-pass (the variance
// sums (x − mean)², never E[x²] − E[x]²); each sum is a per-invocation
// serial sum of n/WG terms followed by log2(WG) pairwise levels.
// inverseSqrt and exp are the builtins (2 ulp; 3 + 2|x| ulp).

// WG must be a power of two (the tree reduction halves it).
override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

struct Params {
	rows: u32,
	n: u32,
	spatial: u32,
	cpg: u32,
	groups: u32,
	x_off: u32,
	w_off: u32,
	b_off: u32,
	out_off: u32,
	eps: f32,
	plus_one: u32,
	row0: u32,
}
@group(0) @binding(4) var<uniform> params: Params;

var<workgroup> red: array<f32, WG>;

// reduce_sum returns the sum of every invocation's v. All invocations of
// the workgroup must call it (uniform control flow).
fn reduce_sum(li: u32, v: f32) -> f32 {
	red[li] = v;
	workgroupBarrier();
	for (var s = WG / 2u; s > 0u; s >>= 1u) {
		if (li < s) {
			red[li] += red[li + s];
		}
		workgroupBarrier();
	}
	let r = red[0];
	workgroupBarrier(); // red is reused by the next reduction
	return r;
}

// reduce_max is reduce_sum with max.
fn reduce_max(li: u32, v: f32) -> f32 {
	red[li] = v;
	workgroupBarrier();
	for (var s = WG / 2u; s > 0u; s >>= 1u) {
		if (li < s) {
			red[li] = max(red[li], red[li + s]);
		}
		workgroupBarrier();
	}
	let r = red[0];
	workgroupBarrier();
	return r;
}

@compute @workgroup_size(WG)
fn rms_norm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) li: u32) {
	let r = params.row0 + wg.x + wg.y * nwg.x;
	if (r >= params.rows) {
		return; // uniform: the whole workgroup leaves
	}
	let n = params.n;
	let xb = params.x_off + r * n;
	var ss = 0.0;
	for (var i = li; i < n; i += WG) {
		let v = x[xb + i];
		ss = fma(v, v, ss);
	}
	let inv = inverseSqrt(reduce_sum(li, ss) / f32(n) + params.eps);
	let ob = params.out_off + r * n;
	for (var i = li; i < n; i += WG) {
		var g = w[params.w_off + i];
		if (params.plus_one != 0u) {
			g += 1.0;
		}
		out[ob + i] = x[xb + i] * inv * g;
	}
}

// centred normalises row r to zero mean and unit variance, then applies
// the per-channel affine of group_norm when affine is true.
fn centred(r: u32, li: u32, affine: bool) {
	let n = params.n;
	let xb = params.x_off + r * n;
	var s = 0.0;
	for (var i = li; i < n; i += WG) {
		s += x[xb + i];
	}
	let mean = reduce_sum(li, s) / f32(n);
	var q = 0.0;
	for (var i = li; i < n; i += WG) {
		let d = x[xb + i] - mean;
		q = fma(d, d, q);
	}
	let rstd = inverseSqrt(reduce_sum(li, q) / f32(n) + params.eps);
	let ob = params.out_off + r * n;
	if (!affine) {
		for (var i = li; i < n; i += WG) {
			out[ob + i] = (x[xb + i] - mean) * rstd;
		}
		return;
	}
	let c0 = (r % params.groups) * params.cpg;
	for (var i = li; i < n; i += WG) {
		let c = c0 + i / params.spatial;
		out[ob + i] = fma((x[xb + i] - mean) * rstd, w[params.w_off + c], b[params.b_off + c]);
	}
}

@compute @workgroup_size(WG)
fn layer_norm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
	let r = params.row0 + wg.x + wg.y * nwg.x;
	if (r >= params.rows) {
		return;
	}
	centred(r, li, false);
}

@compute @workgroup_size(WG)
fn group_norm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
	let r = params.row0 + wg.x + wg.y * nwg.x;
	if (r >= params.rows) {
		return;
	}
	centred(r, li, true);
}

@compute @workgroup_size(WG)
fn softmax(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) li: u32) {
	let r = params.row0 + wg.x + wg.y * nwg.x;
	if (r >= params.rows) {
		return;
	}
	let n = params.n;
	let xb = params.x_off + r * n;
	var m = x[xb]; // every invocation starts from an element of the row (n ≥ 1)
	for (var i = li; i < n; i += WG) {
		m = max(m, x[xb + i]);
	}
	let mx = reduce_max(li, m);
	var s = 0.0;
	for (var i = li; i < n; i += WG) {
		s += exp(x[xb + i] - mx);
	}
	let sum = reduce_sum(li, s);
	let ob = params.out_off + r * n;
	for (var i = li; i < n; i += WG) {
		out[ob + i] = exp(x[xb + i] - mx) / sum;
	}
}
