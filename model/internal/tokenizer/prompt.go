package tokenizer

import "fmt"

// SystemPrompt picks the system prompt written before the user's prompt
// (spec §1.2; the original sample.py's --system_type). The zero value is
// SystemReal, the default of both references.
type SystemPrompt int

const (
	SystemReal       SystemPrompt = iota // sample.py default, what Lumina2Pipeline uses
	SystemAlign                          // training, "super_high_quality_caption" data
	SystemBase                           // training, other data
	SystemAesthetics                     //
	System4Grid                          // four images in a 2x2 grid
	SystemEmpty                          // no system prompt and no " <Prompt Start> "
)

// PromptStart joins the system prompt and the user's prompt. It is plain
// text, not a special token.
const PromptStart = " <Prompt Start> "

var systemPrompts = [...]struct{ name, text string }{
	SystemReal:       {"real", "You are an assistant designed to generate superior images with the superior degree of image-text alignment based on textual prompts or user prompts."},
	SystemAlign:      {"align", "You are an assistant designed to generate high-quality images with the highest degree of image-text alignment based on textual prompts."},
	SystemBase:       {"base", "You are an assistant designed to generate high-quality images based on user prompts."},
	SystemAesthetics: {"aesthetics", "You are an assistant designed to generate high-quality images with highest degree of aesthetics based on user prompts."},
	System4Grid:      {"4grid", "You are an assistant designed to generate four high-quality images with highest degree of aesthetics arranged in 2x2 grids based on user prompts."},
	SystemEmpty:      {"empty", ""},
}

func (s SystemPrompt) valid() bool { return s >= 0 && int(s) < len(systemPrompts) }

// String is the sample.py name: "real", "align", "base", "aesthetics",
// "4grid" or "empty".
func (s SystemPrompt) String() string {
	if !s.valid() {
		return fmt.Sprintf("SystemPrompt(%d)", int(s))
	}
	return systemPrompts[s].name
}

// Text is the system prompt itself, without PromptStart ("" for
// SystemEmpty).
func (s SystemPrompt) Text() string {
	if !s.valid() {
		panic(fmt.Sprintf("tokenizer: invalid %v", s))
	}
	return systemPrompts[s].text
}

// ParseSystemPrompt maps a sample.py --system_type name to a SystemPrompt.
func ParseSystemPrompt(name string) (SystemPrompt, error) {
	for i, p := range systemPrompts {
		if p.name == name {
			return SystemPrompt(i), nil
		}
	}
	return 0, fmt.Errorf("tokenizer: unknown system prompt %q (want real, align, base, aesthetics, 4grid or empty)", name)
}

// Prompt is the text Lumina feeds to the tokenizer for a positive prompt:
// system + " <Prompt Start> " + user, or user alone for SystemEmpty.
//
// The default negative prompt is "" with no system prompt (ids [<bos>]).
// For a non-empty negative prompt the original sample.py prepends the
// system prompt while diffusers never does; that choice belongs to the
// caller.
//
//	Prompt(SystemReal, "a red fox")
//	// "You are an assistant designed to generate superior images … user prompts. <Prompt Start> a red fox"
func Prompt(system SystemPrompt, user string) string {
	if system == SystemEmpty {
		return user
	}
	return system.Text() + PromptStart + user
}
