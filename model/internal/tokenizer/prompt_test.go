package tokenizer

import (
	"strings"
	"testing"
)

// The exact strings of spec §1.2.
func TestPrompt(t *testing.T) {
	const real = "You are an assistant designed to generate superior images with the superior degree of image-text alignment based on textual prompts or user prompts. <Prompt Start> a cat"
	if got := Prompt(SystemReal, "a cat"); got != real {
		t.Errorf("real: %q", got)
	}
	var zero SystemPrompt
	if zero != SystemReal {
		t.Error("zero value is not SystemReal")
	}
	want := map[SystemPrompt]string{
		SystemAlign:      "You are an assistant designed to generate high-quality images with the highest degree of image-text alignment based on textual prompts. <Prompt Start> x",
		SystemBase:       "You are an assistant designed to generate high-quality images based on user prompts. <Prompt Start> x",
		SystemAesthetics: "You are an assistant designed to generate high-quality images with highest degree of aesthetics based on user prompts. <Prompt Start> x",
		System4Grid:      "You are an assistant designed to generate four high-quality images with highest degree of aesthetics arranged in 2x2 grids based on user prompts. <Prompt Start> x",
		SystemEmpty:      "x",
	}
	for s, w := range want {
		if got := Prompt(s, "x"); got != w {
			t.Errorf("%v: %q", s, got)
		}
	}
	if Prompt(SystemEmpty, "") != "" || !strings.HasSuffix(Prompt(SystemBase, ""), "prompts. <Prompt Start> ") {
		t.Error("empty user prompt")
	}
	for _, name := range []string{"real", "align", "base", "aesthetics", "4grid", "empty"} {
		s, err := ParseSystemPrompt(name)
		if err != nil || s.String() != name {
			t.Errorf("ParseSystemPrompt(%q) = %v, %v", name, s, err)
		}
	}
	if _, err := ParseSystemPrompt("Real"); err == nil {
		t.Error("ParseSystemPrompt(Real): no error")
	}
	if s := SystemPrompt(17).String(); s != "SystemPrompt(17)" {
		t.Errorf("String = %q", s)
	}
	defer func() {
		if recover() == nil {
			t.Error("Prompt(invalid) did not panic")
		}
	}()
	Prompt(SystemPrompt(-1), "x")
}
