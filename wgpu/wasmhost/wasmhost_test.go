package wasmhost_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/luminaweb/lumina/internal/gputest"
	"github.com/luminaweb/lumina/wgpu"
	"github.com/luminaweb/lumina/wgpu/wasmhost"
)

func TestMain(m *testing.M) { gputest.Main(m) }

var guest struct {
	once sync.Once
	wasm []byte
	err  error
}

// badGuest builds testdata/badguest for wasip1 once per test binary.
func badGuest(t *testing.T) []byte {
	t.Helper()
	guest.once.Do(func() {
		out := filepath.Join(os.TempDir(), "lumina-badguest.wasm")
		cmd := exec.Command("go", "build", "-o", out, "./testdata/badguest")
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		if msg, err := cmd.CombinedOutput(); err != nil {
			guest.err = err
			t.Logf("%s", msg)
			return
		}
		guest.wasm, guest.err = os.ReadFile(out)
	})
	if guest.err != nil {
		t.Fatal(guest.err)
	}
	return guest.wasm
}

func runGuest(t *testing.T, dev *wgpu.Device, seed, calls int) map[string]int {
	t.Helper()
	var out, errb bytes.Buffer
	code, err := wasmhost.Run(context.Background(), badGuest(t), wasmhost.Config{
		Args:   []string{"badguest"},
		Env:    []string{"BADGUEST_SEED=" + strconv.Itoa(seed), "BADGUEST_CALLS=" + strconv.Itoa(calls)},
		Stdout: &out, Stderr: &errb, Device: dev,
	})
	if err != nil || code != 0 {
		t.Fatalf("guest exit %d, %v\nstdout:\n%s\nstderr:\n%s", code, err, out.String(), errb.String())
	}
	res := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		name, v, _ := strings.Cut(line, " ")
		n, _ := strconv.Atoi(v)
		res[name] = n
	}
	return res
}

// A guest that passes out-of-range pointers, huge lengths, unknown or
// wrong-kind handles and invalid WebGPU requests gets error codes, and the
// host (this process) survives; valid calls in between still work.
func TestBadGuest(t *testing.T) {
	if runtime.GOOS == "wasip1" {
		t.Skip("the host runs natively")
	}
	dev := gputest.OpenOrSkip(t, wgpu.Options{})
	res := runGuest(t, dev, 1, 2000)
	want := map[string]int{
		"create-before-open": wasmhost.ErrUnavailable, "open-bad-ptr": wasmhost.ErrInvalid,
		"open-bad-json": wasmhost.ErrInvalid, "open-small-out": wasmhost.ErrInvalid,
		"create-bad-dev": wasmhost.ErrHandle, "create-zero": wasmhost.ErrValidation,
		"create-unaligned": wasmhost.ErrValidation, "create-huge": wasmhost.ErrLimit,
		"create-bad-label": wasmhost.ErrInvalid,
		"write-bad-ptr":    wasmhost.ErrInvalid, "write-huge-len": wasmhost.ErrInvalid,
		"write-past-end": wasmhost.ErrValidation, "write-offset-overflow": wasmhost.ErrValidation,
		"write-unknown": wasmhost.ErrHandle, "read-bad-ptr": wasmhost.ErrInvalid,
		"read-uniform": wasmhost.ErrValidation, "read-past-end": wasmhost.ErrValidation,
		"kernel-bad-code-ptr": wasmhost.ErrInvalid, "kernel-bad-wgsl": wasmhost.ErrValidation,
		"kernel-wrong-layout": wasmhost.ErrValidation, "kernel-bad-layout-byte": wasmhost.ErrInvalid,
		"kernel-bad-consts": wasmhost.ErrInvalid,
		"bg-bad-ptr":        wasmhost.ErrInvalid, "bg-huge-n": wasmhost.ErrInvalid,
		"bg-unknown-kernel": wasmhost.ErrHandle, "bg-buffer-as-kernel": wasmhost.ErrHandle,
		"bg-overlap": wasmhost.ErrValidation, "bg-writable-shared": wasmhost.ErrValidation, "bg-wrong-usage": wasmhost.ErrValidation,
		"bg-misaligned": wasmhost.ErrValidation, "bg-too-few": wasmhost.ErrValidation,
		"submit-bad-ptr": wasmhost.ErrInvalid, "submit-huge-n": wasmhost.ErrInvalid,
		"submit-bad-kind": wasmhost.ErrInvalid, "submit-unknown-bg": wasmhost.ErrHandle,
		"submit-no-dyn": wasmhost.ErrValidation, "submit-dyn-unaligned": wasmhost.ErrValidation,
		"submit-dyn-past-end": wasmhost.ErrValidation, "submit-too-many-groups": wasmhost.ErrLimit,
		"submit-copy-overlap": wasmhost.ErrValidation, "submit-copy-from-uniform": wasmhost.ErrValidation,
		"submit": 0, "sync": 0, "destroy": 0, "destroy-twice": wasmhost.ErrHandle,
		"submit-after-destroy": wasmhost.ErrValidation, "bg-release": 0, "bg-release-twice": wasmhost.ErrHandle,
		"last-error-bad-ptr": wasmhost.ErrInvalid, "random-calls": 2000,
	}
	for name, code := range want {
		got, ok := res[name]
		if !ok {
			t.Errorf("%s: no answer", name)
		} else if got != code {
			t.Errorf("%s: code %d, want %d", name, got, code)
		}
	}
	for _, name := range []string{"open", "create", "create-uniform", "kernel", "bg"} {
		if res[name] <= 0 {
			t.Errorf("%s: %d, want a handle", name, res[name])
		}
	}
	// The device still works for a well-behaved user afterwards.
	b, err := dev.NewBuffer(16, "after")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Destroy()
	if _, err := dev.Read(context.Background(), b, 0, 16); err != nil {
		t.Fatalf("device unusable after the bad guest: %v", err)
	}
}

// More seeds of random calls: each run must end with the guest alive.
func TestBadGuestRandom(t *testing.T) {
	if runtime.GOOS == "wasip1" {
		t.Skip("the host runs natively")
	}
	dev := gputest.OpenOrSkip(t, wgpu.Options{})
	seeds := 8
	if testing.Short() {
		seeds = 2
	}
	for s := 2; s < 2+seeds; s++ {
		runGuest(t, dev, s, 3000)
	}
}
