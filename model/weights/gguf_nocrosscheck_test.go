//go:build wasip1 || js

package weights

import "testing"

// crossCheck needs gguf-parser-go, which does not build for wasm.
func crossCheck(t *testing.T, g *GGUF, path string) {
	t.Log("gguf-parser-go cross-check skipped on wasm")
}
