package dit

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Config is the Next-DiT configuration with the original Lumina-Image 2.0
// field names (models/model.py NextDiT arguments, as the golden files'
// "config" object spells them). ParseConfig also reads the diffusers
// Lumina2Transformer2DModel config.json names (spec §3.1). Derived sizes
// are methods, computed as the original code computes them.
type Config struct {
	PatchSize      int `json:"patch_size"`       // p
	InChannels     int `json:"in_channels"`      // C, latent channels (= out channels)
	Dim            int `json:"dim"`              // D
	NLayers        int `json:"n_layers"`         // joint (modulated) layers
	NRefinerLayers int `json:"n_refiner_layers"` // noise-refiner blocks, and as many context-refiner blocks
	NHeads         int `json:"n_heads"`          // H
	// NKVHeads is Hkv (GQA); 0 (null) means NHeads, as the original's
	// n_kv_heads=None.
	NKVHeads   int `json:"n_kv_heads"`
	MultipleOf int `json:"multiple_of"`
	// FFNDimMultiplier scales the FFN width before rounding (nil: none).
	FFNDimMultiplier *float64 `json:"ffn_dim_multiplier"`
	NormEps          float64  `json:"norm_eps"` // eps of every block RMSNorm and the caption RMSNorm
	// QKNorm enables the per-head RMSNorm of q and k (q_norm/k_norm). Every
	// Lumina-Image 2.0 checkpoint has it.
	QKNorm     bool  `json:"qk_norm"`
	CapFeatDim int   `json:"cap_feat_dim"` // caption feature width (Gemma's hidden size)
	AxesDims   []int `json:"axes_dims"`    // RoPE dims per axis (caption/axis0, row, column); sum = head dim
	AxesLens   []int `json:"axes_lens"`    // RoPE table length per axis: positions must stay below these

	// RopeTheta is RoPE's base; 0 means the hard-coded 10000 of the
	// original (spec §3.5).
	RopeTheta float64 `json:"rope_theta"`
	// QKNormEps is the eps of q_norm/k_norm; 0 means DefaultQKNormEps. The
	// references disagree (spec §3.6, §10.6): the original code without
	// apex (its vanilla RMSNorm fallback, which is how the golden files
	// were made) uses 1e-6; apex's FusedRMSNorm and diffusers use 1e-5.
	QKNormEps float64 `json:"qk_norm_eps"`
}

const (
	// DefaultQKNormEps is 1e-5, as the spec advises (§3.6): diffusers and
	// the original code with apex (the likely training setup) use it. The
	// original without apex uses 1e-6, as the golden files and the demo
	// model were made; their configs set qk_norm_eps explicitly.
	DefaultQKNormEps = 1e-5
	// defaultRopeTheta is hard-coded in the original RopeEmbedder.
	defaultRopeTheta = 10000
	// tFreqDim is the sinusoidal timestep width (TimestepEmbedder's
	// frequency_embedding_size, spec §3.3).
	tFreqDim = 256
	// finalLayerNormEps is FinalLayer's LayerNorm eps (spec §3.10).
	finalLayerNormEps = 1e-6
)

// ParseConfig reads a configuration in the original names (dim, n_layers,
// axes_dims, …) or the diffusers config.json names (hidden_size,
// num_layers, axes_dim_rope, …), fills the defaults and validates it. A
// diffusers config has no qk_norm field (diffusers always normalises q and
// k), so it implies QKNorm.
func ParseConfig(data []byte) (Config, error) {
	var p struct {
		Config
		QKNormSet *bool `json:"qk_norm"`
		// diffusers names
		HiddenSize        int   `json:"hidden_size"`
		NumLayers         int   `json:"num_layers"`
		NumRefinerLayers  int   `json:"num_refiner_layers"`
		NumAttentionHeads int   `json:"num_attention_heads"`
		NumKVHeads        int   `json:"num_kv_heads"`
		AxesDimRope       []int `json:"axes_dim_rope"`
		OutChannels       *int  `json:"out_channels"`
	}
	if err := json.Unmarshal(data, &p); err != nil {
		return Config{}, fmt.Errorf("dit: config: %w", err)
	}
	c := p.Config
	diffusers := p.HiddenSize != 0
	if diffusers {
		c.Dim = p.HiddenSize
		c.NLayers = p.NumLayers
		c.NRefinerLayers = p.NumRefinerLayers
		c.NHeads = p.NumAttentionHeads
		c.NKVHeads = p.NumKVHeads
		c.AxesDims = p.AxesDimRope
		if p.OutChannels != nil && *p.OutChannels != c.InChannels {
			return Config{}, fmt.Errorf("dit: config: out_channels = %d differs from in_channels = %d", *p.OutChannels, c.InChannels)
		}
	}
	c.QKNorm = diffusers
	if p.QKNormSet != nil {
		c.QKNorm = *p.QKNormSet
	}
	c = c.withDefaults()
	return c, c.Validate()
}

func (c Config) withDefaults() Config {
	if c.NKVHeads == 0 {
		c.NKVHeads = c.NHeads
	}
	if c.RopeTheta == 0 {
		c.RopeTheta = defaultRopeTheta
	}
	if c.QKNormEps == 0 {
		c.QKNormEps = DefaultQKNormEps
	}
	return c
}

// HeadDim is dim / n_heads (JointAttention.head_dim).
func (c Config) HeadDim() int { return c.Dim / c.NHeads }

// AdaLNDim is the timestep embedding width, min(dim, 1024): the only
// conditioning vector of every adaLN modulation (spec §3.3).
func (c Config) AdaLNDim() int { return min(c.Dim, 1024) }

// FFNHidden is the SwiGLU width as the original FeedForward computes it
// from hidden_dim = 4·dim: scaled by ffn_dim_multiplier if set, then rounded
// up to a multiple of multiple_of; no LLaMA 2/3 factor (spec §3.1, §3.7).
func (c Config) FFNHidden() int {
	h := 4 * c.Dim
	if c.FFNDimMultiplier != nil {
		h = int(*c.FFNDimMultiplier * float64(h))
	}
	return c.MultipleOf * ((h + c.MultipleOf - 1) / c.MultipleOf)
}

// PatchDim is p·p·C, the width of a patch token.
func (c Config) PatchDim() int { return c.PatchSize * c.PatchSize * c.InChannels }

// Validate checks that the dimensions are usable; it expects the defaults
// filled (ParseConfig does that).
func (c Config) Validate() error {
	var errs []error
	pos := func(name string, v int) {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("%s = %d, want > 0", name, v))
		}
	}
	pos("patch_size", c.PatchSize)
	pos("in_channels", c.InChannels)
	pos("dim", c.Dim)
	pos("n_layers", c.NLayers)
	if c.NRefinerLayers < 0 {
		errs = append(errs, fmt.Errorf("n_refiner_layers = %d, want ≥ 0", c.NRefinerLayers))
	}
	pos("n_heads", c.NHeads)
	pos("n_kv_heads", c.NKVHeads)
	pos("multiple_of", c.MultipleOf)
	pos("cap_feat_dim", c.CapFeatDim)
	if c.NHeads > 0 && c.Dim%c.NHeads != 0 {
		errs = append(errs, fmt.Errorf("dim = %d is not a multiple of n_heads = %d", c.Dim, c.NHeads))
	}
	if c.NKVHeads > 0 && c.NHeads%c.NKVHeads != 0 {
		errs = append(errs, fmt.Errorf("n_heads = %d is not a multiple of n_kv_heads = %d", c.NHeads, c.NKVHeads))
	}
	if c.FFNDimMultiplier != nil && *c.FFNDimMultiplier <= 0 {
		errs = append(errs, fmt.Errorf("ffn_dim_multiplier = %g, want > 0", *c.FFNDimMultiplier))
	}
	if c.NormEps <= 0 {
		errs = append(errs, fmt.Errorf("norm_eps = %g, want > 0", c.NormEps))
	}
	if c.QKNormEps <= 0 {
		errs = append(errs, fmt.Errorf("qk_norm_eps = %g, want > 0", c.QKNormEps))
	}
	if c.RopeTheta <= 0 {
		errs = append(errs, fmt.Errorf("rope_theta = %g, want > 0", c.RopeTheta))
	}
	if len(c.AxesDims) != 3 || len(c.AxesLens) != 3 {
		errs = append(errs, fmt.Errorf("axes_dims %v and axes_lens %v must have 3 entries (caption, row, column)", c.AxesDims, c.AxesLens))
	} else {
		sum := 0
		for i, d := range c.AxesDims {
			if d <= 0 || d%2 != 0 {
				errs = append(errs, fmt.Errorf("axes_dims[%d] = %d, want a positive even number", i, d))
			}
			if c.AxesLens[i] <= 0 {
				errs = append(errs, fmt.Errorf("axes_lens[%d] = %d, want > 0", i, c.AxesLens[i]))
			}
			sum += d
		}
		if c.NHeads > 0 && sum != c.HeadDim() {
			errs = append(errs, fmt.Errorf("axes_dims %v sum to %d, want the head dim %d", c.AxesDims, sum, c.HeadDim()))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("dit: config: %w", errors.Join(errs...))
	}
	return nil
}
