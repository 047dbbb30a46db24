package wgpu

import (
	"context"
	"fmt"
)

// Binding is a range of a buffer bound to one storage binding of a kernel.
// Size 0 means "to the end of the buffer".
type Binding struct {
	Buffer *Buffer
	Offset uint64
	Size   uint64
}

// Bind binds a whole buffer.
func Bind(b *Buffer) Binding { return Binding{Buffer: b} }

// uniformStride is the distance between parameter slots in the uniform
// arena: 256 bytes satisfies minUniformBufferOffsetAlignment on every
// adapter (the spec's maximum for that limit).
const uniformStride = 256

// maxStorageBindings bounds the storage bindings of one kernel, so that a
// bind-group key is a comparable fixed-size value. The WebGPU default limit
// is 8 per stage.
const maxStorageBindings = 8

type bindKey struct {
	id, off, size uint64
}

type bindGroupKey struct {
	k        *Kernel
	n        int
	b        [maxStorageBindings]bindKey
	arena    uint64 // id of the uniform arena buffer, 0 when the kernel has none
	uniBytes uint64
}

type command struct {
	// dispatch
	k       *Kernel
	bg      bindGroupKey
	bufs    [maxStorageBindings]*Buffer
	slot    uint32 // byte offset into the uniform arena
	x, y, z uint32
	// copy (k == nil)
	src, dst       *Buffer
	srcOff, dstOff uint64
	n              uint64
}

// Batch records dispatches and copies and submits them together, in order,
// in one command buffer: a later dispatch sees what an earlier one wrote.
// Errors are sticky: the first one is kept and returned by Submit, and
// later recordings are ignored (the image/png encoder's pattern), so a long
// sequence of dispatches is checked once.
type Batch struct {
	dev      *Device
	cmds     []command
	uniforms []byte
	err      error
}

// NewBatch starts an empty batch.
func (d *Device) NewBatch() *Batch { return &Batch{dev: d} }

// Err returns the first error recorded so far.
func (b *Batch) Err() error { return b.err }

// Len is the number of recorded commands.
func (b *Batch) Len() int { return len(b.cmds) }

func (b *Batch) fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

// Grid splits a count of workgroups into a 2-D grid within the device's
// per-dimension limit. The grid may hold up to x-1 workgroups more than
// groups; kernels linearise their id as wg.x + wg.y*num_workgroups.x and
// guard against their own bounds.
func (d *Device) Grid(groups uint32) (x, y uint32) {
	return Grid(groups, d.limits.MaxComputeWorkgroupsPerDimension)
}

// Grid is Device.Grid for an explicit per-dimension limit.
func Grid(groups, perDim uint32) (x, y uint32) {
	if groups <= perDim {
		return groups, 1
	}
	y = (groups + perDim - 1) / perDim
	x = (groups + y - 1) / y
	return x, y
}

// Dispatch records groups workgroups of kernel k (split into a 2-D grid
// when above the per-dimension limit, see Grid). params is the kernel's
// uniform block (nil when it has none); bindings fill the storage bindings
// in order. The params bytes are copied.
func (b *Batch) Dispatch(k *Kernel, groups uint32, params []byte, bindings ...Binding) {
	if b.err != nil {
		return
	}
	if err := b.dispatch(k, groups, params, bindings); err != nil {
		b.fail(err)
	}
}

func (b *Batch) dispatch(k *Kernel, groups uint32, params []byte, bindings []Binding) error {
	if k == nil {
		return fmt.Errorf("wgpu: dispatch of a nil kernel")
	}
	lim := b.dev.limits
	what := fmt.Sprintf("dispatch %q", k.spec.Label)
	if len(bindings) != len(k.layout) {
		return fmt.Errorf("wgpu: %s: %d storage bindings given, the kernel declares %d", what, len(bindings), len(k.layout))
	}
	if groups == 0 {
		return fmt.Errorf("wgpu: %s: zero workgroups", what)
	}
	key := bindGroupKey{k: k, n: len(bindings)}
	var bufs [maxStorageBindings]*Buffer
	for i, bd := range bindings {
		if err := bd.Buffer.usable(fmt.Sprintf("%s binding %d", what, i)); err != nil {
			return err
		}
		if bd.Buffer.dev != b.dev {
			return fmt.Errorf("wgpu: %s binding %d: buffer %q belongs to another device", what, i, bd.Buffer.label)
		}
		size := bd.Size
		if size == 0 && bd.Offset < bd.Buffer.size {
			size = bd.Buffer.size - bd.Offset
		}
		if err := checkRange(bd.Buffer, bd.Offset, size, fmt.Sprintf("%s binding %d", what, i)); err != nil {
			return err
		}
		if bd.Offset%uint64(lim.MinStorageBufferOffsetAlignment) != 0 {
			return fmt.Errorf("wgpu: %s binding %d: offset %d is not a multiple of minStorageBufferOffsetAlignment %d", what, i, bd.Offset, lim.MinStorageBufferOffsetAlignment)
		}
		if size > lim.MaxStorageBufferBindingSize {
			return &LimitError{Name: "maxStorageBufferBindingSize", Need: size, Have: lim.MaxStorageBufferBindingSize,
				What: fmt.Sprintf("%s binding %d (buffer %q)", what, i, bd.Buffer.label)}
		}
		key.b[i] = bindKey{bd.Buffer.id, bd.Offset, size}
		bufs[i] = bd.Buffer
	}
	// A buffer bound writable may not be bound a second time in the same
	// dispatch, even at a disjoint range: WebGPU tracks usage per buffer,
	// and a writable storage usage excludes any other in one dispatch.
	for i, bi := range key.b[:key.n] {
		for j, bj := range key.b[:key.n] {
			if i < j && bi.id == bj.id && (k.layout[i] == ReadWrite || k.layout[j] == ReadWrite) {
				return fmt.Errorf("wgpu: %s: bindings %d and %d use buffer %q and one is writable (WebGPU allows a writable buffer only once per dispatch)", what, i, j, bindings[i].Buffer.label)
			}
		}
	}
	slot := uint32(len(b.uniforms))
	switch {
	case k.uniform && len(params) == 0:
		return fmt.Errorf("wgpu: %s: the kernel has a uniform block but no params were given", what)
	case !k.uniform && len(params) != 0:
		return fmt.Errorf("wgpu: %s: params given but the kernel declares no uniform block", what)
	case k.uniform:
		n := (uint64(len(params)) + 15) &^ 15
		if n > lim.MaxUniformBufferBindingSize {
			return &LimitError{Name: "maxUniformBufferBindingSize", Need: n, Have: lim.MaxUniformBufferBindingSize, What: what}
		}
		key.uniBytes = n
		b.uniforms = append(b.uniforms, params...)
		pad := (uniformStride - len(b.uniforms)%uniformStride) % uniformStride
		b.uniforms = append(b.uniforms, make([]byte, pad)...)
	}
	x, y := b.dev.Grid(groups)
	if y > lim.MaxComputeWorkgroupsPerDimension {
		return &LimitError{Name: "maxComputeWorkgroupsPerDimension", Need: uint64(y), Have: uint64(lim.MaxComputeWorkgroupsPerDimension), What: what}
	}
	b.cmds = append(b.cmds, command{k: k, bg: key, bufs: bufs, slot: slot, x: x, y: y, z: 1})
	return nil
}

// Copy records a buffer-to-buffer copy of n bytes.
func (b *Batch) Copy(dst *Buffer, dstOff uint64, src *Buffer, srcOff uint64, n uint64) {
	if b.err != nil {
		return
	}
	if err := checkRange(src, srcOff, n, "copy source"); err != nil {
		b.fail(err)
		return
	}
	if err := checkRange(dst, dstOff, n, "copy destination"); err != nil {
		b.fail(err)
		return
	}
	if src == dst {
		b.fail(fmt.Errorf("wgpu: copy within buffer %q: WebGPU copies only between different buffers", src.label))
		return
	}
	b.cmds = append(b.cmds, command{src: src, dst: dst, srcOff: srcOff, dstOff: dstOff, n: n})
}

// Submit sends the recorded work to the GPU and empties the batch so it can
// be reused. It does not wait for the work to finish (Device.Sync and
// Device.Read do). The first recording or submission error is returned.
func (b *Batch) Submit(ctx context.Context) error {
	defer b.reset()
	if b.err != nil {
		return b.err
	}
	if len(b.cmds) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return b.dev.submit(ctx, b.cmds, b.uniforms)
}

// Reset drops the recorded commands and the recorded error.
func (b *Batch) Reset() { b.reset() }

func (b *Batch) reset() {
	b.cmds = b.cmds[:0]
	b.uniforms = b.uniforms[:0]
	b.err = nil
}

// Sync waits until all submitted work has finished.
func (d *Device) Sync(ctx context.Context) error {
	if err := d.check(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	if err := d.drv.sync(ctx); err != nil {
		return fmt.Errorf("wgpu: wait for submitted work: %w", err)
	}
	return nil
}

func (d *Device) submit(ctx context.Context, cmds []command, uniforms []byte) error {
	if err := d.check(); err != nil {
		return err
	}
	for _, c := range cmds {
		for _, buf := range c.bufs[:c.bg.n] {
			if buf.h == nil {
				return fmt.Errorf("wgpu: dispatch %q: buffer %q was destroyed after recording", c.k.spec.Label, buf.label)
			}
		}
		if c.k == nil && (c.src.h == nil || c.dst.h == nil) {
			return fmt.Errorf("wgpu: copy between %q and %q: a buffer was destroyed after recording", c.src.label, c.dst.label)
		}
	}
	if len(uniforms) > 0 {
		if d.arena == nil || d.arena.size < uint64(len(uniforms)) {
			size := uint64(64 << 10)
			for size < uint64(len(uniforms)) {
				size *= 2
			}
			if d.arena != nil {
				d.dropBindGroups(d.arena.id)
				d.arena.Destroy()
			}
			h, err := d.drv.newBuffer(size, "uniform arena", true)
			if err != nil {
				return fmt.Errorf("wgpu: create uniform arena of %d bytes: %w", size, err)
			}
			d.arena = &Buffer{dev: d, h: h, size: size, label: "uniform arena", id: nextBufferID()}
		}
		if err := d.drv.write(d.arena.h, 0, uniforms); err != nil {
			return fmt.Errorf("wgpu: write uniforms: %w", err)
		}
	}
	enc := make([]encoded, len(cmds))
	for i, c := range cmds {
		if c.k == nil {
			enc[i] = encoded{src: c.src.h, dst: c.dst.h, srcOff: c.srcOff, dstOff: c.dstOff, n: c.n}
			continue
		}
		if c.k.uniform {
			c.bg.arena = d.arena.id
		}
		bg, err := d.bindGroup(c)
		if err != nil {
			return err
		}
		enc[i] = encoded{k: c.k.h, bg: bg, dynOffset: c.slot, hasDyn: c.k.uniform, x: c.x, y: c.y, z: c.z}
	}
	if err := d.drv.submit(ctx, enc); err != nil {
		return fmt.Errorf("wgpu: submit %d commands: %w", len(cmds), err)
	}
	d.mu.Lock()
	d.stats.Submits++
	d.mu.Unlock()
	return nil
}

// bindGroup returns the cached bind group for a dispatch, creating it on
// first use. Bind groups are keyed by kernel and exact buffer ranges, so a
// loop that repeats the same dispatches creates none after its first pass.
func (d *Device) bindGroup(c command) (bindGroupHandle, error) {
	d.mu.Lock()
	bg, ok := d.bgs[c.bg]
	d.mu.Unlock()
	if ok {
		return bg, nil
	}
	entries := make([]bindEntry, 0, c.bg.n+1)
	for i, b := range c.bg.b[:c.bg.n] {
		entries = append(entries, bindEntry{h: c.bufs[i].h, off: b.off, size: b.size})
	}
	if c.k.uniform {
		entries = append(entries, bindEntry{h: d.arena.h, size: c.bg.uniBytes})
	}
	bg, err := d.drv.newBindGroup(c.k.h, entries)
	if err != nil {
		return nil, fmt.Errorf("wgpu: bind group for %q: %w", c.k.spec.Label, err)
	}
	d.mu.Lock()
	if d.bgs == nil {
		d.bgs = map[bindGroupKey]bindGroupHandle{}
	}
	d.bgs[c.bg] = bg
	d.stats.BindGroups++
	d.mu.Unlock()
	return bg, nil
}

// dropBindGroups releases the cached bind groups that reference a buffer.
func (d *Device) dropBindGroups(id uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for key, bg := range d.bgs {
		hit := key.arena == id
		for _, b := range key.b[:key.n] {
			hit = hit || b.id == id
		}
		if hit {
			d.drv.releaseBindGroup(bg)
			delete(d.bgs, key)
		}
	}
}
