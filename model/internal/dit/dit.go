// Package dit is Lumina-Image 2.0's Unified Next-DiT (spec §3): timestep and
// caption embedders, the context refiner (caption only, unmodulated), the
// noise refiner (image only, adaLN-modulated), the joint layers over
// [caption; image] and the final layer, predicting the flow velocity of a
// latent. Written once against ops.Backend.
package dit

import (
	"fmt"
	"strconv"

	"github.com/luminaweb/lumina/model/internal/nn"
	"github.com/luminaweb/lumina/model/ops"
)

// Model holds the weights, named after the original checkpoint keys (spec
// §3.13.1). With D = dim, Dt = min(D, 1024), P = p·p·C, F the FFN width. The
// tensors belong to the nn.Loader that uploaded them (release them with it);
// RoPE tables and masks belong to the model (Release).
type Model struct {
	Cfg Config

	XEmbedderWeight   *ops.Tensor // (D, P)
	XEmbedderBias     *ops.Tensor // (D)
	TEmbedderMlp0W    *ops.Tensor // (Dt, 256) t_embedder.mlp.0.weight
	TEmbedderMlp0B    *ops.Tensor // (Dt)
	TEmbedderMlp2W    *ops.Tensor // (Dt, Dt) t_embedder.mlp.2.weight
	TEmbedderMlp2B    *ops.Tensor // (Dt)
	CapEmbedderNorm   *ops.Tensor // (Dcap) cap_embedder.0.weight (RMSNorm)
	CapEmbedderWeight *ops.Tensor // (D, Dcap) cap_embedder.1.weight
	CapEmbedderBias   *ops.Tensor // (D)

	ContextRefiner []Block // unmodulated, caption tokens only
	NoiseRefiner   []Block // modulated, image tokens only
	Layers         []Block // modulated, joint sequence

	FinalAdaLNWeight  *ops.Tensor // (D, Dt) final_layer.adaLN_modulation.1.weight
	FinalAdaLNBias    *ops.Tensor // (D)
	FinalLinearWeight *ops.Tensor // (P, D) final_layer.linear.weight
	FinalLinearBias   *ops.Tensor // (P)

	// Hook, when not nil, is called with intermediate tensors as they are
	// computed (tests; nil in production), named after the original
	// modules as the golden files name them: "t_embedder.t_freq" (B, 256),
	// "t_embedder" (B, Dt), "cap_embedder" (B, Lc, D), "x_embedder"
	// (B, N, D), "layers.0.input0" (B, S, D) the joint sequence, and per
	// block ("context_refiner.i", "noise_refiner.i", "layers.i"): the block
	// output, ".attention_norm1", ".attention" (after out, before
	// attention_norm2), ".feed_forward" (before ffn_norm2),
	// ".adaLN_modulation" (B, 4D) and ".modulated", the modulated input
	// of the attention branch (layer 0's is TeaCache's indicator, spec
	// §6); then "final_layer.adaLN_modulation" (B, D) and "final_layer"
	// (B, S, P). Tensors are only valid during the call; reading one
	// forces a sync.
	Hook func(name string, t *ops.Tensor)

	b     ops.Backend
	plans map[string]*Plan
	// Cache, when set, may skip the joint layers (TeaCache); see
	// JointCache. Its residuals live in the plans: call ResetCache between
	// images.
	Cache JointCache
}

// Block is one transformer block's weights (spec §3.8). AdaLN is nil in the
// unmodulated context-refiner blocks; QNorm and KNorm are nil without
// qk_norm.
type Block struct {
	QKV            *ops.Tensor // ((H+2·Hkv)·Dh, D) attention.qkv.weight, rows [q | k | v]
	Out            *ops.Tensor // (D, H·Dh) attention.out.weight
	QNorm, KNorm   *ops.Tensor // (Dh) attention.q_norm.weight, attention.k_norm.weight
	W1, W3         *ops.Tensor // (F, D) feed_forward.w1.weight, .w3.weight
	W2             *ops.Tensor // (D, F) feed_forward.w2.weight
	AttentionNorm1 *ops.Tensor // (D)
	AttentionNorm2 *ops.Tensor // (D)
	FFNNorm1       *ops.Tensor // (D)
	FFNNorm2       *ops.Tensor // (D)
	AdaLNWeight    *ops.Tensor // (4D, Dt) adaLN_modulation.1.weight, rows [scale_msa | gate_msa | scale_mlp | gate_mlp]
	AdaLNBias      *ops.Tensor // (4D)
}

// checkpointPrefix is what ComfyUI-style single files put before every key
// (spec §3.13.1).
const checkpointPrefix = "model.diffusion_model."

// Load uploads every weight the forward pass uses (norm_final.weight is
// not: the original never uses it, spec §3.10). Keys may carry the
// "model.diffusion_model." prefix.
func Load(l *nn.Loader, cfg Config) (*Model, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pfx := ""
	if !l.Has("x_embedder.weight") && l.Has(checkpointPrefix+"x_embedder.weight") {
		pfx = checkpointPrefix
	}
	var err error
	get := func(name string, shape ...int) *ops.Tensor {
		if err != nil {
			return nil
		}
		var t *ops.Tensor
		t, err = l.Load(pfx+name, shape...)
		if err != nil {
			err = fmt.Errorf("dit: %w", err)
		}
		return t
	}
	D, Dt, P, Dc := cfg.Dim, cfg.AdaLNDim(), cfg.PatchDim(), cfg.CapFeatDim
	m := &Model{Cfg: cfg, b: l.B}
	m.XEmbedderWeight = get("x_embedder.weight", D, P)
	m.XEmbedderBias = get("x_embedder.bias", D)
	m.TEmbedderMlp0W = get("t_embedder.mlp.0.weight", Dt, tFreqDim)
	m.TEmbedderMlp0B = get("t_embedder.mlp.0.bias", Dt)
	m.TEmbedderMlp2W = get("t_embedder.mlp.2.weight", Dt, Dt)
	m.TEmbedderMlp2B = get("t_embedder.mlp.2.bias", Dt)
	m.CapEmbedderNorm = get("cap_embedder.0.weight", Dc)
	m.CapEmbedderWeight = get("cap_embedder.1.weight", D, Dc)
	m.CapEmbedderBias = get("cap_embedder.1.bias", D)
	blocks := func(name string, n int, modulated bool) []Block {
		bs := make([]Block, n)
		for i := range bs {
			bs[i] = loadBlock(get, cfg, name+"."+strconv.Itoa(i)+".", modulated)
		}
		return bs
	}
	m.ContextRefiner = blocks("context_refiner", cfg.NRefinerLayers, false)
	m.NoiseRefiner = blocks("noise_refiner", cfg.NRefinerLayers, true)
	m.Layers = blocks("layers", cfg.NLayers, true)
	m.FinalAdaLNWeight = get("final_layer.adaLN_modulation.1.weight", D, Dt)
	m.FinalAdaLNBias = get("final_layer.adaLN_modulation.1.bias", D)
	m.FinalLinearWeight = get("final_layer.linear.weight", P, D)
	m.FinalLinearBias = get("final_layer.linear.bias", P)
	if err != nil {
		return nil, err
	}
	return m, nil
}

func loadBlock(get func(string, ...int) *ops.Tensor, c Config, p string, modulated bool) Block {
	D, Dh, F := c.Dim, c.HeadDim(), c.FFNHidden()
	H, Hkv := c.NHeads, c.NKVHeads
	b := Block{
		QKV:            get(p+"attention.qkv.weight", (H+2*Hkv)*Dh, D),
		Out:            get(p+"attention.out.weight", D, H*Dh),
		W1:             get(p+"feed_forward.w1.weight", F, D),
		W2:             get(p+"feed_forward.w2.weight", D, F),
		W3:             get(p+"feed_forward.w3.weight", F, D),
		AttentionNorm1: get(p+"attention_norm1.weight", D),
		AttentionNorm2: get(p+"attention_norm2.weight", D),
		FFNNorm1:       get(p+"ffn_norm1.weight", D),
		FFNNorm2:       get(p+"ffn_norm2.weight", D),
	}
	if c.QKNorm {
		b.QNorm = get(p+"attention.q_norm.weight", Dh)
		b.KNorm = get(p+"attention.k_norm.weight", Dh)
	}
	if modulated {
		b.AdaLNWeight = get(p+"adaLN_modulation.1.weight", 4*D, c.AdaLNDim())
		b.AdaLNBias = get(p+"adaLN_modulation.1.bias", 4*D)
	}
	return b
}

// Release frees the RoPE tables and masks the model built for its plans.
// The weights stay (they belong to the loader).
func (m *Model) Release() {
	for _, p := range m.plans {
		p.release(m.b)
	}
	m.plans = nil
}

// ResetCache forgets the stored joint-layer residuals (a new image).
func (m *Model) ResetCache() {
	for _, pl := range m.plans {
		for i := range pl.hasRes {
			pl.hasRes[i] = false
		}
	}
}
