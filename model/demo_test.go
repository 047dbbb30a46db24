package model

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/luminaweb/lumina/model/internal/tokenizer"
)

var updateDemoTokenizer = flag.Bool("update-demo-tokenizer", false, "rewrite demo/tokenizer.json from the full Gemma tokenizer in build/cache")

// demoCorpus is every prompt the demo's caption grammar makes
// (demo/config.json caption_grammar), bare and after the system prompts.
func demoCorpus(t *testing.T) []string {
	raw, err := os.ReadFile("demo/config.json")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Grammar struct {
			Colors    map[string]any `json:"colors"`
			Shapes    []string       `json:"shapes"`
			Positions []string       `json:"positions"`
		} `json:"caption_grammar"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	var colors []string
	for k := range c.Grammar.Colors {
		colors = append(colors, k)
	}
	slices.Sort(colors)
	var caps []string
	for _, fg := range colors {
		for _, s := range c.Grammar.Shapes {
			for _, bg := range colors {
				caps = append(caps, "a "+fg+" "+s+" on a "+bg+" background")
				for _, pos := range c.Grammar.Positions {
					if pos != "(none)" {
						caps = append(caps, "a "+fg+" "+s+" on the "+pos+", "+bg+" background")
					}
				}
				for _, c2 := range colors {
					for _, s2 := range c.Grammar.Shapes {
						caps = append(caps, "a "+fg+" "+s+" and a "+c2+" "+s2+" on a "+bg+" background")
					}
				}
			}
		}
	}
	corpus := []string{""}
	for _, cp := range caps {
		corpus = append(corpus, cp)
		for _, sys := range []tokenizer.SystemPrompt{tokenizer.SystemReal, tokenizer.SystemAlign, tokenizer.SystemBase, tokenizer.SystemAesthetics} {
			corpus = append(corpus, tokenizer.Prompt(sys, cp))
		}
	}
	return corpus
}

func fullTokenizer(t *testing.T) []byte {
	path := filepath.Join("..", "build", "cache", "gemma2-tokenizer.json")
	b, err := os.ReadFile(path)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (make deps fetches it)", err)
		}
		t.Skipf("%v (make deps fetches it)", err)
	}
	return b
}

// The embedded demo tokenizer must encode every prompt of the demo's
// grammar exactly as the full Gemma tokenizer does, and be the file that
// tokenizer.Subset makes from it.
func TestDemoTokenizer(t *testing.T) {
	full := fullTokenizer(t)
	corpus := demoCorpus(t)
	sub, err := tokenizer.Subset(bytes.NewReader(full), corpus)
	if err != nil {
		t.Fatal(err)
	}
	if *updateDemoTokenizer {
		if err := os.WriteFile("demo/tokenizer.json", sub, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	committed, err := demoFS.ReadFile("demo/tokenizer.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(committed, sub) {
		t.Fatal("demo/tokenizer.json is not what tokenizer.Subset makes; run go test ./model -run DemoTokenizer -update-demo-tokenizer")
	}
	ft, err := tokenizer.FromHFJSON(bytes.NewReader(full))
	if err != nil {
		t.Fatal(err)
	}
	dt, err := tokenizer.FromHFJSON(bytes.NewReader(committed))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range corpus {
		if a, b := ft.Encode(s), dt.Encode(s); !slices.Equal(a, b) {
			t.Fatalf("%q: full %v, demo %v", s, a, b)
		}
	}
	t.Logf("%d prompts encode identically; demo tokenizer %d bytes", len(corpus), len(committed))
}
