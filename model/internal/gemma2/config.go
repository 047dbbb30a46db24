package gemma2

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Config is the Gemma-2 configuration as HF transformers' Gemma2 config.json
// spells it (spec §2.1). Fields the encoder does not use (the LM head's
// final_logit_softcapping, the vocabulary's special ids) are kept where a
// caller may want them.
type Config struct {
	VocabSize         int     `json:"vocab_size"`
	HiddenSize        int     `json:"hidden_size"`         // D
	IntermediateSize  int     `json:"intermediate_size"`   // GeGLU width
	NumHiddenLayers   int     `json:"num_hidden_layers"`   // decoder layers in the checkpoint
	NumAttentionHeads int     `json:"num_attention_heads"` // H
	NumKeyValueHeads  int     `json:"num_key_value_heads"` // Hkv (GQA), H a multiple of it
	HeadDim           int     `json:"head_dim"`            // Dh; H·Dh need not equal D
	RMSNormEps        float64 `json:"rms_norm_eps"`
	RopeTheta         float64 `json:"rope_theta"`
	// SlidingWindow is W of the even-indexed ("local") layers: key j is
	// visible to query i iff i−W < j ≤ i. 0 means no window.
	SlidingWindow int `json:"sliding_window"`
	// QueryPreAttnScalar sets the attention scale QueryPreAttnScalar^−½
	// (256 = head_dim in gemma-2-2b; deliberately different in the tiny
	// golden config).
	QueryPreAttnScalar float64 `json:"query_pre_attn_scalar"`
	// AttnLogitSoftcapping caps attention logits, c·tanh(s/c), before the
	// mask; 0 (or null) means none.
	AttnLogitSoftcapping float64 `json:"attn_logit_softcapping"`
	// FinalLogitSoftcapping belongs to the LM head, which the encoder
	// does not have; parsed for completeness.
	FinalLogitSoftcapping float64 `json:"final_logit_softcapping"`
	// HiddenAct / HiddenActivation name the MLP nonlinearity; only
	// gelu_pytorch_tanh (GeGLU with tanh GELU) is implemented. Empty means
	// the Gemma-2 default, gelu_pytorch_tanh.
	HiddenAct        string `json:"hidden_act"`
	HiddenActivation string `json:"hidden_activation"`
}

// defaultRopeTheta is HF Gemma2Config's default, used when config.json
// omits rope_theta.
const defaultRopeTheta = 10000

// ParseConfig reads an HF Gemma2 config.json (or any JSON object with its
// field names) and validates it.
func ParseConfig(data []byte) (Config, error) {
	var c Config
	if err := json.Unmarshal(data, &c); err != nil {
		return Config{}, fmt.Errorf("gemma2: config: %w", err)
	}
	if c.RopeTheta == 0 {
		c.RopeTheta = defaultRopeTheta
	}
	return c, c.Validate()
}

// ParseGemmaPytorchConfig reads a configuration with google/gemma_pytorch's
// GemmaConfig field names (as in the golden file's "config_gemma_pytorch"),
// where the window is sliding_window_size and rope_theta does not appear
// (gemma_pytorch's default, 10000). Its attn_types must alternate local
// sliding and global layers starting with a sliding one, the only layout
// the encoder implements; gemma_pytorch gives it as a list, the golden file
// as a description, and both are checked loosely for that order.
func ParseGemmaPytorchConfig(data []byte) (Config, error) {
	var p struct {
		Config
		SlidingWindowSize int             `json:"sliding_window_size"`
		AttnTypes         json.RawMessage `json:"attn_types"`
		Architecture      string          `json:"architecture"`
	}
	if err := json.Unmarshal(data, &p); err != nil {
		return Config{}, fmt.Errorf("gemma2: gemma_pytorch config: %w", err)
	}
	if p.Architecture != "" && p.Architecture != "GEMMA_2" {
		return Config{}, fmt.Errorf("gemma2: gemma_pytorch config: architecture %q, want GEMMA_2", p.Architecture)
	}
	if err := checkAttnTypes(p.AttnTypes); err != nil {
		return Config{}, err
	}
	c := p.Config
	c.SlidingWindow = p.SlidingWindowSize
	if c.RopeTheta == 0 {
		c.RopeTheta = defaultRopeTheta
	}
	return c, c.Validate()
}

// checkAttnTypes accepts a missing attn_types, a list whose even entries
// are LOCAL_SLIDING and odd entries GLOBAL, or a string that names
// LOCAL_SLIDING before GLOBAL.
func checkAttnTypes(raw json.RawMessage) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var list []string
	if json.Unmarshal(raw, &list) == nil {
		for i, s := range list {
			want := "LOCAL_SLIDING"
			if i%2 == 1 {
				want = "GLOBAL"
			}
			if !strings.Contains(strings.ToUpper(s), want) {
				return fmt.Errorf("gemma2: gemma_pytorch config: attn_types[%d] = %q, want %s (even layers sliding, odd global)", i, s, want)
			}
		}
		return nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return fmt.Errorf("gemma2: gemma_pytorch config: attn_types: %w", err)
	}
	u := strings.ToUpper(s)
	l, g := strings.Index(u, "LOCAL_SLIDING"), strings.Index(u, "GLOBAL")
	if l < 0 || g < 0 || g < l {
		return fmt.Errorf("gemma2: gemma_pytorch config: attn_types %q is not sliding/global alternation", s)
	}
	return nil
}

// Validate checks that the dimensions are usable.
func (c Config) Validate() error {
	var errs []error
	pos := func(name string, v int) {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("%s = %d, want > 0", name, v))
		}
	}
	pos("vocab_size", c.VocabSize)
	pos("hidden_size", c.HiddenSize)
	pos("intermediate_size", c.IntermediateSize)
	pos("num_hidden_layers", c.NumHiddenLayers)
	pos("num_attention_heads", c.NumAttentionHeads)
	pos("num_key_value_heads", c.NumKeyValueHeads)
	pos("head_dim", c.HeadDim)
	if c.NumKeyValueHeads > 0 && c.NumAttentionHeads%c.NumKeyValueHeads != 0 {
		errs = append(errs, fmt.Errorf("num_attention_heads = %d is not a multiple of num_key_value_heads = %d", c.NumAttentionHeads, c.NumKeyValueHeads))
	}
	if c.HeadDim%2 != 0 {
		errs = append(errs, fmt.Errorf("head_dim = %d is odd (RoPE rotates pairs)", c.HeadDim))
	}
	if c.RMSNormEps <= 0 {
		errs = append(errs, fmt.Errorf("rms_norm_eps = %g, want > 0", c.RMSNormEps))
	}
	if c.RopeTheta <= 0 {
		errs = append(errs, fmt.Errorf("rope_theta = %g, want > 0", c.RopeTheta))
	}
	if c.QueryPreAttnScalar <= 0 {
		errs = append(errs, fmt.Errorf("query_pre_attn_scalar = %g, want > 0", c.QueryPreAttnScalar))
	}
	if c.SlidingWindow < 0 {
		errs = append(errs, fmt.Errorf("sliding_window = %d, want ≥ 0", c.SlidingWindow))
	}
	if c.AttnLogitSoftcapping < 0 {
		errs = append(errs, fmt.Errorf("attn_logit_softcapping = %g, want ≥ 0", c.AttnLogitSoftcapping))
	}
	for _, a := range []string{c.HiddenAct, c.HiddenActivation} {
		if a != "" && a != "gelu_pytorch_tanh" {
			errs = append(errs, fmt.Errorf("activation %q is not implemented (only gelu_pytorch_tanh)", a))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("gemma2: config: %w", errors.Join(errs...))
	}
	return nil
}
