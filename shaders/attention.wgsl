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
// keys at once. The host sizes a pass to stay within that budget.
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
// Tiling: one invocation per (query, head) row. A workgroup owns WG rows of
// one (batch, kv head): rows r = i·group + (h mod group), so neighbouring
// invocations read the same key and value rows (shared through the cache;
// no workgroup memory and no barriers, which are expensive on CPU adapters
// such as lavapipe). Each invocation keeps its query and output accumulator
// in private arrays of DH_MAX and walks its visible keys in blocks of BK:
// BK logits, the block maximum, one rescale of the accumulator, BK weighted
// value rows. Memory is O(WG·Dh) per workgroup whatever Lk is.
//
// Dispatch: B · Hkv · blocks workgroups on a 1-D count (2-D split by the
// host), blocks = ceil(Lq·group / WG) (in params), once per pass.
// Precision: f32 throughout; logits are fma dot products in e order, the
// running maximum makes every exp argument ≤ 0.

override WG: u32 = 64u;
const DH_MAX: u32 = 256u; // largest head dim (Gemma-2); the host checks Dh ≤ DH_MAX
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
	_pad0: u32,
}
@group(0) @binding(6) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn attention(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) li: u32) {
	let t = wg.x + wg.y * nwg.x;
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
	var qv: array<f32, DH_MAX>;
	var acc: array<f32, DH_MAX>;
	var mx = -3.0e38; // running maximum (finite, so mx − bmax never is inf − inf)
	var sum = 0.0;    // running Σ exp(s_j − mx)
	if (params.first == 0u) {
		mx = state[sb0];
		sum = state[sb0 + 1u];
	}
	for (var e = 0u; e < dh; e++) {
		qv[e] = q[qb + e];
		if (params.first == 0u) {
			acc[e] = out[ob + e];
		}
	}
	let kstride = params.hkv * dh; // between consecutive keys
	let kvb = (b * params.lk * params.hkv + g) * dh;
	var sb: array<f32, BK>;
	for (var j0 = jlo; j0 < jhi; j0 += i32(BK)) {
		let n = u32(min(i32(BK), jhi - j0));
		var bmax = mx;
		for (var kk = 0u; kk < n; kk++) {
			let kr = params.k_off + kvb + (u32(j0) + kk) * kstride;
			var d = 0.0;
			for (var e = 0u; e < dh; e++) {
				d = fma(qv[e], k[kr + e], d);
			}
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
		for (var e = 0u; e < dh; e++) {
			acc[e] *= corr;
		}
		for (var kk = 0u; kk < n; kk++) {
			let p = exp(sb[kk] - bmax);
			sum += p;
			let vr = params.v_off + kvb + (u32(j0) + kk) * kstride;
			for (var e = 0u; e < dh; e++) {
				acc[e] = fma(p, v[vr + e], acc[e]);
			}
		}
		mx = bmax;
	}
	if (params.last == 0u) {
		state[sb0] = mx;
		state[sb0 + 1u] = sum;
		for (var e = 0u; e < dh; e++) {
			out[ob + e] = acc[e];
		}
		return;
	}
	var inv = 0.0; // no visible key: zeros
	if (sum > 0.0) {
		inv = 1.0 / sum;
	}
	for (var e = 0u; e < dh; e++) {
		out[ob + e] = acc[e] * inv;
	}
}
