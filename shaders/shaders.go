// Package shaders holds lumina's WGSL compute shaders, one file per op
// family, embedded into the binary so that the native build, the browser
// build and the wasm host all run the same text. There is no math here; the
// float64 twin of every family is in package ref.
//
// Conventions every file follows (checked by tests):
//   - bindings in @group(0): storage inputs (read), then outputs
//     (read_write), then one `var<uniform> params: Params` last;
//   - shapes and offsets come in Params (never in the shader text); tuning
//     constants are `override` declarations with defaults;
//   - workgroups are dispatched on a 1-D count that the host may split into
//     a 2-D grid, so kernels linearise wg.x + wg.y*num_workgroups.x and guard
//     their bounds;
//   - f32 accumulation; 16-bit and quantized data arrive packed in u32.
package shaders

import (
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strings"
)

//go:embed *.wgsl
var files embed.FS

// Source returns the WGSL text of a family ("add", "matmul", ...).
func Source(family string) (string, error) {
	b, err := files.ReadFile(family + ".wgsl")
	if err != nil {
		return "", fmt.Errorf("shaders: no family %q (have %s)", family, strings.Join(Families(), ", "))
	}
	return string(b), nil
}

// MustSource is Source for families known at compile time; a missing one is
// a build defect.
func MustSource(family string) string {
	s, err := Source(family)
	if err != nil {
		panic(err)
	}
	return s
}

// Families lists every embedded family, sorted.
func Families() []string {
	names, _ := fs.Glob(files, "*.wgsl")
	for i, n := range names {
		names[i] = strings.TrimSuffix(n, ".wgsl")
	}
	sort.Strings(names)
	return names
}
