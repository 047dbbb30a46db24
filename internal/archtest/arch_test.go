package archtest

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path"
	"runtime"
	"slices"
	"strings"
	"testing"
)

const mod = "github.com/luminaweb/lumina"

// allowed lists, for every package of the module, the module packages it
// may import directly (DESIGN.md, "Packages and what each may import").
// A package missing from the table fails the test, so a new package makes
// its author decide its place.
var allowed = map[string][]string{
	"wgpu":                     {},
	"wgpu/wasmhost":            {"wgpu"},
	"shaders":                  {},
	"shaders/ref":              {},
	"model/tensor":             {},
	"model/weights":            {"model/tensor"},
	"model/ops":                {"wgpu", "shaders", "shaders/ref", "model/tensor"},
	"model/ops/opstest":        {"model/ops", "model/tensor", "shaders/ref"},
	"model/internal/nn":        {"model/ops", "model/tensor", "model/weights"},
	"model/internal/gemma2":    {"model/ops", "model/tensor", "model/weights", "model/internal/nn"},
	"model/internal/dit":       {"model/ops", "model/tensor", "model/weights", "model/internal/nn"},
	"model/internal/vae":       {"model/ops", "model/tensor", "model/weights", "model/internal/nn"},
	"model/internal/sched":     {"model/tensor"},
	"model/internal/tokenizer": {"model/tensor"},
	"model":                    {"model/...", "wgpu"},
	"web":                      {"model", "wgpu"},
	"edge":                     {"model/weights"},
	"cmd/lumina":               {"*", "!web"},
	"internal/golden":          {"model/tensor", "model/weights"},
	"internal/gputest":         {"wgpu"},
	"internal/archtest":        {},
}

// external imports only some packages may use.
var restricted = map[string][]string{
	"syscall/js": {"wgpu", "web"},
	"C":          {}, // cgo lives in the WebGPU binding only
}

type pkg struct {
	path    string
	imports []string
	test    bool // the package compiled with its _test.go files
}

// testHelpers may be imported by any package's tests (not its code).
var testHelpers = []string{"internal/golden", "internal/gputest", "model/ops/opstest", "wgpu", "model/ops", "model/weights", "model/tensor", "model/internal/nn"}

func list(t *testing.T, env []string, patterns ...string) []pkg {
	t.Helper()
	args := append([]string{"list", "-deps", "-test", "-f", "{{.ImportPath}}|{{join .Imports \" \"}}"}, patterns...)
	cmd := exec.Command("go", args...)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []pkg
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		p, imps, _ := strings.Cut(sc.Text(), "|")
		p, variant, _ := strings.Cut(p, " ") // "x [x.test]" variants
		pkgs = append(pkgs, pkg{p, strings.Fields(imps), variant != ""})
	}
	return pkgs
}

func rel(p string) (string, bool) {
	if p == mod {
		return "", true
	}
	r, ok := strings.CutPrefix(p, mod+"/")
	return r, ok
}

func permits(rules []string, imp string) bool {
	ok := false
	for _, r := range rules {
		switch {
		case r == "*":
			ok = true
		case strings.HasPrefix(r, "!"):
			if m, _ := path.Match(r[1:], imp); m || imp == r[1:] {
				return false
			}
		case strings.HasSuffix(r, "/..."): // the tree below
			if strings.HasPrefix(imp, strings.TrimSuffix(r, "...")) {
				ok = true
			}
		default:
			if m, _ := path.Match(r, imp); m || imp == r {
				ok = true
			}
		}
	}
	return ok
}

func TestImportRules(t *testing.T) {
	if runtime.GOOS == "wasip1" || runtime.GOOS == "js" {
		t.Skip("needs the go command")
	}
	envs := [][]string{nil, {"CGO_ENABLED=0"}, {"GOOS=js", "GOARCH=wasm"}, {"GOOS=wasip1", "GOARCH=wasm"}}
	for _, env := range envs {
		seen := map[string]bool{}
		for _, p := range list(t, env, "./...") {
			if strings.HasSuffix(p.path, ".test") || strings.HasSuffix(p.path, "_test") {
				continue
			}
			r, ours := rel(p.path)
			for _, imp := range p.imports {
				if users, ok := restricted[imp]; ok && ours && !slices.Contains(users, r) {
					t.Errorf("%v: %s imports %s, which only %v may", env, r, imp, users)
				}
				ir, internal := rel(imp)
				key := fmt.Sprint(r, " ", ir, " ", p.test)
				if !ours || !internal || seen[key] {
					continue
				}
				seen[key] = true
				rules, known := allowed[r]
				if !known {
					t.Errorf("package %s is not in the import table of internal/archtest (DESIGN.md): add it", r)
					allowed[r] = []string{"*"}
					continue
				}
				if p.test && slices.Contains(testHelpers, ir) {
					continue
				}
				if !permits(rules, ir) {
					t.Errorf("%v: forbidden import edge %s -> %s (allowed: %v)", env, r, ir, rules)
				}
			}
		}
	}
}

// Builds without cgo (the browser, wasip1, CGO_ENABLED=0) must not pull the
// cgo WebGPU binding in: every model package stays free of cgo.
func TestNoCgoOutsideNative(t *testing.T) {
	if runtime.GOOS == "wasip1" || runtime.GOOS == "js" {
		t.Skip("needs the go command")
	}
	for _, env := range [][]string{{"CGO_ENABLED=0"}, {"GOOS=js", "GOARCH=wasm"}, {"GOOS=wasip1", "GOARCH=wasm"}} {
		for _, p := range list(t, env, "./model/...", "./wgpu/...") {
			if strings.Contains(p.path, "cogentcore/webgpu") {
				t.Errorf("%v: the cgo binding %s is in the dependency graph", env, p.path)
			}
		}
	}
}
