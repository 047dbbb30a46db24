//go:build !wasip1 && !js

package weights

import (
	"fmt"
	"reflect"
	"testing"

	gguf "github.com/gpustack/gguf-parser-go"
)

// gguf-parser-go (the independent parser) builds only where it can mmap:
// not under wasip1 or js, where crossCheck is skipped.

// crossCheck compares our header parse with gguf-parser-go's.
func crossCheck(t *testing.T, g *GGUF, path string) {
	t.Helper()
	f, err := gguf.ParseGGUFFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if uint32(f.Header.Version) != g.Version || f.Header.TensorCount != uint64(len(g.Tensors())) || f.Header.MetadataKVCount != uint64(len(g.KV)) {
		t.Fatalf("header: theirs v%d %d tensors %d kv, ours v%d %d %d", f.Header.Version, f.Header.TensorCount, f.Header.MetadataKVCount, g.Version, len(g.Tensors()), len(g.KV))
	}
	if f.TensorDataStartOffset != g.DataStart {
		t.Errorf("data start: theirs %d, ours %d", f.TensorDataStartOffset, g.DataStart)
	}
	for i, kv := range f.Header.MetadataKV {
		ours := g.KV[i]
		if kv.Key != ours.Key || uint32(kv.ValueType) != uint32(ours.Type) {
			t.Errorf("kv %d: theirs %s/%v, ours %s/%v", i, kv.Key, kv.ValueType, ours.Key, ours.Type)
			continue
		}
		if kv.ValueType == gguf.GGUFMetadataValueTypeArray {
			a := kv.ValueArray()
			oa := ours.Value.(GGUFArrayValue)
			if uint32(a.Type) != uint32(oa.Type) || a.Len != uint64(reflect.ValueOf(oa.Values).Len()) {
				t.Errorf("kv %s: theirs %v×%d, ours %#v", kv.Key, a.Type, a.Len, oa)
			}
			if a.Type != gguf.GGUFMetadataValueTypeArray && fmt.Sprint(a.Array) != fmt.Sprint(oa.Values) {
				t.Errorf("kv %s: theirs %v, ours %v", kv.Key, a.Array, oa.Values)
			}
			continue
		}
		if fmt.Sprint(kv.Value) != fmt.Sprint(ours.Value) {
			t.Errorf("kv %s: theirs %v, ours %v", kv.Key, kv.Value, ours.Value)
		}
	}
	ours := g.Tensors()
	for i, ti := range f.TensorInfos {
		o := ours[i]
		if ti.Name != o.Name || uint32(ti.Type) != uint32(o.Type) || !reflect.DeepEqual(ti.Dimensions, o.Dims) || int64(ti.Offset)+f.TensorDataStartOffset != o.Offset || int64(ti.Bytes()) != o.Size {
			t.Errorf("tensor %d: theirs %s %v %v off %d (%d B), ours %s %v %v off %d (%d B)", i, ti.Name, ti.Type, ti.Dimensions, ti.Offset, ti.Bytes(), o.Name, o.Type, o.Dims, o.Offset-g.DataStart, o.Size)
		}
	}
}
