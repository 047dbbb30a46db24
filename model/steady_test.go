package model

import (
	"context"
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
