// Package opstest is the conformance suite every ops.Backend runs, in the
// manner of ggml's test-backend-ops: each case draws inputs from a seeded
// generator, runs one op on the backend under test, and compares the result
// with package shaders/ref (float64 accumulation) computed on the same
// inputs. Every case also checks
//
//   - NaN anywhere in the output fails; an Inf must match the reference's;
//   - sentinel guards before and after every output and input are unchanged
//     (out-of-bounds writes), and inputs read back bit-identical (read-only
//     arguments left alone);
//   - outputs start as NaN, so an element the kernel never wrote fails;
//   - views start at element offsets that are not 256-byte aligned in half
//     the cases, exercising the offset path of the GPU bindings.
//
// Case names spell out every parameter (MatMul/M=33,K=1023,N=31,bias), so
// `go test -run 'Conformance/.*/MatMul/M=33,'` replays one case; random
// cases print the seed that made them.
package opstest

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/luminaweb/lumina/model/ops"
	"github.com/luminaweb/lumina/model/tensor"
)

// Config selects the cases.
type Config struct {
	// Seed drives the random cases and every case's input values. Zero
	// means 1.
	Seed uint64
	// Short leaves out the large real-model shapes (for slow hosts such as
	// wasip1 under wazero).
	Short bool
	// Tile is the output tile edge of the backend's matmul (32 for the GPU
	// defaults), so the edge cases probe tile−1, tile and tile+1.
	Tile int
	// Random is the number of random cases per op; zero means 6.
	Random int
	// Digest, when set, receives the SHA-256 of every output a case
	// checked (its raw float32 bits), so that two runs can be compared bit
	// for bit (the wasm host against the native build on one adapter).
	Digest func(caseName string, sum [32]byte)
	// Shared makes the f32 operands of a case views of one tensor (an
	// arena of SharedArena elements; operands that do not fit get their
	// own), so that a backend meets outputs and inputs that share storage
	// at disjoint ranges. WebGPU binds a writable buffer only once per
	// dispatch, and copies only between different buffers.
	Shared bool
}

// SharedArena is the size in elements of the tensor that Config.Shared
// carves operands from (16 MiB of f32).
const SharedArena = 1 << 22

// Case is one conformance check.
type Case struct {
	Op, Params string // e.g. "MatMul", "M=33,K=1023,N=31,bias"
	Random     bool
	run        func(h *harness) error
}

// Name is Op/Params, the subtest name.
func (c Case) Name() string { return c.Op + "/" + c.Params }

// Run runs every case of cfg as a subtest of t on backend b.
func Run(t *testing.T, b ops.Backend, cfg Config) {
	t.Logf("backend: %s; seed %d", b.Name(), seedOf(cfg))
	for _, c := range Cases(cfg) {
		t.Run(c.Name(), func(t *testing.T) {
			if err := Check(b, c, cfg); err != nil {
				if c.Random {
					t.Errorf("%v\n(random case: replay with -seed=%d -run 'Conformance/.*/%s')", err, seedOf(cfg), regexpQuote(c.Name()))
				} else {
					t.Error(err)
				}
			}
		})
	}
}

func regexpQuote(s string) string {
	r := strings.NewReplacer("(", `\(`, ")", `\)`, "[", `\[`, "]", `\]`, ".", `\.`, "+", `\+`)
	return r.Replace(s)
}

func seedOf(cfg Config) uint64 {
	if cfg.Seed == 0 {
		return 1
	}
	return cfg.Seed
}

// Check runs one case and returns what went wrong, or nil.
func Check(b ops.Backend, c Case, cfg Config) (err error) {
	hs := fnv.New64a()
	hs.Write([]byte(c.Name()))
	h := &harness{b: b, rng: rand.New(rand.NewPCG(seedOf(cfg), hs.Sum64())), ctx: context.Background()}
	if cfg.Digest != nil {
		h.digest = func(sum [32]byte) { cfg.Digest(c.Name(), sum) }
	}
	h.guard = 7 // 28 bytes: views are not 256-byte aligned
	if hs.Sum64()%2 == 0 {
		h.guard = 64 // 256 bytes: aligned views
	}
	defer h.release()
	if cfg.Shared {
		a, err := b.New(tensor.F32, SharedArena)
		if err != nil {
			return err
		}
		defer b.Release(a)
		h.arena = a
	}
	if err := c.run(h); err != nil {
		return err
	}
	return h.checkInputs()
}

// Cases lists the cases for cfg.
func Cases(cfg Config) []Case {
	if cfg.Tile == 0 {
		cfg.Tile = 32
	}
	if cfg.Random == 0 {
		cfg.Random = 6
	}
	rng := rand.New(rand.NewPCG(seedOf(cfg), 0x0957))
	var cs []Case
	cs = append(cs, addCases(cfg, rng)...)
	cs = append(cs, matmulCases(cfg, rng)...)
	cs = append(cs, matmulQCases(cfg)...) // its own generator: the others' cases stay as they were
	// One function per op family, each in its own file.
	for _, family := range []func(Config, *rand.Rand) []Case{
		normCases, pointwiseCases, attentionCases, convCases,
	} {
		cs = append(cs, family(cfg, rng)...)
	}
	return cs
}

// sentinel marks guard regions and unwritten outputs: a quiet NaN with a
// payload no arithmetic produces.
var sentinel = math.Float32frombits(0x7fc0dead)

type operand struct {
	base, view *ops.Tensor
	host       []float32 // what was written (inputs), rounded to the dtype
	raw        []byte    // packed inputs (q8, q4): the bytes written
	n          int
	guard      int     // elements of sentinel before and after
	sentinel   float32 // the sentinel as the dtype stores it
}

// harness allocates operands with guards and checks them afterwards.
type harness struct {
	b      ops.Backend
	rng    *rand.Rand
	ctx    context.Context
	guard  int
	inputs []*operand
	all    []*operand
	digest func([32]byte)
	arena  *ops.Tensor // Config.Shared: f32 operands are views of it
	used   int         // elements of arena handed out
}

func (h *harness) release() {
	for _, o := range h.all {
		h.b.Release(o.base)
	}
}

func (h *harness) alloc(dt tensor.DType, shape []int, fill func(i int) float32) (*operand, error) {
	n := tensor.Shape(shape).Numel()
	g := h.guard
	if dt != tensor.F32 {
		g += g % 2 // 16-bit views start at even elements
	}
	var base *ops.Tensor
	var err error
	if h.arena != nil && dt == tensor.F32 && h.used+n+2*g <= h.arena.Numel() {
		base = h.b.View(h.arena, h.used, n+2*g)
		h.used += n + 2*g
	} else if base, err = h.b.New(dt, n+2*g); err != nil {
		return nil, err
	}
	o := &operand{base: base, n: n, guard: g, sentinel: round(dt, sentinel), view: h.b.View(base, g, shape...)}
	h.all = append(h.all, o)
	all := make([]float32, n+2*g)
	for i := range all {
		all[i] = sentinel
	}
	if fill != nil {
		o.host = make([]float32, n)
		for i := range o.host {
			o.host[i] = round(dt, fill(i))
		}
		copy(all[g:], o.host)
	}
	return o, h.b.Write(base, all)
}

// round returns v as a tensor of type dt stores it.
func round(dt tensor.DType, v float32) float32 {
	switch dt {
	case tensor.F16:
		return tensor.F16ToF32(tensor.F32ToF16(v))
	case tensor.BF16:
		return tensor.BF16ToF32(tensor.F32ToBF16(v))
	}
	return v
}

// input makes an f32 tensor of uniform values in [lo, hi).
func (h *harness) input(lo, hi float64, shape ...int) (*operand, error) {
	return h.inputOf(tensor.F32, lo, hi, shape...)
}

// inputOf makes a tensor of type dt holding uniform values in [lo, hi)
// rounded to dt (so the reference sees exactly what the backend stores).
func (h *harness) inputOf(dt tensor.DType, lo, hi float64, shape ...int) (*operand, error) {
	o, err := h.alloc(dt, shape, func(int) float32 { return float32(lo + (hi-lo)*h.rng.Float64()) })
	if err == nil {
		h.inputs = append(h.inputs, o)
	}
	return o, err
}

// output makes an f32 tensor filled with the sentinel.
func (h *harness) output(shape ...int) (*operand, error) { return h.alloc(tensor.F32, shape, nil) }

// checkInputs verifies inputs and their guards came back bit-identical.
func (h *harness) checkInputs() error {
	for k, o := range h.inputs {
		got, err := h.b.Read(h.ctx, o.base)
		if err != nil {
			return err
		}
		if err := o.checkGuards(fmt.Sprintf("input %d", k), got); err != nil {
			return err
		}
		for i, v := range got[o.guard : o.guard+o.n] {
			if math.Float32bits(v) != math.Float32bits(o.host[i]) {
				return fmt.Errorf("input %d (read-only) changed at %d: %v -> %v", k, i, o.host[i], v)
			}
		}
	}
	return nil
}

func (o *operand) checkGuards(what string, all []float32) error {
	n := len(all) - 2*o.guard
	for i := range o.guard {
		for _, j := range []int{i, o.guard + n + i} {
			if math.Float32bits(all[j]) != math.Float32bits(o.sentinel) {
				where := "before"
				if j >= o.guard {
					where = "after"
				}
				return fmt.Errorf("%s: guard element %d %s the tensor was overwritten with %v (out-of-bounds write)", what, i, where, all[j])
			}
		}
	}
	return nil
}

// Tolerance states how close an output must be to the reference and why.
type Tolerance struct {
	// Per element: |got-ref| <= Abs + Rel*scale[i], where scale is |ref|
	// unless the case supplies a bound of its own (for dot products,
	// sum |x·w| as in the standard rounding-error bound).
	Abs, Rel float64
	// NMSE bounds sum (got-ref)^2 / sum ref^2 over the whole output (ggml's
	// metric; 0 disables).
	NMSE float64
	Why  string
}

// result reads the output and compares it with ref.
func (h *harness) result(o *operand, ref []float32, scale []float64, tol Tolerance) error {
	all, err := h.b.Read(h.ctx, o.base)
	if err != nil {
		return err
	}
	if err := o.checkGuards("output", all); err != nil {
		return err
	}
	got := all[o.guard : o.guard+o.n]
	if h.digest != nil {
		raw := make([]byte, 4*len(got))
		for i, v := range got {
			binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
		}
		h.digest(sha256.Sum256(raw))
	}
	var bad []string
	nbad := 0
	var maxDiff, se, sr float64
	for i, g := range got {
		r := float64(ref[i])
		gv := float64(g)
		switch {
		case math.IsNaN(gv):
			if math.Float32bits(g) == math.Float32bits(sentinel) {
				return fmt.Errorf("output element %d was never written", i)
			}
			return fmt.Errorf("output element %d is NaN (reference %v)", i, r)
		case math.IsInf(gv, 0) || math.IsInf(r, 0):
			if gv != r {
				nbad++
				bad = append(bad, fmt.Sprintf("[%d] got %v want %v", i, gv, r))
			}
			continue
		}
		d := math.Abs(gv - r)
		maxDiff = max(maxDiff, d)
		se += d * d
		sr += r * r
		s := math.Abs(r)
		if scale != nil {
			s = scale[i]
		}
		if d > tol.Abs+tol.Rel*s {
			nbad++
			if len(bad) < 5 {
				bad = append(bad, fmt.Sprintf("[%d] got %.9g want %.9g (diff %.3g > %.3g)", i, gv, r, d, tol.Abs+tol.Rel*s))
			}
			if nbad >= 10 {
				break
			}
		}
	}
	if nbad > 0 {
		return fmt.Errorf("%d+ elements outside tolerance (%s), maxdiff %.3g:\n  %s", nbad, tol.Why, maxDiff, strings.Join(bad, "\n  "))
	}
	if tol.NMSE > 0 && sr > 0 && se/sr > tol.NMSE {
		return fmt.Errorf("NMSE %.3g > %.3g (%s), maxdiff %.3g", se/sr, tol.NMSE, tol.Why, maxDiff)
	}
	return nil
}
