// Package golden reads the reference outputs in ../shared/testdata/golden
// (outputs of the original reference code on tiny random weights) for the
// networks' tests: the safetensors file as a weights.Source, and each
// tensor's tolerances from the sibling JSON. Test-only; it reads whole
// golden files into memory, which are small.
package golden

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/nlpodyssey/safetensors"

	"github.com/luminaweb/lumina/model/tensor"
	"github.com/luminaweb/lumina/model/weights"
)

// Dir finds ../shared/testdata/golden by walking up from the working
// directory (tests run in their package's directory).
func Dir() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		p := filepath.Join(d, "..", "shared", "testdata", "golden")
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			return p, nil
		}
		if filepath.Dir(d) == d {
			return "", errors.New("golden: no ../shared/testdata/golden above " + wd)
		}
	}
}

// Case is one golden file: its tensors and its JSON description.
type Case struct {
	Name   string
	st     safetensors.SafeTensors
	JSON   map[string]any
	Config json.RawMessage
	tol    map[string]Tol
}

// Tol is one tensor's tolerances (absolute, elementwise).
type Tol struct {
	Strict float64 `json:"atol_strict"` // for a careful f32 CPU implementation
	GPU    float64 `json:"atol_gpu"`    // for WGSL on a GPU
}

// Open loads name (e.g. "nextdit_tiny"), failing the test when the golden
// data is not there.
func Open(t testing.TB, name string) *Case {
	t.Helper()
	dir, err := Dir()
	if err != nil {
		t.Fatal(err)
	}
	c, err := Load(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Load reads base+".safetensors" and base+".json".
func Load(base string) (*Case, error) {
	raw, err := os.ReadFile(base + ".safetensors")
	if err != nil {
		return nil, err
	}
	st, err := safetensors.Deserialize(raw)
	if err != nil {
		return nil, fmt.Errorf("golden: %s: %w", base, err)
	}
	js, err := os.ReadFile(base + ".json")
	if err != nil {
		return nil, err
	}
	c := &Case{Name: filepath.Base(base), st: st}
	var meta struct {
		Config    json.RawMessage `json:"config"`
		Tolerance struct {
			PerTensor map[string]Tol `json:"per_tensor"`
		} `json:"tolerance"`
	}
	if err := json.Unmarshal(js, &meta); err != nil {
		return nil, fmt.Errorf("golden: %s.json: %w", base, err)
	}
	if err := json.Unmarshal(js, &c.JSON); err != nil {
		return nil, err
	}
	c.Config, c.tol = meta.Config, meta.Tolerance.PerTensor
	return c, nil
}

// Tolerance returns a tensor's tolerances; the test fails if there are none.
func (c *Case) Tolerance(t testing.TB, name string) Tol {
	t.Helper()
	tol, ok := c.tol[name]
	if !ok {
		t.Fatalf("golden %s: no tolerance for %q", c.Name, name)
	}
	return tol
}

// Info implements weights.Source.
func (c *Case) Info(name string) (weights.Info, bool) {
	tv, ok := c.st.Tensor(name)
	if !ok {
		return weights.Info{}, false
	}
	shape := make(tensor.Shape, len(tv.Shape()))
	for i, d := range tv.Shape() {
		shape[i] = int(d)
	}
	var dt tensor.DType
	switch tv.DType() {
	case safetensors.F16:
		dt = tensor.F16
	case safetensors.BF16:
		dt = tensor.BF16
	default:
		dt = tensor.F32
	}
	return weights.Info{Name: name, DType: dt, Shape: shape}, true
}

// Float32 implements weights.Source.
func (c *Case) Float32(name string) ([]float32, error) {
	tv, ok := c.st.Tensor(name)
	if !ok {
		return nil, fmt.Errorf("golden %s: no tensor %q", c.Name, name)
	}
	d := tv.Data()
	switch tv.DType() {
	case safetensors.F32:
		v := make([]float32, len(d)/4)
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(d[4*i:]))
		}
		return v, nil
	case safetensors.F16, safetensors.BF16:
		v := make([]float32, len(d)/2)
		for i := range v {
			h := binary.LittleEndian.Uint16(d[2*i:])
			if tv.DType() == safetensors.F16 {
				v[i] = tensor.F16ToF32(h)
			} else {
				v[i] = tensor.BF16ToF32(h)
			}
		}
		return v, nil
	}
	return nil, fmt.Errorf("golden %s: tensor %q has dtype %v", c.Name, name, tv.DType())
}

// Names implements weights.Source.
func (c *Case) Names() []string {
	n := c.st.Names()
	slices.Sort(n)
	return n
}

// Must returns a tensor's values or fails the test.
func (c *Case) Must(t testing.TB, name string) []float32 {
	t.Helper()
	v, err := c.Float32(name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

var digestPath = flag.String("golden.digests", "", "append the SHA-256 of every output compared with a golden tensor to this file (to compare two runs bit for bit)")

// Compare checks got against the golden tensor name elementwise with atol,
// over the elements where keep(i) is true (nil: all). It reports the worst
// element and fails the test when any exceeds atol.
func (c *Case) Compare(t testing.TB, name string, got []float32, atol float64, keep func(i int) bool) {
	t.Helper()
	if *digestPath != "" {
		raw := make([]byte, 4*len(got))
		for i, v := range got {
			binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
		}
		f, err := os.OpenFile(*digestPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(f, "%x %s %s %s\n", sha256.Sum256(raw), t.Name(), c.Name, name)
		f.Close()
	}
	want := c.Must(t, name)
	if len(got) != len(want) {
		t.Errorf("%s: %d values, golden has %d", name, len(got), len(want))
		return
	}
	worst, at, n := 0.0, -1, 0
	for i := range want {
		if keep != nil && !keep(i) {
			continue
		}
		n++
		d := math.Abs(float64(got[i]) - float64(want[i]))
		if math.IsNaN(d) {
			d = math.Inf(1)
		}
		if d > worst {
			worst, at = d, i
		}
	}
	if worst > atol {
		t.Errorf("%s: max |got-ref| = %.3g at %d (got %v, want %v) > atol %.3g over %d elements", name, worst, at, got[at], want[at], atol, n)
	} else {
		t.Logf("%s: max |got-ref| = %.3g (atol %.3g, %d elements)", name, worst, atol, n)
	}
}
