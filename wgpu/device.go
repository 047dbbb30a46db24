// Package wgpu is the only code in lumina that talks to WebGPU. It offers a
// small compute-only vocabulary: Open a Device, make Buffers, compile
// Kernels (WGSL plus entry point, cached), and record dispatches into a
// Batch that is submitted at once.
//
// One API has several implementations, chosen by build tag:
//
//	native (cgo, !js)    wgpu-native through github.com/cogentcore/webgpu
//	js                   navigator.gpu through syscall/js
//	none (!cgo, !js)     Open returns ErrUnavailable
//
// Library code here never reads the environment; everything comes in Options.
//
// In the browser, every call that waits (Open, Read, Sync, NewKernel) blocks
// its goroutine on a JavaScript promise: never call it inside a js.FuncOf
// callback, which would deadlock the event loop; start a goroutine there.
package wgpu

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Options configures Open. The zero value asks for any adapter, prefers a
// high-performance one, and raises the compute limits to what the adapter
// supports.
type Options struct {
	// Backend, when not empty, requires the adapter to use this backend
	// ("vulkan", "metal", "d3d12", ...); Open fails with ErrUnavailable when
	// the adapter found uses another one (for example a GL fallback).
	Backend string
	// Features lists WebGPU features the caller needs; Open fails with a
	// *FeatureError when one is missing. Optional features the device has
	// are requested anyway and reported by Device.HasFeature.
	Features []string
	// MaxStorageBinding, when not zero, caps maxStorageBufferBindingSize
	// below what the adapter offers (tests use it to force the code paths
	// that split large tensors).
	MaxStorageBinding uint64
	// Timeout bounds every wait on the GPU (submission, readback). Zero
	// means 60 seconds.
	Timeout time.Duration
	// Label names the device in error messages and debug tools.
	Label string
}

// Limits are the device limits a compute program must respect. Open
// requests the adapter's values, so a device is not stuck at the spec's
// defaults.
type Limits struct {
	MaxStorageBufferBindingSize       uint64
	MaxBufferSize                     uint64
	MaxUniformBufferBindingSize       uint64
	MaxComputeWorkgroupStorageSize    uint32
	MaxComputeInvocationsPerWorkgroup uint32
	MaxComputeWorkgroupSizeX          uint32
	MaxComputeWorkgroupSizeY          uint32
	MaxComputeWorkgroupSizeZ          uint32
	MaxComputeWorkgroupsPerDimension  uint32
	MaxStorageBuffersPerShaderStage   uint32
	MinStorageBufferOffsetAlignment   uint32
	MinUniformBufferOffsetAlignment   uint32
}

// AdapterInfo describes the adapter a device runs on.
type AdapterInfo struct {
	Description  string // driver description, e.g. "llvmpipe (LLVM 15.0.6, 256 bits)"
	Vendor       string
	Architecture string
	Backend      string // "vulkan", "metal", "d3d12", "webgpu" (browser), ...
	Type         string // "discrete-gpu", "integrated-gpu", "cpu", ...
}

func (a AdapterInfo) String() string {
	s := a.Description
	if s == "" {
		s = a.Vendor + " " + a.Architecture
	}
	return fmt.Sprintf("%s (%s, %s)", s, a.Backend, a.Type)
}

// Device is an open WebGPU device. Its methods are safe for use by one
// goroutine at a time; the model packages serialise their use.
type Device struct {
	drv      driver
	info     AdapterInfo
	limits   Limits
	features map[string]bool
	timeout  time.Duration

	mu      sync.Mutex
	kernels map[kernelKey]*Kernel
	bgs     map[bindGroupKey]bindGroupHandle
	stats   Stats
	closed  bool
	arena   *Buffer // uniform arena shared by all batches, grown as needed
}

// Stats counts the objects a device has created, so tests can prove that a
// steady-state loop creates none.
type Stats struct {
	Buffers, Kernels, BindGroups int
	BufferBytes                  uint64 // bytes of live buffers
	PeakBufferBytes              uint64
	Submits                      int
}

// Open finds an adapter and opens a device on it with the adapter's compute
// limits. It returns an error wrapping ErrUnavailable when there is no
// usable adapter, with the reason and what to install.
func Open(ctx context.Context, opt Options) (*Device, error) {
	if opt.Timeout <= 0 {
		opt.Timeout = 60 * time.Second
	}
	drv, info, lim, feats, err := openDriver(ctx, opt)
	if err != nil {
		return nil, err
	}
	if opt.MaxStorageBinding != 0 && opt.MaxStorageBinding < lim.MaxStorageBufferBindingSize {
		lim.MaxStorageBufferBindingSize = opt.MaxStorageBinding
	}
	d := &Device{drv: drv, info: info, limits: lim, timeout: opt.Timeout,
		features: map[string]bool{}, kernels: map[kernelKey]*Kernel{}}
	for _, f := range feats {
		d.features[f] = true
	}
	for _, f := range opt.Features {
		if !d.features[f] {
			drv.close()
			return nil, &FeatureError{Name: f}
		}
	}
	return d, nil
}

// Implemented reports whether this build has a WebGPU implementation at
// all (false for CGO_ENABLED=0 and wasip1 builds, where Open always returns
// ErrUnavailable whatever the host has).
func Implemented() bool { return implemented }

// Info describes the adapter.
func (d *Device) Info() AdapterInfo { return d.info }

// Limits returns the limits granted to the device.
func (d *Device) Limits() Limits { return d.limits }

// HasFeature reports whether the device was granted a WebGPU feature.
func (d *Device) HasFeature(name string) bool { return d.features[name] }

// Stats returns the creation counters.
func (d *Device) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stats
}

// Close releases the device and everything made on it. It is safe to call
// more than once.
func (d *Device) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	d.closed = true
	d.drv.close()
}

func (d *Device) check() error {
	if d.closed {
		return fmt.Errorf("wgpu: device %q is closed", d.info.Description)
	}
	return d.drv.lost()
}

// Buffer is a GPU storage buffer usable as a binding, a copy source and a
// copy destination. Its size is a multiple of 4 bytes.
type Buffer struct {
	dev   *Device
	h     bufferHandle
	size  uint64
	label string
	id    uint64 // unique per device; bind-group cache keys use it
}

var bufferIDs struct {
	sync.Mutex
	next uint64
}

// nextBufferID gives every buffer of the process a distinct id.
func nextBufferID() uint64 {
	bufferIDs.Lock()
	defer bufferIDs.Unlock()
	bufferIDs.next++
	return bufferIDs.next
}

// NewBuffer makes a zero-filled buffer of size bytes (rounded up to a
// multiple of 4). A size above the device's maxBufferSize is a *LimitError.
func (d *Device) NewBuffer(size uint64, label string) (*Buffer, error) {
	if err := d.check(); err != nil {
		return nil, err
	}
	if size == 0 {
		return nil, fmt.Errorf("wgpu: buffer %q has size 0", label)
	}
	size = (size + 3) &^ 3
	if size > d.limits.MaxBufferSize {
		return nil, &LimitError{Name: "maxBufferSize", Need: size, Have: d.limits.MaxBufferSize, What: fmt.Sprintf("buffer %q", label)}
	}
	h, err := d.drv.newBuffer(size, label, false)
	if err != nil {
		return nil, fmt.Errorf("wgpu: create buffer %q (%d bytes): %w", label, size, err)
	}
	d.mu.Lock()
	d.stats.Buffers++
	d.stats.BufferBytes += size
	d.stats.PeakBufferBytes = max(d.stats.PeakBufferBytes, d.stats.BufferBytes)
	d.mu.Unlock()
	return &Buffer{dev: d, h: h, size: size, label: label, id: nextBufferID()}, nil
}

// Size is the buffer's size in bytes.
func (b *Buffer) Size() uint64 { return b.size }

// Label is the name the buffer was made with.
func (b *Buffer) Label() string { return b.label }

// Destroy frees the buffer's GPU memory. Using it afterwards is an error.
// Destroying twice is harmless.
func (b *Buffer) Destroy() {
	if b == nil || b.h == nil {
		return
	}
	b.dev.dropBindGroups(b.id)
	b.dev.drv.destroyBuffer(b.h)
	b.h = nil
	b.dev.mu.Lock()
	b.dev.stats.BufferBytes -= b.size
	b.dev.mu.Unlock()
}

func (b *Buffer) usable(what string) error {
	if b == nil {
		return fmt.Errorf("wgpu: %s: nil buffer", what)
	}
	if b.h == nil {
		return fmt.Errorf("wgpu: %s: buffer %q was destroyed", what, b.label)
	}
	return nil
}

func checkRange(b *Buffer, off, n uint64, what string) error {
	if err := b.usable(what); err != nil {
		return err
	}
	if off%4 != 0 || n%4 != 0 {
		return fmt.Errorf("wgpu: %s: offset %d and length %d must be multiples of 4", what, off, n)
	}
	if off > b.size || n > b.size-off {
		return fmt.Errorf("wgpu: %s: range [%d, %d) is outside buffer %q of %d bytes", what, off, off+n, b.label, b.size)
	}
	return nil
}

// Write copies data into the buffer at offset (both multiples of 4). The
// write is ordered before any later Submit.
func (d *Device) Write(b *Buffer, offset uint64, data []byte) error {
	if err := d.check(); err != nil {
		return err
	}
	if err := checkRange(b, offset, uint64(len(data)), "write"); err != nil {
		return err
	}
	if len(data) == 0 {
		return nil
	}
	return d.drv.write(b.h, offset, data)
}

// Read copies size bytes at offset out of the buffer once all submitted
// work has finished. It blocks until then, the context ends or the device
// timeout passes.
func (d *Device) Read(ctx context.Context, b *Buffer, offset, size uint64) ([]byte, error) {
	if err := d.check(); err != nil {
		return nil, err
	}
	if err := checkRange(b, offset, size, "read"); err != nil {
		return nil, err
	}
	if size == 0 {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	out, err := d.drv.read(ctx, b.h, offset, size)
	if err != nil {
		return nil, fmt.Errorf("wgpu: read %d bytes of buffer %q: %w", size, b.label, err)
	}
	return out, nil
}
