package weights

import (
	"fmt"
	"slices"
	"strings"
)

// DetectLayout finds how src names the tensors of network kind: the prefix
// in front of every name (none; "model.diffusion_model." or "model." in
// ComfyUI files; "vae." in its all-in-one checkpoint) and the naming after
// it. The error for an unknown layout lists a few of the names found.
func DetectLayout(src Source, kind Kind) (Layout, error) {
	names := src.Names()
	has := make(map[string]bool, len(names))
	for _, n := range names {
		has[n] = true
	}
	// hasIn reports whether a name under prefix p contains part.
	hasIn := func(p, part string) bool {
		for _, n := range names {
			if strings.HasPrefix(n, p) && strings.Contains(n[len(p):], part) {
				return true
			}
		}
		return false
	}
	var found []Layout
	for _, p := range prefixes(names, anchor[kind]) {
		l := Layout{Kind: kind, Prefix: p}
		switch kind {
		case DiT:
			switch {
			case hasIn(p, ".attention.qkv.weight"):
				l.Naming = Original
			case hasIn(p, ".attn.to_q.weight") || has[p+"time_caption_embed.timestep_embedder.linear_1.weight"]:
				l.Naming = Diffusers
			}
		case Gemma:
			l.Naming = HF
		case VAE:
			switch {
			case hasIn(p, "decoder.mid.") || hasIn(p, "decoder.up."):
				l.Naming = BFL
			case hasIn(p, "decoder.mid_block.") || hasIn(p, "decoder.up_blocks."):
				l.Naming = Diffusers
			}
		}
		if l.Naming != "" {
			found = append(found, l)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return Layout{}, fmt.Errorf("weights: %s: no %s checkpoint layout recognised among %d tensors (e.g. %s)", describe(src), kind, len(names), sample(names, 6))
	}
	return Layout{}, fmt.Errorf("weights: %s: several %s layouts found: %v", describe(src), kind, found)
}

// anchor is a tensor every layout of a network has, under some prefix.
var anchor = map[Kind][]string{
	DiT:   {"x_embedder.weight"},
	Gemma: {"embed_tokens.weight", "layers.0.self_attn.q_proj.weight"},
	VAE:   {"decoder.conv_in.weight"},
}

// prefixes returns the distinct prefixes under which an anchor appears,
// each empty or ending at a name boundary ('.').
func prefixes(names []string, anchors []string) []string {
	var out []string
	for _, n := range names {
		for _, a := range anchors {
			p, ok := strings.CutSuffix(n, a)
			if ok && (p == "" || strings.HasSuffix(p, ".")) && !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	return out
}

// sample quotes up to k names, evenly spread.
func sample(names []string, k int) string {
	if len(names) == 0 {
		return "none"
	}
	var q []string
	step := max(1, len(names)/k)
	for i := 0; i < len(names) && len(q) < k; i += step {
		q = append(q, fmt.Sprintf("%q", names[i]))
	}
	return strings.Join(q, ", ")
}

// Detect finds src's layout for network kind and wraps it in the
// canonical names. Example:
//
//	f, err := weights.OpenSafetensors("lumina_2_model_bf16.safetensors")
//	...
//	dit, err := weights.Detect(f, weights.DiT) // dit.Names(): "layers.0.attention.qkv.weight", …
func Detect(src Source, kind Kind) (*Mapped, error) {
	l, err := DetectLayout(src, kind)
	if err != nil {
		return nil, err
	}
	return Map(src, l)
}

// DetectDiT is Detect(src, DiT).
func DetectDiT(src Source) (*Mapped, error) { return Detect(src, DiT) }

// DetectGemma is Detect(src, Gemma).
func DetectGemma(src Source) (*Mapped, error) { return Detect(src, Gemma) }

// DetectVAE is Detect(src, VAE).
func DetectVAE(src Source) (*Mapped, error) { return Detect(src, VAE) }
