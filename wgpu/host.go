package wgpu

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// HostSession serves one WebAssembly guest's use of a device through the
// lumina_wgpu ABI (ABI.md): it gives out small integer handles for the
// driver objects the guest makes, and validates every request as WebGPU
// would, so that no guest input reaches the native implementation in a form
// it would reject (wgpu-native turns an uncaptured validation error into a
// process abort). Package wasmhost wraps it with guest-memory checks.
type HostSession struct {
	d       *Device
	mu      sync.Mutex
	next    uint32
	views   map[uint32]bool
	buffers map[uint32]*hostBuffer
	kernels map[uint32]*hostKernel
	groups  map[uint32]*hostGroup
}

type hostBuffer struct {
	view    uint32
	h       bufferHandle
	size    uint64
	uniform bool
	groups  map[uint32]bool // bind groups that reference it
}

type hostKernel struct {
	h       kernelHandle
	storage []BindingKind
	uniform bool
}

type hostGroup struct {
	view      uint32
	h         bindGroupHandle
	kernel    uint32
	buffers   []uint32
	uniSize   uint64 // size of the uniform binding (dynamic offset range)
	uniBuffer uint32
	dead      bool // a buffer it references was destroyed
}

// HostEntry is one bind-group entry as the guest describes it.
type HostEntry struct {
	Buffer       uint32
	Offset, Size uint64
}

// HostCommand is one submitted command as the guest describes it: a
// dispatch (Copy false) or a buffer copy.
type HostCommand struct {
	Copy                bool
	Kernel, Group       uint32
	HasDyn              bool
	DynOffset           uint32
	X, Y, Z             uint32
	Src, Dst            uint32
	SrcOff, DstOff, Len uint64
}

// Errors a HostSession reports, for mapping to ABI codes (errors.Is).
var (
	ErrHandle     = errors.New("wgpu host: unknown or released handle")
	ErrValidation = errors.New("wgpu host: invalid request")
)

// NewHostSession serves guests on d.
func NewHostSession(d *Device) *HostSession {
	return &HostSession{d: d, views: map[uint32]bool{}, buffers: map[uint32]*hostBuffer{}, kernels: map[uint32]*hostKernel{}, groups: map[uint32]*hostGroup{}}
}

// OpenView starts a guest device: a guest may open several devices, which
// share the session's native device; each view owns the buffers and bind
// groups made through it, and CloseView releases them.
func (s *HostSession) OpenView() uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.handle()
	s.views[v] = true
	return v
}

func (s *HostSession) checkView(v uint32) error {
	if !s.views[v] {
		return fmt.Errorf("%w: device %d", ErrHandle, v)
	}
	return nil
}

// CloseView releases the buffers and bind groups made through view v.
func (s *HostSession) CloseView(v uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkView(v); err != nil {
		return err
	}
	for id, g := range s.groups {
		if g.view == v {
			s.releaseGroup(id, g)
		}
	}
	for id, b := range s.buffers {
		if b.view == v {
			s.destroyBuffer(id, b)
		}
	}
	delete(s.views, v)
	return nil
}

// Device is the device the session serves.
func (s *HostSession) Device() *Device { return s.d }

func (s *HostSession) handle() uint32 {
	s.next++
	return s.next
}

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrValidation, fmt.Sprintf(format, a...))
}

func (s *HostSession) buffer(h uint32) (*hostBuffer, error) {
	b, ok := s.buffers[h]
	if !ok {
		return nil, fmt.Errorf("%w: buffer %d", ErrHandle, h)
	}
	return b, nil
}

// CreateBuffer makes a storage buffer, or a uniform buffer.
func (s *HostSession) CreateBuffer(view uint32, size uint64, uniform bool, label string) (uint32, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkView(view); err != nil {
		return 0, err
	}
	if err := s.d.check(); err != nil {
		return 0, err
	}
	if size == 0 || size%4 != 0 {
		return 0, invalid("buffer size %d is not a positive multiple of 4", size)
	}
	if size > s.d.limits.MaxBufferSize {
		return 0, &LimitError{Name: "maxBufferSize", Need: size, Have: s.d.limits.MaxBufferSize, What: fmt.Sprintf("guest buffer %q", label)}
	}
	h, err := s.d.drv.newBuffer(size, label, uniform)
	if err != nil {
		return 0, err
	}
	id := s.handle()
	s.buffers[id] = &hostBuffer{view: view, h: h, size: size, uniform: uniform, groups: map[uint32]bool{}}
	return id, nil
}

// DestroyBuffer frees a buffer; bind groups using it can no longer be
// submitted.
func (s *HostSession) DestroyBuffer(id uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := s.buffer(id)
	if err != nil {
		return err
	}
	s.destroyBuffer(id, b)
	return nil
}

func (s *HostSession) destroyBuffer(id uint32, b *hostBuffer) {
	for g := range b.groups {
		if hg, ok := s.groups[g]; ok {
			hg.dead = true
		}
	}
	s.d.drv.destroyBuffer(b.h)
	delete(s.buffers, id)
}

func checkHostRange(b *hostBuffer, off, n uint64) error {
	if off%4 != 0 || n%4 != 0 {
		return invalid("offset %d and length %d must be multiples of 4", off, n)
	}
	if off > b.size || n > b.size-off {
		return invalid("range [%d, %d) is outside a buffer of %d bytes", off, off+n, b.size)
	}
	return nil
}

// Write queues a write into a buffer.
func (s *HostSession) Write(id uint32, off uint64, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := s.buffer(id)
	if err != nil {
		return err
	}
	if err := checkHostRange(b, off, uint64(len(data))); err != nil {
		return err
	}
	if len(data) == 0 {
		return nil
	}
	return s.d.drv.write(b.h, off, data)
}

// Read waits for submitted work and returns size bytes of a storage buffer.
func (s *HostSession) Read(ctx context.Context, id uint32, off, size uint64) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := s.buffer(id)
	if err != nil {
		return nil, err
	}
	if b.uniform {
		return nil, invalid("buffer %d is a uniform buffer and cannot be read", id)
	}
	if err := checkHostRange(b, off, size); err != nil {
		return nil, err
	}
	if size == 0 {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.d.timeout)
	defer cancel()
	return s.d.drv.read(ctx, b.h, off, size)
}

// CreateKernel compiles a kernel with the layout the guest declares; the
// layout must match the one the WGSL declares.
func (s *HostSession) CreateKernel(spec KernelSpec, storage []BindingKind, uniform bool) (uint32, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.d.check(); err != nil {
		return 0, err
	}
	declared, declUniform, err := ParseLayout(spec.Code)
	if err != nil {
		return 0, invalid("kernel %q: %v", spec.Entry, err)
	}
	if len(declared) != len(storage) || declUniform != uniform {
		return 0, invalid("kernel %q: the guest's layout (%d storage, uniform %v) differs from the WGSL's (%d, %v)", spec.Entry, len(storage), uniform, len(declared), declUniform)
	}
	for i := range declared {
		if declared[i] != storage[i] {
			return 0, invalid("kernel %q: binding %d access differs from the WGSL's", spec.Entry, i)
		}
	}
	if n := uint32(len(storage)); n > s.d.limits.MaxStorageBuffersPerShaderStage || n > maxStorageBindings {
		return 0, &LimitError{Name: "maxStorageBuffersPerShaderStage", Need: uint64(n), Have: uint64(s.d.limits.MaxStorageBuffersPerShaderStage), What: fmt.Sprintf("kernel %q", spec.Entry)}
	}
	h, err := s.d.drv.newKernel(spec, storage, uniform)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrValidation, err)
	}
	id := s.handle()
	s.kernels[id] = &hostKernel{h: h, storage: storage, uniform: uniform}
	return id, nil
}

// CreateBindGroup binds buffer ranges to a kernel's bindings: its storage
// bindings in order, then its uniform buffer (whose Size is the range
// visible at each dynamic offset).
func (s *HostSession) CreateBindGroup(view, kernel uint32, entries []HostEntry) (uint32, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkView(view); err != nil {
		return 0, err
	}
	k, ok := s.kernels[kernel]
	if !ok {
		return 0, fmt.Errorf("%w: kernel %d", ErrHandle, kernel)
	}
	want := len(k.storage)
	if k.uniform {
		want++
	}
	if len(entries) != want {
		return 0, invalid("%d entries for a kernel with %d bindings", len(entries), want)
	}
	lim := s.d.limits
	g := &hostGroup{view: view, kernel: kernel}
	drvEntries := make([]bindEntry, len(entries))
	for i, e := range entries {
		b, err := s.buffer(e.Buffer)
		if err != nil {
			return 0, err
		}
		isUniform := k.uniform && i == len(entries)-1
		if b.uniform != isUniform {
			return 0, invalid("binding %d: buffer %d has the wrong usage", i, e.Buffer)
		}
		if e.Size == 0 {
			return 0, invalid("binding %d: size 0", i)
		}
		if err := checkHostRange(b, e.Offset, e.Size); err != nil {
			return 0, invalid("binding %d: %v", i, err)
		}
		if isUniform {
			if e.Offset != 0 || e.Size > lim.MaxUniformBufferBindingSize {
				return 0, invalid("uniform binding: offset %d (must be 0), size %d (limit %d)", e.Offset, e.Size, lim.MaxUniformBufferBindingSize)
			}
			g.uniSize, g.uniBuffer = e.Size, e.Buffer
		} else {
			if e.Offset%uint64(lim.MinStorageBufferOffsetAlignment) != 0 {
				return 0, invalid("binding %d: offset %d is not a multiple of %d", i, e.Offset, lim.MinStorageBufferOffsetAlignment)
			}
			if e.Size > lim.MaxStorageBufferBindingSize {
				return 0, &LimitError{Name: "maxStorageBufferBindingSize", Need: e.Size, Have: lim.MaxStorageBufferBindingSize, What: fmt.Sprintf("guest binding %d", i)}
			}
			for j := range i {
				f := entries[j]
				if f.Buffer == e.Buffer && (k.storage[i] == ReadWrite || k.storage[j] == ReadWrite) {
					return 0, invalid("bindings %d and %d use one buffer and one is writable", j, i)
				}
			}
		}
		drvEntries[i] = bindEntry{h: b.h, off: e.Offset, size: e.Size}
		g.buffers = append(g.buffers, e.Buffer)
	}
	h, err := s.d.drv.newBindGroup(k.h, drvEntries)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrValidation, err)
	}
	g.h = h
	id := s.handle()
	s.groups[id] = g
	for _, b := range g.buffers {
		s.buffers[b].groups[id] = true
	}
	return id, nil
}

// ReleaseBindGroup releases a bind group.
func (s *HostSession) ReleaseBindGroup(id uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.groups[id]
	if !ok {
		return fmt.Errorf("%w: bind group %d", ErrHandle, id)
	}
	s.releaseGroup(id, g)
	return nil
}

func (s *HostSession) releaseGroup(id uint32, g *hostGroup) {
	s.d.drv.releaseBindGroup(g.h)
	for _, b := range g.buffers {
		if hb, ok := s.buffers[b]; ok {
			delete(hb.groups, id)
		}
	}
	delete(s.groups, id)
}

// Submit validates the commands and submits them in one command buffer.
func (s *HostSession) Submit(ctx context.Context, cmds []HostCommand) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.d.check(); err != nil {
		return err
	}
	lim := s.d.limits
	enc := make([]encoded, len(cmds))
	for i, c := range cmds {
		if c.Copy {
			src, err := s.buffer(c.Src)
			if err != nil {
				return err
			}
			dst, err := s.buffer(c.Dst)
			if err != nil {
				return err
			}
			if src.uniform {
				return invalid("command %d: a uniform buffer cannot be a copy source", i)
			}
			if err := checkHostRange(src, c.SrcOff, c.Len); err != nil {
				return invalid("command %d source: %v", i, err)
			}
			if err := checkHostRange(dst, c.DstOff, c.Len); err != nil {
				return invalid("command %d destination: %v", i, err)
			}
			if c.Src == c.Dst {
				return invalid("command %d: a copy within one buffer (WebGPU copies between different buffers)", i)
			}
			enc[i] = encoded{src: src.h, dst: dst.h, srcOff: c.SrcOff, dstOff: c.DstOff, n: c.Len}
			continue
		}
		k, ok := s.kernels[c.Kernel]
		if !ok {
			return fmt.Errorf("%w: command %d: kernel %d", ErrHandle, i, c.Kernel)
		}
		g, ok := s.groups[c.Group]
		if !ok {
			return fmt.Errorf("%w: command %d: bind group %d", ErrHandle, i, c.Group)
		}
		if g.kernel != c.Kernel {
			return invalid("command %d: bind group %d was made for kernel %d, not %d", i, c.Group, g.kernel, c.Kernel)
		}
		if g.dead {
			return invalid("command %d: bind group %d uses a destroyed buffer", i, c.Group)
		}
		if c.HasDyn != k.uniform {
			return invalid("command %d: dynamic offset given %v, kernel has a uniform block %v", i, c.HasDyn, k.uniform)
		}
		if k.uniform {
			ub := s.buffers[g.uniBuffer]
			if c.DynOffset%lim.MinUniformBufferOffsetAlignment != 0 || uint64(c.DynOffset)+g.uniSize > ub.size {
				return invalid("command %d: dynamic offset %d (alignment %d) with %d bytes exceeds the uniform buffer of %d", i, c.DynOffset, lim.MinUniformBufferOffsetAlignment, g.uniSize, ub.size)
			}
		}
		per := lim.MaxComputeWorkgroupsPerDimension
		if c.X > per || c.Y > per || c.Z > per {
			return &LimitError{Name: "maxComputeWorkgroupsPerDimension", Need: uint64(max(c.X, c.Y, c.Z)), Have: uint64(per), What: fmt.Sprintf("guest command %d", i)}
		}
		enc[i] = encoded{k: k.h, bg: g.h, dynOffset: c.DynOffset, hasDyn: c.HasDyn, x: c.X, y: c.Y, z: c.Z}
	}
	if len(enc) == 0 {
		return nil
	}
	return s.d.drv.submit(ctx, enc)
}

// Sync waits until submitted work has finished.
func (s *HostSession) Sync(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.d.Sync(ctx)
}

// Close releases every object the guests made (not the device; kernels are
// released with it).
func (s *HostSession) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, g := range s.groups {
		s.releaseGroup(id, g)
	}
	for id, b := range s.buffers {
		s.destroyBuffer(id, b)
	}
	clear(s.kernels)
	clear(s.views)
}
