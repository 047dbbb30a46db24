// Package vae is the FLUX VAE decoder (diffusers AutoencoderKL with 16
// latent channels, spec §5): latent (B, 16, h, w) → image (B, 3, 8h, 8w)
// roughly in [−1, 1]. Written once against ops.Backend.
//
// Weights use the diffusers names under "decoder." (spec §5.4); a
// checkpoint in BFL/LDM naming is mapped onto them by the weights package
// (spec §5.5). The decoder takes the latent already mapped by
// z/scaling_factor + shift_factor (spec §4.9); there is no post_quant_conv.
package vae

import (
	"fmt"
	"math"
	"strconv"

	"github.com/luminaweb/lumina/model/internal/nn"
	"github.com/luminaweb/lumina/model/ops"
	"github.com/luminaweb/lumina/model/tensor"
	"github.com/luminaweb/lumina/model/weights"
)

// Model holds the decoder's weights, named after the diffusers keys (spec
// §5.4). The tensors belong to the nn.Loader that uploaded them (release
// them with it).
type Model struct {
	Cfg Config

	ConvIn      Conv      // (C_top, latent, 3, 3), C_top = block_out_channels[−1]
	MidBlock    MidBlock  // at C_top
	UpBlocks    []UpBlock // execution order: UpBlocks[0] is the lowest resolution
	ConvNormOut Norm      // (C_0)
	ConvOut     Conv      // (out_channels, C_0, 3, 3)

	// Hook, when not nil, is called with the output of each diffusers
	// module as it is computed (for tests; nil in production): "conv_in",
	// "mid_block.resnets.0", "mid_block.attentions.0",
	// "mid_block.resnets.1", "up_blocks.i.resnets.j",
	// "up_blocks.i.upsamplers.0", and "conv_norm_out" (the GroupNorm
	// output, before SiLU). The tensors are only valid during the call.
	Hook func(name string, t *ops.Tensor)

	b ops.Backend
}

// Conv is a convolution with bias.
type Conv struct {
	Weight *ops.Tensor // (Co, Ci, k, k)
	Bias   *ops.Tensor // (Co)
}

// Norm is an affine GroupNorm.
type Norm struct {
	Weight *ops.Tensor // (C)
	Bias   *ops.Tensor // (C)
}

// Linear is one of the mid attention's projections (a 1×1 conv in flux).
type Linear struct {
	Weight *ops.Tensor // (C, C), the nn.Linear layout (out, in)
	Bias   *ops.Tensor // (C)
}

// Resnet is diffusers' ResnetBlock2D (spec §5.2).
type Resnet struct {
	Norm1        Norm  // (Ci)
	Conv1        Conv  // (Co, Ci, 3, 3)
	Norm2        Norm  // (Co)
	Conv2        Conv  // (Co, Co, 3, 3)
	ConvShortcut *Conv // (Co, Ci, 1, 1); nil when Ci = Co
}

// Attention is the mid block's single-head self-attention over all pixels.
type Attention struct {
	GroupNorm Norm   // (C)
	ToQ       Linear // (C, C)
	ToK       Linear // (C, C)
	ToV       Linear // (C, C)
	ToOut     Linear // (C, C), diffusers' to_out.0
}

// MidBlock is resnet, attention, resnet at the lowest resolution.
type MidBlock struct {
	Resnets   [2]Resnet
	Attention *Attention // nil when mid_block_add_attention is false
}

// UpBlock is diffusers' UpDecoderBlock2D: layers_per_block+1 resnets, then
// a nearest 2× upsample and a 3×3 conv (all blocks but the last).
type UpBlock struct {
	Resnets   []Resnet
	Upsampler *Conv // (C, C, 3, 3), diffusers' upsamplers.0.conv; nil in the last block
}

// getter returns the tensor of a weight (name without the "decoder."
// prefix) and its shape; linear marks the attention projections, stored
// [C, C] by diffusers and [C, C, 1, 1] by older conversions.
type getter func(name string, linear bool, shape ...int) *ops.Tensor

// build lays out the decoder of cfg (spec §5.3, diffusers' Decoder),
// taking every weight from get in checkpoint order. It is the one place
// that knows the names and shapes; Load and Weights both use it.
func build(cfg Config, get getter) *Model {
	m := &Model{Cfg: cfg}
	conv := func(name string, co, ci, k int) Conv {
		return Conv{Weight: get(name+".weight", false, co, ci, k, k), Bias: get(name+".bias", false, co)}
	}
	norm := func(name string, c int) Norm {
		return Norm{Weight: get(name+".weight", false, c), Bias: get(name+".bias", false, c)}
	}
	linear := func(name string, c int) Linear {
		return Linear{Weight: get(name+".weight", true, c, c), Bias: get(name+".bias", false, c)}
	}
	resnet := func(name string, ci, co int) Resnet {
		r := Resnet{
			Norm1: norm(name+".norm1", ci), Conv1: conv(name+".conv1", co, ci, 3),
			Norm2: norm(name+".norm2", co), Conv2: conv(name+".conv2", co, co, 3),
		}
		if ci != co {
			sc := conv(name+".conv_shortcut", co, ci, 1)
			r.ConvShortcut = &sc
		}
		return r
	}
	boc := cfg.BlockOutChannels
	n := len(boc)
	top := boc[n-1]
	m.ConvIn = conv("conv_in", top, cfg.LatentChannels, 3)
	m.MidBlock.Resnets[0] = resnet("mid_block.resnets.0", top, top)
	if cfg.MidBlockAddAttention {
		// One head of dimension C: diffusers' attention_head_dim =
		// block_out_channels[−1] gives heads = C / C = 1.
		p := "mid_block.attentions.0."
		m.MidBlock.Attention = &Attention{GroupNorm: norm(p+"group_norm", top),
			ToQ: linear(p+"to_q", top), ToK: linear(p+"to_k", top), ToV: linear(p+"to_v", top),
			ToOut: linear(p+"to_out.0", top)}
	}
	m.MidBlock.Resnets[1] = resnet("mid_block.resnets.1", top, top)
	// diffusers numbers up blocks in execution order over the reversed
	// block_out_channels; each block's first resnet changes the channels.
	out := top
	m.UpBlocks = make([]UpBlock, n)
	for i := range m.UpBlocks {
		in := out
		out = boc[n-1-i]
		p := "up_blocks." + strconv.Itoa(i)
		ub := &m.UpBlocks[i]
		ub.Resnets = make([]Resnet, cfg.LayersPerBlock+1)
		for j := range ub.Resnets {
			ub.Resnets[j] = resnet(p+".resnets."+strconv.Itoa(j), in, out)
			in = out
		}
		if i < n-1 {
			up := conv(p+".upsamplers.0.conv", out, out, 3)
			ub.Upsampler = &up
		}
	}
	m.ConvNormOut = norm("conv_norm_out", boc[0])
	m.ConvOut = conv("conv_out", cfg.OutChannels, boc[0], 3)
	return m
}

// Prefix is the name prefix of the decoder's weights in an AutoencoderKL
// checkpoint.
const Prefix = "decoder."

// Weights lists every tensor the decoder of cfg loads, with its full name
// (Prefix included) and shape, in loading order. The attention
// projections are listed [C, C] as diffusers stores them; Load also
// accepts [C, C, 1, 1].
func (c Config) Weights() []weights.Info {
	var list []weights.Info
	build(c, func(name string, _ bool, shape ...int) *ops.Tensor {
		list = append(list, weights.Info{Name: Prefix + name, DType: tensor.F32, Shape: tensor.Shape(shape).Clone()})
		return nil
	})
	return list
}

// Load uploads the decoder's weights (names under Prefix, after l.Prefix)
// and fails on the first missing or misshapen tensor, naming it.
func Load(l *nn.Loader, cfg Config) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var err error
	m := build(cfg, func(name string, linear bool, shape ...int) *ops.Tensor {
		if err != nil {
			return nil
		}
		name = Prefix + name
		var t *ops.Tensor
		if info, ok := l.Info(name); linear && ok && len(info.Shape) != 2 {
			// A 1×1 conv weight (flux's q, k, v, proj_out layout) is
			// accepted and viewed as the (C, C) matrix it is.
			if !info.Shape.Equal(append(tensor.Shape{}, shape[0], shape[1], 1, 1)) {
				err = fmt.Errorf("vae: weights: tensor %q has shape %v, expected %v or %v",
					l.Prefix+name, info.Shape, tensor.Shape(shape), append(tensor.Shape{}, shape[0], shape[1], 1, 1))
				return nil
			}
			if t, err = l.Load(name, shape[0], shape[1], 1, 1); err == nil {
				t = l.B.View(t, 0, shape...)
			}
		} else {
			t, err = l.Load(name, shape...)
		}
		if err != nil {
			err = fmt.Errorf("vae: %w", err)
		}
		return t
	})
	if err != nil {
		return nil, err
	}
	m.b = l.B
	return m, nil
}

func (m *Model) hook(name string, t *ops.Tensor) {
	if m.Hook != nil {
		m.Hook(name, t)
	}
}

// Decode runs the decoder on z (B, latent_channels, h, w), the latent
// already mapped by z/scaling_factor + shift_factor, and returns a new
// tensor (B, out_channels, Upscale·h, Upscale·w) holding the image roughly
// in [−1, 1], not clamped (see Pixel). The caller releases it. Work is
// recorded, not waited for: GPU errors surface at the next Read or Sync.
func (m *Model) Decode(z *ops.Tensor) (*ops.Tensor, error) {
	s := z.Shape()
	if len(s) != 4 || s[1] != m.Cfg.LatentChannels {
		return nil, fmt.Errorf("vae: Decode: latent %v is not (B, %d, h, w)", z, m.Cfg.LatentChannels)
	}
	b := m.b
	// x is the current activation, owned here once conv_in has run; each
	// stage makes the next one and x is released behind it.
	x, err := m.conv(z, m.ConvIn, 1)
	if err != nil {
		return nil, err
	}
	m.hook("conv_in", x)
	stage := func(name string, f func(x *ops.Tensor) (*ops.Tensor, error)) error {
		if err != nil {
			return err
		}
		var y *ops.Tensor
		y, err = f(x)
		b.Release(x)
		x = y
		if err == nil && name != "" {
			m.hook(name, x)
		}
		return err
	}
	mid := &m.MidBlock
	stage("mid_block.resnets.0", func(x *ops.Tensor) (*ops.Tensor, error) { return m.resnet(x, &mid.Resnets[0]) })
	if mid.Attention != nil {
		stage("mid_block.attentions.0", func(x *ops.Tensor) (*ops.Tensor, error) { return m.attention(x, mid.Attention) })
	}
	stage("mid_block.resnets.1", func(x *ops.Tensor) (*ops.Tensor, error) { return m.resnet(x, &mid.Resnets[1]) })
	for i := range m.UpBlocks {
		ub := &m.UpBlocks[i]
		p := "up_blocks." + strconv.Itoa(i)
		for j := range ub.Resnets {
			stage(p+".resnets."+strconv.Itoa(j), func(x *ops.Tensor) (*ops.Tensor, error) { return m.resnet(x, &ub.Resnets[j]) })
		}
		if ub.Upsampler != nil {
			stage(p+".upsamplers.0", func(x *ops.Tensor) (*ops.Tensor, error) { return m.upsample(x, *ub.Upsampler) })
		}
	}
	// conv_norm_out → SiLU → conv_out.
	stage("", func(x *ops.Tensor) (*ops.Tensor, error) {
		sc := nn.Scope{B: b}
		defer sc.Release()
		n, a := sc.New(x.Shape()...), sc.New(x.Shape()...)
		if sc.Err != nil {
			return nil, sc.Err
		}
		b.GroupNorm(n, x, m.ConvNormOut.Weight, m.ConvNormOut.Bias, m.Cfg.NormNumGroups, normEps)
		m.hook("conv_norm_out", n)
		b.Act(a, n, ops.SiLU)
		return m.conv(a, m.ConvOut, 1)
	})
	if err != nil {
		return nil, err
	}
	return x, nil
}

// conv returns a new tensor Conv2D(x) with c's weights and padding pad.
func (m *Model) conv(x *ops.Tensor, c Conv, pad int) (*ops.Tensor, error) {
	s := x.Shape()
	y, err := m.b.New(tensor.F32, s[0], c.Weight.Shape()[0], s[2], s[3])
	if err != nil {
		return nil, fmt.Errorf("vae: %w", err)
	}
	m.b.Conv2D(y, x, c.Weight, c.Bias, pad)
	return y, nil
}

// resnet returns a new tensor: skip(x) + conv2(SiLU(norm2(conv1(SiLU(norm1(x)))))),
// skip the 1×1 conv_shortcut when the channels change, else x (spec §5.2).
func (m *Model) resnet(x *ops.Tensor, r *Resnet) (*ops.Tensor, error) {
	b, G := m.b, m.Cfg.NormNumGroups
	xs := x.Shape()
	B, Ci, H, W := xs[0], xs[1], xs[2], xs[3]
	Co := r.Conv1.Weight.Shape()[0]
	sc := nn.Scope{B: b}
	defer sc.Release()
	n, a, h := sc.New(B, Ci, H, W), sc.New(B, Ci, H, W), sc.New(B, Co, H, W)
	n2, a2 := n, a // (B, Co, H, W): the first pair again when the channels are kept
	if Ci != Co {
		n2, a2 = sc.New(B, Co, H, W), sc.New(B, Co, H, W)
	}
	skip := x
	if r.ConvShortcut != nil {
		skip = sc.New(B, Co, H, W)
	}
	if sc.Err != nil {
		return nil, fmt.Errorf("vae: %w", sc.Err)
	}
	out, err := b.New(tensor.F32, B, Co, H, W)
	if err != nil {
		return nil, fmt.Errorf("vae: %w", err)
	}
	b.GroupNorm(n, x, r.Norm1.Weight, r.Norm1.Bias, G, normEps)
	b.Act(a, n, ops.SiLU)
	b.Conv2D(h, a, r.Conv1.Weight, r.Conv1.Bias, 1)
	b.GroupNorm(n2, h, r.Norm2.Weight, r.Norm2.Bias, G, normEps)
	b.Act(a2, n2, ops.SiLU)
	h2 := n2 // n2 is dead once a2 is computed
	b.Conv2D(h2, a2, r.Conv2.Weight, r.Conv2.Bias, 1)
	if r.ConvShortcut != nil {
		b.Conv2D(skip, x, r.ConvShortcut.Weight, r.ConvShortcut.Bias, 0)
	}
	b.Add(out, skip, h2)
	return out, nil
}

// attention returns a new tensor x + to_out(softmax(q·kᵀ/√C)·v) with q, k,
// v the projections of GroupNorm(x) viewed as N = H·W tokens of C
// channels: one head over all pixels (spec §5.2).
func (m *Model) attention(x *ops.Tensor, at *Attention) (*ops.Tensor, error) {
	b := m.b
	xs := x.Shape()
	B, C, H, W := xs[0], xs[1], xs[2], xs[3]
	N := H * W
	sc := nn.Scope{B: b}
	defer sc.Release()
	n := sc.New(B, C, H, W)
	tok := sc.New(B, N, C)
	q, k, v := sc.New(B, N, 1, C), sc.New(B, N, 1, C), sc.New(B, N, 1, C)
	att := sc.New(B, N, 1, C)
	proj := sc.New(B, N, C)
	back := sc.New(B, C, H, W)
	if sc.Err != nil {
		return nil, fmt.Errorf("vae: %w", sc.Err)
	}
	out, err := b.New(tensor.F32, B, C, H, W)
	if err != nil {
		return nil, fmt.Errorf("vae: %w", err)
	}
	b.GroupNorm(n, x, at.GroupNorm.Weight, at.GroupNorm.Bias, m.Cfg.NormNumGroups, normEps)
	b.Transpose(tok, b.View(n, 0, B, C, N)) // (B, C, N) → (B, N, C)
	rows := func(t *ops.Tensor) *ops.Tensor { return b.View(t, 0, B*N, C) }
	b.MatMul(rows(q), rows(tok), at.ToQ.Weight, at.ToQ.Bias)
	b.MatMul(rows(k), rows(tok), at.ToK.Weight, at.ToK.Bias)
	b.MatMul(rows(v), rows(tok), at.ToV.Weight, at.ToV.Bias)
	b.Attention(att, q, k, v, ops.AttnOptions{Scale: float32(1 / math.Sqrt(float64(C)))})
	b.MatMul(rows(proj), rows(att), at.ToOut.Weight, at.ToOut.Bias)
	b.Transpose(b.View(back, 0, B, C, N), proj) // (B, N, C) → (B, C, N)
	b.Add(out, x, back)
	return out, nil
}

// upsample returns a new tensor conv(nearest2x(x)).
func (m *Model) upsample(x *ops.Tensor, c Conv) (*ops.Tensor, error) {
	s := x.Shape()
	sc := nn.Scope{B: m.b}
	defer sc.Release()
	up := sc.New(s[0], s[1], 2*s[2], 2*s[3])
	if sc.Err != nil {
		return nil, fmt.Errorf("vae: %w", sc.Err)
	}
	m.b.Upsample2x(up, x)
	return m.conv(up, c, 1)
}
