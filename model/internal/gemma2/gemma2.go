// Package gemma2 is the Gemma-2 text encoder as Lumina-Image 2.0 uses it
// (spec §1.4, §2): token ids → scaled embeddings → decoder layers, returning
// the raw residual stream after a given number of layers (Lumina takes
// hidden_states[−2], the output of the second-to-last layer, with no final
// norm). Written once against ops.Backend.
package gemma2

import (
	"fmt"
	"math"
	"strconv"

	"github.com/luminaweb/lumina/model/internal/nn"
	"github.com/luminaweb/lumina/model/ops"
	"github.com/luminaweb/lumina/model/tensor"
	"github.com/luminaweb/lumina/model/weights"
)

// Model holds the encoder's weights, named after the HF Gemma2 checkpoint
// keys (spec §2.3). The tensors belong to the nn.Loader that uploaded them
// (release them with it).
type Model struct {
	Cfg Config

	EmbedTokens *ops.Tensor // (V, D)
	Layers      []Layer     // the first n decoder layers that were loaded
	Norm        *ops.Tensor // (D) final norm; nil when not loaded (Lumina does not use it)

	// Hook, when not nil, is called with intermediate tensors as they are
	// computed (for tests; nil in production): "embed" (B, L, D) the
	// scaled embeddings (HF hidden_states[0]), "layers.i.input_layernorm",
	// "layers.i.self_attn" (after o_proj, before post_attention_layernorm),
	// "layers.i.mlp" (after down_proj, before post_feedforward_layernorm),
	// and "layers.i" (B, L, D) the residual stream after layer i (HF
	// hidden_states[i+1]). The tensors are only valid during the call.
	Hook func(name string, t *ops.Tensor)

	b ops.Backend
	// rows reads embedding rows from the checkpoint when the table is not
	// on the device (LoadStreamed); nil otherwise.
	rows func(id int) ([]float32, error)
}

// Layer is one decoder layer's weights (H·Dh need not equal D).
type Layer struct {
	InputLayernorm           *ops.Tensor // (D)
	QProj                    *ops.Tensor // (H·Dh, D)
	KProj                    *ops.Tensor // (Hkv·Dh, D)
	VProj                    *ops.Tensor // (Hkv·Dh, D)
	OProj                    *ops.Tensor // (D, H·Dh)
	PostAttentionLayernorm   *ops.Tensor // (D)
	PreFeedforwardLayernorm  *ops.Tensor // (D)
	GateProj                 *ops.Tensor // (I, D)
	UpProj                   *ops.Tensor // (I, D)
	DownProj                 *ops.Tensor // (D, I)
	PostFeedforwardLayernorm *ops.Tensor // (D)
}

// Load uploads the whole model: the embedding, all cfg.NumHiddenLayers
// layers and the final norm.
func Load(l *nn.Loader, cfg Config) (*Model, error) {
	return load(l, cfg, cfg.NumHiddenLayers, true)
}

// LoadLayers uploads the embedding and only the first n decoder layers,
// without the final norm: what an encoder that stops after n layers needs
// (Lumina: n = NumHiddenLayers − 1, spec §1.4).
func LoadLayers(l *nn.Loader, cfg Config, n int) (*Model, error) {
	if n < 0 || n > cfg.NumHiddenLayers {
		return nil, fmt.Errorf("gemma2: %d layers requested, the model has %d", n, cfg.NumHiddenLayers)
	}
	return load(l, cfg, n, false)
}

// LoadStreamed is LoadLayers without uploading the embedding table
// (256000 × 2304 in the real model, larger than many GPUs' buffer limit):
// EncodeTokens reads only the rows of the prompt's tokens from the
// checkpoint (by range where the source supports it).
func LoadStreamed(l *nn.Loader, cfg Config, n int) (*Model, error) {
	if n < 0 || n > cfg.NumHiddenLayers {
		return nil, fmt.Errorf("gemma2: %d layers requested, the model has %d", n, cfg.NumHiddenLayers)
	}
	return loadWith(l, cfg, n, false, true)
}

func load(l *nn.Loader, cfg Config, n int, withNorm bool) (*Model, error) {
	return loadWith(l, cfg, n, withNorm, false)
}

func loadWith(l *nn.Loader, cfg Config, n int, withNorm, stream bool) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// Keys may carry the "model." prefix of Gemma2ForCausalLM checkpoints
	// or not (the bare Gemma2Model in Lumina's text_encoder/, spec §10.14).
	pfx := ""
	if !l.Has("embed_tokens.weight") && l.Has("model.embed_tokens.weight") {
		pfx = "model."
	}
	var err error
	get := func(name string, shape ...int) *ops.Tensor {
		if err != nil {
			return nil
		}
		var t *ops.Tensor
		t, err = l.Load(pfx+name, shape...)
		if err != nil {
			err = fmt.Errorf("gemma2: %w", err)
		}
		return t
	}
	D, I := cfg.HiddenSize, cfg.IntermediateSize
	Q, KV := cfg.NumAttentionHeads*cfg.HeadDim, cfg.NumKeyValueHeads*cfg.HeadDim
	m := &Model{Cfg: cfg, b: l.B}
	if stream {
		name := pfx + "embed_tokens.weight"
		if info, ok := l.Info(name); l.Src != nil && (!ok || !info.Shape.Equal(tensor.Shape{cfg.VocabSize, D})) {
			return nil, fmt.Errorf("gemma2: tensor %q: %v, expected [%d,%d]", l.Prefix+name, info.Shape, cfg.VocabSize, D)
		}
		m.rows = func(id int) ([]float32, error) {
			if l.Src == nil { // a memory plan: no data
				return make([]float32, D), nil
			}
			return weights.Rows(l.Src, l.Prefix+name, id, 1)
		}
	} else {
		m.EmbedTokens = get("embed_tokens.weight", cfg.VocabSize, D)
	}
	m.Layers = make([]Layer, n)
	for i := range m.Layers {
		p := "layers." + strconv.Itoa(i) + "."
		m.Layers[i] = Layer{
			InputLayernorm:           get(p+"input_layernorm.weight", D),
			QProj:                    get(p+"self_attn.q_proj.weight", Q, D),
			KProj:                    get(p+"self_attn.k_proj.weight", KV, D),
			VProj:                    get(p+"self_attn.v_proj.weight", KV, D),
			OProj:                    get(p+"self_attn.o_proj.weight", D, Q),
			PostAttentionLayernorm:   get(p+"post_attention_layernorm.weight", D),
			PreFeedforwardLayernorm:  get(p+"pre_feedforward_layernorm.weight", D),
			GateProj:                 get(p+"mlp.gate_proj.weight", I, D),
			UpProj:                   get(p+"mlp.up_proj.weight", I, D),
			DownProj:                 get(p+"mlp.down_proj.weight", D, I),
			PostFeedforwardLayernorm: get(p+"post_feedforward_layernorm.weight", D),
		}
	}
	if withNorm {
		m.Norm = get("norm.weight", D)
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

// Encode runs the embedding and the first `layers` decoder layers over ids
// (B, L), f32 holding exact integer token ids, right-padded: lens[b] is the
// number of real tokens of entry b. It returns a new (B, L, D) tensor, the
// raw residual stream after those layers (no final norm), which the caller
// releases. Only rows l < lens[b] are meaningful; padded rows attend to the
// real keys before them (HF masking) and are garbage to the caller. Lumina
// uses layers = NumHiddenLayers − 1 (hidden_states[−2], spec §1.4).
//
// Op failures are recorded by the backend and surface at its next Sync or
// Read; Encode itself fails on bad arguments and allocation errors.
func (m *Model) Encode(ids *ops.Tensor, lens []int, layers int) (*ops.Tensor, error) {
	sh := ids.Shape()
	if len(sh) != 2 {
		return nil, fmt.Errorf("gemma2: Encode: ids %v, want (B, L)", ids)
	}
	B, L := sh[0], sh[1]
	if len(lens) != B {
		return nil, fmt.Errorf("gemma2: Encode: %d lengths for a batch of %d", len(lens), B)
	}
	for b, n := range lens {
		if n < 1 || n > L {
			return nil, fmt.Errorf("gemma2: Encode: lens[%d] = %d, want 1..%d", b, n, L)
		}
	}
	if layers < 0 || layers > len(m.Layers) {
		return nil, fmt.Errorf("gemma2: Encode: %d layers requested, %d loaded", layers, len(m.Layers))
	}
	c := m.Cfg
	D, N := c.HiddenSize, B*L
	b := m.b

	out, err := b.New(tensor.F32, B, L, D)
	if err != nil {
		return nil, fmt.Errorf("gemma2: Encode: %w", err)
	}
	s := &nn.Scope{B: b}
	defer s.Release()
	f := forward{m: m, s: s, B: B, L: L, h: b.View(out, 0, N, D)}
	f.alloc()
	if s.Err == nil {
		err = f.upload(lens)
	}
	if s.Err != nil || err != nil {
		b.Release(out)
		return nil, fmt.Errorf("gemma2: Encode: %w", firstErr(s.Err, err))
	}

	if m.EmbedTokens == nil {
		b.Release(out)
		return nil, fmt.Errorf("gemma2: Encode: the embedding table is not on the device (LoadStreamed): use EncodeTokens")
	}
	m.embed(f.h, ids, f.e)
	f.layers(layers)
	return out, nil
}

// layers runs the first n layers on f.h.
func (f *forward) layers(n int) {
	m := f.m
	m.hook("embed", f.h, f.B, f.L)
	for i := range n {
		f.layer(i)
		m.hook("layers."+strconv.Itoa(i), f.h, f.B, f.L)
	}
}

// EncodeTokens is Encode for token ids on the host, one row per prompt
// (right-padded internally to the longest): it returns the (B, L, D)
// features and each prompt's length. With the table on the device it
// gathers there; with LoadStreamed it reads each distinct id's row from the
// checkpoint, scales it by √D in f32 as the device would, and uploads the
// (B·L, D) embeddings. Ids outside the vocabulary are an error.
func (m *Model) EncodeTokens(ids [][]int, layers int) (*ops.Tensor, []int, error) {
	B, L := len(ids), 0
	lens := make([]int, B)
	for i, row := range ids {
		lens[i] = len(row)
		L = max(L, len(row))
		for _, id := range row {
			if id < 0 || id >= m.Cfg.VocabSize {
				return nil, nil, fmt.Errorf("gemma2: token id %d is outside the vocabulary of %d", id, m.Cfg.VocabSize)
			}
		}
	}
	if B == 0 || L == 0 {
		return nil, nil, fmt.Errorf("gemma2: EncodeTokens: no tokens")
	}
	b, D := m.b, m.Cfg.HiddenSize
	if m.rows == nil {
		flat := make([]float32, B*L)
		for i, row := range ids {
			for j, id := range row {
				flat[i*L+j] = float32(id)
			}
		}
		t, err := b.New(tensor.F32, B, L)
		if err != nil {
			return nil, nil, err
		}
		defer b.Release(t)
		if err := b.Write(t, flat); err != nil {
			return nil, nil, err
		}
		out, err := m.Encode(t, lens, layers)
		return out, lens, err
	}
	if layers < 0 || layers > len(m.Layers) {
		return nil, nil, fmt.Errorf("gemma2: EncodeTokens: %d layers requested, %d loaded", layers, len(m.Layers))
	}
	scale := float32(math.Sqrt(float64(D)))
	emb := make([]float32, B*L*D) // padded rows stay zero (garbage to the caller)
	cache := map[int][]float32{}
	for i, row := range ids {
		for j, id := range row {
			r, ok := cache[id]
			if !ok {
				v, err := m.rows(id)
				if err != nil {
					return nil, nil, fmt.Errorf("gemma2: embedding row %d: %w", id, err)
				}
				r = make([]float32, D)
				for k, x := range v {
					r[k] = x * scale
				}
				cache[id] = r
			}
			copy(emb[(i*L+j)*D:], r)
		}
	}
	out, err := b.New(tensor.F32, B, L, D)
	if err != nil {
		return nil, nil, fmt.Errorf("gemma2: EncodeTokens: %w", err)
	}
	s := &nn.Scope{B: b}
	defer s.Release()
	f := forward{m: m, s: s, B: B, L: L, h: b.View(out, 0, B*L, D)}
	f.alloc()
	if s.Err == nil {
		err = f.upload(lens)
	}
	if err == nil && s.Err == nil {
		err = b.Write(out, emb)
	}
	if s.Err != nil || err != nil {
		b.Release(out)
		return nil, nil, fmt.Errorf("gemma2: EncodeTokens: %w", firstErr(s.Err, err))
	}
	f.layers(layers)
	return out, lens, nil
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// FinalNorm writes the final RMSNorm of x (…, D) into dst (x's shape): HF
// hidden_states[−1] after the last layer. It needs the norm from Load.
func (m *Model) FinalNorm(dst, x *ops.Tensor) error {
	if m.Norm == nil {
		return fmt.Errorf("gemma2: FinalNorm: norm.weight was not loaded (LoadLayers)")
	}
	m.b.RMSNorm(dst, x, m.Norm, float32(m.Cfg.RMSNormEps), true)
	return nil
}

// embed writes the scaled embeddings of ids (B, L) into dst (N, D), using
// tmp (N, D): dst = E[id]·√D. √D is rounded to f32 once, as the reference
// builds its normaliser in the activation dtype (spec §2.2). This is the one
// place that reads the embedding table, so that a table kept off the GPU
// (rows gathered on demand) changes only this method.
func (m *Model) embed(dst, ids, tmp *ops.Tensor) {
	b := m.b
	b.Gather(tmp, m.EmbedTokens, b.View(ids, 0, ids.Numel()))
	b.Scale(dst, tmp, float32(math.Sqrt(float64(m.Cfg.HiddenSize))))
}

func (m *Model) hook(name string, t *ops.Tensor, B, L int) {
	if m.Hook != nil {
		m.Hook(name, m.b.View(t, 0, B, L, t.Numel()/(B*L)))
	}
}

// forward is one Encode's activations, allocated once and reused by every
// layer. 2-D tensors are (N, ·) with N = B·L rows.
type forward struct {
	m    *Model
	s    *nn.Scope
	B, L int

	h, h2  *ops.Tensor // (N, D) residual stream: h holds each layer's input and output, h2 the midpoint
	e, t   *ops.Tensor // (N, D) scratch
	q, qr  *ops.Tensor // (N, H·Dh) queries before and after RoPE
	k, kr  *ops.Tensor // (N, Hkv·Dh) keys before and after RoPE
	v      *ops.Tensor // (N, Hkv·Dh)
	att    *ops.Tensor // (N, H·Dh) attention output, heads concatenated
	gate   *ops.Tensor // (N, I)
	up     *ops.Tensor // (N, I)
	act    *ops.Tensor // (N, I) GELU_tanh(gate) ⊙ up
	cs     *ops.Tensor // (1, L, Dh/2, 2) RoPE cos/sin per position and pair
	keyLen *ops.Tensor // (B) real lengths as f32
}

func (f *forward) alloc() {
	c, s := f.m.Cfg, f.s
	N := f.B * f.L
	Q, KV := c.NumAttentionHeads*c.HeadDim, c.NumKeyValueHeads*c.HeadDim
	f.h2, f.e, f.t = s.New(N, c.HiddenSize), s.New(N, c.HiddenSize), s.New(N, c.HiddenSize)
	f.q, f.qr = s.New(N, Q), s.New(N, Q)
	f.k, f.kr, f.v = s.New(N, KV), s.New(N, KV), s.New(N, KV)
	f.att = s.New(N, Q)
	f.gate, f.up, f.act = s.New(N, c.IntermediateSize), s.New(N, c.IntermediateSize), s.New(N, c.IntermediateSize)
	f.cs = s.New(1, f.L, c.HeadDim/2, 2)
	f.keyLen = s.New(f.B)
}

// upload writes the RoPE table and the key lengths.
func (f *forward) upload(lens []int) error {
	kl := make([]float32, len(lens))
	for i, n := range lens {
		kl[i] = float32(n)
	}
	if err := f.m.b.Write(f.keyLen, kl); err != nil {
		return err
	}
	return f.m.b.Write(f.cs, ropeTable(f.L, f.m.Cfg.HeadDim, f.m.Cfg.RopeTheta))
}

// ropeTable returns cos and sin of pos·ω_j for pos < L and pair j < Dh/2,
// ω_j = θ^(−2j/Dh), interleaved as (L, Dh/2, 2), computed in float64 (spec
// §2.2; positions are 0..L−1 with right padding).
func ropeTable(L, dh int, theta float64) []float32 {
	half := dh / 2
	cs := make([]float32, L*half*2)
	for j := range half {
		w := math.Pow(theta, -float64(2*j)/float64(dh))
		for p := range L {
			sin, cos := math.Sincos(float64(p) * w)
			cs[(p*half+j)*2] = float32(cos)
			cs[(p*half+j)*2+1] = float32(sin)
		}
	}
	return cs
}

// layer runs decoder layer i on f.h in place (spec §2.2):
//
//	h  = h + post_attention_layernorm(attn(input_layernorm(h)))
//	h  = h + post_feedforward_layernorm(mlp(pre_feedforward_layernorm(h)))
func (f *forward) layer(i int) {
	m, b, c := f.m, f.m.b, f.m.Cfg
	w := &m.Layers[i]
	B, L := f.B, f.L
	H, Hkv, Dh := c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim
	eps := float32(c.RMSNormEps)
	name := "layers." + strconv.Itoa(i) + "."

	// Attention block.
	b.RMSNorm(f.e, f.h, w.InputLayernorm, eps, true)
	m.hook(name+"input_layernorm", f.e, B, L)
	b.MatMul(f.q, f.e, w.QProj, nil)
	b.MatMul(f.k, f.e, w.KProj, nil)
	b.MatMul(f.v, f.e, w.VProj, nil)
	qr := b.View(f.qr, 0, B, L, H, Dh)
	kr := b.View(f.kr, 0, B, L, Hkv, Dh)
	b.Rope(qr, b.View(f.q, 0, B, L, H, Dh), f.cs, ops.RopeHalf)
	b.Rope(kr, b.View(f.k, 0, B, L, Hkv, Dh), f.cs, ops.RopeHalf)
	o := ops.AttnOptions{
		Scale:   float32(1 / math.Sqrt(c.QueryPreAttnScalar)),
		SoftCap: float32(c.AttnLogitSoftcapping),
		Causal:  true,
		KeyLen:  f.keyLen,
	}
	if i%2 == 0 {
		// Even layers are local: key j visible iff i−W < j ≤ i.
		o.Window = c.SlidingWindow
	}
	b.Attention(b.View(f.att, 0, B, L, H, Dh), qr, kr, b.View(f.v, 0, B, L, Hkv, Dh), o)
	b.MatMul(f.t, f.att, w.OProj, nil)
	m.hook(name+"self_attn", f.t, B, L)
	b.RMSNorm(f.e, f.t, w.PostAttentionLayernorm, eps, true)
	b.Add(f.h2, f.h, f.e)

	// GeGLU MLP block.
	b.RMSNorm(f.e, f.h2, w.PreFeedforwardLayernorm, eps, true)
	b.MatMul(f.gate, f.e, w.GateProj, nil)
	b.MatMul(f.up, f.e, w.UpProj, nil)
	b.Gate(f.act, f.gate, f.up, ops.GELUTanh)
	b.MatMul(f.t, f.act, w.DownProj, nil)
	m.hook(name+"mlp", f.t, B, L)
	b.RMSNorm(f.e, f.t, w.PostFeedforwardLayernorm, eps, true)
	b.Add(f.h, f.h2, f.e)
}
