package vae

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Config is the VAE configuration as the diffusers AutoencoderKL
// vae/config.json spells it (spec §5.1). Only the decoder's fields are
// used; the encoder's (in_channels, down_block_types) are ignored.
type Config struct {
	LatentChannels   int    `json:"latent_channels"`    // 16 for FLUX
	OutChannels      int    `json:"out_channels"`       // 3 (RGB)
	BlockOutChannels []int  `json:"block_out_channels"` // encoder order, low level first: [128, 256, 512, 512]
	LayersPerBlock   int    `json:"layers_per_block"`   // the decoder has LayersPerBlock+1 resnets per up block
	NormNumGroups    int    `json:"norm_num_groups"`    // GroupNorm groups (32)
	ActFn            string `json:"act_fn"`             // only "silu"
	// MidBlockAddAttention turns the mid block's single-head attention on
	// (diffusers' default, and FLUX's value, is true).
	MidBlockAddAttention bool `json:"mid_block_add_attention"`
	// UsePostQuantConv is diffusers' flag for a 1×1 conv on the latent
	// before the decoder; the FLUX VAE has none (false) and it is not
	// implemented. diffusers' default is true, so a config.json that omits
	// it is refused.
	UsePostQuantConv bool `json:"use_post_quant_conv"`
	// ScalingFactor and ShiftFactor map the sampler's latent to the
	// decoder's input, z/ScalingFactor + ShiftFactor (spec §4.9). The
	// caller applies them; Decode takes the mapped latent.
	ScalingFactor float64 `json:"scaling_factor"`
	ShiftFactor   float64 `json:"shift_factor"`
}

// normEps is the epsilon of every GroupNorm in the decoder: diffusers'
// Decoder passes 1e-6 to its blocks and conv_norm_out, and flux's
// autoencoder.py uses 1e-6 throughout (spec §5.2); config.json does not
// carry it.
const normEps = 1e-6

// ParseConfig reads a diffusers AutoencoderKL config.json (or any JSON
// object with its field names), fills in diffusers' defaults for the
// fields it omits, and validates it.
func ParseConfig(data []byte) (Config, error) {
	// diffusers AutoencoderKL.__init__ defaults.
	c := Config{
		LatentChannels: 4, OutChannels: 3, LayersPerBlock: 1,
		NormNumGroups: 32, ActFn: "silu", MidBlockAddAttention: true, UsePostQuantConv: true,
		ScalingFactor: 0.18215,
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return Config{}, fmt.Errorf("vae: config: %w", err)
	}
	if c.BlockOutChannels == nil {
		c.BlockOutChannels = []int{64}
	}
	return c, c.Validate()
}

// Validate checks that the configuration describes a decoder this package
// implements.
func (c Config) Validate() error {
	var errs []error
	pos := func(name string, v int) {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("%s = %d, want > 0", name, v))
		}
	}
	pos("latent_channels", c.LatentChannels)
	pos("out_channels", c.OutChannels)
	pos("layers_per_block", c.LayersPerBlock)
	pos("norm_num_groups", c.NormNumGroups)
	if len(c.BlockOutChannels) == 0 {
		errs = append(errs, errors.New("block_out_channels is empty"))
	}
	for i, ch := range c.BlockOutChannels {
		if ch <= 0 || (c.NormNumGroups > 0 && ch%c.NormNumGroups != 0) {
			errs = append(errs, fmt.Errorf("block_out_channels[%d] = %d is not a positive multiple of norm_num_groups = %d", i, ch, c.NormNumGroups))
		}
	}
	if c.ActFn != "silu" {
		errs = append(errs, fmt.Errorf("act_fn %q is not implemented (only silu)", c.ActFn))
	}
	if c.UsePostQuantConv {
		errs = append(errs, errors.New("use_post_quant_conv is true (or missing: diffusers' default); only the FLUX layout without post_quant_conv is implemented"))
	}
	if c.ScalingFactor == 0 {
		errs = append(errs, errors.New("scaling_factor is 0"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("vae: config: %w", errors.Join(errs...))
	}
	return nil
}

// Upscale is the ratio of image to latent size: one nearest 2× upsample
// per up block but the last (8 for FLUX's four blocks, spec §5.3).
func (c Config) Upscale() int { return 1 << (len(c.BlockOutChannels) - 1) }
