// Command lumina runs Lumina-Image 2.0 on WebGPU.
//
//	lumina generate   text to image (flags named like diffusers' options)
//	lumina info       the WebGPU adapter, its limits and features, and a
//	                  GPU-versus-reference check of the op library
//	lumina wasmtest   run a wasip1 module (e.g. a test binary) in the wasm
//	                  host with the native GPU behind the lumina_wgpu ABI
//
// Text-to-image generation (`lumina generate`), packing and serving arrive
// with the pipeline; see the README.
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/luminaweb/lumina/model/ops"
	"github.com/luminaweb/lumina/model/tensor"
	"github.com/luminaweb/lumina/wgpu"
	"github.com/luminaweb/lumina/wgpu/wasmhost"
)

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "info":
		err = info(os.Args[2:])
	case "generate":
		err = generate(os.Args[2:])
	case "plan":
		err = plan(os.Args[2:])
	case "pack":
		err = pack(os.Args[2:])
	case "wasmtest":
		var code int
		code, err = wasmtest(os.Args[2:])
		if err == nil {
			os.Exit(code)
		}
	case "help", "-h", "--help":
		usage()
		return
	default:
		fmt.Fprintf(os.Stderr, "lumina: unknown command %q\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "lumina:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, `usage: lumina <command> [flags]

commands:
  generate  draw an image from a prompt (lumina generate --prompt "..." --out x.png;
            without --model, the embedded demo model of coloured shapes)
  pack      write a model as a pack of verified shards, f16/bf16/q8/q4
            (lumina pack --model DIR --quant q8 --out PACK; generate --model PACK)
  plan      the GPU memory a generation needs per stage, from the configs alone
            (lumina plan --width 1024 --height 1024)
  info      show the WebGPU adapter, its limits and features, and check the
            GPU ops against the float64 reference
  wasmtest  run a GOOS=wasip1 program (a test binary) inside the wasm host,
            with the GPU: go test -exec "lumina wasmtest" (see README)`)
}

func info(args []string) error {
	fs := flag.NewFlagSet("info", flag.ExitOnError)
	backend := fs.String("backend", "", "require this WebGPU backend (vulkan, metal, d3d12, ...)")
	fs.Parse(args)
	ctx := context.Background()
	t0 := time.Now()
	dev, err := wgpu.Open(ctx, wgpu.Options{Backend: *backend})
	if err != nil {
		return err
	}
	defer dev.Close()
	l := dev.Limits()
	fmt.Printf("adapter   %s (opened in %v)\n", dev.Info(), time.Since(t0).Round(time.Millisecond))
	fmt.Printf("limits    storage binding %d MiB, buffer %d MiB, workgroup storage %d KiB, %d invocations, %d workgroups per dimension\n",
		l.MaxStorageBufferBindingSize>>20, l.MaxBufferSize>>20, l.MaxComputeWorkgroupStorageSize>>10,
		l.MaxComputeInvocationsPerWorkgroup, l.MaxComputeWorkgroupsPerDimension)
	for _, f := range []string{"shader-f16", "timestamp-query", "subgroups"} {
		fmt.Printf("feature   %-16s %v\n", f, dev.HasFeature(f))
	}
	gpu, err := ops.NewGPU(dev, ops.GPUOptions{})
	if err != nil {
		return err
	}
	defer gpu.Close()
	return selfCheck(ctx, gpu)
}

// selfCheck runs one Linear layer at a real shape on the GPU and on the
// reference backend and reports the largest difference and the GPU's speed.
func selfCheck(ctx context.Context, gpu *ops.GPU) error {
	const M, K, N = 64, 2304, 2304
	rng := rand.New(rand.NewPCG(1, 2))
	vals := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = rng.Float32()*2 - 1
		}
		return v
	}
	x, w, b := vals(M*K), vals(N*K), vals(N)
	run := func(be ops.Backend) ([]float32, time.Duration, error) {
		tx, _ := be.New(tensor.F32, M, K)
		tw, _ := be.New(tensor.F32, N, K)
		tb, _ := be.New(tensor.F32, N)
		for _, p := range []struct {
			t *ops.Tensor
			v []float32
		}{{tx, x}, {tw, w}, {tb, b}} {
			if p.t == nil {
				return nil, 0, fmt.Errorf("allocation failed on %s", be.Name())
			}
			if err := be.Write(p.t, p.v); err != nil {
				return nil, 0, err
			}
		}
		if err := be.Sync(ctx); err != nil {
			return nil, 0, err
		}
		t0 := time.Now()
		y, err := ops.MatMul(be, tx, tw, tb)
		if err != nil {
			return nil, 0, err
		}
		if err := be.Sync(ctx); err != nil {
			return nil, 0, err
		}
		dt := time.Since(t0)
		out, err := be.Read(ctx, y)
		return out, dt, err
	}
	got, dt, err := run(gpu)
	if err != nil {
		return err
	}
	want, _, err := run(ops.NewCPU())
	if err != nil {
		return err
	}
	var maxd float64
	for i := range got {
		maxd = max(maxd, math.Abs(float64(got[i]-want[i])))
	}
	fmt.Printf("check     linear %dx%d·%dx%dᵀ: max |gpu-ref| = %.2g, %.1f GFLOP/s (first run, compile included)\n",
		M, K, N, K, maxd, 2*M*K*N/dt.Seconds()/1e9)
	if maxd > 1e-3 {
		return fmt.Errorf("the GPU result differs from the reference by %.3g: the adapter or driver is computing wrongly", maxd)
	}
	return nil
}

// wasmtest runs a wasip1 module with the host's environment, working
// directory and file system, as `go test -exec` expects of a runner.
func wasmtest(args []string) (int, error) {
	if len(args) < 1 {
		return 2, fmt.Errorf("usage: lumina wasmtest MODULE.wasm [ARGS...]")
	}
	wd, err := os.Getwd()
	if err != nil {
		return 1, err
	}
	cache, err := os.UserCacheDir()
	if err == nil {
		cache = filepath.Join(cache, "lumina", "wazero")
	}
	env := append(os.Environ(), "PWD="+wd)
	return wasmhost.RunFile(context.Background(), args[0], wasmhost.Config{
		Args: args, Env: env, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		Mounts: map[string]string{"/": "/"}, CacheDir: cache,
	})
}
