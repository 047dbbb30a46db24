package model

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/luminaweb/lumina/internal/golden"
	"github.com/luminaweb/lumina/internal/gputest"
	"github.com/luminaweb/lumina/model/internal/dit"
	"github.com/luminaweb/lumina/model/internal/nn"
	"github.com/luminaweb/lumina/model/ops"
	"github.com/luminaweb/lumina/model/tensor"
	"github.com/luminaweb/lumina/model/weights"
	"github.com/luminaweb/lumina/wgpu"
)

// realDiTTensors lists the 2.6B Next-DiT's tensors as the original
// checkpoint names them (testdata/hf-layout manifests).
func realDiTTensors(b *testing.B) []weights.Info {
	dir, err := golden.Dir()
	if err != nil {
		b.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "..", "hf-layout", "manifests", "orig_consolidated_and_comfy_bf16.json"))
	if err != nil {
		b.Fatal(err)
	}
	var m struct {
		Files []struct {
			File    string  `json:"file"`
			Tensors [][]any `json:"tensors"`
		} `json:"files"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		b.Fatal(err)
	}
	var out []weights.Info
	for _, t := range m.Files[0].Tensors {
		var shape tensor.Shape
		for _, d := range t[2].([]any) {
			shape = append(shape, int(d.(float64)))
		}
		out = append(out, weights.Info{Name: t[0].(string), Shape: shape})
	}
	return out
}

// peakHeap samples the Go heap until stop is called and returns the peak.
func peakHeap() (stop func() uint64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return func() uint64 { close(done); wg.Wait(); return peak.Load() }
}

// BenchmarkPack2B packs a synthetic checkpoint with the real 2.6B
// Next-DiT's names and shapes (random weights made here, one tensor at a
// time) in each format, then loads the pack into the GPU through the real
// loader, and reports the pack's bytes and the peak Go heap while packing
// and while loading: both are bounded by about one tensor plus one shard,
// not by the model.
func BenchmarkPack2B(b *testing.B) {
	infos := realDiTTensors(b)
	var params int64
	for _, in := range infos {
		params += int64(in.Shape.Numel())
	}
	for _, dt := range []string{"q4", "q8", "f16"} {
		b.Run(dt, func(b *testing.B) {
			dir := b.TempDir()
			cfgRaw, err := presetFS.ReadFile("presets/lumina2/transformer.json")
			if err != nil {
				b.Fatal(err)
			}
			runtime.GC()
			stopPack := peakHeap()
			w, err := weights.NewPackWriter(dir, weights.PackOptions{Kind: "dit", Config: cfgRaw})
			if err != nil {
				b.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			for _, in := range infos {
				v := make([]float32, in.Shape.Numel())
				for i := range v {
					v[i] = float32(rng.NormFloat64() * 0.02)
				}
				tdt := packDType(weights.PackDType(dt), "transformer.", in)
				if err := w.Add(in.Name, in.Shape, tdt, v); err != nil {
					b.Fatal(err)
				}
			}
			m, err := w.Finish("manifest.json")
			if err != nil {
				b.Fatal(err)
			}
			packPeak := stopPack()
			var bytes int64
			for _, s := range m.Shards {
				bytes += s.Size
			}
			b.ReportMetric(float64(bytes)/(1<<20), "pack-MiB")
			b.ReportMetric(float64(packPeak)/(1<<20), "pack-heap-MiB")

			dev := gputest.OpenOrSkip(b, wgpu.Options{})
			g, err := ops.NewGPU(dev, ops.GPUOptions{})
			if err != nil {
				b.Fatal(err)
			}
			defer g.Close()
			pk, err := weights.OpenPack(&weights.Dir{Path: dir}, "manifest.json")
			if err != nil {
				b.Fatal(err)
			}
			defer pk.Close()
			src, err := weights.DetectDiT(pk)
			if err != nil {
				b.Fatal(err)
			}
			cfg, err := dit.ParseConfig(cfgRaw)
			if err != nil {
				b.Fatal(err)
			}
			runtime.GC()
			stopLoad := peakHeap()
			t0 := time.Now()
			l := &nn.Loader{B: g, Src: src, Packed: true}
			if _, err := dit.Load(l, cfg); err != nil {
				b.Fatal(err)
			}
			if err := g.Sync(b.Context()); err != nil {
				b.Fatal(err)
			}
			loadPeak := stopLoad()
			l.Release()
			b.ReportMetric(float64(loadPeak)/(1<<20), "load-heap-MiB")
			b.ReportMetric(time.Since(t0).Seconds(), "load-s")
			b.Logf("%s: %d params (%s); pack %.0f MiB in %d shards; peak Go heap %.0f MiB packing, %.0f MiB loading into %s (shard limit 64 MiB)",
				dt, params, fmt.Sprint(len(infos))+" tensors", float64(bytes)/(1<<20), len(m.Shards), float64(packPeak)/(1<<20), float64(loadPeak)/(1<<20), dev.Info())
		})
	}
}
