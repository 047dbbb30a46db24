//go:build wasip1

package wgpu

// The wasip1 implementation: the driver calls the lumina_wgpu host
// functions (ABI.md), which a host such as wgpu/wasmhost backs with a real
// device. A plain WASI runtime without those imports cannot instantiate a
// module built from this package; run such modules with lumina's host.

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"unsafe"
)

const implemented = true

//go:wasmimport lumina_wgpu version
func abiVersion() int32

//go:wasmimport lumina_wgpu open
func abiOpen(opts unsafe.Pointer, optsLen uint32, out unsafe.Pointer, outCap uint32) int32

//go:wasmimport lumina_wgpu buffer_create
func abiBufferCreate(dev uint32, size uint64, uniform uint32, label unsafe.Pointer, labelLen uint32) int32

//go:wasmimport lumina_wgpu buffer_destroy
func abiBufferDestroy(buf uint32) int32

//go:wasmimport lumina_wgpu buffer_write
func abiBufferWrite(buf uint32, off uint64, ptr unsafe.Pointer, n uint32) int32

//go:wasmimport lumina_wgpu buffer_read
func abiBufferRead(buf uint32, off uint64, ptr unsafe.Pointer, n uint32) int32

//go:wasmimport lumina_wgpu kernel_create
func abiKernelCreate(code unsafe.Pointer, codeLen uint32, entry unsafe.Pointer, entryLen uint32, layout unsafe.Pointer, layoutLen uint32, uniform uint32, consts unsafe.Pointer, constsLen uint32) int32

//go:wasmimport lumina_wgpu bindgroup_create
func abiBindGroupCreate(dev, kernel uint32, entries unsafe.Pointer, n uint32) int32

//go:wasmimport lumina_wgpu bindgroup_release
func abiBindGroupRelease(bg uint32) int32

//go:wasmimport lumina_wgpu submit
func abiSubmit(cmds unsafe.Pointer, n uint32) int32

//go:wasmimport lumina_wgpu sync
func abiSync() int32

//go:wasmimport lumina_wgpu close
func abiClose(dev uint32) int32

//go:wasmimport lumina_wgpu last_error
func abiLastError(ptr unsafe.Pointer, n uint32) int32

// ABI error codes (ABI.md).
const (
	abiErrInvalid     = -1
	abiErrHandle      = -2
	abiErrLost        = -3
	abiErrUnavailable = -4
	abiErrLimit       = -5
	abiErrValidation  = -6
)

// abiVersionWanted is the ABI version this guest speaks.
const abiVersionWanted = 1

func ptr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(&b[0])
}

// abiErr turns a negative result into an error with the host's message.
func abiErr(code int32) error {
	buf := make([]byte, 512)
	n := abiLastError(ptr(buf), uint32(len(buf)))
	if int(n) > len(buf) {
		buf = make([]byte, n)
		n = abiLastError(ptr(buf), uint32(len(buf)))
	}
	msg := string(buf[:max(0, min(int(n), len(buf)))])
	switch code {
	case abiErrLost:
		return fmt.Errorf("%w: %s", ErrDeviceLost, msg)
	case abiErrUnavailable:
		return fmt.Errorf("%w: %s", ErrUnavailable, msg)
	}
	return fmt.Errorf("host: %s (code %d)", msg, code)
}

// wasiDriver is one guest device: a handle the host gave out in open.
type wasiDriver struct{ dev uint32 }

type hostOpen struct {
	Info     AdapterInfo `json:"info"`
	Limits   Limits      `json:"limits"`
	Features []string    `json:"features"`
}

func openDriver(ctx context.Context, opt Options) (driver, AdapterInfo, Limits, []string, error) {
	if v := abiVersion(); v != abiVersionWanted {
		return nil, AdapterInfo{}, Limits{}, nil, fmt.Errorf("%w: the host speaks lumina_wgpu ABI %d, this module %d; use a matching lumina host", ErrUnavailable, v, abiVersionWanted)
	}
	opts, _ := json.Marshal(map[string]any{"backend": opt.Backend, "max_storage_binding": opt.MaxStorageBinding, "label": opt.Label})
	out := make([]byte, 4096)
	dev := abiOpen(ptr(opts), uint32(len(opts)), ptr(out), uint32(len(out)))
	if dev < 0 {
		return nil, AdapterInfo{}, Limits{}, nil, abiErr(dev)
	}
	n := binary.LittleEndian.Uint32(out)
	if int(n) > len(out)-4 {
		abiClose(uint32(dev))
		return nil, AdapterInfo{}, Limits{}, nil, fmt.Errorf("wgpu: the host's open answer (%d bytes) does not fit", n)
	}
	out = out[4 : 4+n]
	var r hostOpen
	if err := json.Unmarshal(out, &r); err != nil {
		return nil, AdapterInfo{}, Limits{}, nil, fmt.Errorf("wgpu: the host's open answer is not valid JSON: %v", err)
	}
	return wasiDriver{uint32(dev)}, r.Info, r.Limits, r.Features, nil
}

func (wasiDriver) lost() error { return nil }
func (d wasiDriver) close()    { abiClose(d.dev) }

func (d wasiDriver) newBuffer(size uint64, label string, uniform bool) (bufferHandle, error) {
	u := uint32(0)
	if uniform {
		u = 1
	}
	lb := []byte(label)
	h := abiBufferCreate(d.dev, size, u, ptr(lb), uint32(len(lb)))
	if h < 0 {
		return nil, abiErr(h)
	}
	return uint32(h), nil
}

func (wasiDriver) destroyBuffer(h bufferHandle) { abiBufferDestroy(h.(uint32)) }

func (wasiDriver) write(h bufferHandle, off uint64, data []byte) error {
	if r := abiBufferWrite(h.(uint32), off, ptr(data), uint32(len(data))); r < 0 {
		return abiErr(r)
	}
	return nil
}

func (wasiDriver) read(ctx context.Context, h bufferHandle, off, size uint64) ([]byte, error) {
	out := make([]byte, size)
	if r := abiBufferRead(h.(uint32), off, ptr(out), uint32(size)); r < 0 {
		return nil, abiErr(r)
	}
	return out, nil
}

func (wasiDriver) newKernel(spec KernelSpec, storage []BindingKind, uniform bool) (kernelHandle, error) {
	layout := make([]byte, len(storage))
	for i, k := range storage {
		layout[i] = byte(k)
	}
	var consts []byte
	if len(spec.Constants) > 0 {
		consts, _ = json.Marshal(spec.Constants)
	}
	code, entry := []byte(spec.Code), []byte(spec.Entry)
	u := uint32(0)
	if uniform {
		u = 1
	}
	h := abiKernelCreate(ptr(code), uint32(len(code)), ptr(entry), uint32(len(entry)), ptr(layout), uint32(len(layout)), u, ptr(consts), uint32(len(consts)))
	if h < 0 {
		return nil, abiErr(h)
	}
	return uint32(h), nil
}

func (d wasiDriver) newBindGroup(k kernelHandle, entries []bindEntry) (bindGroupHandle, error) {
	b := make([]byte, 24*len(entries))
	for i, e := range entries {
		r := b[24*i:]
		binary.LittleEndian.PutUint32(r, e.h.(uint32))
		binary.LittleEndian.PutUint64(r[8:], e.off)
		binary.LittleEndian.PutUint64(r[16:], e.size)
	}
	h := abiBindGroupCreate(d.dev, k.(uint32), ptr(b), uint32(len(entries)))
	if h < 0 {
		return nil, abiErr(h)
	}
	return uint32(h), nil
}

func (wasiDriver) releaseBindGroup(bg bindGroupHandle) { abiBindGroupRelease(bg.(uint32)) }

func (wasiDriver) submit(ctx context.Context, cmds []encoded) error {
	b := make([]byte, 48*len(cmds))
	for i, c := range cmds {
		r := b[48*i:]
		put := func(j int, v uint32) { binary.LittleEndian.PutUint32(r[4*j:], v) }
		if c.k == nil {
			put(0, 1)
			put(1, c.src.(uint32))
			put(2, c.dst.(uint32))
			binary.LittleEndian.PutUint64(r[16:], c.srcOff)
			binary.LittleEndian.PutUint64(r[24:], c.dstOff)
			binary.LittleEndian.PutUint64(r[32:], c.n)
			continue
		}
		put(1, c.k.(uint32))
		put(2, c.bg.(uint32))
		if c.hasDyn {
			put(3, 1)
		}
		put(4, c.dynOffset)
		put(5, c.x)
		put(6, c.y)
		put(7, c.z)
	}
	if r := abiSubmit(ptr(b), uint32(len(cmds))); r < 0 {
		return abiErr(r)
	}
	return nil
}

func (wasiDriver) sync(ctx context.Context) error {
	if r := abiSync(); r < 0 {
		return abiErr(r)
	}
	return nil
}
