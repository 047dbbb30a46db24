package wgpu

import "context"

// The driver is what each build-tagged implementation provides. Everything
// above it (validation, caches, the uniform arena, grid splitting) is
// shared, so the implementations stay thin and behave alike.
type (
	bufferHandle    any
	kernelHandle    any
	bindGroupHandle any
)

type bindEntry struct {
	h         bufferHandle
	off, size uint64
}

// encoded is one command as the driver sees it: a dispatch (k != nil) with
// its bind group and the uniform slot as dynamic offset, or a copy.
type encoded struct {
	k         kernelHandle
	bg        bindGroupHandle
	dynOffset uint32
	hasDyn    bool // the kernel has a uniform block bound at dynOffset
	x, y, z   uint32

	src, dst       bufferHandle
	srcOff, dstOff uint64
	n              uint64
}

type driver interface {
	// lost returns an error wrapping ErrDeviceLost once the device is lost.
	lost() error
	close()
	// newBuffer makes a storage buffer (copy source and destination), or a
	// uniform buffer (copy destination) when uniform is set.
	newBuffer(size uint64, label string, uniform bool) (bufferHandle, error)
	destroyBuffer(h bufferHandle)
	write(h bufferHandle, off uint64, data []byte) error
	read(ctx context.Context, h bufferHandle, off, size uint64) ([]byte, error)
	// newKernel compiles spec with an explicit layout: the storage bindings
	// in order, then (if uniform) a uniform binding with a dynamic offset.
	newKernel(spec KernelSpec, storage []BindingKind, uniform bool) (kernelHandle, error)
	newBindGroup(k kernelHandle, entries []bindEntry) (bindGroupHandle, error)
	releaseBindGroup(bg bindGroupHandle)
	// submit encodes the commands into one command buffer (dispatches in
	// one compute pass until a copy intervenes) and submits it.
	submit(ctx context.Context, cmds []encoded) error
	// sync waits until the queue is idle.
	sync(ctx context.Context) error
}
