package ops_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/luminaweb/lumina/model/ops"
	"github.com/luminaweb/lumina/model/tensor"
)

// Misuse inside ops is a programming error: it panics with a message that
// names the op and the shapes.
func TestMisusePanics(t *testing.T) {
	b := ops.NewCPU()
	mk := func(shape ...int) *ops.Tensor {
		x, err := b.New(tensor.F32, shape...)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	cases := []struct {
		name string
		f    func()
		want []string
	}{
		{"matmul inner", func() { b.MatMul(mk(2, 3), mk(2, 5), mk(3, 4), nil) }, []string{"MatMul", "f32[2,5]", "f32[3,4]"}},
		{"matmul dst", func() { b.MatMul(mk(2, 2), mk(2, 4), mk(3, 4), nil) }, []string{"MatMul", "f32[2,2]"}},
		{"matmul bias", func() { b.MatMul(mk(2, 3), mk(2, 4), mk(3, 4), mk(4)) }, []string{"MatMul", "bias", "f32[4]"}},
		{"add broadcast", func() { b.Add(mk(2, 3), mk(2, 3), mk(2)) }, []string{"Add", "f32[2,3]", "f32[2]"}},
		{"view too big", func() { b.View(mk(4), 2, 3) }, []string{"View", "f32[4]"}},
		{"other backend", func() { ops.NewCPU().Add(mk(1), mk(1), mk(1)) }, []string{"Add", "belongs to backend"}},
	}
	for _, c := range cases {
		msg := func() (msg string) {
			defer func() { msg = fmt.Sprint(recover()) }()
			c.f()
			return ""
		}()
		for _, w := range c.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: panic %q does not mention %q", c.name, msg, w)
			}
		}
	}
}
