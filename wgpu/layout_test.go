package wgpu

import (
	"slices"
	"strings"
	"testing"
)

func TestParseLayout(t *testing.T) {
	st, uni, err := ParseLayout(`
// @group(0) @binding(7) var<uniform> commented: P;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<uniform> params: P;`)
	if err != nil || !uni || !slices.Equal(st, []BindingKind{ReadOnly, ReadWrite}) {
		t.Fatalf("got %v %v %v", st, uni, err)
	}
	bad := map[string]string{
		"gap":             `@group(0) @binding(0) var<storage, read> a: array<f32>; @group(0) @binding(2) var<storage, read> b: array<f32>;`,
		"uniform first":   `@group(0) @binding(0) var<uniform> p: P; @group(0) @binding(1) var<storage, read> b: array<f32>;`,
		"group 1":         `@group(1) @binding(0) var<storage, read> a: array<f32>;`,
		"duplicate":       `@group(0) @binding(0) var<storage, read> a: array<f32>; @group(0) @binding(0) var<storage, read> b: array<f32>;`,
		"storage texture": `@group(0) @binding(0) var<workgroup, read> a: array<f32>;`,
	}
	for name, code := range bad {
		if _, _, err := ParseLayout(code); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestSpecialize(t *testing.T) {
	code := "override TILE: u32 = 4u;\noverride SCALE: f32 = 1.0;\n  override FLAG: bool;\noverride K = 2;\noverride KEEP: u32 = 3u;\n"
	got, err := Specialize(code, map[string]float64{"TILE": 8, "SCALE": 2, "FLAG": 1, "K": 0.25})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"const TILE: u32 = 8u;", "const SCALE: f32 = 2.0f;", "  const FLAG: bool = true;", "const K = 0.25f;", "const KEEP: u32 = 3u;"} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
	if strings.Contains(got, "override") {
		t.Errorf("an override survived:\n%s", got)
	}
	for name, c := range map[string]map[string]float64{"no default": {"TILE": 1}, "unknown": {"NOPE": 1, "FLAG": 1}, "negative u32": {"TILE": -1}, "fractional u32": {"TILE": 1.5}} {
		if _, err := Specialize(code, c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestGrid(t *testing.T) {
	for _, n := range []uint32{1, 65535, 65536, 70001, 1 << 24, 4_000_000_007 / 2} {
		x, y := Grid(n, 65535)
		if x > 65535 || y > 65535 || uint64(x)*uint64(y) < uint64(n) || uint64(x)*uint64(y)-uint64(n) >= uint64(x) {
			t.Errorf("Grid(%d) = %d×%d", n, x, y)
		}
	}
}
