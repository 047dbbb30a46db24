package main

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// readText returns the tEXt chunks of a PNG file, checking every CRC.
func readText(t *testing.T, data []byte) map[string]string {
	t.Helper()
	if !bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatal("not a PNG")
	}
	text := map[string]string{}
	for i := 8; i+12 <= len(data); {
		n := int(uint32(data[i])<<24 | uint32(data[i+1])<<16 | uint32(data[i+2])<<8 | uint32(data[i+3]))
		typ := string(data[i+4 : i+8])
		if typ == "tEXt" {
			k, v, _ := bytes.Cut(data[i+8:i+8+n], []byte{0})
			text[string(k)] = string(v)
		}
		i += 12 + n
	}
	return text
}

func TestWritePNGText(t *testing.T) {
	img := image.NewNRGBA(image.Rect(0, 0, 3, 2))
	img.Set(1, 1, color.NRGBA{200, 10, 20, 255})
	path := filepath.Join(t.TempDir(), "x.png")
	if err := writePNG(path, img, map[string]string{"parameters": "a fox\nSteps: 3, Seed: 7 — ünïcode", "Software": "lumina"}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	back, err := png.Decode(bytes.NewReader(data)) // the standard decoder checks every chunk's CRC
	if err != nil {
		t.Fatal(err)
	}
	if back.Bounds() != img.Bounds() || back.At(1, 1) != img.At(1, 1) {
		t.Fatal("image changed")
	}
	text := readText(t, data)
	if !strings.HasPrefix(text["parameters"], "a fox\nSteps: 3, Seed: 7 ") || text["Software"] != "lumina" {
		t.Fatalf("text chunks %q", text)
	}
}

// The CLI draws with the embedded demo model end to end on the CPU
// reference backend, and records the request in the PNG.
func TestGenerateDemoCPU(t *testing.T) {
	if testing.Short() {
		t.Skip("a full generation")
	}
	out := filepath.Join(t.TempDir(), "demo.png")
	if err := generate([]string{"--cpu", "--quiet", "--prompt", "a green square on a white background", "--seed", "5", "--steps", "4", "--out", out}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if img.Bounds().Dx() != 64 || img.Bounds().Dy() != 64 {
		t.Fatalf("size %v", img.Bounds())
	}
	p := readText(t, data)["parameters"]
	for _, want := range []string{"a green square on a white background", "Seed: 5", "Steps: 4", "demo"} {
		if !strings.Contains(p, want) {
			t.Errorf("parameters %q lack %q", p, want)
		}
	}
}

func TestGenerateBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--cpu", "--width", "40", "--out", filepath.Join(t.TempDir(), "x.png")},
		{"--cpu", "--solver", "heun"},
		{"--cpu", "--system", "nope"},
		{"stray"},
	} {
		if err := generate(args); err == nil {
			t.Errorf("%v: accepted", args)
		} else {
			t.Logf("%v: %v", args, err)
		}
	}
}
