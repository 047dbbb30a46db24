package weights

import (
	"strconv"
	"strings"
)

// The name maps below follow spec §3.13.3 (Next-DiT, diffusers → original),
// §2.3 (Gemma) and §5.5 (VAE, BFL/LDM → diffusers).

func rename(name string) (target, bool) { return target{name, 0, 1}, true }

// hasRoot reports whether name starts with one of roots.
func hasRoot(name string, roots ...string) bool {
	for _, r := range roots {
		if strings.HasPrefix(name, r) {
			return true
		}
	}
	return false
}

// ditOriginal keeps the original names, and only the Next-DiT's.
func ditOriginal(name string) (target, bool) {
	if hasRoot(name, "x_embedder.", "t_embedder.", "cap_embedder.", "noise_refiner.",
		"context_refiner.", "layers.", "final_layer.", "norm_final.") {
		return rename(name)
	}
	return target{}, false
}

// ditTop maps the diffusers names outside the blocks, by prefix.
var ditTop = [][2]string{
	{"x_embedder.", "x_embedder."},
	{"time_caption_embed.timestep_embedder.linear_1.", "t_embedder.mlp.0."},
	{"time_caption_embed.timestep_embedder.linear_2.", "t_embedder.mlp.2."},
	{"time_caption_embed.caption_embedder.", "cap_embedder."},
	{"norm_out.linear_1.", "final_layer.adaLN_modulation.1."},
	{"norm_out.linear_2.", "final_layer.linear."},
}

// ditBlock maps the diffusers names inside a block ("layers.N." etc.
// removed). to_q, to_k and to_v are row blocks 0, 1, 2 of the fused qkv.
var ditBlock = map[string]target{
	"attn.to_q.weight":             {"attention.qkv.weight", 0, 3},
	"attn.to_k.weight":             {"attention.qkv.weight", 1, 3},
	"attn.to_v.weight":             {"attention.qkv.weight", 2, 3},
	"attn.to_out.0.weight":         {"attention.out.weight", 0, 1},
	"attn.norm_q.weight":           {"attention.q_norm.weight", 0, 1},
	"attn.norm_k.weight":           {"attention.k_norm.weight", 0, 1},
	"feed_forward.linear_1.weight": {"feed_forward.w1.weight", 0, 1},
	"feed_forward.linear_2.weight": {"feed_forward.w2.weight", 0, 1},
	"feed_forward.linear_3.weight": {"feed_forward.w3.weight", 0, 1},
	"norm1.norm.weight":            {"attention_norm1.weight", 0, 1}, // modulated blocks
	"norm1.weight":                 {"attention_norm1.weight", 0, 1}, // context_refiner
	"norm1.linear.weight":          {"adaLN_modulation.1.weight", 0, 1},
	"norm1.linear.bias":            {"adaLN_modulation.1.bias", 0, 1},
	"norm2.weight":                 {"attention_norm2.weight", 0, 1},
	"ffn_norm1.weight":             {"ffn_norm1.weight", 0, 1},
	"ffn_norm2.weight":             {"ffn_norm2.weight", 0, 1},
}

// cutBlock splits "layers.12.attn.to_q.weight" into "layers.12." and the
// rest, for each of the given block families.
func cutBlock(name string, families ...string) (block, rest string, ok bool) {
	for _, f := range families {
		tail, found := strings.CutPrefix(name, f)
		if !found {
			continue
		}
		num, rest, found := strings.Cut(tail, ".")
		if !found || !isIndex(num) {
			return "", "", false
		}
		return f + num + ".", rest, true
	}
	return "", "", false
}

// isIndex reports whether s is a decimal block index.
func isIndex(s string) bool {
	if s == "" || len(s) > 6 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// ditFromDiffusers maps Lumina2Transformer2DModel names to the original's.
func ditFromDiffusers(name string) (target, bool) {
	for _, m := range ditTop {
		if rest, ok := strings.CutPrefix(name, m[0]); ok {
			return rename(m[1] + rest)
		}
	}
	block, rest, ok := cutBlock(name, "noise_refiner.", "context_refiner.", "layers.")
	if !ok {
		return target{}, false
	}
	t, ok := ditBlock[rest]
	if !ok {
		return target{}, false
	}
	t.name = block + t.name
	return t, true
}

// gemmaHF keeps Gemma2Model's names.
func gemmaHF(name string) (target, bool) {
	if hasRoot(name, "embed_tokens.", "layers.", "norm.") {
		return rename(name)
	}
	return target{}, false
}

// vaeFromDiffusers keeps AutoencoderKL's decoder names, mapping the old
// attention names (query, key, value, proj_attn) to the current ones.
func vaeFromDiffusers(name string) (target, bool) {
	if !strings.HasPrefix(name, "decoder.") {
		return target{}, false
	}
	if head, tail, ok := strings.Cut(name, ".attentions.0."); ok {
		for _, m := range [][2]string{{"query.", "to_q."}, {"key.", "to_k."}, {"value.", "to_v."}, {"proj_attn.", "to_out.0."}} {
			if rest, ok := strings.CutPrefix(tail, m[0]); ok {
				return rename(head + ".attentions.0." + m[1] + rest)
			}
		}
	}
	return rename(name)
}

// bflLevels counts the decoder's up levels ("decoder.up.N.") of a BFL file.
func bflLevels(names []string) int {
	n := 0
	for _, name := range names {
		if tail, ok := strings.CutPrefix(name, "decoder.up."); ok {
			num, _, _ := strings.Cut(tail, ".")
			if isIndex(num) {
				i, _ := strconv.Atoi(num)
				n = max(n, i+1)
			}
		}
	}
	return n
}

// vaeFromBFL maps BFL/LDM decoder names to diffusers': up levels are
// reversed (LDM decoder.up.{L-1-i} is diffusers up_blocks.i), the mid block
// and the output norm are renamed, nin_shortcut becomes conv_shortcut.
func vaeFromBFL(name string, levels int) (target, bool) {
	r, ok := strings.CutPrefix(name, "decoder.")
	if !ok {
		return target{}, false
	}
	resnet := func(tail string) string {
		if rest, ok := strings.CutPrefix(tail, "nin_shortcut."); ok {
			return "conv_shortcut." + rest
		}
		return tail
	}
	switch {
	case hasRoot(r, "conv_in.", "conv_out."):
		return rename(name)
	case strings.HasPrefix(r, "norm_out."):
		return rename("decoder.conv_norm_out." + r[len("norm_out."):])
	case strings.HasPrefix(r, "mid.block_1."):
		return rename("decoder.mid_block.resnets.0." + resnet(r[len("mid.block_1."):]))
	case strings.HasPrefix(r, "mid.block_2."):
		return rename("decoder.mid_block.resnets.1." + resnet(r[len("mid.block_2."):]))
	case strings.HasPrefix(r, "mid.attn_1."):
		tail := r[len("mid.attn_1."):]
		for _, m := range [][2]string{{"norm.", "group_norm."}, {"q.", "to_q."}, {"k.", "to_k."}, {"v.", "to_v."}, {"proj_out.", "to_out.0."}} {
			if rest, ok := strings.CutPrefix(tail, m[0]); ok {
				return rename("decoder.mid_block.attentions.0." + m[1] + rest)
			}
		}
		return target{}, false
	}
	block, rest, ok := cutBlock(r, "up.")
	if !ok {
		return target{}, false
	}
	i, _ := strconv.Atoi(block[len("up.") : len(block)-1])
	up := "decoder.up_blocks." + strconv.Itoa(levels-1-i) + "."
	if tail, ok := strings.CutPrefix(rest, "block."); ok {
		num, tail, ok := strings.Cut(tail, ".")
		if !ok || !isIndex(num) {
			return target{}, false
		}
		return rename(up + "resnets." + num + "." + resnet(tail))
	}
	if tail, ok := strings.CutPrefix(rest, "upsample.conv."); ok {
		return rename(up + "upsamplers.0.conv." + tail)
	}
	return target{}, false
}
