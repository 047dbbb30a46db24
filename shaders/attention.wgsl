// attention.wgsl — fused multi-head attention with grouped-query heads, an
// online softmax (flash-attention style: no Lq×Lk score buffer exists), an
// optional logit soft-cap, and causal / sliding-window / key-padding masks.
//
// Entry points
//   attention: for batch b, query i, head h (kv head g = h / group):
//                s_j = scale · q[b,i,h,:]·k[b,j,g,:]
//                s_j = softcap · tanh(s_j / softcap)         (softcap ≠ 0)
//                out[b,i,h,:] = Σ_j softmax(s)_j · v[b,j,g,:] over the
//                visible keys j ∈ [jlo, jhi):
//                  jhi = min(lk, keylen[b] (has_keylen), pos + 1 (causal)),
//                  jlo = max(0, pos − window + 1) (window ≠ 0),
//                  pos = i + lk − lq.
//              A row with no visible key is written as zeros.
//
// Passes: one dispatch covers the keys [j_begin, j_end); the host walks Lk
// in passes. Between passes the running maximum and normaliser of each row
// live in state and the unnormalised accumulator in out; the first pass
// starts them afresh, the last one divides. The reason is llvmpipe (Mesa's
// CPU Vulkan, our test adapter): it ends any invocation's loops after
// 65,535 iterations in total (gallivm's LP_MAX_TGSI_LOOP_ITERATIONS) and
// silently keeps going, so one invocation must not walk Next-DiT's 4352
// keys at once. The host sizes a pass to stay within that budget, and
// shortens passes when a pass's keys of one head would not fit in a
// storage binding.
//
// Key blocks are aligned to multiples of BK in the global key index (the
// first block of a range may be short), so any pass boundaries at
// multiples of BK give bit-identical results: the state stored between
// passes is exactly what the registers held.
//
// Bindings
//   0 q      storage, read        f32 (B, Lq, H, Dh),   element offset params.q_off
//   1 k      storage, read        f32 (B, Lk, Hkv, Dh), element offset params.k_off
//   2 v      storage, read        f32 (B, Lk, Hkv, Dh), element offset params.v_off
//   3 keylen storage, read        f32 (B) valid leading keys, offset params.kl_off
//                                 (any buffer when has_keylen = 0; not read)
//   4 out    storage, read_write  f32 (B, Lq, H, Dh),   element offset params.out_off
//   5 state  storage, read_write  f32 (B, Lq, H, 2) running [max, Σexp], offset
//                                 params.st_off (untouched when first = last = 1)
//   6 params uniform              Params
//
// Indices are global even when the host binds only a window of each
// operand (a range of workgroups, a pass of keys): an offset is the
// window's remainder minus its first global element, modulo 2^32 (u32
// arithmetic wraps; model/ops split).
//
// Tiling: one invocation per (query, head) row. A workgroup owns WG rows of
// one (batch, kv head): rows r = i·group + (h mod group), so neighbouring
// invocations read the same key and value rows (shared through the cache;
// no workgroup memory and no barriers, which are expensive on CPU adapters
// such as lavapipe). Each invocation keeps its query and output accumulator
// in private arrays of DH_MAX/4 vec4 and walks its visible keys in blocks
// of BK: BK logits, the block maximum, one rescale of the accumulator, BK
// weighted value rows. The loops along Dh step by four elements (scalar
// loads, since views need not be 16-byte aligned; the same fma sequence as
// one element at a time), which quarters the loop iterations that count
// against llvmpipe's budget. Memory is O(WG·Dh) per workgroup whatever Lk
// is.
//
// Dispatch: workgroups t in [t0, t0 + count) of the B · Hkv · blocks of the
// whole op (blocks = ceil(Lq·group / WG), in params) on a 1-D count (2-D
// split by the host), once per pass.
// Precision: f32 throughout; logits are fma dot products in e order, the
// running maximum makes every exp argument ≤ 0.

override WG: u32 = 64u;
const DH_MAX: u32 = 512u; // largest head dim (the FLUX VAE's mid attention); the host checks Dh ≤ DH_MAX
const DH4: u32 = DH_MAX / 4u; // vec4 slots of a head row
const BK: u32 = 16u;

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read> keylen: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> state: array<f32>;

struct Params {
	b: u32,
	lq: u32,
	lk: u32,
	h: u32,
	hkv: u32,
	dh: u32,
	group: u32,
	blocks: u32,
	has_keylen: u32,
	causal: u32,
	window: u32,
	q_off: u32,
	k_off: u32,
	v_off: u32,
	kl_off: u32,
	out_off: u32,
	scale: f32,
	softcap: f32,
	st_off: u32,
	j_begin: u32,
	j_end: u32,
	first: u32,
	last: u32,
	t0: u32,
}
@group(0) @binding(6) var<uniform> params: Params;

// dot is q·k[kr + e] over e < dh as a chain of fmas in e order.
fn dot(qv: ptr<function, array<vec4<f32>, DH4>>, kr: u32, dh: u32) -> f32 {
	var d = 0.0;
	let d4 = dh / 4u;
	for (var e = 0u; e < d4; e++) {
		let qe = (*qv)[e];
		let ki = kr + 4u * e;
		d = fma(qe.x, k[ki], d);
		d = fma(qe.y, k[ki + 1u], d);
		d = fma(qe.z, k[ki + 2u], d);
		d = fma(qe.w, k[ki + 3u], d);
	}
	for (var e = 4u * d4; e < dh; e++) {
		d = fma((*qv)[d4][e % 4u], k[kr + e], d);
	}
	return d;
}

@compute @workgroup_size(WG)
fn attention(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) li: u32) {
	let t = params.t0 + wg.x + wg.y * nwg.x;
	let per_b = params.hkv * params.blocks;
	let b = t / per_b;
	if (b >= params.b) {
		return;
	}
	let g = (t % per_b) / params.blocks;
	let r = (t % params.blocks) * WG + li;
	if (r >= params.lq * params.group) {
		return;
	}
	let i = r / params.group;
	let h = g * params.group + r % params.group;
	let dh = params.dh;
	let full = dh / 4u;       // whole vec4 slots
	let d4 = (dh + 3u) / 4u;  // slots in use; the last may be partial

	// The visible keys form one range [jlo, jhi).
	let pos = i32(i) + i32(params.lk) - i32(params.lq);
	var jhi = i32(params.j_end);
	if (params.has_keylen != 0u) {
		jhi = min(jhi, i32(keylen[params.kl_off + b]));
	}
	if (params.causal != 0u) {
		jhi = min(jhi, pos + 1);
	}
	var jlo = i32(params.j_begin);
	if (params.window != 0u) {
		jlo = max(jlo, pos - i32(params.window) + 1);
	}

	let qb = params.q_off + ((b * params.lq + i) * params.h + h) * dh;
	let ob = params.out_off + ((b * params.lq + i) * params.h + h) * dh;
	let sb0 = params.st_off + ((b * params.lq + i) * params.h + h) * 2u;
	var qv: array<vec4<f32>, DH4>;
	var acc: array<vec4<f32>, DH4>;
	var mx = -3.0e38; // running maximum (finite, so mx − bmax never is inf − inf)
	var sum = 0.0;    // running Σ exp(s_j − mx)
	if (params.first == 0u) {
		mx = state[sb0];
		sum = state[sb0 + 1u];
	}
	for (var e = 0u; e < dh; e++) {
		qv[e / 4u][e % 4u] = q[qb + e];
		if (params.first == 0u) {
			acc[e / 4u][e % 4u] = out[ob + e];
		}
	}
	let kstride = params.hkv * dh; // between consecutive keys
	let kvb = (b * params.lk * params.hkv + g) * dh;
	var sb: array<f32, BK>;
	var j0 = jlo;
	while (j0 < jhi) {
		// Blocks end at multiples of BK (see Passes).
		let j1 = min(jhi, (j0 / i32(BK) + 1) * i32(BK));
		let n = u32(j1 - j0);
		var bmax = mx;
		for (var kk = 0u; kk < n; kk++) {
			var d = dot(&qv, params.k_off + kvb + (u32(j0) + kk) * kstride, dh);
			d *= params.scale;
			if (params.softcap != 0.0) {
				// tanh is ±1 in f32 beyond |x| = 9.1; clamping keeps
				// exp-based implementations away from inf/inf.
				d = params.softcap * tanh(clamp(d / params.softcap, -10.0, 10.0));
			}
			sb[kk] = d;
			bmax = max(bmax, d);
		}
		let corr = exp(mx - bmax);
		sum *= corr;
		for (var e = 0u; e < d4; e++) {
			acc[e] *= corr;
		}
		for (var kk = 0u; kk < n; kk++) {
			let p = exp(sb[kk] - bmax);
			sum += p;
			let vr = params.v_off + kvb + (u32(j0) + kk) * kstride;
			let pv = vec4<f32>(p);
			for (var e = 0u; e < full; e++) {
				let vi = vr + 4u * e;
				acc[e] = fma(pv, vec4<f32>(v[vi], v[vi + 1u], v[vi + 2u], v[vi + 3u]), acc[e]);
			}
			for (var e = 4u * full; e < dh; e++) {
				acc[full][e % 4u] = fma(p, v[vr + e], acc[full][e % 4u]);
			}
		}
		mx = bmax;
		j0 = j1;
	}
	if (params.last == 0u) {
		state[sb0] = mx;
		state[sb0 + 1u] = sum;
		for (var e = 0u; e < dh; e++) {
			out[ob + e] = acc[e / 4u][e % 4u];
		}
		return;
	}
	var inv = 0.0; // no visible key: zeros
	if (sum > 0.0) {
		inv = 1.0 / sum;
	}
	for (var e = 0u; e < dh; e++) {
		out[ob + e] = acc[e / 4u][e % 4u] * inv;
	}
}
