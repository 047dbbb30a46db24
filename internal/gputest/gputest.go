// Package gputest opens WebGPU devices for tests without letting a broken
// driver take the test binary down, and without letting a missing GPU pass
// silently where one is required.
//
// The native binding can abort the whole process inside instance creation
// (a half-installed EGL, for one), so the first use probes the adapter in a
// child process: the test binary itself, re-executed with LUMINA_GPU_PROBE=1,
// which Main intercepts. Only when the child succeeds does the parent open a
// device.
//
// Policy (read from the environment here, never in library code):
//   - CI=true makes a missing adapter a failure instead of a skip;
//   - LUMINA_GPU_BACKEND names the backend required (default on Linux under
//     CI: "vulkan", so a silent fallback to GL fails); "any" accepts any.
package gputest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/luminaweb/lumina/wgpu"
)

const probeEnv = "LUMINA_GPU_PROBE"

// Main is the TestMain of every package with GPU tests: it answers the probe
// when the binary runs as the child, and otherwise runs the tests.
func Main(m *testing.M) {
	if os.Getenv(probeEnv) == "1" {
		os.Exit(probeChild())
	}
	os.Exit(m.Run())
}

type probeResult struct {
	Info   wgpu.AdapterInfo
	Limits wgpu.Limits
	Err    string
}

func probeChild() int {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var r probeResult
	d, err := wgpu.Open(ctx, wgpu.Options{Backend: requiredBackend()})
	if err != nil {
		r.Err = err.Error()
	} else {
		r.Info, r.Limits = d.Info(), d.Limits()
		d.Close()
	}
	b, _ := json.Marshal(r)
	fmt.Printf("\n%s%s\n", probeMark, b)
	return 0
}

const probeMark = "LUMINA_GPU_PROBE_RESULT "

// Required reports whether the environment demands a working adapter.
func Required() bool { return os.Getenv("CI") == "true" }

func requiredBackend() string {
	switch b := os.Getenv("LUMINA_GPU_BACKEND"); {
	case b == "any":
		return ""
	case b != "":
		return b
	case Required() && runtime.GOOS == "linux":
		return "vulkan"
	}
	return ""
}

var probe struct {
	once sync.Once
	res  probeResult
	err  error // the child failed to run or crashed
}

// Probe runs the adapter probe once per process and returns what it found.
func Probe() (wgpu.AdapterInfo, error) {
	probe.once.Do(func() {
		exe, err := os.Executable()
		if err != nil {
			probe.err = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), probeEnv+"=1")
		var out, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &stderr
		runErr := cmd.Run()
		i := strings.LastIndex(out.String(), probeMark)
		if i < 0 {
			probe.err = fmt.Errorf("the adapter probe crashed (%v): %s", runErr, tail(stderr.String()))
			return
		}
		line, _, _ := strings.Cut(out.String()[i+len(probeMark):], "\n")
		if err := json.Unmarshal([]byte(line), &probe.res); err != nil {
			probe.err = fmt.Errorf("the adapter probe answered garbage: %v", err)
		}
	})
	if probe.err != nil {
		return wgpu.AdapterInfo{}, probe.err
	}
	if probe.res.Err != "" {
		return wgpu.AdapterInfo{}, errors.New(probe.res.Err)
	}
	return probe.res.Info, nil
}

func tail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 2000 {
		s = "..." + s[len(s)-2000:]
	}
	return s
}

// OpenOrSkip opens a device for t with opt, after a successful probe. With
// no usable adapter it skips, naming the driver to install, or fails when
// Required. The device is closed when the test ends.
func OpenOrSkip(t testing.TB, opt wgpu.Options) *wgpu.Device {
	t.Helper()
	if !wgpu.Implemented() {
		// Not a missing adapter: this build cannot drive a GPU at all
		// (CGO_ENABLED=0, wasip1), so CI=true does not turn this into a
		// failure; the native build runs these tests.
		t.Skipf("this build (GOOS=%s, cgo off) has no WebGPU implementation", runtime.GOOS)
	}
	var info wgpu.AdapterInfo
	var err error
	if runtime.GOOS == "wasip1" {
		// A wasm guest cannot start a child process; its GPU is the host's
		// (wgpu/wasmhost), which survives a crashing guest anyway.
		info.Description = "the wasm host's adapter"
	} else {
		info, err = Probe()
	}
	if err != nil {
		msg := fmt.Sprintf("no usable WebGPU adapter: %v\n(on Debian: apt-get install mesa-vulkan-drivers libvulkan1, or run make deps)", err)
		if Required() {
			t.Fatalf("CI=true requires a GPU adapter: %s", msg)
		}
		t.Skip(msg)
	}
	if opt.Backend == "" {
		opt.Backend = requiredBackend()
	}
	d, err := wgpu.Open(context.Background(), opt)
	if err != nil {
		t.Fatalf("the probe found %s but opening a device failed: %v", info, err)
	}
	t.Cleanup(d.Close)
	t.Logf("GPU adapter: %s", d.Info())
	return d
}
