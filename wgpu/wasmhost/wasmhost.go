// Package wasmhost runs lumina's WebAssembly build (GOOS=wasip1) headless on
// a real GPU: it instantiates the module with wazero and WASI, and provides
// the lumina_wgpu host functions (../ABI.md) backed by a native wgpu device,
// so CI tests what the browser runs without a browser.
//
// The host never trusts the guest: every pointer and length is checked
// against the guest's memory, every handle against the objects that guest
// made, and every request against the device's limits and WebGPU's rules
// (wgpu.HostSession); a bad guest gets an error code, never a host crash.
package wasmhost

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"

	"github.com/luminaweb/lumina/wgpu"
)

// ModuleName is the import module of the ABI.
const ModuleName = "lumina_wgpu"

// Version is the ABI version this host implements.
const Version = 1

// ABI error codes.
const (
	ErrInvalid     = -1
	ErrHandle      = -2
	ErrLost        = -3
	ErrUnavailable = -4
	ErrLimit       = -5
	ErrValidation  = -6
	ErrInternal    = -7
)

// Config says how to run a module. The zero value runs with no arguments,
// discards output, mounts nothing, and opens the first adapter when the
// guest asks for a device.
type Config struct {
	Args           []string // argv, including argv[0]
	Env            []string // "KEY=value"
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Mounts maps guest paths to host directories (e.g. "/": "/").
	Mounts map[string]string
	// CacheDir, when set, keeps compiled modules on disk (about 0.8 s a
	// compile, 50 ms from the cache).
	CacheDir string
	// Device, when set, serves the guest; otherwise the host opens one on
	// the guest's first open (and closes it when Run returns).
	Device *wgpu.Device
	// DeviceOptions are used to open that device.
	DeviceOptions wgpu.Options
}

// Run instantiates and runs a wasip1 module to completion and returns its
// exit code.
func Run(ctx context.Context, wasm []byte, cfg Config) (int, error) {
	rcfg := wazero.NewRuntimeConfig()
	if cfg.CacheDir != "" {
		cache, err := wazero.NewCompilationCacheWithDir(cfg.CacheDir)
		if err != nil {
			return 0, fmt.Errorf("wasmhost: compilation cache %s: %w", cfg.CacheDir, err)
		}
		defer cache.Close(ctx)
		rcfg = rcfg.WithCompilationCache(cache)
	}
	r := wazero.NewRuntimeWithConfig(ctx, rcfg)
	defer r.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, r)

	h := &host{cfg: cfg, dev: cfg.Device}
	defer h.close()
	if _, err := h.builder(r).Instantiate(ctx); err != nil {
		return 0, fmt.Errorf("wasmhost: %w", err)
	}
	mod, err := r.CompileModule(ctx, wasm)
	if err != nil {
		return 0, fmt.Errorf("wasmhost: compile: %w", err)
	}
	fs := wazero.NewFSConfig()
	for guest, hostDir := range cfg.Mounts {
		fs = fs.WithDirMount(hostDir, guest)
	}
	mc := wazero.NewModuleConfig().WithArgs(cfg.Args...).WithFSConfig(fs).
		WithSysWalltime().WithSysNanotime().WithSysNanosleep().WithRandSource(rand.Reader).
		WithStdout(orDiscard(cfg.Stdout)).WithStderr(orDiscard(cfg.Stderr))
	if cfg.Stdin != nil {
		mc = mc.WithStdin(cfg.Stdin)
	}
	for _, kv := range cfg.Env {
		for i := range len(kv) {
			if kv[i] == '=' {
				mc = mc.WithEnv(kv[:i], kv[i+1:])
				break
			}
		}
	}
	_, err = r.InstantiateModule(ctx, mod, mc)
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		return int(exit.ExitCode()), nil
	}
	if err != nil {
		return 1, fmt.Errorf("wasmhost: run: %w", err)
	}
	return 0, nil
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// host holds the state behind the imports of one Run.
type host struct {
	cfg     Config
	mu      sync.Mutex
	dev     *wgpu.Device
	owned   bool // dev was opened here
	sess    *wgpu.HostSession
	lastErr string
}

func (h *host) close() {
	if h.sess != nil {
		h.sess.Close()
	}
	if h.owned && h.dev != nil {
		h.dev.Close()
	}
}

// fail records err and returns its ABI code.
func (h *host) fail(err error) int32 {
	h.lastErr = err.Error()
	var le *wgpu.LimitError
	switch {
	case errors.Is(err, errMemory):
		return ErrInvalid
	case errors.Is(err, wgpu.ErrHandle):
		return ErrHandle
	case errors.Is(err, wgpu.ErrDeviceLost):
		return ErrLost
	case errors.Is(err, wgpu.ErrUnavailable):
		return ErrUnavailable
	case errors.As(err, &le):
		return ErrLimit
	case errors.Is(err, wgpu.ErrValidation):
		return ErrValidation
	}
	return ErrInternal
}

var errMemory = errors.New("wasmhost: range outside guest memory")

// mem returns the guest's bytes [ptr, ptr+n) or errMemory.
func mem(m api.Module, ptr, n uint32) ([]byte, error) {
	if n == 0 {
		return nil, nil
	}
	b, ok := m.Memory().Read(ptr, n)
	if !ok {
		return nil, fmt.Errorf("%w: [%d, %d) in %d bytes", errMemory, ptr, uint64(ptr)+uint64(n), m.Memory().Size())
	}
	return b, nil
}

func (h *host) session() (*wgpu.HostSession, error) {
	if h.sess == nil {
		return nil, fmt.Errorf("%w: no device is open (call open first)", wgpu.ErrUnavailable)
	}
	return h.sess, nil
}

type openOpts struct {
	Backend           string `json:"backend"`
	MaxStorageBinding uint64 `json:"max_storage_binding"`
	Label             string `json:"label"`
}

func (h *host) open(ctx context.Context, m api.Module, optsPtr, optsLen, outPtr, outCap uint32) int32 {
	raw, err := mem(m, optsPtr, optsLen)
	if err != nil {
		return h.fail(err)
	}
	var o openOpts
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &o); err != nil {
			return h.fail(fmt.Errorf("%w: open options: %v", errMemory, err))
		}
	}
	if h.dev == nil {
		opt := h.cfg.DeviceOptions
		if o.Backend != "" {
			opt.Backend = o.Backend
		}
		d, err := wgpu.Open(ctx, opt)
		if err != nil {
			return h.fail(err)
		}
		h.dev, h.owned = d, true
	}
	if o.Backend != "" && o.Backend != h.dev.Info().Backend {
		return h.fail(fmt.Errorf("%w: the host's adapter is %s, not %s", wgpu.ErrUnavailable, h.dev.Info(), o.Backend))
	}
	if h.sess == nil {
		h.sess = wgpu.NewHostSession(h.dev)
	}
	lim := h.dev.Limits()
	if o.MaxStorageBinding != 0 && o.MaxStorageBinding < lim.MaxStorageBufferBindingSize {
		lim.MaxStorageBufferBindingSize = o.MaxStorageBinding
	}
	var feats []string
	for _, f := range []string{"shader-f16", "timestamp-query", "subgroups"} {
		if h.dev.HasFeature(f) {
			feats = append(feats, f)
		}
	}
	js, _ := json.Marshal(map[string]any{"info": h.dev.Info(), "limits": lim, "features": feats})
	if uint32(len(js))+4 > outCap {
		return h.fail(fmt.Errorf("%w: open answer of %d bytes exceeds the guest's %d", errMemory, len(js)+4, outCap))
	}
	out, err := mem(m, outPtr, uint32(len(js))+4)
	if err != nil {
		return h.fail(err)
	}
	binary.LittleEndian.PutUint32(out, uint32(len(js)))
	copy(out[4:], js)
	return int32(h.sess.OpenView())
}

func ok(err error, h *host) int32 {
	if err != nil {
		return h.fail(err)
	}
	return 0
}

func handle(id uint32, err error, h *host) int32 {
	if err != nil {
		return h.fail(err)
	}
	if id > 1<<31-1 {
		return h.fail(errors.New("wasmhost: handle space exhausted"))
	}
	return int32(id)
}

func (h *host) builder(r wazero.Runtime) wazero.HostModuleBuilder {
	b := r.NewHostModuleBuilder(ModuleName)
	// Each import serialises on h.mu: a guest is single-threaded, but the
	// state must stay consistent whatever it does.
	fn := func(name string, f any) {
		b.NewFunctionBuilder().WithFunc(f).Export(name)
	}
	fn("version", func() int32 { return Version })
	fn("open", func(ctx context.Context, m api.Module, optsPtr, optsLen, outPtr, outCap uint32) int32 {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.open(ctx, m, optsPtr, optsLen, outPtr, outCap)
	})
	fn("buffer_create", func(ctx context.Context, m api.Module, dev uint32, size uint64, uniform, labelPtr, labelLen uint32) int32 {
		h.mu.Lock()
		defer h.mu.Unlock()
		s, err := h.session()
		if err != nil {
			return h.fail(err)
		}
		label, err := mem(m, labelPtr, labelLen)
		if err != nil {
			return h.fail(err)
		}
		id, err := s.CreateBuffer(dev, size, uniform != 0, string(label))
		return handle(id, err, h)
	})
	fn("buffer_destroy", func(ctx context.Context, m api.Module, buf uint32) int32 {
		h.mu.Lock()
		defer h.mu.Unlock()
		s, err := h.session()
		if err != nil {
			return h.fail(err)
		}
		return ok(s.DestroyBuffer(buf), h)
	})
	fn("buffer_write", func(ctx context.Context, m api.Module, buf uint32, off uint64, ptr, n uint32) int32 {
		h.mu.Lock()
		defer h.mu.Unlock()
		s, err := h.session()
		if err != nil {
			return h.fail(err)
		}
		data, err := mem(m, ptr, n)
		if err != nil {
			return h.fail(err)
		}
		return ok(s.Write(buf, off, data), h)
	})
	fn("buffer_read", func(ctx context.Context, m api.Module, buf uint32, off uint64, ptr, n uint32) int32 {
		h.mu.Lock()
		defer h.mu.Unlock()
		s, err := h.session()
		if err != nil {
			return h.fail(err)
		}
		dst, err := mem(m, ptr, n)
		if err != nil {
			return h.fail(err)
		}
		data, err := s.Read(ctx, buf, off, uint64(n))
		if err != nil {
			return h.fail(err)
		}
		copy(dst, data)
		return 0
	})
	fn("kernel_create", func(ctx context.Context, m api.Module, codePtr, codeLen, entryPtr, entryLen, layoutPtr, layoutLen, uniform, constsPtr, constsLen uint32) int32 {
		h.mu.Lock()
		defer h.mu.Unlock()
		s, err := h.session()
		if err != nil {
			return h.fail(err)
		}
		code, err := mem(m, codePtr, codeLen)
		if err != nil {
			return h.fail(err)
		}
		entry, err := mem(m, entryPtr, entryLen)
		if err != nil {
			return h.fail(err)
		}
		layout, err := mem(m, layoutPtr, layoutLen)
		if err != nil {
			return h.fail(err)
		}
		rawConsts, err := mem(m, constsPtr, constsLen)
		if err != nil {
			return h.fail(err)
		}
		spec := wgpu.KernelSpec{Code: string(code), Entry: string(entry)}
		if len(rawConsts) > 0 {
			if err := json.Unmarshal(rawConsts, &spec.Constants); err != nil {
				return h.fail(fmt.Errorf("%w: kernel constants: %v", errMemory, err))
			}
		}
		storage := make([]wgpu.BindingKind, len(layout))
		for i, k := range layout {
			if k > 1 {
				return h.fail(fmt.Errorf("%w: layout byte %d is %d", errMemory, i, k))
			}
			storage[i] = wgpu.BindingKind(k)
		}
		id, err := s.CreateKernel(spec, storage, uniform != 0)
		return handle(id, err, h)
	})
	fn("bindgroup_create", func(ctx context.Context, m api.Module, dev, kernel, entriesPtr, n uint32) int32 {
		h.mu.Lock()
		defer h.mu.Unlock()
		s, err := h.session()
		if err != nil {
			return h.fail(err)
		}
		if n > 64 {
			return h.fail(fmt.Errorf("%w: %d bind-group entries", errMemory, n))
		}
		raw, err := mem(m, entriesPtr, 24*n)
		if err != nil {
			return h.fail(err)
		}
		entries := make([]wgpu.HostEntry, n)
		for i := range entries {
			r := raw[24*i:]
			entries[i] = wgpu.HostEntry{Buffer: binary.LittleEndian.Uint32(r), Offset: binary.LittleEndian.Uint64(r[8:]), Size: binary.LittleEndian.Uint64(r[16:])}
		}
		id, err := s.CreateBindGroup(dev, kernel, entries)
		return handle(id, err, h)
	})
	fn("bindgroup_release", func(ctx context.Context, m api.Module, bg uint32) int32 {
		h.mu.Lock()
		defer h.mu.Unlock()
		s, err := h.session()
		if err != nil {
			return h.fail(err)
		}
		return ok(s.ReleaseBindGroup(bg), h)
	})
	fn("submit", func(ctx context.Context, m api.Module, cmdsPtr, n uint32) int32 {
		h.mu.Lock()
		defer h.mu.Unlock()
		s, err := h.session()
		if err != nil {
			return h.fail(err)
		}
		if n > 1<<20 {
			return h.fail(fmt.Errorf("%w: %d commands", errMemory, n))
		}
		raw, err := mem(m, cmdsPtr, 48*n)
		if err != nil {
			return h.fail(err)
		}
		cmds := make([]wgpu.HostCommand, n)
		for i := range cmds {
			r := raw[48*i:]
			u := func(j int) uint32 { return binary.LittleEndian.Uint32(r[4*j:]) }
			switch u(0) {
			case 0:
				cmds[i] = wgpu.HostCommand{Kernel: u(1), Group: u(2), HasDyn: u(3) != 0, DynOffset: u(4), X: u(5), Y: u(6), Z: u(7)}
			case 1:
				cmds[i] = wgpu.HostCommand{Copy: true, Src: u(1), Dst: u(2),
					SrcOff: binary.LittleEndian.Uint64(r[16:]), DstOff: binary.LittleEndian.Uint64(r[24:]), Len: binary.LittleEndian.Uint64(r[32:])}
			default:
				return h.fail(fmt.Errorf("%w: command %d has kind %d", errMemory, i, u(0)))
			}
		}
		return ok(s.Submit(ctx, cmds), h)
	})
	fn("sync", func(ctx context.Context, m api.Module) int32 {
		h.mu.Lock()
		defer h.mu.Unlock()
		s, err := h.session()
		if err != nil {
			return h.fail(err)
		}
		return ok(s.Sync(ctx), h)
	})
	fn("close", func(ctx context.Context, m api.Module, dev uint32) int32 {
		h.mu.Lock()
		defer h.mu.Unlock()
		s, err := h.session()
		if err != nil {
			return h.fail(err)
		}
		return ok(s.CloseView(dev), h)
	})
	fn("last_error", func(ctx context.Context, m api.Module, ptr, n uint32) int32 {
		h.mu.Lock()
		defer h.mu.Unlock()
		msg := h.lastErr
		if n > 0 {
			dst, err := mem(m, ptr, min(n, uint32(len(msg))))
			if err != nil {
				return ErrInvalid
			}
			copy(dst, msg)
		}
		return int32(len(msg))
	})
	return b
}

// RunFile is Run for a module on disk, with the process's stdio.
func RunFile(ctx context.Context, path string, cfg Config) (int, error) {
	wasm, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return Run(ctx, wasm, cfg)
}
