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
	for _, fam := range shaders.Families() {
		twins, ok := paramTwins[fam]
		if !ok {
			t.Errorf("shader family %q has no Go Params twin (registerParams)", fam)
		}
		for _, tw := range twins {
			checkTwin(t, fam, tw.name, tw.v)
		}
	}
}

func checkTwin(t *testing.T, fam, structName string, twin any) {
	wgsl := wgslParams(t, shaders.MustSource(fam), structName)
	goFields := goParams(reflect.TypeOf(twin))
	if len(wgsl) != len(goFields) {
		t.Errorf("%s: WGSL %s has %d fields, Go %d", fam, structName, len(wgsl), len(goFields))
		return
	}
	for i := range wgsl {
		if wgsl[i] != goFields[i] {
			t.Errorf("%s.%s: field %d: WGSL %s, Go %s", fam, structName, i, wgsl[i], goFields[i])
		}
	}
	if size := reflect.TypeOf(twin).Size(); size%16 != 0 {
		t.Errorf("%s.%s is %d bytes, not a multiple of 16", fam, structName, size)
	}
}

var fieldRE = regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*)\s*:\s*([a-z0-9]+)`)

func wgslParams(t *testing.T, src, name string) []string {
	m := regexp.MustCompile(`(?s)struct ` + name + ` \{(.*?)\}`).FindStringSubmatch(src)
	if m == nil {
		t.Fatalf("no struct %s", name)
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
