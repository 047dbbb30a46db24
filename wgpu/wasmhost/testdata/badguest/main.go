//go:build wasip1

// badguest calls the lumina_wgpu imports the way a broken or malicious
// module might: out-of-range pointers, huge lengths, unknown and
// wrong-kind handles, malformed records, and then seeded random calls. It
// prints one line per call, "name code", and exits 0 if it got this far:
// the host must answer every call with a code, never crash.
package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"unsafe"
)

//go:wasmimport lumina_wgpu open
func open(opts unsafe.Pointer, optsLen uint32, out unsafe.Pointer, outCap uint32) int32

//go:wasmimport lumina_wgpu open
func openRaw(opts, optsLen, out, outCap uint32) int32

//go:wasmimport lumina_wgpu buffer_create
func bufferCreate(dev uint32, size uint64, uniform, label, labelLen uint32) int32

//go:wasmimport lumina_wgpu buffer_destroy
func bufferDestroy(buf uint32) int32

//go:wasmimport lumina_wgpu buffer_write
func bufferWrite(buf uint32, off uint64, ptr, n uint32) int32

//go:wasmimport lumina_wgpu buffer_read
func bufferRead(buf uint32, off uint64, ptr, n uint32) int32

//go:wasmimport lumina_wgpu kernel_create
func kernelCreate(code, codeLen, entry, entryLen, layout, layoutLen, uniform, consts, constsLen uint32) int32

//go:wasmimport lumina_wgpu kernel_create
func kernelCreateP(code unsafe.Pointer, codeLen uint32, entry unsafe.Pointer, entryLen uint32, layout unsafe.Pointer, layoutLen uint32, uniform uint32, consts unsafe.Pointer, constsLen uint32) int32

//go:wasmimport lumina_wgpu bindgroup_create
func bindGroupCreate(dev, kernel, entries, n uint32) int32

//go:wasmimport lumina_wgpu bindgroup_create
func bindGroupCreateP(dev, kernel uint32, entries unsafe.Pointer, n uint32) int32

//go:wasmimport lumina_wgpu bindgroup_release
func bindGroupRelease(bg uint32) int32

//go:wasmimport lumina_wgpu submit
func submit(cmds, n uint32) int32

//go:wasmimport lumina_wgpu submit
func submitP(cmds unsafe.Pointer, n uint32) int32

//go:wasmimport lumina_wgpu sync
func syncAll() int32

//go:wasmimport lumina_wgpu close
func closeDev(dev uint32) int32

//go:wasmimport lumina_wgpu last_error
func lastError(ptr, n uint32) int32

func say(name string, code int32) {
	fmt.Println(name, code)
	if code < 0 {
		msg := make([]byte, 300)
		n := lastError(uint32(uintptr(unsafe.Pointer(&msg[0]))), 300)
		fmt.Fprintln(os.Stderr, name, string(msg[:min(int(n), 300)]))
	}
}

const shader = `
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
struct Params { n: u32, _p0: u32, _p1: u32, _p2: u32 }
@group(0) @binding(2) var<uniform> params: Params;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
	if (g.x < params.n) { out[g.x] = a[g.x] * 2.0; }
}
`

func bytesPtr(b []byte) unsafe.Pointer { return unsafe.Pointer(&b[0]) }

func main() {
	const huge = 0xfffffff0
	// Before open: nothing exists.
	say("create-before-open", bufferCreate(1, 16, 0, 0, 0))
	say("open-bad-ptr", openRaw(huge, 64, 0, 0))
	out := make([]byte, 4096)
	opts := []byte(`{}`)
	say("open-bad-json", open(bytesPtr([]byte("{")), 1, bytesPtr(out), 4096))
	say("open-small-out", open(bytesPtr(opts), 2, bytesPtr(out), 3))
	dev := open(bytesPtr(opts), 2, bytesPtr(out), 4096)
	say("open", dev)
	if dev < 0 {
		os.Exit(1)
	}
	d := uint32(dev)
	say("create-bad-dev", bufferCreate(d+1000, 16, 0, 0, 0))
	say("create-zero", bufferCreate(d, 0, 0, 0, 0))
	say("create-unaligned", bufferCreate(d, 6, 0, 0, 0))
	say("create-huge", bufferCreate(d, 1<<60, 0, 0, 0))
	say("create-bad-label", bufferCreate(d, 16, 0, huge, 64))
	buf := bufferCreate(d, 256, 0, 0, 0)
	say("create", buf)
	uni := bufferCreate(d, 256, 1, 0, 0)
	say("create-uniform", uni)
	b := uint32(buf)
	say("write-bad-ptr", bufferWrite(b, 0, huge, 64))
	say("write-huge-len", bufferWrite(b, 0, 0, 0xffffffff))
	say("write-past-end", bufferWrite(b, 252, 0, 16))
	say("write-offset-overflow", bufferWrite(b, 1<<63, 0, 16))
	say("write-unknown", bufferWrite(9999, 0, 0, 16))
	say("read-bad-ptr", bufferRead(b, 0, huge, 64))
	say("read-uniform", bufferRead(uint32(uni), 0, 0, 16))
	say("read-past-end", bufferRead(b, 0, 0, 512))
	code, entry := []byte(shader), []byte("main")
	layout := []byte{0, 1}
	say("kernel-bad-code-ptr", kernelCreate(huge, 100, 0, 4, 0, 2, 1, 0, 0))
	say("kernel-bad-wgsl", kernelCreateP(bytesPtr([]byte("fn")), 2, bytesPtr(entry), 4, bytesPtr(layout), 2, 1, nil, 0))
	say("kernel-wrong-layout", kernelCreateP(bytesPtr(code), uint32(len(code)), bytesPtr(entry), 4, bytesPtr([]byte{1, 1}), 2, 1, nil, 0))
	say("kernel-bad-layout-byte", kernelCreateP(bytesPtr(code), uint32(len(code)), bytesPtr(entry), 4, bytesPtr([]byte{7, 1}), 2, 1, nil, 0))
	say("kernel-bad-consts", kernelCreateP(bytesPtr(code), uint32(len(code)), bytesPtr(entry), 4, bytesPtr(layout), 2, 1, bytesPtr([]byte("[")), 1))
	k := kernelCreateP(bytesPtr(code), uint32(len(code)), bytesPtr(entry), 4, bytesPtr(layout), 2, 1, nil, 0)
	say("kernel", k)
	entries := func(e ...uint64) []byte {
		r := make([]byte, 24*len(e)/3)
		for i := 0; i < len(e); i += 3 {
			o := 8 * i
			putU32(r[o:], uint32(e[i]))
			putU64(r[o+8:], e[i+1])
			putU64(r[o+16:], e[i+2])
		}
		return r
	}
	say("bg-bad-ptr", bindGroupCreate(d, uint32(k), huge, 3))
	say("bg-huge-n", bindGroupCreate(d, uint32(k), 0, 0xffffffff))
	say("bg-unknown-kernel", bindGroupCreateP(d, 9999, bytesPtr(entries(uint64(b), 0, 16, uint64(b), 128, 16, uint64(uni), 0, 16)), 3))
	say("bg-buffer-as-kernel", bindGroupCreateP(d, b, bytesPtr(entries(uint64(b), 0, 16, uint64(b), 128, 16, uint64(uni), 0, 16)), 3))
	say("bg-overlap", bindGroupCreateP(d, uint32(k), bytesPtr(entries(uint64(b), 0, 64, uint64(b), 32, 64, uint64(uni), 0, 16)), 3))
	say("bg-wrong-usage", bindGroupCreateP(d, uint32(k), bytesPtr(entries(uint64(uni), 0, 16, uint64(b), 128, 16, uint64(b), 0, 16)), 3))
	say("bg-misaligned", bindGroupCreateP(d, uint32(k), bytesPtr(entries(uint64(b), 4, 16, uint64(b), 128, 16, uint64(uni), 0, 16)), 3))
	say("bg-too-few", bindGroupCreateP(d, uint32(k), bytesPtr(entries(uint64(b), 0, 16)), 1))
	say("bg-writable-shared", bindGroupCreateP(d, uint32(k), bytesPtr(entries(uint64(b), 0, 64, uint64(b), 128, 64, uint64(uni), 0, 16)), 3))
	buf2 := bufferCreate(d, 256, 0, 0, 0)
	bg := bindGroupCreateP(d, uint32(k), bytesPtr(entries(uint64(buf2), 0, 64, uint64(b), 128, 64, uint64(uni), 0, 16)), 3)
	say("bg", bg)
	cmd := func(v ...uint32) []byte {
		r := make([]byte, 48)
		for i, x := range v {
			putU32(r[4*i:], x)
		}
		return r
	}
	say("submit-bad-ptr", submit(huge, 1))
	say("submit-huge-n", submit(0, 0xffffffff))
	say("submit-bad-kind", submitP(bytesPtr(cmd(7)), 1))
	say("submit-unknown-bg", submitP(bytesPtr(cmd(0, uint32(k), 9999, 1, 0, 1, 1, 1)), 1))
	say("submit-no-dyn", submitP(bytesPtr(cmd(0, uint32(k), uint32(bg), 0, 0, 1, 1, 1)), 1))
	say("submit-dyn-unaligned", submitP(bytesPtr(cmd(0, uint32(k), uint32(bg), 1, 3, 1, 1, 1)), 1))
	say("submit-dyn-past-end", submitP(bytesPtr(cmd(0, uint32(k), uint32(bg), 1, 256, 1, 1, 1)), 1))
	say("submit-too-many-groups", submitP(bytesPtr(cmd(0, uint32(k), uint32(bg), 1, 0, 1<<20, 1, 1)), 1))
	say("submit-copy-overlap", submitP(bytesPtr(cmd(1, b, b, 0, 0, 0, 16, 0, 64, 0)), 1))
	say("submit-copy-from-uniform", submitP(bytesPtr(cmd(1, uint32(uni), b, 0, 0, 0, 0, 0, 16, 0)), 1))
	say("submit", submitP(bytesPtr(cmd(0, uint32(k), uint32(bg), 1, 0, 1, 1, 1)), 1))
	say("sync", syncAll())
	say("destroy", bufferDestroy(b))
	say("destroy-twice", bufferDestroy(b))
	say("submit-after-destroy", submitP(bytesPtr(cmd(0, uint32(k), uint32(bg), 1, 0, 1, 1, 1)), 1))
	say("bg-release", bindGroupRelease(uint32(bg)))
	say("bg-release-twice", bindGroupRelease(uint32(bg)))
	say("last-error-bad-ptr", lastError(huge, 64))

	// Seeded random calls with random arguments.
	seed, _ := strconv.ParseUint(os.Getenv("BADGUEST_SEED"), 10, 64)
	n, _ := strconv.Atoi(os.Getenv("BADGUEST_CALLS"))
	rng := rand.New(rand.NewPCG(seed, 1))
	small := func() uint32 { return uint32(rng.IntN(40)) }
	any32 := func() uint32 {
		switch rng.IntN(3) {
		case 0:
			return small()
		case 1:
			return rng.Uint32()
		}
		return uint32(rng.IntN(1 << 20))
	}
	scratch := make([]byte, 1<<16)
	base := uint32(uintptr(unsafe.Pointer(&scratch[0])))
	ptr := func() uint32 {
		if rng.IntN(2) == 0 {
			return base + uint32(rng.IntN(1<<15))
		}
		return any32()
	}
	for range n {
		for i := range 256 {
			scratch[rng.IntN(len(scratch))] = byte(rng.Uint32())
			_ = i
		}
		switch rng.IntN(9) {
		case 0:
			bufferCreate(small(), uint64(rng.IntN(1<<16))*4, uint32(rng.IntN(2)), ptr(), small())
		case 1:
			bufferWrite(small(), uint64(rng.IntN(512)), ptr(), uint32(rng.IntN(1024)))
		case 2:
			bufferRead(small(), uint64(rng.IntN(512)), ptr(), uint32(rng.IntN(1024)))
		case 3:
			bindGroupCreate(small(), small(), ptr(), uint32(rng.IntN(5)))
		case 4:
			submit(ptr(), uint32(rng.IntN(4)))
		case 5:
			bufferDestroy(small())
		case 6:
			bindGroupRelease(small())
		case 7:
			kernelCreateP(bytesPtr(code), uint32(len(code)), bytesPtr(entry), 4, bytesPtr(layout), 2, 1, nil, 0)
		case 8:
			closeDev(small())
		}
	}
	say("random-calls", int32(n))
	say("close", closeDev(d))
	say("close-twice", closeDev(d))
}

func putU32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}
func putU64(b []byte, v uint64) { putU32(b, uint32(v)); putU32(b[4:], uint32(v>>32)) }
