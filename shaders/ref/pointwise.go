package ref

import "math"

// Mul is the twin of pointwise.wgsl's mul:
//
//	for i := range a {
//		out[i] = a[i] * b[i%len(b)]
//	}
//
// with the product formed in float64 and rounded once. len(b) must divide
// len(a) (b repeats along a, e.g. a weight row over tokens).
func Mul(out, a, b []float32) {
	if len(out) != len(a) || len(b) == 0 || len(a)%len(b) != 0 {
		panic("ref: Mul: bad lengths")
	}
	for i := range a {
		out[i] = float32(float64(a[i]) * float64(b[i%len(b)]))
	}
}

// Scale is the twin of pointwise.wgsl's scale: out[i] = s·x[i].
func Scale(out, x []float32, s float32) {
	if len(out) != len(x) {
		panic("ref: Scale: bad lengths")
	}
	for i, v := range x {
		out[i] = float32(float64(s) * float64(v))
	}
}

// SiLU64 is torch.nn.functional.silu: x·sigmoid(x) = x / (1 + e^(−x)).
func SiLU64(x float64) float64 { return x / (1 + math.Exp(-x)) }

// GELUTanh64 is torch.nn.functional.gelu(x, approximate="tanh") (Gemma-2's
// gelu_pytorch_tanh): 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
func GELUTanh64(x float64) float64 {
	return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x)))
}

// Act is the twin of pointwise.wgsl's act: out[i] = f(x[i]), computed in
// float64 and rounded once (f is SiLU64 or GELUTanh64).
func Act(out, x []float32, f func(float64) float64) {
	if len(out) != len(x) {
		panic("ref: Act: bad lengths")
	}
	for i, v := range x {
		out[i] = float32(f(float64(v)))
	}
}

// Gate is the twin of pointwise.wgsl's gate, the gated linear unit of an
// FFN: out[i] = f(a[i])·b[i]. With f = SiLU64 it is SwiGLU (Next-DiT's
// FeedForward: silu(w1(x)) * w3(x)); with f = GELUTanh64 it is GeGLU
// (Gemma-2's MLP: act_fn(gate_proj(x)) * up_proj(x)).
func Gate(out, a, b []float32, f func(float64) float64) {
	if len(out) != len(a) || len(b) != len(a) {
		panic("ref: Gate: bad lengths")
	}
	for i := range a {
		out[i] = float32(f(float64(a[i])) * float64(b[i]))
	}
}

// Modulate is the twin of pointwise.wgsl's modulate, Next-DiT's
// modulate(x, scale) = x * (1 + scale.unsqueeze(1)): x and out are
// (B, L, D), scale is (B, D), one vector per sample broadcast over its
// tokens:
//
//	out[b,l,d] = x[b,l,d] · (1 + scale[b,d])
func Modulate(out, x, scale []float32, B, L, D int) {
	if len(out) != B*L*D || len(x) != B*L*D || len(scale) != B*D {
		panic("ref: Modulate: bad lengths")
	}
	for b := range B {
		for l := range L {
			for d := range D {
				i := (b*L+l)*D + d
				out[i] = float32(float64(x[i]) * (1 + float64(scale[b*D+d])))
			}
		}
	}
}

// GatedAdd is the twin of pointwise.wgsl's gated_add, Next-DiT's gated
// residual x + gate.unsqueeze(1).tanh() * y: x, y and out are (B, L, D),
// gate is (B, D):
//
//	out[b,l,d] = x[b,l,d] + tanh(gate[b,d]) · y[b,l,d]
func GatedAdd(out, x, y, gate []float32, B, L, D int) {
	n := B * L * D
	if len(out) != n || len(x) != n || len(y) != n || len(gate) != B*D {
		panic("ref: GatedAdd: bad lengths")
	}
	for b := range B {
		for l := range L {
			for d := range D {
				i := (b*L+l)*D + d
				out[i] = float32(float64(x[i]) + math.Tanh(float64(gate[b*D+d]))*float64(y[i]))
			}
		}
	}
}

// TimestepMaxPeriod is the max_period of Next-DiT's sinusoidal timestep
// embedding.
const TimestepMaxPeriod = 10000

// Timestep is the twin of pointwise.wgsl's timestep, Next-DiT's
// TimestepEmbedder.timestep_embedding(t, F) before its MLP (models/model.py
// in Alpha-VLLM/Lumina-Image-2.0; F even): t is (B) model times, used as is
// (not scaled by 1000), and out is (B, F), cosines first:
//
//	half := F/2
//	f[k] = exp(−ln(10000)·k/half)             k = 0..half−1
//	out[b, k]      = cos(t[b]·f[k])
//	out[b, half+k] = sin(t[b]·f[k])
func Timestep(out, t []float32, F int) {
	if F <= 0 || F%2 != 0 || len(out) != len(t)*F {
		panic("ref: Timestep: bad lengths")
	}
	half := F / 2
	for b, tv := range t {
		for k := range half {
			arg := float64(tv) * math.Exp(-math.Log(TimestepMaxPeriod)*float64(k)/float64(half))
			out[b*F+k] = float32(math.Cos(arg))
			out[b*F+half+k] = float32(math.Sin(arg))
		}
	}
}
