//go:build !js && cgo

package wgpu

// The native implementation: wgpu-native through github.com/cogentcore/webgpu
// (cgo). The binding has bugs, each worked around here (see DESIGN.md):
//   - CreateInstance with a descriptor leaves C fields unset: call it with nil.
//   - Adapter.GetLimits returns garbage in some fields: start from
//     DefaultLimits and raise only the compute limits, each sanity-checked.
//   - MapAsync callbacks fire only inside Device.Poll: poll until mapped, and
//     copy the mapped range before Unmap.
//   - A compute pass must be released before the encoder's Finish
//     (https://github.com/gfx-rs/wgpu-native/issues/412).
//   - Setting DeviceLostCallback panics under the cgo pointer check: loss
//     is recorded by markLost where an operation observes it.
//   - Its WGSL compiler does not parse `override`, and pipeline constants are
//     not exposed: Specialize turns overrides into consts instead.

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	webgpu "github.com/cogentcore/webgpu/wgpu"
)

type nativeDriver struct {
	inst    *webgpu.Instance
	adapter *webgpu.Adapter
	dev     *webgpu.Device
	queue   *webgpu.Queue

	lostMu  sync.Mutex
	lostMsg string
}

type nativeKernel struct {
	module   *webgpu.ShaderModule
	bgl      *webgpu.BindGroupLayout
	layout   *webgpu.PipelineLayout
	pipeline *webgpu.ComputePipeline
}

var backendNames = map[string]webgpu.BackendType{
	"vulkan": webgpu.BackendTypeVulkan, "metal": webgpu.BackendTypeMetal,
	"d3d12": webgpu.BackendTypeD3D12, "d3d11": webgpu.BackendTypeD3D11,
	"opengl": webgpu.BackendTypeOpenGL, "opengles": webgpu.BackendTypeOpenGLES,
}

// optionalFeatures are requested whenever the adapter has them.
var optionalFeatures = []webgpu.FeatureName{webgpu.FeatureNameShaderF16, webgpu.FeatureNameTimestampQuery}

const implemented = true

func openDriver(ctx context.Context, opt Options) (driver, AdapterInfo, Limits, []string, error) {
	var info AdapterInfo
	var lim Limits
	ropt := &webgpu.RequestAdapterOptions{PowerPreference: webgpu.PowerPreferenceHighPerformance}
	if opt.Backend != "" {
		bt, ok := backendNames[strings.ToLower(opt.Backend)]
		if !ok {
			return nil, info, lim, nil, fmt.Errorf("wgpu: unknown backend %q (want vulkan, metal, d3d12, d3d11, opengl or opengles)", opt.Backend)
		}
		ropt.BackendType = bt
	}
	// Errors reach the caller as Go errors; the native log would only
	// repeat them on stderr.
	webgpu.SetLogLevel(webgpu.LogLevelOff)
	inst := webgpu.CreateInstance(nil)
	adapter, err := inst.RequestAdapter(ropt)
	if err != nil || adapter == nil {
		inst.Release()
		what := "no WebGPU adapter"
		if opt.Backend != "" {
			what = "no " + opt.Backend + " adapter"
		}
		return nil, info, lim, nil, fmt.Errorf("%w: %s found; install a GPU driver with Vulkan support, or Mesa's software one (Debian: apt-get install mesa-vulkan-drivers libvulkan1)", ErrUnavailable, what)
	}
	ai := adapter.GetInfo()
	info = AdapterInfo{Description: ai.DriverDescription, Vendor: ai.VendorName, Architecture: ai.Architecture,
		Backend: strings.ToLower(ai.BackendType.String()), Type: ai.AdapterType.String()}
	if info.Description == "" {
		info.Description = ai.Name
	}
	if opt.Backend != "" && info.Backend != strings.ToLower(opt.Backend) {
		adapter.Release()
		inst.Release()
		return nil, info, lim, nil, fmt.Errorf("%w: the adapter found is %s, not %s", ErrUnavailable, info, opt.Backend)
	}

	lim = saneLimits(adapter.GetLimits().Limits)
	req := webgpu.DefaultLimits()
	req.MaxStorageBufferBindingSize = lim.MaxStorageBufferBindingSize
	req.MaxBufferSize = lim.MaxBufferSize
	req.MaxComputeWorkgroupStorageSize = lim.MaxComputeWorkgroupStorageSize
	req.MaxComputeInvocationsPerWorkgroup = lim.MaxComputeInvocationsPerWorkgroup
	req.MaxComputeWorkgroupSizeX = lim.MaxComputeWorkgroupSizeX
	req.MaxComputeWorkgroupSizeY = lim.MaxComputeWorkgroupSizeY
	req.MaxComputeWorkgroupSizeZ = lim.MaxComputeWorkgroupSizeZ
	req.MaxComputeWorkgroupsPerDimension = lim.MaxComputeWorkgroupsPerDimension
	req.MaxStorageBuffersPerShaderStage = lim.MaxStorageBuffersPerShaderStage
	// The offset alignments must be requested too: a device made from
	// DefaultLimits keeps the spec's 256 even where the adapter allows
	// less, and would reject bindings at the offsets Limits reports.
	req.MinStorageBufferOffsetAlignment = lim.MinStorageBufferOffsetAlignment
	req.MinUniformBufferOffsetAlignment = lim.MinUniformBufferOffsetAlignment

	var feats []webgpu.FeatureName
	var names []string
	for _, f := range optionalFeatures {
		if adapter.HasFeature(f) {
			feats = append(feats, f)
			names = append(names, f.String())
		}
	}
	drv := &nativeDriver{inst: inst, adapter: adapter}
	label := opt.Label
	if label == "" {
		label = "lumina"
	}
	dev, err := adapter.RequestDevice(&webgpu.DeviceDescriptor{
		Label:            label,
		RequiredFeatures: feats,
		RequiredLimits:   &webgpu.RequiredLimits{Limits: req},
		// No DeviceLostCallback: the binding passes a pointer to a Go
		// cgo.Handle to C, which the cgo pointer checker rejects with a
		// panic. Loss is detected where it shows: a failed map or a failed
		// request (markLost).
	})
	if err != nil {
		adapter.Release()
		inst.Release()
		return nil, info, lim, nil, fmt.Errorf("%w: request device on %s: %v", ErrUnavailable, info, err)
	}
	drv.dev = dev
	drv.queue = dev.GetQueue()
	return drv, info, lim, names, nil
}

// saneLimits keeps the adapter's compute limits where they are plausible and
// falls back to the WebGPU spec defaults where the binding returned garbage.
func saneLimits(a webgpu.Limits) Limits {
	u32 := func(v, def, hi uint32) uint32 {
		if v < def || v > hi {
			return def
		}
		return v
	}
	u64 := func(v, def, hi uint64) uint64 {
		if v < def || v > hi {
			return def
		}
		return v
	}
	l := Limits{
		MaxStorageBufferBindingSize:       u64(a.MaxStorageBufferBindingSize, 128<<20, 1<<40),
		MaxBufferSize:                     u64(a.MaxBufferSize, 256<<20, 1<<44),
		MaxUniformBufferBindingSize:       u64(a.MaxUniformBufferBindingSize, 64<<10, 1<<32),
		MaxComputeWorkgroupStorageSize:    u32(a.MaxComputeWorkgroupStorageSize, 16<<10, 1<<20),
		MaxComputeInvocationsPerWorkgroup: u32(a.MaxComputeInvocationsPerWorkgroup, 256, 4096),
		MaxComputeWorkgroupSizeX:          u32(a.MaxComputeWorkgroupSizeX, 256, 4096),
		MaxComputeWorkgroupSizeY:          u32(a.MaxComputeWorkgroupSizeY, 256, 4096),
		MaxComputeWorkgroupSizeZ:          u32(a.MaxComputeWorkgroupSizeZ, 64, 4096),
		MaxComputeWorkgroupsPerDimension:  u32(a.MaxComputeWorkgroupsPerDimension, 65535, 1<<31),
		MaxStorageBuffersPerShaderStage:   u32(a.MaxStorageBuffersPerShaderStage, 8, 1<<20),
		MinStorageBufferOffsetAlignment:   256,
		MinUniformBufferOffsetAlignment:   256,
	}
	// Alignments are powers of two no larger than the spec default (lower
	// is better); a garbage value keeps the default.
	if v := a.MinStorageBufferOffsetAlignment; v >= 4 && v <= 256 && v&(v-1) == 0 {
		l.MinStorageBufferOffsetAlignment = v
	}
	if v := a.MinUniformBufferOffsetAlignment; v >= 4 && v <= 256 && v&(v-1) == 0 {
		l.MinUniformBufferOffsetAlignment = v
	}
	return l
}

func (d *nativeDriver) lost() error {
	d.lostMu.Lock()
	defer d.lostMu.Unlock()
	if d.lostMsg != "" {
		return fmt.Errorf("%w (%s); the usual cause is running out of GPU memory: reopen with a smaller resolution or model", ErrDeviceLost, d.lostMsg)
	}
	return nil
}

func (d *nativeDriver) markLost(msg string) {
	d.lostMu.Lock()
	defer d.lostMu.Unlock()
	if d.lostMsg == "" {
		d.lostMsg = msg
	}
}

func (d *nativeDriver) close() {
	d.queue.Release()
	d.dev.Release()
	d.adapter.Release()
	d.inst.Release()
}

func (d *nativeDriver) newBuffer(size uint64, label string, uniform bool) (bufferHandle, error) {
	usage := webgpu.BufferUsageStorage | webgpu.BufferUsageCopySrc | webgpu.BufferUsageCopyDst
	if uniform {
		usage = webgpu.BufferUsageUniform | webgpu.BufferUsageCopyDst
	}
	b, err := d.dev.CreateBuffer(&webgpu.BufferDescriptor{Label: label, Size: size, Usage: usage})
	if err != nil {
		return nil, err
	}
	return b, nil
}

func (d *nativeDriver) destroyBuffer(h bufferHandle) {
	b := h.(*webgpu.Buffer)
	b.Destroy()
	b.Release()
}

func (d *nativeDriver) write(h bufferHandle, off uint64, data []byte) error {
	return d.queue.WriteBuffer(h.(*webgpu.Buffer), off, data)
}

func (d *nativeDriver) read(ctx context.Context, h bufferHandle, off, size uint64) ([]byte, error) {
	staging, err := d.dev.CreateBuffer(&webgpu.BufferDescriptor{Label: "readback", Size: size,
		Usage: webgpu.BufferUsageMapRead | webgpu.BufferUsageCopyDst})
	if err != nil {
		return nil, err
	}
	defer staging.Release()
	defer staging.Destroy()
	enc, err := d.dev.CreateCommandEncoder(nil)
	if err != nil {
		return nil, err
	}
	defer enc.Release()
	if err := enc.CopyBufferToBuffer(h.(*webgpu.Buffer), off, staging, 0, size); err != nil {
		return nil, err
	}
	cb, err := enc.Finish(nil)
	if err != nil {
		return nil, err
	}
	defer cb.Release()
	d.queue.Submit(cb)

	done := false
	status := webgpu.BufferMapAsyncStatusUnknown
	if err := staging.MapAsync(webgpu.MapModeRead, 0, size, func(s webgpu.BufferMapAsyncStatus) {
		status, done = s, true
	}); err != nil {
		return nil, err
	}
	if err := d.pollUntil(ctx, func() bool { return done }); err != nil {
		return nil, err
	}
	if status != webgpu.BufferMapAsyncStatusSuccess {
		if status == webgpu.BufferMapAsyncStatusDeviceLost {
			d.markLost("buffer map reported the device lost")
			return nil, d.lost()
		}
		return nil, fmt.Errorf("map for reading failed: %v", status)
	}
	out := make([]byte, size)
	copy(out, staging.GetMappedRange(0, uint(size)))
	if err := staging.Unmap(); err != nil {
		return nil, err
	}
	return out, nil
}

// pollUntil drives the device's callbacks until cond holds, the device is
// lost, or ctx ends. It polls without blocking and sleeps in between:
// wgpu-native's blocking poll gives up after an internal 5 s fence timeout,
// after which the next call crashed the process when one submission ran
// longer than that (a large convolution on lavapipe), and a non-blocking
// poll also lets ctx cancel a long wait.
func (d *nativeDriver) pollUntil(ctx context.Context, cond func() bool) error {
	sleep := 50 * time.Microsecond
	for !cond() {
		if err := d.lost(); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("waiting for the GPU: %w", err)
		}
		if d.dev.Poll(false, nil) && cond() {
			break
		}
		time.Sleep(sleep)
		sleep = min(2*sleep, 5*time.Millisecond)
	}
	return nil
}

func (d *nativeDriver) sync(ctx context.Context) error {
	done := false
	d.queue.OnSubmittedWorkDone(func(webgpu.QueueWorkDoneStatus) { done = true })
	return d.pollUntil(ctx, func() bool { return done })
}

func (d *nativeDriver) newKernel(spec KernelSpec, storage []BindingKind, uniform bool) (kernelHandle, error) {
	code, err := Specialize(spec.Code, spec.Constants)
	if err != nil {
		return nil, err
	}
	k := &nativeKernel{}
	ok := false
	defer func() {
		if !ok {
			k.release()
		}
	}()
	k.module, err = d.dev.CreateShaderModule(&webgpu.ShaderModuleDescriptor{Label: spec.Label,
		WGSLDescriptor: &webgpu.ShaderModuleWGSLDescriptor{Code: code}})
	if err != nil {
		return nil, err
	}
	entries := make([]webgpu.BindGroupLayoutEntry, 0, len(storage)+1)
	for i, kind := range storage {
		t := webgpu.BufferBindingTypeReadOnlyStorage
		if kind == ReadWrite {
			t = webgpu.BufferBindingTypeStorage
		}
		entries = append(entries, webgpu.BindGroupLayoutEntry{Binding: uint32(i), Visibility: webgpu.ShaderStageCompute,
			Buffer: webgpu.BufferBindingLayout{Type: t}})
	}
	if uniform {
		entries = append(entries, webgpu.BindGroupLayoutEntry{Binding: uint32(len(storage)), Visibility: webgpu.ShaderStageCompute,
			Buffer: webgpu.BufferBindingLayout{Type: webgpu.BufferBindingTypeUniform, HasDynamicOffset: true}})
	}
	if k.bgl, err = d.dev.CreateBindGroupLayout(&webgpu.BindGroupLayoutDescriptor{Label: spec.Label, Entries: entries}); err != nil {
		return nil, err
	}
	if k.layout, err = d.dev.CreatePipelineLayout(&webgpu.PipelineLayoutDescriptor{Label: spec.Label,
		BindGroupLayouts: []*webgpu.BindGroupLayout{k.bgl}}); err != nil {
		return nil, err
	}
	if k.pipeline, err = d.dev.CreateComputePipeline(&webgpu.ComputePipelineDescriptor{Label: spec.Label, Layout: k.layout,
		Compute: webgpu.ProgrammableStageDescriptor{Module: k.module, EntryPoint: spec.Entry}}); err != nil {
		return nil, err
	}
	ok = true
	return k, nil
}

func (k *nativeKernel) release() {
	if k.pipeline != nil {
		k.pipeline.Release()
	}
	if k.layout != nil {
		k.layout.Release()
	}
	if k.bgl != nil {
		k.bgl.Release()
	}
	if k.module != nil {
		k.module.Release()
	}
}

func (d *nativeDriver) newBindGroup(kh kernelHandle, entries []bindEntry) (bindGroupHandle, error) {
	k := kh.(*nativeKernel)
	e := make([]webgpu.BindGroupEntry, len(entries))
	for i, be := range entries {
		e[i] = webgpu.BindGroupEntry{Binding: uint32(i), Buffer: be.h.(*webgpu.Buffer), Offset: be.off, Size: be.size}
	}
	return d.dev.CreateBindGroup(&webgpu.BindGroupDescriptor{Layout: k.bgl, Entries: e})
}

func (d *nativeDriver) releaseBindGroup(bg bindGroupHandle) { bg.(*webgpu.BindGroup).Release() }

func (d *nativeDriver) submit(ctx context.Context, cmds []encoded) error {
	enc, err := d.dev.CreateCommandEncoder(nil)
	if err != nil {
		return err
	}
	defer enc.Release()
	var pass *webgpu.ComputePassEncoder
	endPass := func() error {
		if pass == nil {
			return nil
		}
		err := pass.End()
		pass.Release() // before Finish: gfx-rs/wgpu-native#412
		pass = nil
		return err
	}
	dyn := make([]uint32, 1)
	for _, c := range cmds {
		if c.k == nil {
			if err := endPass(); err != nil {
				return err
			}
			if err := enc.CopyBufferToBuffer(c.src.(*webgpu.Buffer), c.srcOff, c.dst.(*webgpu.Buffer), c.dstOff, c.n); err != nil {
				return err
			}
			continue
		}
		if pass == nil {
			pass = enc.BeginComputePass(nil)
		}
		pass.SetPipeline(c.k.(*nativeKernel).pipeline)
		var offs []uint32
		if c.hasDyn {
			dyn[0] = c.dynOffset
			offs = dyn
		}
		pass.SetBindGroup(0, c.bg.(*webgpu.BindGroup), offs)
		pass.DispatchWorkgroups(c.x, c.y, c.z)
	}
	if err := endPass(); err != nil {
		return err
	}
	cb, err := enc.Finish(nil)
	if err != nil {
		return err
	}
	defer cb.Release()
	d.queue.Submit(cb)
	return d.lost()
}
