//go:build js

package wgpu

// The browser implementation: navigator.gpu through syscall/js, written
// directly against the WebGPU JavaScript API. It does not use
// github.com/cogentcore/webgpu, whose js port drops requiredLimits, panics
// on requiredFeatures and reports MapAsync success without waiting for it.
//
// Waiting. Every method that needs a promise's result blocks its goroutine
// on a channel fed by the promise's then/catch callbacks (see listen and
// wait). That
// only works off the JavaScript event loop: a Device must never be used from
// inside a js.FuncOf callback, because while the callback blocks, the event
// loop cannot settle the promise it waits for and the page hangs. Callers in
// the browser start a goroutine for GPU work (the Go wasm runtime hands
// control back to the event loop whenever every goroutine is blocked).
//
// How it differs from native.go, each time because the browser offers more:
//   - Pipeline-overridable constants go through the compute stage's
//     `constants` member; Specialize is not needed.
//   - Object creation (buffers, kernels, bind groups) is wrapped in
//     validation and out-of-memory error scopes that are awaited, so it
//     fails with the browser's message; shader errors come with the
//     compiler's messages and line numbers (getCompilationInfo).
//   - Errors raised later (by writes or submissions, which are not awaited
//     so as not to add a round trip each) arrive as uncapturederror events;
//     the first one is returned by the next submit, sync or read.
//   - The browser does not say which backend it uses: Backend is "webgpu".
//
// A js.Value method that makes JavaScript throw panics in Go. Calls that can
// throw are made inside try (or under a deferred recoverJS), which turns the
// exception into an error.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"syscall/js"
	"time"
)

type jsDriver struct {
	dev, queue js.Value
	timeout    time.Duration // bounds waits that have no context of their own

	// Flags from GPUBufferUsage, GPUMapMode and GPUShaderStage, read once.
	usageStorage, usageUniform, usageCopySrc, usageCopyDst, usageMapRead int
	mapRead, stageCompute                                                int

	dyn     js.Value // one-element Uint32Array reused for dynamic offsets
	scratch js.Value // Uint8Array reused for small writes
	onError js.Func  // the uncapturederror listener, released by close

	mu         sync.Mutex
	lostMsg    string
	lostC      chan struct{} // closed when device.lost resolves
	uncaptured string        // first uncaptured error since the last check
}

type jsBuffer struct{ v js.Value }

// jsKernel is a compiled compute pipeline and the bind group layout its bind
// groups are made against.
type jsKernel struct {
	pipeline js.Value
	bgl      js.Value
}

type jsBindGroup struct{ v js.Value }

// implemented: the browser build can drive a GPU (see Implemented).
const implemented = true

// optionalJSFeatures are requested whenever the adapter has them.
var optionalJSFeatures = []string{"shader-f16", "timestamp-query", "subgroups"}

// jsLimits are the limits requested from the adapter and read back from the
// device, with the spec default used when a browser does not report one.
var jsLimits = []struct {
	name string
	def  float64
	set  func(l *Limits, v float64)
}{
	{"maxStorageBufferBindingSize", 128 << 20, func(l *Limits, v float64) { l.MaxStorageBufferBindingSize = toU64(v) }},
	{"maxBufferSize", 256 << 20, func(l *Limits, v float64) { l.MaxBufferSize = toU64(v) }},
	{"maxUniformBufferBindingSize", 64 << 10, func(l *Limits, v float64) { l.MaxUniformBufferBindingSize = toU64(v) }},
	{"maxComputeWorkgroupStorageSize", 16 << 10, func(l *Limits, v float64) { l.MaxComputeWorkgroupStorageSize = toU32(v) }},
	{"maxComputeInvocationsPerWorkgroup", 256, func(l *Limits, v float64) { l.MaxComputeInvocationsPerWorkgroup = toU32(v) }},
	{"maxComputeWorkgroupSizeX", 256, func(l *Limits, v float64) { l.MaxComputeWorkgroupSizeX = toU32(v) }},
	{"maxComputeWorkgroupSizeY", 256, func(l *Limits, v float64) { l.MaxComputeWorkgroupSizeY = toU32(v) }},
	{"maxComputeWorkgroupSizeZ", 64, func(l *Limits, v float64) { l.MaxComputeWorkgroupSizeZ = toU32(v) }},
	{"maxComputeWorkgroupsPerDimension", 65535, func(l *Limits, v float64) { l.MaxComputeWorkgroupsPerDimension = toU32(v) }},
	{"maxStorageBuffersPerShaderStage", 8, func(l *Limits, v float64) { l.MaxStorageBuffersPerShaderStage = toU32(v) }},
	{"minStorageBufferOffsetAlignment", 256, func(l *Limits, v float64) { l.MinStorageBufferOffsetAlignment = toU32(v) }},
	{"minUniformBufferOffsetAlignment", 256, func(l *Limits, v float64) { l.MinUniformBufferOffsetAlignment = toU32(v) }},
}

// browserAdvice ends the messages for a browser without usable WebGPU.
const browserAdvice = "use a browser with WebGPU enabled (Chrome or Edge 113 or later, or enable it in Firefox or Safari)"

func openDriver(ctx context.Context, opt Options) (_ driver, info AdapterInfo, lim Limits, names []string, err error) {
	// Any JavaScript exception while opening means WebGPU is not usable.
	defer func() {
		var jerr error
		recoverJS(&jerr)
		if jerr != nil {
			err = fmt.Errorf("%w: %v", ErrUnavailable, jerr)
		}
	}()
	if opt.Backend != "" && !strings.EqualFold(opt.Backend, "webgpu") {
		return nil, info, lim, nil, fmt.Errorf("%w: the browser picks its backend and does not say which, so Options.Backend %q cannot be honoured; leave it empty", ErrUnavailable, opt.Backend)
	}
	if opt.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opt.Timeout)
		defer cancel()
	}

	gpu := js.Undefined()
	if nav := js.Global().Get("navigator"); isObject(nav) {
		gpu = nav.Get("gpu")
	}
	if !isObject(gpu) {
		why := "this browser does not offer WebGPU (navigator.gpu is undefined)"
		if v := js.Global().Get("isSecureContext"); v.Type() == js.TypeBoolean && !v.Bool() {
			why = "WebGPU needs a secure context: serve the page over https or from localhost"
		}
		return nil, info, lim, nil, fmt.Errorf("%w: %s; %s", ErrUnavailable, why, browserAdvice)
	}
	adapter, err := await(ctx, gpu.Call("requestAdapter", map[string]any{"powerPreference": "high-performance"}), nil)
	if err != nil {
		if ctx.Err() != nil {
			return nil, info, lim, nil, fmt.Errorf("wgpu: requesting a WebGPU adapter: %w", err)
		}
		return nil, info, lim, nil, fmt.Errorf("%w: requestAdapter failed: %v; %s", ErrUnavailable, err, browserAdvice)
	}
	if !isObject(adapter) {
		return nil, info, lim, nil, fmt.Errorf("%w: the browser found no WebGPU adapter (the GPU or its driver may be blocklisted, or hardware acceleration is off: see chrome://gpu); %s", ErrUnavailable, browserAdvice)
	}

	// adapter.info is recent; older browsers have requestAdapterInfo().
	ai := adapter.Get("info")
	if !isObject(ai) && isFunc(adapter, "requestAdapterInfo") {
		ai, _ = await(ctx, adapter.Call("requestAdapterInfo"), nil) // cosmetic: a failure leaves it empty
	}
	info = AdapterInfo{Description: strField(ai, "description"), Vendor: strField(ai, "vendor"),
		Architecture: strField(ai, "architecture"), Backend: "webgpu", Type: "unknown"}
	if info.Description == "" {
		info.Description = strField(ai, "device")
	}
	if info.Description == "" && info.Vendor == "" && info.Architecture == "" {
		info.Description = "browser WebGPU adapter"
	}
	if boolField(adapter, "isFallbackAdapter") || boolField(ai, "isFallbackAdapter") {
		info.Type = "cpu"
	}

	// Ask for the adapter's limits explicitly: a device otherwise gets the
	// spec defaults (128 MiB storage bindings), too small for our models.
	al := adapter.Get("limits")
	req := map[string]any{}
	for _, f := range jsLimits {
		if v, ok := numField(al, f.name); ok {
			req[f.name] = v
		}
	}
	var feats []any
	for _, name := range optionalJSFeatures {
		if hasFeature(adapter, name) {
			feats = append(feats, name)
			names = append(names, name)
		}
	}
	label := opt.Label
	if label == "" {
		label = "lumina"
	}
	dev, err := await(ctx, adapter.Call("requestDevice", map[string]any{
		"label": label, "requiredFeatures": feats, "requiredLimits": req}), nil)
	if err != nil {
		if ctx.Err() != nil {
			return nil, info, lim, nil, fmt.Errorf("wgpu: request device on %s: %w", info, err)
		}
		return nil, info, lim, nil, fmt.Errorf("%w: request device on %s: %v", ErrUnavailable, info, err)
	}
	if !isObject(dev) {
		return nil, info, lim, nil, fmt.Errorf("%w: request device on %s returned no device", ErrUnavailable, info)
	}
	ok := false
	defer func() {
		if !ok {
			try(func() { dev.Call("destroy") })
		}
	}()

	d := &jsDriver{dev: dev, queue: dev.Get("queue"), timeout: opt.Timeout, lostC: make(chan struct{})}
	if d.timeout <= 0 {
		d.timeout = 60 * time.Second
	}
	usage := js.Global().Get("GPUBufferUsage")
	d.usageMapRead = flag(usage, "MAP_READ", 0x1)
	d.usageCopySrc = flag(usage, "COPY_SRC", 0x4)
	d.usageCopyDst = flag(usage, "COPY_DST", 0x8)
	d.usageUniform = flag(usage, "UNIFORM", 0x40)
	d.usageStorage = flag(usage, "STORAGE", 0x80)
	d.mapRead = flag(js.Global().Get("GPUMapMode"), "READ", 0x1)
	d.stageCompute = flag(js.Global().Get("GPUShaderStage"), "COMPUTE", 0x4)
	d.dyn = js.Global().Get("Uint32Array").New(1)
	d.watch()

	for _, f := range jsLimits {
		v, ok := numField(dev.Get("limits"), f.name)
		if !ok {
			v = f.def
		}
		f.set(&lim, v)
	}
	ok = true
	return d, info, lim, names, nil
}

// watch subscribes to the device's loss and to its uncaptured errors. Both
// callbacks run on the event loop, so they only record and never block.
func (d *jsDriver) watch() {
	var onLost js.Func
	onLost = js.FuncOf(func(_ js.Value, args []js.Value) any {
		defer onLost.Release() // a promise settles once
		li := arg(args, 0)
		reason, msg := strField(li, "reason"), strField(li, "message")
		if reason == "" {
			reason = "unknown"
		}
		if msg != "" {
			reason += ": " + msg
		}
		d.mu.Lock()
		d.lostMsg = reason
		d.mu.Unlock()
		close(d.lostC)
		return nil
	})
	d.dev.Get("lost").Call("then", onLost)

	d.onError = js.FuncOf(func(_ js.Value, args []js.Value) any {
		msg := gpuErrorText(fieldOf(arg(args, 0), "error"))
		d.mu.Lock()
		if d.uncaptured == "" {
			d.uncaptured = msg
		}
		d.mu.Unlock()
		return nil
	})
	d.dev.Call("addEventListener", "uncapturederror", d.onError)
}

func (d *jsDriver) lost() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.lostMsg != "" {
		return fmt.Errorf("%w (%s); the usual cause is running out of GPU memory: reopen with a smaller resolution or model", ErrDeviceLost, d.lostMsg)
	}
	return nil
}

// check returns the device's loss, or else the first uncaptured error since
// the previous check (which it clears).
func (d *jsDriver) check() error {
	if err := d.lost(); err != nil {
		return err
	}
	d.mu.Lock()
	msg := d.uncaptured
	d.uncaptured = ""
	d.mu.Unlock()
	if msg != "" {
		return fmt.Errorf("the browser reported a GPU error since the previous submission: %s", msg)
	}
	return nil
}

func (d *jsDriver) close() {
	try(func() { d.dev.Call("removeEventListener", "uncapturederror", d.onError) })
	d.onError.Release()
	try(func() { d.dev.Call("destroy") }) // resolves device.lost, which releases onLost
}

// waitCtx bounds the waits of methods that have no context of their own.
func (d *jsDriver) waitCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d.timeout)
}

// wait is pending.wait for a device: it also stops waiting when the device
// is lost, since some promises never settle then.
func (d *jsDriver) wait(ctx context.Context, pd pending) (js.Value, error) {
	v, err := pd.wait(ctx, d.lostC)
	if errors.Is(err, errLostWhileWaiting) {
		return v, d.lost()
	}
	return v, err
}

// await is the package's await for a device (see wait).
func (d *jsDriver) await(ctx context.Context, p js.Value) (js.Value, error) {
	pd, err := listen(p)
	if err != nil {
		return js.Undefined(), err
	}
	return d.wait(ctx, pd)
}

// scoped calls create between pushErrorScope and popErrorScope, for both
// validation and out-of-memory errors, waits for the scopes and returns the
// first error: a JavaScript exception thrown by create, the error a scope
// caught, or the device's loss. WebGPU reports creation errors only
// asynchronously; without the scopes a failed creation would return an
// invalid object and the error would surface later, far from its cause.
//
// Nothing is awaited between push and pop, so the scopes catch only what
// create does.
func (d *jsDriver) scoped(ctx context.Context, create func()) error {
	if err := try(func() { d.dev.Call("pushErrorScope", "validation") }); err != nil {
		return err
	}
	if err := try(func() { d.dev.Call("pushErrorScope", "out-of-memory") }); err != nil {
		try(func() { d.dev.Call("popErrorScope") })
		return err
	}
	createErr := try(create)
	var pops [2]pending // out-of-memory, then validation: the stack's order
	for i := range pops {
		var err error
		if terr := try(func() { pops[i], err = listen(d.dev.Call("popErrorScope")) }); terr != nil {
			err = terr
		}
		if err != nil {
			return errors.Join(createErr, err)
		}
	}
	if createErr != nil {
		return createErr
	}
	for _, pd := range pops {
		gpuErr, err := d.wait(ctx, pd)
		if err != nil {
			return err
		}
		if isObject(gpuErr) {
			if err := d.lost(); err != nil {
				return err
			}
			return errors.New(gpuErrorText(gpuErr))
		}
	}
	return d.lost()
}

func (d *jsDriver) newBuffer(size uint64, label string, uniform bool) (bufferHandle, error) {
	usage := d.usageStorage | d.usageCopySrc | d.usageCopyDst
	if uniform {
		usage = d.usageUniform | d.usageCopyDst
	}
	ctx, cancel := d.waitCtx()
	defer cancel()
	var b js.Value
	err := d.scoped(ctx, func() {
		b = d.dev.Call("createBuffer", map[string]any{"label": label, "size": size, "usage": usage})
	})
	if err != nil {
		if isObject(b) {
			try(func() { b.Call("destroy") })
		}
		return nil, err
	}
	return &jsBuffer{b}, nil
}

func (d *jsDriver) destroyBuffer(h bufferHandle) {
	b := h.(*jsBuffer)
	try(func() { b.v.Call("destroy") })
}

// scratchMax bounds the reusable write buffer: uniform blocks and small
// uploads reuse it, large uploads (weights) get a Uint8Array of their own so
// that it does not stay allocated.
const scratchMax = 1 << 20

func (d *jsDriver) write(h bufferHandle, off uint64, data []byte) error {
	return try(func() {
		var src js.Value
		switch n := len(data); {
		case n > scratchMax:
			src = js.Global().Get("Uint8Array").New(n)
		case d.scratch.IsUndefined() || d.scratch.Length() < n:
			d.scratch = js.Global().Get("Uint8Array").New(max(n, 64<<10))
			fallthrough
		default:
			src = d.scratch
		}
		js.CopyBytesToJS(src, data)
		// writeBuffer copies the data before it returns, so the scratch can
		// be reused at once. Its validation errors arrive as uncaptured
		// errors, reported by the next submit.
		d.queue.Call("writeBuffer", h.(*jsBuffer).v, off, src, 0, len(data))
	})
}

func (d *jsDriver) read(ctx context.Context, h bufferHandle, off, size uint64) ([]byte, error) {
	var staging js.Value
	var mapped pending
	var listenErr error
	defer func() {
		if isObject(staging) {
			// Destroying a buffer whose map is pending rejects the map
			// promise; listen's callbacks outlive us and release themselves.
			try(func() { staging.Call("destroy") })
		}
	}()
	err := d.scoped(ctx, func() {
		staging = d.dev.Call("createBuffer", map[string]any{"label": "readback", "size": size,
			"usage": d.usageMapRead | d.usageCopyDst})
		enc := d.dev.Call("createCommandEncoder")
		enc.Call("copyBufferToBuffer", h.(*jsBuffer).v, off, staging, 0, size)
		d.queue.Call("submit", []any{enc.Call("finish")})
		// Listen at once: a rejection nobody handles yet is reported as
		// an unhandled rejection (fatal in Node).
		mapped, listenErr = listen(staging.Call("mapAsync", d.mapRead, 0, size))
	})
	if err == nil {
		err = listenErr
	}
	if err != nil {
		return nil, err
	}
	if _, err := d.wait(ctx, mapped); err != nil {
		if lerr := d.lost(); lerr != nil {
			return nil, lerr
		}
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, fmt.Errorf("map for reading failed: %w", err)
	}
	out := make([]byte, size)
	if err := try(func() {
		r := staging.Call("getMappedRange", 0, size)
		js.CopyBytesToGo(out, js.Global().Get("Uint8Array").New(r))
		staging.Call("unmap")
	}); err != nil {
		return nil, err
	}
	return out, d.check()
}

func (d *jsDriver) sync(ctx context.Context) error {
	var p js.Value
	if err := try(func() { p = d.queue.Call("onSubmittedWorkDone") }); err != nil {
		return err
	}
	if _, err := d.await(ctx, p); err != nil {
		return err
	}
	return d.check()
}

func (d *jsDriver) newKernel(spec KernelSpec, storage []BindingKind, uniform bool) (kernelHandle, error) {
	entries := make([]any, 0, len(storage)+1)
	for i, kind := range storage {
		t := "read-only-storage"
		if kind == ReadWrite {
			t = "storage"
		}
		entries = append(entries, map[string]any{"binding": i, "visibility": d.stageCompute,
			"buffer": map[string]any{"type": t}})
	}
	if uniform {
		entries = append(entries, map[string]any{"binding": len(storage), "visibility": d.stageCompute,
			"buffer": map[string]any{"type": "uniform", "hasDynamicOffset": true}})
	}
	ctx, cancel := d.waitCtx()
	defer cancel()
	k := &jsKernel{}
	var module, layout js.Value
	err := d.scoped(ctx, func() {
		module = d.dev.Call("createShaderModule", map[string]any{"label": spec.Label, "code": spec.Code})
		k.bgl = d.dev.Call("createBindGroupLayout", map[string]any{"label": spec.Label, "entries": entries})
		layout = d.dev.Call("createPipelineLayout", map[string]any{"label": spec.Label, "bindGroupLayouts": []any{k.bgl}})
	})
	if err != nil {
		return nil, d.compileError(ctx, spec.Label, module, err)
	}

	stage := map[string]any{"module": module, "entryPoint": spec.Entry}
	if len(spec.Constants) > 0 {
		consts := make(map[string]any, len(spec.Constants))
		for name, v := range spec.Constants {
			consts[name] = v
		}
		stage["constants"] = consts
	}
	desc := map[string]any{"label": spec.Label, "layout": layout, "compute": stage}
	// The async form compiles without stalling the page, and reports its
	// failure by rejecting rather than through an error scope.
	if isFunc(d.dev, "createComputePipelineAsync") {
		var pd pending
		var lerr error
		if err = d.scoped(ctx, func() { pd, lerr = listen(d.dev.Call("createComputePipelineAsync", desc)) }); err == nil {
			if err = lerr; err == nil {
				k.pipeline, err = d.wait(ctx, pd)
			}
		}
	} else {
		err = d.scoped(ctx, func() { k.pipeline = d.dev.Call("createComputePipeline", desc) })
	}
	if err != nil {
		return nil, d.compileError(ctx, spec.Label, module, err)
	}
	if !isObject(k.pipeline) {
		return nil, errors.New("createComputePipelineAsync returned no pipeline")
	}
	return k, nil
}

// compileError replaces err by the shader compiler's error messages, with
// line numbers, when the module has any; the validation error alone often
// only says that the module is invalid.
func (d *jsDriver) compileError(ctx context.Context, label string, module js.Value, err error) error {
	if !isFunc(module, "getCompilationInfo") {
		return err
	}
	var p js.Value
	if try(func() { p = module.Call("getCompilationInfo") }) != nil {
		return err
	}
	ci, cerr := d.await(ctx, p)
	msgs := fieldOf(ci, "messages")
	if cerr != nil || !isObject(msgs) {
		return err
	}
	var b strings.Builder
	for i := range msgs.Length() {
		m := msgs.Index(i)
		if strField(m, "type") != "error" {
			continue
		}
		line, _ := numField(m, "lineNum")
		col, _ := numField(m, "linePos")
		fmt.Fprintf(&b, "\n\t%s:%d:%d: %s", label, int(line), int(col), strField(m, "message"))
	}
	if b.Len() == 0 {
		return err
	}
	return fmt.Errorf("WGSL compilation failed:%s", b.String())
}

func (d *jsDriver) newBindGroup(kh kernelHandle, entries []bindEntry) (bindGroupHandle, error) {
	k := kh.(*jsKernel)
	e := make([]any, len(entries))
	for i, be := range entries {
		e[i] = map[string]any{"binding": i, "resource": map[string]any{
			"buffer": be.h.(*jsBuffer).v, "offset": be.off, "size": be.size}}
	}
	ctx, cancel := d.waitCtx()
	defer cancel()
	var bg js.Value
	if err := d.scoped(ctx, func() {
		bg = d.dev.Call("createBindGroup", map[string]any{"layout": k.bgl, "entries": e})
	}); err != nil {
		return nil, err
	}
	return &jsBindGroup{bg}, nil
}

// releaseBindGroup has nothing to do: a GPUBindGroup has no destroy and is
// freed by the garbage collector once the cache drops it.
func (d *jsDriver) releaseBindGroup(bindGroupHandle) {}

func (d *jsDriver) submit(ctx context.Context, cmds []encoded) error {
	err := try(func() {
		enc := d.dev.Call("createCommandEncoder")
		pass := js.Null()
		for _, c := range cmds {
			if c.k == nil {
				if !pass.IsNull() {
					pass.Call("end")
					pass = js.Null()
				}
				enc.Call("copyBufferToBuffer", c.src.(*jsBuffer).v, c.srcOff, c.dst.(*jsBuffer).v, c.dstOff, c.n)
				continue
			}
			if pass.IsNull() {
				pass = enc.Call("beginComputePass")
			}
			pass.Call("setPipeline", c.k.(*jsKernel).pipeline)
			if c.hasDyn {
				// The Uint32Array form reads the offsets during the call,
				// so one array serves every dispatch.
				d.dyn.SetIndex(0, c.dynOffset)
				pass.Call("setBindGroup", 0, c.bg.(*jsBindGroup).v, d.dyn, 0, 1)
			} else {
				pass.Call("setBindGroup", 0, c.bg.(*jsBindGroup).v)
			}
			pass.Call("dispatchWorkgroups", c.x, c.y, c.z)
		}
		if !pass.IsNull() {
			pass.Call("end")
		}
		d.queue.Call("submit", []any{enc.Call("finish")})
	})
	if err != nil {
		return err
	}
	// Errors from this submission arrive later, as uncaptured errors; this
	// reports those of earlier ones.
	return d.check()
}

// errLostWhileWaiting is what await returns when the lost channel closes
// first; jsDriver.wait replaces it by the device's loss.
var errLostWhileWaiting = errors.New("wgpu: device lost while waiting")

// settled is how a promise settled: its value, or the error it was
// rejected with.
type settled struct {
	v   js.Value
	err error
}

// pending receives the settlement of a promise that listen subscribed to.
type pending <-chan settled

// listen attaches then/catch callbacks to p (a promise, or a value taken as
// a resolved one) at once, so that a rejection is handled from the start
// even if the wait for it comes later. The callbacks only send on a
// buffered channel, never blocking the event loop, and release themselves
// when the promise settles: a wait abandoned early leaves nothing behind.
func listen(p js.Value) (pending, error) {
	ch := make(chan settled, 1)
	var onResolve, onReject js.Func
	settle := func(r settled) any {
		ch <- r
		onResolve.Release()
		onReject.Release()
		return nil
	}
	onResolve = js.FuncOf(func(_ js.Value, args []js.Value) any { return settle(settled{v: arg(args, 0)}) })
	onReject = js.FuncOf(func(_ js.Value, args []js.Value) any {
		return settle(settled{v: js.Undefined(), err: jsError(arg(args, 0))})
	})
	if err := try(func() { js.Global().Get("Promise").Call("resolve", p).Call("then", onResolve, onReject) }); err != nil {
		onResolve.Release()
		onReject.Release()
		return nil, err
	}
	return ch, nil
}

// wait blocks the calling goroutine until the promise settles, ctx ends or
// lost (nil for none) is closed, and returns the value the promise resolved
// to, or an error for its rejection.
//
// It must only be called from a goroutine, never inside a js.FuncOf
// callback: the promise's callbacks run on the JavaScript event loop, which
// a blocked callback holds, so the wait would never end.
func (pd pending) wait(ctx context.Context, lost <-chan struct{}) (js.Value, error) {
	select {
	case r := <-pd:
		return r.v, r.err
	case <-ctx.Done():
		return js.Undefined(), fmt.Errorf("waiting for the GPU: %w", ctx.Err())
	case <-lost:
		return js.Undefined(), errLostWhileWaiting
	}
}

// await waits for promise p (see listen and wait for the rules).
func await(ctx context.Context, p js.Value, lost <-chan struct{}) (js.Value, error) {
	pd, err := listen(p)
	if err != nil {
		return js.Undefined(), err
	}
	return pd.wait(ctx, lost)
}

// try calls f and turns a JavaScript exception (or a syscall/js misuse,
// such as calling a method that does not exist) into an error.
func try(f func()) (err error) {
	defer recoverJS(&err)
	f()
	return nil
}

// recoverJS, deferred, stores a syscall/js panic in *err and re-panics on
// anything else, which would be a bug in this file.
func recoverJS(err *error) {
	switch r := recover().(type) {
	case nil:
	case js.Error:
		*err = jsError(r.Value)
	case *js.ValueError:
		*err = r
	case string:
		if !strings.HasPrefix(r, "syscall/js:") {
			panic(r)
		}
		*err = errors.New(r)
	default:
		panic(r)
	}
}

// jsError describes a thrown or rejected JavaScript value, usually an Error
// or DOMException ("OperationError: ...") or a GPUError.
func jsError(v js.Value) error {
	if !isObject(v) {
		return fmt.Errorf("JavaScript error: %s", jsString(v))
	}
	name := strField(v, "name")
	if name == "" {
		name = strField(fieldOf(v, "constructor"), "name")
	}
	msg := strField(v, "message")
	switch {
	case name == "" && msg == "":
		return fmt.Errorf("JavaScript error: %s", jsString(v))
	case name == "":
		return errors.New(msg)
	case msg == "":
		return errors.New(name)
	}
	return fmt.Errorf("%s: %s", name, msg)
}

// gpuErrorText describes a GPUError from an error scope or an
// uncapturederror event.
func gpuErrorText(v js.Value) string {
	msg := strField(v, "message")
	switch strField(fieldOf(v, "constructor"), "name") {
	case "GPUOutOfMemoryError":
		return "out of GPU memory: " + msg + "; use a smaller resolution or model"
	case "GPUValidationError":
		return "validation error: " + msg
	case "GPUInternalError":
		return "internal error: " + msg
	}
	if msg == "" {
		return "unknown GPU error: " + jsString(v)
	}
	return msg
}

// The helpers below read JavaScript values without panicking on a missing
// or mistyped member, so that they are safe inside event-loop callbacks.

func isObject(v js.Value) bool {
	t := v.Type()
	return t == js.TypeObject || t == js.TypeFunction
}

func fieldOf(v js.Value, name string) js.Value {
	if !isObject(v) {
		return js.Undefined()
	}
	return v.Get(name)
}

func isFunc(v js.Value, name string) bool { return fieldOf(v, name).Type() == js.TypeFunction }

func strField(v js.Value, name string) string {
	if f := fieldOf(v, name); f.Type() == js.TypeString {
		return f.String()
	}
	return ""
}

func boolField(v js.Value, name string) bool {
	f := fieldOf(v, name)
	return f.Type() == js.TypeBoolean && f.Bool()
}

func numField(v js.Value, name string) (float64, bool) {
	if f := fieldOf(v, name); f.Type() == js.TypeNumber {
		return f.Float(), true
	}
	return 0, false
}

// flag reads a constant such as GPUBufferUsage.STORAGE, with the spec's
// value as fallback.
func flag(v js.Value, name string, def int) int {
	if f, ok := numField(v, name); ok {
		return int(f)
	}
	return def
}

func hasFeature(adapter js.Value, name string) bool {
	feats := fieldOf(adapter, "features")
	has := false
	if isFunc(feats, "has") {
		_ = try(func() { has = feats.Call("has", name).Truthy() })
	}
	return has
}

func arg(args []js.Value, i int) js.Value {
	if i < len(args) {
		return args[i]
	}
	return js.Undefined()
}

// jsString is String(v) in JavaScript (js.Value.String gives "<number: 1>").
func jsString(v js.Value) string {
	s := "?"
	_ = try(func() { s = js.Global().Call("String", v).String() })
	return s
}

func toU64(v float64) uint64 {
	if v <= 0 || math.IsNaN(v) {
		return 0
	}
	return uint64(min(v, 1<<63))
}

func toU32(v float64) uint32 {
	if v <= 0 || math.IsNaN(v) {
		return 0
	}
	return uint32(min(v, math.MaxUint32))
}
