package ops

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/luminaweb/lumina/model/tensor"
	"github.com/luminaweb/lumina/shaders"
	"github.com/luminaweb/lumina/wgpu"
)

// GPUOptions tunes the GPU backend. The zero value uses the shaders'
// defaults.
type GPUOptions struct {
	// MatMulWG overrides the matmul workgroup shape (WG_M, WG_N
	// invocations, each owning a 4×4 block of the output); zero keeps the
	// shader's default.
	MatMulWG [2]uint32
	// FlushEvery submits recorded work after this many dispatches (0: 64,
	// ggml's batch size), bounding the size of one command buffer.
	FlushEvery int
	// Source, when set, supplies a family's WGSL instead of package
	// shaders. It exists for fault-injection tests and kernel experiments.
	Source func(family string) string
}

// GPU runs ops as WGSL compute shaders on a wgpu.Device. Work is recorded
// into a batch and submitted every FlushEvery dispatches; nothing is read
// back between ops. Released buffers are pooled by size and reused, so a
// loop that allocates and releases the same tensors each step creates no
// buffer, kernel or bind group after its first pass.
type GPU struct {
	dev     *wgpu.Device
	opt     GPUOptions
	batch   *wgpu.Batch
	pending int
	err     error // sticky: first failure since the last Sync
	kernels map[kernelKey]*wgpu.Kernel
	pool    map[uint64][]*wgpu.Buffer // free buffers by size, oldest first
	temps   map[uint64][]*wgpu.Buffer // ops' own scratch, same order
	seq     map[*wgpu.Buffer]int      // creation order of every buffer
	all     []*wgpu.Buffer
	allocs  int
	matmulC map[string]float64
	ctx     context.Context // set by WithContext: cancels between dispatches
}

// WithContext makes ctx cancel the backend's work between dispatches: once
// ctx ends, recorded work is no longer submitted, further ops record
// nothing, and the next Sync or Read returns ctx's error. The returned
// function restores the previous context.
func (g *GPU) WithContext(ctx context.Context) (restore func()) {
	prev := g.ctx
	g.ctx = ctx
	return func() { g.ctx = prev }
}

// context is the context internal flushes run under.
func (g *GPU) context() context.Context {
	if g.ctx == nil {
		return context.Background()
	}
	return g.ctx
}

type kernelKey struct{ family, entry string }

type gpuStore struct{ buf *wgpu.Buffer }

// NewGPU returns a backend on dev. The backend does not own dev: close the
// backend, then the device.
func NewGPU(dev *wgpu.Device, opt GPUOptions) (*GPU, error) {
	if dev == nil {
		return nil, fmt.Errorf("ops: NewGPU: nil device: %w", wgpu.ErrUnavailable)
	}
	if opt.FlushEvery <= 0 {
		opt.FlushEvery = 64
	}
	g := &GPU{dev: dev, opt: opt, batch: dev.NewBatch(),
		kernels: map[kernelKey]*wgpu.Kernel{}, pool: map[uint64][]*wgpu.Buffer{}}
	if wm, wn := opt.MatMulWG[0], opt.MatMulWG[1]; wm != 0 || wn != 0 {
		if wm == 0 || wn == 0 || wm*wn > dev.Limits().MaxComputeInvocationsPerWorkgroup {
			return nil, &wgpu.LimitError{Name: "maxComputeInvocationsPerWorkgroup", Need: uint64(wm) * uint64(wn),
				Have: uint64(dev.Limits().MaxComputeInvocationsPerWorkgroup), What: fmt.Sprintf("matmul workgroup %d×%d", wm, wn)}
		}
		g.matmulC = map[string]float64{"WG_M": float64(wm), "WG_N": float64(wn)}
	}
	return g, nil
}

func (g *GPU) Name() string { return "gpu: " + g.dev.Info().String() }

// Device returns the device the backend runs on.
func (g *GPU) Device() *wgpu.Device { return g.dev }

// BufferAllocs is the number of GPU buffers the backend has created (pool
// hits excluded).
func (g *GPU) BufferAllocs() int { return g.allocs }

func (g *GPU) setErr(err error) {
	if g.err == nil && err != nil {
		g.err = err
	}
}

func (g *GPU) New(dt tensor.DType, shape ...int) (*Tensor, error) {
	return g.alloc(g.pool, dt, shape)
}

// Trim destroys the buffers of released tensors, giving their memory back
// to the device (released buffers are otherwise kept for reuse).
func (g *GPU) Trim() {
	for size, free := range g.pool {
		for _, b := range free {
			b.Destroy()
			delete(g.seq, b)
			g.all = slices.DeleteFunc(g.all, func(x *wgpu.Buffer) bool { return x == b })
		}
		delete(g.pool, size)
	}
}

// temp allocates an op's own scratch tensor, released with releaseTemp
// before the op returns. Scratch has its own pool, so that ops' temporaries
// never take the buffers the model's tensors would get.
func (g *GPU) temp(dt tensor.DType, shape ...int) (*Tensor, error) {
	if g.temps == nil {
		g.temps = map[uint64][]*wgpu.Buffer{}
	}
	return g.alloc(g.temps, dt, shape)
}

func (g *GPU) releaseTemp(t *Tensor) { g.free(g.temps, t) }

// free returns a tensor's buffer to a pool, keeping the pool sorted by the
// buffers' creation order.
func (g *GPU) free(pool map[uint64][]*wgpu.Buffer, t *Tensor) {
	st := t.store.(*gpuStore)
	if st.buf == nil {
		return
	}
	list := pool[st.buf.Size()]
	i, _ := slices.BinarySearchFunc(list, g.seq[st.buf], func(b *wgpu.Buffer, s int) int { return g.seq[b] - s })
	pool[st.buf.Size()] = slices.Insert(list, i, st.buf)
	st.buf = nil
}

// alloc takes the oldest free buffer of the size, or makes one. Taking the
// oldest (not the first or last released) makes the assignment depend only
// on the set of free buffers: once a step starts with the same free set as
// the step before, which it does after the first, every tensor gets the
// same buffer as before, and every bind group is a cache hit.
func (g *GPU) alloc(pool map[uint64][]*wgpu.Buffer, dt tensor.DType, shape []int) (*Tensor, error) {
	s, err := newShape("New", shape)
	if err != nil {
		return nil, err
	}
	if dt != tensor.F32 && dt != tensor.F16 && dt != tensor.BF16 && !dt.Quantized() {
		return nil, fmt.Errorf("ops: New: %s tensors are not supported on the GPU", dt)
	}
	size := uint64(dt.Bytes(s))
	var buf *wgpu.Buffer
	if free := pool[size]; len(free) > 0 {
		buf = free[0]
		pool[size] = free[1:]
	} else {
		buf, err = g.dev.NewBuffer(size, fmt.Sprintf("%s%s", dt, s))
		if err != nil {
			return nil, fmt.Errorf("ops: allocate %s%s: %w", dt, s, err)
		}
		g.all = append(g.all, buf)
		g.allocs++
		if g.seq == nil {
			g.seq = map[*wgpu.Buffer]int{}
		}
		g.seq[buf] = len(g.seq)
	}
	t := &Tensor{shape: s, dtype: dt, store: &gpuStore{buf}, owner: g}
	if dt.Quantized() {
		t.prows = s.Numel() / s[len(s)-1]
	}
	return t, nil
}

// storageBytes is the buffer size of n elements of dt (a flat tensor).
func storageBytes(dt tensor.DType, n int) uint64 { return uint64(dt.Bytes(tensor.Shape{n})) }

func (g *GPU) View(t *Tensor, off int, shape ...int) *Tensor {
	checkOwner(g, "View", t)
	s := viewShape("View", t, off, shape)
	if t.dtype != tensor.F32 && (t.off+off)%2 != 0 {
		panic(fmt.Sprintf("ops: View: a view of %s must start at an even element, not %d", t, t.off+off))
	}
	return &Tensor{shape: s, dtype: t.dtype, off: t.off + off, store: t.store, view: true, owner: g, prows: t.prows}
}

func (g *GPU) buffer(t *Tensor) *wgpu.Buffer {
	st := t.store.(*gpuStore)
	if st.buf == nil {
		panic(fmt.Sprintf("ops: tensor %s used after Release", t))
	}
	return st.buf
}

func (g *GPU) Write(t *Tensor, v []float32) error {
	checkOwner(g, "Write", t)
	if t.dtype.Quantized() {
		return fmt.Errorf("ops: Write: %s is packed: upload its bytes with WriteRaw", t)
	}
	if len(v) != t.Numel() {
		return fmt.Errorf("ops: write %d values into %s", len(v), t)
	}
	// queue writes run before any later submit, so recorded work that
	// reads the old contents must be submitted first.
	g.flush(g.context())
	if g.err != nil {
		return g.err
	}
	if t.dtype == tensor.F32 {
		b := make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
		}
		return g.dev.Write(g.buffer(t), uint64(t.off)*4, b)
	}
	buf := g.buffer(t)
	start := uint64(t.off) * 2
	b := make([]byte, storageBytes(t.dtype, len(v)))
	if len(v)%2 == 1 && start+uint64(len(b)) < buf.Size() && t.view {
		panic(fmt.Sprintf("ops: Write: odd-length view %s at %d shares its last word with the next element", t, t.off))
	}
	for i, x := range v {
		h := tensor.F32ToF16(x)
		if t.dtype == tensor.BF16 {
			h = tensor.F32ToBF16(x)
		}
		binary.LittleEndian.PutUint16(b[2*i:], h)
	}
	return g.dev.Write(buf, start, b)
}

func (g *GPU) Read(ctx context.Context, t *Tensor) ([]float32, error) {
	checkOwner(g, "Read", t)
	if err := g.flush(ctx); err != nil {
		g.err = nil
		return nil, err
	}
	if t.dtype.Quantized() {
		raw, err := g.dev.Read(ctx, g.buffer(t), 0, uint64(t.dtype.Bytes(t.shape)))
		if err != nil {
			return nil, err
		}
		return dequantF32(t, raw), nil
	}
	elem := uint64(4)
	if t.dtype != tensor.F32 {
		elem = 2
	}
	raw, err := g.dev.Read(ctx, g.buffer(t), uint64(t.off)*elem, storageBytes(t.dtype, t.Numel()))
	if err != nil {
		return nil, err
	}
	v := make([]float32, t.Numel())
	for i := range v {
		switch t.dtype {
		case tensor.F16:
			v[i] = tensor.F16ToF32(binary.LittleEndian.Uint16(raw[2*i:]))
		case tensor.BF16:
			v[i] = tensor.BF16ToF32(binary.LittleEndian.Uint16(raw[2*i:]))
		default:
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
	}
	return v, nil
}

func (g *GPU) Release(t *Tensor) {
	if t == nil || t.view {
		return
	}
	st := t.store.(*gpuStore)
	if st.buf == nil {
		return
	}
	g.free(g.pool, t)
}

// flush submits the recorded work and returns the sticky error.
func (g *GPU) flush(ctx context.Context) error {
	if g.pending > 0 {
		if g.err != nil {
			g.batch.Reset() // after a failure, recorded work is dropped, not run
		} else {
			g.setErr(g.batch.Submit(ctx))
		}
		g.pending = 0
	}
	return g.err
}

func (g *GPU) Sync(ctx context.Context) error {
	err := g.flush(ctx)
	if err == nil {
		err = g.dev.Sync(ctx)
	}
	g.err = nil
	return err
}

func (g *GPU) Close() {
	g.flush(context.Background())
	for _, b := range g.all {
		b.Destroy()
	}
	g.all, g.pool, g.temps = nil, nil, nil
}

func (g *GPU) kernel(family, entry string, consts map[string]float64) *wgpu.Kernel {
	key := kernelKey{family, entry}
	if k, ok := g.kernels[key]; ok {
		return k
	}
	var src string
	if g.opt.Source != nil {
		src = g.opt.Source(family)
	} else {
		src = shaders.MustSource(family)
	}
	k, err := g.dev.NewKernel(wgpu.KernelSpec{Code: src, Entry: entry, Constants: consts, Label: family + "." + entry})
	if err != nil {
		g.setErr(err)
		return nil
	}
	g.kernels[key] = k
	return k
}

// windowAlign is the byte alignment of window bindings: 256, the largest
// minStorageBufferOffsetAlignment the WebGPU spec allows, so it is valid on
// every device whatever alignment it reports.
const windowAlign = 256

func (g *GPU) align() uint64 {
	return max(uint64(g.dev.Limits().MinStorageBufferOffsetAlignment), windowAlign)
}

// elemBytes is the addressing unit of t's storage: 4 bytes for f32, 2 for
// 16-bit types (whose views start at even elements, whole words).
func elemBytes(t *Tensor) uint64 {
	if t.dtype == tensor.F32 {
		return 4
	}
	return 2
}

// window binds elements [off, off+n) of t's view: the binding starts at
// the aligned-down byte offset and the remainder (in elements) is returned
// for the params. Every binding of every op goes through here.
func (g *GPU) window(t *Tensor, off, n int) (wgpu.Binding, uint32) {
	if t.dtype.Quantized() { // always the whole tensor; a view of rows passes its first row
		whole := tensor.Shape{t.prows, t.shape[len(t.shape)-1]}
		return wgpu.Binding{Buffer: g.buffer(t), Size: uint64(t.dtype.Bytes(whole))}, 0
	}
	elem := elemBytes(t)
	byteOff := uint64(t.off+off) * elem
	start := byteOff &^ (g.align() - 1)
	rest := (byteOff - start) / elem
	return wgpu.Binding{Buffer: g.buffer(t), Offset: start, Size: storageBytes(t.dtype, int(rest)+n)}, uint32(rest)
}

// windowElems is the most elements of t a window may hold wherever it
// starts: the binding limit less the worst alignment remainder.
func (g *GPU) windowElems(t *Tensor) int {
	elem := elemBytes(t)
	return int((g.dev.Limits().MaxStorageBufferBindingSize - g.align() + elem) / elem)
}

// bind binds the whole of t (see window).
func (g *GPU) bind(t *Tensor) (wgpu.Binding, uint32) { return g.window(t, 0, t.Numel()) }

// A span is the part of one operand that a range of an op's work units
// touches: elements [lo, hi) of t for units [u0, u1), or all of t when at
// is nil. Spans must grow with the range (u1 larger: [lo, hi) no smaller).
type span struct {
	t  *Tensor
	at func(u0, u1 int) (lo, hi int)
}

// whole is the span of an operand every unit may read.
func whole(t *Tensor) span { return span{t: t} }

// rowsOf is the span of an operand whose unit u is its elements
// [u·per, (u+1)·per).
func rowsOf(t *Tensor, per int) span {
	return span{t, func(u0, u1 int) (int, int) { return u0 * per, u1 * per }}
}

func (s span) of(u0, u1 int) (lo, hi int) {
	if s.at == nil {
		return 0, s.t.Numel()
	}
	return s.at(u0, u1)
}

// split runs an op's work units [0, n) in consecutive chunks of at most
// most units (0: no limit) whose spans each fit in one storage binding
// (maxStorageBufferBindingSize): one chunk when everything fits, else the
// longest chunks a binary search finds. For
// each chunk run receives [u0, u1), the bindings of the spans in order, and
// for each the offset that a shader adds to a *global* element index of
// that operand: the window's alignment remainder minus lo, modulo 2³². WGSL
// u32 arithmetic wraps, so off + i addresses element i of the operand
// inside its window whenever lo ≤ i < hi, and kernels compute every index
// as in the unsplit dispatch: the split result is bit-identical.
//
// When one unit alone does not fit, split records a *wgpu.LimitError naming
// the op and the operand and runs nothing.
func (g *GPU) split(op string, n, most int, spans []span, run func(u0, u1 int, b []wgpu.Binding, off []uint32)) {
	if g.err != nil || n <= 0 {
		return
	}
	fits := func(u0, u1 int) *span {
		for i := range spans {
			lo, hi := spans[i].of(u0, u1)
			if hi-lo > g.windowElems(spans[i].t) {
				return &spans[i]
			}
		}
		return nil
	}
	bs := make([]wgpu.Binding, len(spans))
	offs := make([]uint32, len(spans))
	for u0 := 0; u0 < n; {
		u1 := n
		if most > 0 {
			u1 = min(n, u0+most)
		}
		if fits(u0, u1) != nil {
			if s := fits(u0, u0+1); s != nil {
				lo, hi := s.of(u0, u0+1)
				g.setErr(&wgpu.LimitError{Name: "maxStorageBufferBindingSize", Need: uint64(hi-lo) * elemBytes(s.t),
					Have: g.dev.Limits().MaxStorageBufferBindingSize, What: fmt.Sprintf("%s: the smallest window of %s", op, s.t)})
				return
			}
			ok, bad := u0+1, u1 // fits(u0, ok), not fits(u0, bad)
			for bad-ok > 1 {
				if mid := (ok + bad) / 2; fits(u0, mid) == nil {
					ok = mid
				} else {
					bad = mid
				}
			}
			u1 = ok
		}
		for i, s := range spans {
			lo, hi := s.of(u0, u1)
			b, rest := g.window(s.t, lo, hi-lo)
			bs[i], offs[i] = b, rest-uint32(lo)
		}
		run(u0, u1, bs, offs)
		u0 = u1
	}
}

// shares reports whether dst uses the storage of any of ts.
func shares(dst *Tensor, ts ...*Tensor) bool {
	for _, t := range ts {
		if t != nil && t != dst && sameStore(dst, t) {
			return true
		}
	}
	return false
}

// distinct returns where an op should write dst: dst itself, or, when dst
// shares a buffer with an input (disjoint views of one tensor), a scratch
// tensor of dst's shape. WebGPU allows a buffer bound writable only once
// per dispatch, even at disjoint ranges. done copies the scratch into dst
// and releases it (a no-op for dst itself).
func (g *GPU) distinct(dst *Tensor, inputs ...*Tensor) (out *Tensor, done func()) {
	if !shares(dst, inputs...) {
		return dst, func() {}
	}
	s, err := g.temp(dst.dtype, dst.shape...)
	if err != nil {
		g.setErr(fmt.Errorf("ops: scratch output for %s: %w", dst, err))
		return nil, func() {}
	}
	return s, func() {
		g.copy(dst, s)
		g.releaseTemp(s)
	}
}

// dispatch records one kernel launch; params is the kernel's Params twin.
func (g *GPU) dispatch(family, entry string, consts map[string]float64, groups int, params any, bindings ...wgpu.Binding) {
	if g.err != nil {
		return
	}
	if g.ctx != nil && g.ctx.Err() != nil {
		g.setErr(g.ctx.Err())
		return
	}
	k := g.kernel(family, entry, consts)
	if k == nil {
		return
	}
	if groups > math.MaxUint32 {
		g.setErr(fmt.Errorf("ops: %s: %d workgroups", family, groups))
		return
	}
	p, err := binary.Append(nil, binary.LittleEndian, params)
	if err != nil {
		panic(fmt.Sprintf("ops: %s params: %v", family, err))
	}
	g.batch.Dispatch(k, uint32(groups), p, bindings...)
	g.recorded()
}

// recorded accounts for one command just recorded into the batch: a
// recording error becomes the sticky error (and the failed batch is
// dropped), and every FlushEvery commands the batch is submitted.
func (g *GPU) recorded() {
	if err := g.batch.Err(); err != nil {
		g.setErr(err)
		g.batch.Submit(context.Background()) // drops the failed recording
		g.pending = 0
		return
	}
	g.pending++
	if g.pending >= g.opt.FlushEvery {
		g.flush(g.context())
	}
}

type paramTwin struct {
	name string // the WGSL struct's name, usually "Params"
	v    any    // a zero value of the Go twin
}

// paramTwins maps each shader family to the Go twins of its uniform
// structs; a test checks each against the WGSL. Families register theirs
// with registerParams in an init function next to their GPU code.
var paramTwins = map[string][]paramTwin{
	"add":      {{"Params", AddParams{}}},
	"matmul":   {{"Params", MatMulParams{}}},
	"matmul4":  {{"Params", MatMulParams{}}},
	"matmul16": {{"Params", MatMul16Params{}}},
}

func registerParams(family, structName string, twin any) {
	paramTwins[family] = append(paramTwins[family], paramTwin{structName, twin})
}

// AddParams is the Go twin of add.wgsl's Params.
type AddParams struct {
	N, BN, AOff, BOff, OutOff, Base uint32
	_                               [2]uint32
}

const addWG = 256 // add.wgsl's default WG

func (g *GPU) Add(dst, a, b *Tensor) {
	checkOwner(g, "Add", dst, a, b)
	n, bn := addShapes(dst, a, b)
	out, done := g.distinct(dst, a, b)
	if out == nil {
		return
	}
	g.split("Add", n, 0, []span{rowsOf(a, 1), periodic(b, bn), rowsOf(out, 1)}, func(u0, u1 int, bs []wgpu.Binding, off []uint32) {
		g.dispatch("add", "add", nil, (u1-u0+addWG-1)/addWG,
			AddParams{N: uint32(u1), BN: uint32(bn), AOff: off[0], BOff: off[1], OutOff: off[2], Base: uint32(u0)}, bs...)
	})
	done()
}

// periodic is the span of an operand read at element i mod p by the
// elements i of the work (a row broadcast over the leading dimensions).
func periodic(t *Tensor, p int) span {
	return span{t, func(u0, u1 int) (int, int) {
		if u0/p != (u1-1)/p {
			return 0, p
		}
		return u0 % p, (u1-1)%p + 1
	}}
}

// MatMulParams is the Go twin of matmul.wgsl's Params.
type MatMulParams struct {
	M, N, K, TilesN          uint32
	XOff, WOff, BOff, OutOff uint32
	HasBias                  uint32
	_                        [3]uint32
}

// MatMul16Params is the Go twin of matmul16.wgsl's Params.
type MatMul16Params struct {
	M, N, K, TilesN          uint32
	XOff, WOff, BOff, OutOff uint32
	HasBias, WBF16           uint32
	_                        [2]uint32
}

func (g *GPU) MatMul(dst, x, w, bias *Tensor) {
	checkOwner(g, "MatMul", dst, x, w)
	if bias != nil {
		checkOwner(g, "MatMul", bias)
	}
	M, N, K := matmulShapes(dst, x, w, bias)
	out, done := g.distinct(dst, x, w, bias)
	if out == nil {
		return
	}
	defer done()
	dst = out
	// When x or dst is larger than one storage binding, run bands of rows
	// that fit (the binding may start up to one alignment early, hence the
	// margin); w and bias are bound whole (packed q8/q4 weights too), and
	// a w above the limit is a *LimitError at submission.
	limit := int(g.dev.Limits().MaxStorageBufferBindingSize) - int(g.dev.Limits().MinStorageBufferOffsetAlignment)
	rows := M
	if per := 4 * max(K, N); per > 0 && rows*per > limit {
		rows = max(1, limit/per)
	}
	for m0 := 0; m0 < M; m0 += rows {
		mr := min(rows, M-m0)
		xs := &Tensor{shape: tensor.Shape{mr, K}, dtype: x.dtype, off: x.off + m0*K, store: x.store, view: true, owner: g}
		ds := &Tensor{shape: tensor.Shape{mr, N}, dtype: dst.dtype, off: dst.off + m0*N, store: dst.store, view: true, owner: g}
		g.matmul(ds, xs, w, bias, mr, N, K)
	}
}

func (g *GPU) matmul(dst, x, w, bias *Tensor, M, N, K int) {
	wm, wn := 8, 8 // matmul.wgsl's defaults
	if g.matmulC != nil {
		wm, wn = int(g.opt.MatMulWG[0]), int(g.opt.MatMulWG[1])
	}
	tm, tn := wm*4, wn*4
	tilesM, tilesN := (M+tm-1)/tm, (N+tn-1)/tn
	bx, ox := g.bind(x)
	bw, ow := g.bind(w)
	bo, oo := g.bind(dst)
	p := MatMulParams{M: uint32(M), N: uint32(N), K: uint32(K), TilesN: uint32(tilesN), XOff: ox, WOff: ow, OutOff: oo}
	bb := bx // bound but unread without a bias
	if bias != nil {
		bb, p.BOff = g.bind(bias)
		p.HasBias = 1
	}
	if w.dtype.Quantized() {
		g.matmulQ(w, tilesM*tilesN, p, bx, bw, bb, bo)
		return
	}
	if w.dtype != tensor.F32 {
		p16 := MatMul16Params{M: p.M, N: p.N, K: p.K, TilesN: p.TilesN, XOff: p.XOff, WOff: p.WOff,
			BOff: p.BOff, OutOff: p.OutOff, HasBias: p.HasBias}
		if w.dtype == tensor.BF16 {
			p16.WBF16 = 1
		}
		g.dispatch("matmul16", "matmul", g.matmulC, tilesM*tilesN, p16, bx, bw, bb, bo)
		return
	}
	family := "matmul"
	if K%4 == 0 && ox%4 == 0 && ow%4 == 0 {
		family = "matmul4" // vec4 loads along K
	}
	g.dispatch(family, "matmul", g.matmulC, tilesM*tilesN, p, bx, bw, bb, bo)
}
