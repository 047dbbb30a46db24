package wgpu

import (
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// KernelSpec names a compute entry point in WGSL source, with values for
// its pipeline-overridable constants (WGSL `override` declarations).
//
// Binding convention (every lumina shader follows it, and NewKernel checks
// it): all bindings are in @group(0); storage buffers take bindings
// 0..n-1, inputs (read) first, then outputs (read_write); an optional
// `var<uniform>` parameter block is binding n, the last. Every entry point of
// a module shares the module's binding table.
type KernelSpec struct {
	Code      string
	Entry     string
	Constants map[string]float64 // override name -> value; nil for defaults
	Label     string             // for error messages; defaults to Entry
}

// BindingKind is the access a kernel declares for one binding.
type BindingKind uint8

const (
	ReadOnly  BindingKind = iota // var<storage, read>
	ReadWrite                    // var<storage, read_write>
	Uniform                      // var<uniform>
)

// Kernel is a compiled compute pipeline. Kernels are cached by the device:
// asking twice for the same spec returns the same Kernel.
type Kernel struct {
	h       kernelHandle
	spec    KernelSpec
	layout  []BindingKind // storage bindings, in binding order
	uniform bool          // a uniform block follows the storage bindings
}

// Layout returns the storage bindings' access kinds in binding order, and
// whether a uniform block follows them.
func (k *Kernel) Layout() ([]BindingKind, bool) { return slices.Clone(k.layout), k.uniform }

type kernelKey struct {
	code, entry, consts string
}

// NewKernel compiles (or returns the cached) kernel for spec. Compilation
// errors are returned with the compiler's message.
func (d *Device) NewKernel(spec KernelSpec) (*Kernel, error) {
	if err := d.check(); err != nil {
		return nil, err
	}
	if spec.Label == "" {
		spec.Label = spec.Entry
	}
	key := kernelKey{spec.Code, spec.Entry, canonicalConstants(spec.Constants)}
	d.mu.Lock()
	k, ok := d.kernels[key]
	d.mu.Unlock()
	if ok {
		return k, nil
	}
	layout, uniform, err := ParseLayout(spec.Code)
	if err != nil {
		return nil, fmt.Errorf("wgpu: kernel %q: %w", spec.Label, err)
	}
	if n := uint32(len(layout)); n > d.limits.MaxStorageBuffersPerShaderStage {
		return nil, &LimitError{Name: "maxStorageBuffersPerShaderStage", Need: uint64(n),
			Have: uint64(d.limits.MaxStorageBuffersPerShaderStage), What: fmt.Sprintf("kernel %q", spec.Label)}
	}
	h, err := d.drv.newKernel(spec, layout, uniform)
	if err != nil {
		return nil, fmt.Errorf("wgpu: compile kernel %q: %w", spec.Label, err)
	}
	k = &Kernel{h: h, spec: spec, layout: layout, uniform: uniform}
	d.mu.Lock()
	d.kernels[key] = k
	d.stats.Kernels++
	d.mu.Unlock()
	return k, nil
}

func canonicalConstants(c map[string]float64) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(c)) {
		fmt.Fprintf(&b, "%s=%v;", k, c[k])
	}
	return b.String()
}

var bindingRE = regexp.MustCompile(`@group\(\s*(\d+)\s*\)\s*@binding\(\s*(\d+)\s*\)\s*var\s*<\s*([a-z_]+)\s*(?:,\s*([a-z_]+)\s*)?>`)

// ParseLayout reads the binding table of a WGSL module and checks it follows
// the convention documented on KernelSpec.
func ParseLayout(code string) (storage []BindingKind, uniform bool, err error) {
	kinds := map[int]BindingKind{}
	for _, m := range bindingRE.FindAllStringSubmatch(stripComments(code), -1) {
		if m[1] != "0" {
			return nil, false, fmt.Errorf("binding in @group(%s): only @group(0) is used", m[1])
		}
		n, _ := strconv.Atoi(m[2])
		if _, dup := kinds[n]; dup {
			return nil, false, fmt.Errorf("@binding(%d) declared twice", n)
		}
		switch {
		case m[3] == "uniform":
			kinds[n] = Uniform
		case m[3] == "storage" && (m[4] == "read" || m[4] == ""):
			kinds[n] = ReadOnly
		case m[3] == "storage" && m[4] == "read_write":
			kinds[n] = ReadWrite
		default:
			return nil, false, fmt.Errorf("@binding(%d): unsupported address space var<%s,%s>", n, m[3], m[4])
		}
	}
	for i := 0; i < len(kinds); i++ {
		k, ok := kinds[i]
		if !ok {
			return nil, false, fmt.Errorf("bindings are not numbered 0..%d: %d is missing", len(kinds)-1, i)
		}
		if k == Uniform {
			if i != len(kinds)-1 {
				return nil, false, fmt.Errorf("the uniform block must be the last binding, it is %d of %d", i, len(kinds))
			}
			uniform = true
			continue
		}
		storage = append(storage, k)
	}
	return storage, uniform, nil
}

var lineComment = regexp.MustCompile(`//[^\n]*`)
var blockComment = regexp.MustCompile(`(?s)/\*.*?\*/`)

func stripComments(code string) string {
	return lineComment.ReplaceAllString(blockComment.ReplaceAllString(code, ""), "")
}

var overrideRE = regexp.MustCompile(`(?m)^(\s*)override(\s+([A-Za-z_][A-Za-z0-9_]*)\s*(?::\s*([a-z0-9]+))?\s*)(=\s*[^;]*)?;`)

// Specialize returns code with every `override` declaration turned into a
// `const` declaration, initialised with the value given in consts or else
// with its default. It is how the native driver applies
// KernelSpec.Constants: the WGSL compiler (naga) in the native binding does
// not parse `override` at all. Shaders therefore use overrides only where a
// const would do (tuning constants, workgroup sizes). A constant naming no
// override, or an override with neither default nor value, is an error, as
// in WebGPU.
func Specialize(code string, consts map[string]float64) (string, error) {
	seen := map[string]bool{}
	var bad error
	out := overrideRE.ReplaceAllStringFunc(code, func(decl string) string {
		m := overrideRE.FindStringSubmatch(decl)
		indent, name, typ, init := m[1], m[3], m[4], m[5]
		head := indent + "const" + strings.TrimRight(m[2], " \t")
		v, ok := consts[name]
		if !ok {
			if init == "" {
				bad = fmt.Errorf("override %s has no default and no value was given", name)
				return decl
			}
			return head + " " + init + ";"
		}
		seen[name] = true
		lit, err := wgslLiteral(v, typ)
		if err != nil {
			bad = fmt.Errorf("override %s: %w", name, err)
			return decl
		}
		return head + " = " + lit + ";"
	})
	if bad != nil {
		return "", bad
	}
	for name := range consts {
		if !seen[name] {
			return "", fmt.Errorf("constant %q names no override declaration", name)
		}
	}
	return out, nil
}

func wgslLiteral(v float64, typ string) (string, error) {
	switch typ {
	case "u32":
		if v < 0 || v != float64(uint32(v)) {
			return "", fmt.Errorf("%v is not a u32", v)
		}
		return strconv.FormatUint(uint64(v), 10) + "u", nil
	case "i32":
		if v != float64(int32(v)) {
			return "", fmt.Errorf("%v is not an i32", v)
		}
		return strconv.FormatInt(int64(v), 10) + "i", nil
	case "bool":
		return strconv.FormatBool(v != 0), nil
	case "f32", "":
		if math.IsInf(v, 0) || math.IsNaN(v) {
			return "", fmt.Errorf("%v is not a finite f32", v)
		}
		s := strconv.FormatFloat(v, 'g', -1, 32)
		if !strings.ContainsAny(s, ".eE") {
			s += ".0"
		}
		return s + "f", nil
	}
	return "", fmt.Errorf("unsupported override type %q", typ)
}
