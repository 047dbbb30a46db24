package ops

import (
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/luminaweb/lumina/shaders"
)

// Every WGSL `struct Params` must match its Go twin field for field: same
// order, same 4-byte scalar types, names equal up to case and underscores,
// padding (`_…` in WGSL, `_` in Go) in the same places, and a size that is a
// multiple of 16 bytes.
func TestParamsLayout(t *testing.T) {
	twins := map[string]any{"add": AddParams{}, "matmul": MatMulParams{}}
	for _, fam := range shaders.Families() {
		twin, ok := twins[fam]
		if !ok {
			t.Errorf("shader family %q has no Go Params twin registered in this test", fam)
			continue
		}
		wgsl := wgslParams(t, shaders.MustSource(fam))
		goFields := goParams(reflect.TypeOf(twin))
		if len(wgsl) != len(goFields) {
			t.Errorf("%s: WGSL Params has %d fields, Go %d", fam, len(wgsl), len(goFields))
			continue
		}
		for i := range wgsl {
			if wgsl[i] != goFields[i] {
				t.Errorf("%s: field %d: WGSL %s, Go %s", fam, i, wgsl[i], goFields[i])
			}
		}
		if size := reflect.TypeOf(twin).Size(); size%16 != 0 {
			t.Errorf("%s: Params is %d bytes, not a multiple of 16", fam, size)
		}
	}
}

var paramsRE = regexp.MustCompile(`(?s)struct Params \{(.*?)\}`)
var fieldRE = regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*)\s*:\s*([a-z0-9]+)`)

func wgslParams(t *testing.T, src string) []string {
	m := paramsRE.FindStringSubmatch(src)
	if m == nil {
		t.Fatal("no struct Params")
	}
	var out []string
	for _, f := range fieldRE.FindAllStringSubmatch(m[1], -1) {
		out = append(out, canon(f[1])+":"+f[2])
	}
	return out
}

func goParams(typ reflect.Type) []string {
	var out []string
	for i := range typ.NumField() {
		f := typ.Field(i)
		if f.Type.Kind() == reflect.Array {
			for range f.Type.Len() {
				out = append(out, canon(f.Name)+":"+wgslType(f.Type.Elem().Kind()))
			}
			continue
		}
		out = append(out, canon(f.Name)+":"+wgslType(f.Type.Kind()))
	}
	return out
}

func canon(name string) string {
	if strings.HasPrefix(name, "_") {
		return "_"
	}
	return strings.ToLower(strings.ReplaceAll(name, "_", ""))
}

func wgslType(k reflect.Kind) string {
	switch k {
	case reflect.Uint32:
		return "u32"
	case reflect.Int32:
		return "i32"
	case reflect.Float32:
		return "f32"
	}
	return k.String()
}
