// pointwise.wgsl — elementwise ops of the transformer blocks: products,
// activations, gated linear units, adaLN modulation, gated residuals and
// the sinusoidal timestep embedding.
//
// Entry points (i in [base, n), global indices; act 0 = SiLU x·sigmoid(x), 1 = GELU-tanh
// 0.5x(1 + tanh(√(2/π)(x + 0.044715x³))))
//   mul:       out[i] = a[i] · b[i % d]            (d = n: plain; d = row: broadcast)
//   scale:     out[i] = s · a[i]
//   act:       out[i] = act(a[i])
//   gate:      out[i] = act(a[i]) · b[i]           (SwiGLU / GeGLU)
//   modulate:  out[i] = a[i] · (1 + b[(i / (l·d))·d + i % d])
//              a (B, L, D), b (B, D): one scale vector per sample
//   gated_add: out[i] = a[i] + tanh(c[(i / (l·d))·d + i % d]) · b[i]
//              a, b (B, L, D), c (B, D): one gate vector per sample
//   timestep:  a (B) times → out (B, 2·half), d = half, f = exp(s·k) with
//              s = −ln(10000)/half set by the host, k in [0, half):
//              out[b, k] = cos(a[b]·f), out[b, half + k] = sin(a[b]·f)
//
// Bindings (an entry that reads fewer inputs gets some input bound again;
// it is not read)
//   0 a      storage, read        f32, element offset params.a_off
//   1 b      storage, read        f32, element offset params.b_off
//   2 c      storage, read        f32, element offset params.c_off
//   3 out    storage, read_write  f32, element offset params.out_off
//   4 params uniform              Params
//
// Indices are global even when the host binds only a window of each
// operand: an offset is the window's remainder minus its first global
// element, modulo 2^32 (u32 arithmetic wraps; model/ops split).
//
// Dispatch: ceil((n − base) / WG) workgroups on a 1-D count (2-D split by
// the host).
// Precision: f32. mul and scale round once; modulate twice (1 + s, then the
// product). GELU-tanh is evaluated as x·sigmoid(2z), which keeps its
// relative accuracy where 1 + tanh(z) cancels. tanh (gated_add) is the
// builtin on an argument clamped to ±15, where f32 tanh is already ±1,
// because some implementations compute it as a ratio of exponentials that
// overflows to NaN for large arguments.

override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read> c: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

struct Params {
	n: u32,
	d: u32,
	l: u32,
	act: u32,
	a_off: u32,
	b_off: u32,
	c_off: u32,
	out_off: u32,
	s: f32,
	base: u32,
	_pad1: u32,
	_pad2: u32,
}
@group(0) @binding(4) var<uniform> params: Params;

fn safe_tanh(x: f32) -> f32 {
	return tanh(clamp(x, -15.0, 15.0));
}

fn activation(x: f32) -> f32 {
	// Both as x·sigmoid(y) = x / (1 + exp(−y)). exp(−y) overflows to +inf
	// for y < −88, giving x / inf = ±0, the correctly rounded f32 result.
	var y = x;
	if (params.act == 1u) {
		// 0.5x(1 + tanh(z)) = x·sigmoid(2z), z = √(2/π)(x + 0.044715x³):
		// the same function without the cancellation of 1 + tanh(z) for
		// negative z, where f32 would lose the result's relative accuracy.
		y = 1.5957691216057308 * (x + 0.044715 * x * x * x);
	}
	return x / (1.0 + exp(-y));
}

fn flat_id(wg: vec3<u32>, nwg: vec3<u32>, li: u32) -> u32 {
	return params.base + (wg.x + wg.y * nwg.x) * WG + li;
}

// sample_row is the (B, D) element of a per-sample vector for (B, L, D)
// element i.
fn sample_row(i: u32) -> u32 {
	return (i / (params.l * params.d)) * params.d + i % params.d;
}

@compute @workgroup_size(WG)
fn mul(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) li: u32) {
	let i = flat_id(wg, nwg, li);
	if (i >= params.n) {
		return;
	}
	out[params.out_off + i] = a[params.a_off + i] * b[params.b_off + i % params.d];
}

@compute @workgroup_size(WG)
fn scale(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) li: u32) {
	let i = flat_id(wg, nwg, li);
	if (i >= params.n) {
		return;
	}
	out[params.out_off + i] = params.s * a[params.a_off + i];
}

@compute @workgroup_size(WG)
fn act(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) li: u32) {
	let i = flat_id(wg, nwg, li);
	if (i >= params.n) {
		return;
	}
	out[params.out_off + i] = activation(a[params.a_off + i]);
}

@compute @workgroup_size(WG)
fn gate(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
	let i = flat_id(wg, nwg, li);
	if (i >= params.n) {
		return;
	}
	out[params.out_off + i] = activation(a[params.a_off + i]) * b[params.b_off + i];
}

@compute @workgroup_size(WG)
fn modulate(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) li: u32) {
	let i = flat_id(wg, nwg, li);
	if (i >= params.n) {
		return;
	}
	out[params.out_off + i] = a[params.a_off + i] * (1.0 + b[params.b_off + sample_row(i)]);
}

@compute @workgroup_size(WG)
fn gated_add(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) li: u32) {
	let i = flat_id(wg, nwg, li);
	if (i >= params.n) {
		return;
	}
	let g = safe_tanh(c[params.c_off + sample_row(i)]);
	out[params.out_off + i] = a[params.a_off + i] + g * b[params.b_off + i];
}

@compute @workgroup_size(WG)
fn timestep(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) li: u32) {
	let i = flat_id(wg, nwg, li);
	if (i >= params.n) {
		return;
	}
	let f = 2u * params.d;
	let col = i % f;
	let k = col % params.d;
	let arg = a[params.a_off + i / f] * exp(params.s * f32(k));
	var v: f32;
	if (col < params.d) {
		v = cos(arg);
	} else {
		v = sin(arg);
	}
	out[params.out_off + i] = v;
}
