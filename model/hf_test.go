package model

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/luminaweb/lumina/internal/golden"
)

// hfFolder lays pipeline_tiny out as a Hugging Face snapshot folder:
// model_index.json, per-component config.json files in the HF names, the
// weights (one file holding all three prefixed components, copied into
// each folder), and the demo tokenizer.
func hfFolder(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	gdir, err := golden.Dir()
	if err != nil {
		t.Fatal(err)
	}
	c := golden.Open(t, "pipeline_tiny")
	var cfg struct {
		Text map[string]float64 `json:"text_encoder_gemma_pytorch"`
		DiT  json.RawMessage    `json:"transformer"`
		VAE  struct {
			Ch     int     `json:"ch"`
			ChMult []int   `json:"ch_mult"`
			Res    int     `json:"num_res_blocks"`
			Z      int     `json:"z_channels"`
			Scale  float64 `json:"scale_factor"`
			Shift  float64 `json:"shift_factor"`
		} `json:"vae_flux"`
	}
	if err := json.Unmarshal(c.Config, &cfg); err != nil {
		t.Fatal(err)
	}
	tx := cfg.Text
	write := func(rel string, v any) {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var b []byte
		switch v := v.(type) {
		case []byte:
			b = v
		default:
			b, _ = json.MarshalIndent(v, "", "  ")
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("model_index.json", map[string]any{"_class_name": "Lumina2Pipeline"})
	write("text_encoder/config.json", map[string]any{"vocab_size": tx["vocab_size"], "num_hidden_layers": tx["layers"],
		"num_attention_heads": tx["heads"], "num_key_value_heads": tx["kv_heads"], "hidden_size": tx["hidden"],
		"intermediate_size": tx["inter"], "head_dim": tx["head_dim"], "sliding_window": tx["window"],
		"query_pre_attn_scalar": tx["qpas"], "attn_logit_softcapping": 50, "final_logit_softcapping": 30,
		"rms_norm_eps": 1e-6, "hidden_activation": "gelu_pytorch_tanh"})
	var d map[string]any
	json.Unmarshal(cfg.DiT, &d)
	d["qk_norm_eps"] = 1e-6
	write("transformer/config.json", d)
	blocks := []int{}
	for _, m := range cfg.VAE.ChMult {
		blocks = append(blocks, cfg.VAE.Ch*m)
	}
	write("vae/config.json", map[string]any{"latent_channels": cfg.VAE.Z, "block_out_channels": blocks, "layers_per_block": cfg.VAE.Res,
		"norm_num_groups": 32, "scaling_factor": cfg.VAE.Scale, "shift_factor": cfg.VAE.Shift, "use_post_quant_conv": false, "out_channels": 3})
	// A tokenizer within the tiny text encoder's 256 ids: the control
	// tokens, "▁" and the letters (anything else becomes <unk>).
	vocab := map[string]int{"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "▁": 4}
	for i, r := range "abcdefghijklmnopqrstuvwxyz" {
		vocab[string(r)] = 5 + i
	}
	write("tokenizer/tokenizer.json", map[string]any{
		"added_tokens": []map[string]any{{"id": 0, "content": "<pad>"}, {"id": 1, "content": "<eos>"}, {"id": 2, "content": "<bos>"}, {"id": 3, "content": "<unk>"}},
		"normalizer":   map[string]any{"type": "Replace", "pattern": map[string]any{"String": " "}, "content": "▁"},
		"model":        map[string]any{"type": "BPE", "unk_token": "<unk>", "byte_fallback": true, "vocab": vocab, "merges": []string{}},
	})
	weightsFile, err := os.ReadFile(filepath.Join(gdir, "pipeline_tiny.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{"text_encoder/model.safetensors", "transformer/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors"} {
		write(rel, weightsFile) // copies: wasm hosts may not allow symlinks
	}
	return dir
}

// A Hugging Face folder loads from its configs (nothing hard-coded) and
// generates; broken folders give errors that name what is wrong.
func TestOpenHFFolder(t *testing.T) {
	dir := hfFolder(t)
	ctx := context.Background()
	p, err := Open(ctx, dir, Config{CPU: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// pipeline_tiny's VAE upscales 2× and its patch is 2: 16×24 pixels is
	// an 8×12 latent, as in the golden case.
	img, err := p.Generate(ctx, Request{Prompt: "a red fox", Width: 24, Height: 16, Steps: 3, Solver: "euler"})
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 24 || b.Dy() != 16 {
		t.Fatalf("image %v", b)
	}
	if s := p.Stats(); s.Evals != 3 {
		t.Errorf("%d evaluations for 3 Euler steps", s.Evals)
	}

	for name, breakIt := range map[string]func(d string) error{
		"no model_index.json": func(d string) error { return os.Remove(filepath.Join(d, "model_index.json")) },
		"no tokenizer":        func(d string) error { return os.Remove(filepath.Join(d, "tokenizer", "tokenizer.json")) },
		"bad transformer config": func(d string) error {
			return os.WriteFile(filepath.Join(d, "transformer", "config.json"), []byte(`{"dim": -1}`), 0o644)
		},
		"mismatched caption width": func(d string) error {
			var m map[string]any
			b, _ := os.ReadFile(filepath.Join(d, "transformer", "config.json"))
			json.Unmarshal(b, &m)
			m["cap_feat_dim"] = 64
			b, _ = json.Marshal(m)
			return os.WriteFile(filepath.Join(d, "transformer", "config.json"), b, 0o644)
		},
		"no VAE weights": func(d string) error { return os.Remove(filepath.Join(d, "vae", "diffusion_pytorch_model.safetensors")) },
	} {
		d := hfFolder(t)
		if err := breakIt(d); err != nil {
			t.Fatal(err)
		}
		_, err := Open(ctx, d, Config{CPU: true})
		if err == nil {
			t.Errorf("%s: opened", name)
			continue
		}
		if !strings.Contains(err.Error(), "model") {
			t.Errorf("%s: %v", name, err)
		}
		t.Logf("%s: %v", name, err)
	}
}

// A model given as separate files (ComfyUI's layout: one transformer file,
// the Gemma file, the VAE file) loads with configs from a folder and a
// tokenizer file, and generates as the folder layout does.
func TestOpenSeparateFiles(t *testing.T) {
	dir := hfFolder(t)
	ctx := context.Background()
	cfg := Config{CPU: true, TextEncoder: filepath.Join(dir, "text_encoder", "model.safetensors"),
		VAE: filepath.Join(dir, "vae", "diffusion_pytorch_model.safetensors"), Tokenizer: filepath.Join(dir, "tokenizer", "tokenizer.json"), Configs: dir}
	ditFile := filepath.Join(dir, "transformer", "diffusion_pytorch_model.safetensors")
	req := Request{Prompt: "a red fox", Width: 24, Height: 16, Steps: 2, Solver: "euler", Seed: 9}
	want := latentOf(t, dir, req)
	p, err := Open(ctx, ditFile, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Generate(ctx, req); err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if want[i] != p.lastLatent[i] {
			t.Fatalf("latent %d: folder %v, files %v", i, want[i], p.lastLatent[i])
		}
	}
	p.Close()
	// Without the other files, or with the real configuration against these
	// tiny weights, the errors say what is wrong.
	if _, err := Open(ctx, ditFile, Config{CPU: true}); err == nil || !strings.Contains(err.Error(), "text encoder") {
		t.Errorf("no text encoder: %v", err)
	}
	cfg.Configs = ""
	if _, err := Open(ctx, ditFile, cfg); err == nil {
		t.Error("tiny weights loaded under the 2.6B configuration")
	} else {
		t.Logf("real config, tiny weights: %v", err)
	}
}
