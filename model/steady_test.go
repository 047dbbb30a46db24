package model

import (
	"context"
	"errors"
	"testing"

	"github.com/luminaweb/lumina/internal/gputest"
	"github.com/luminaweb/lumina/wgpu"
)

// After the first model evaluation of an image, denoising creates no GPU
// buffer, kernel or bind group: every step reuses what the first made.
func TestGPUSteadyDenoise(t *testing.T) {
	dev := gputest.OpenOrSkip(t, wgpu.Options{})
	var first, last wgpu.Stats
	p, err := Open(context.Background(), "", Config{Device: dev, Progress: func(pr Progress) {
		if pr.Stage != StageDenoise {
			return
		}
		switch pr.Done {
		case 1:
			first = dev.Stats()
		case pr.Total:
			last = dev.Stats()
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Generate(context.Background(), Request{Prompt: "a red circle on a blue background", Seed: 2, Steps: 6}); err != nil {
		t.Fatal(err)
	}
	if first.Buffers == 0 || last.Buffers != first.Buffers || last.Kernels != first.Kernels || last.BindGroups != first.BindGroups {
		t.Fatalf("denoising created GPU objects after its first evaluation: %+v then %+v", first, last)
	}
	t.Logf("after the first evaluation: %d buffers, %d kernels, %d bind groups; %d submits to the end", first.Buffers, first.Kernels, first.BindGroups, last.Submits-first.Submits)
}

// LowMemory frees the text encoder's weights on the device after encoding
// (and loads them again for the next image): the same images, with fewer
// bytes held while denoising.
func TestLowMemory(t *testing.T) {
	dev := gputest.OpenOrSkip(t, wgpu.Options{})
	ctx := context.Background()
	req := Request{Prompt: "a yellow square on a black background", Seed: 3, Steps: 3}
	run := func(low bool) ([]byte, uint64) {
		var during uint64
		p, err := Open(ctx, "", Config{Device: dev, LowMemory: low, Progress: func(pr Progress) {
			if pr.Stage == StageDenoise && pr.Done == 1 {
				during = dev.Stats().BufferBytes
			}
		}})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		var pix []byte
		for range 2 { // the second image reloads the text encoder
			img, err := p.Generate(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			pix = img.Pix
		}
		return pix, during
	}
	a, full := run(false)
	b, low := run(true)
	if string(a) != string(b) {
		t.Fatal("LowMemory changed the image")
	}
	if low >= full {
		t.Fatalf("denoising held %d bytes with LowMemory, %d without", low, full)
	}
	t.Logf("device bytes while denoising: %d without, %d with LowMemory", full, low)
}

// Cancelling the context during denoising stops Generate with the
// context's error; the pipeline still works afterwards.
func TestGenerateCancel(t *testing.T) {
	dev := gputest.OpenOrSkip(t, wgpu.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	p, err := Open(context.Background(), "", Config{Device: dev, Progress: func(pr Progress) {
		if pr.Stage == StageDenoise && pr.Done == 2 {
			cancel()
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Generate(ctx, Request{Prompt: "a red circle", Steps: 8}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Generate after cancel: %v", err)
	}
	if _, err := p.Generate(context.Background(), Request{Prompt: "a red circle", Steps: 2}); err != nil {
		t.Fatalf("Generate after a cancelled one: %v", err)
	}
}
