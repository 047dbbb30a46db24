package model

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/luminaweb/lumina/wgpu"
)

// The plan of the real 2.6B configuration, made without any weights,
// counts exactly the parameters spec §7.1 gives (in f32, the embedding
// table left in the checkpoint), and finds the largest buffer where spec
// §7.3 says it is: the VAE's 256×1024×1024 activation after its last
// upsampling.
func TestPlanReal(t *testing.T) {
	mp, err := Plan(context.Background(), PlanRequest{})
	if err != nil {
		t.Fatal(err)
	}
	const (
		dit      = 2_609_769_152
		gemma    = 2_536_473_600 // embedding + layers 0–24
		embed    = 256_000 * 2304
		vaeDec   = 49_545_475
		wantByte = 4 * (dit + gemma - embed + vaeDec)
	)
	if mp.Weights != wantByte {
		t.Errorf("weights %d bytes, spec §7.1 gives %d", mp.Weights, uint64(wantByte))
	}
	if mp.LargestShape != "[1,256,1024,1024]" || mp.LargestTensor != 1<<30 {
		t.Errorf("largest tensor %s (%d bytes), spec §7.3: the VAE's 256×1024×1024 (1 GiB)", mp.LargestShape, mp.LargestTensor)
	}
	if len(mp.Stages) != 3 {
		t.Fatalf("stages %+v", mp.Stages)
	}
	for _, s := range mp.Stages {
		if s.Peak < mp.Weights || s.Peak > mp.Weights+8<<30 {
			t.Errorf("%s peak %d: not weights (%d) plus a plausible activation set", s.Stage, s.Peak, mp.Weights)
		}
	}
	big, err := Plan(context.Background(), PlanRequest{Width: 2048, Height: 1024})
	if err != nil {
		t.Fatal(err)
	}
	if big.LargestTensor != 2<<30 || big.Weights != mp.Weights {
		t.Errorf("2048×1024: largest %d, weights %d", big.LargestTensor, big.Weights)
	}
	t.Logf("1024²: weights %.2f GiB, peaks %+v, largest %s", float64(mp.Weights)/(1<<30), mp.Stages, mp.LargestShape)
}

// A device whose buffers are too small fails the check with a
// *wgpu.LimitError that names the limit and what asked for it.
func TestPlanCheck(t *testing.T) {
	mp, err := Plan(context.Background(), PlanRequest{})
	if err != nil {
		t.Fatal(err)
	}
	err = mp.Check(wgpu.Limits{MaxBufferSize: 512 << 20})
	var le *wgpu.LimitError
	if !errors.As(err, &le) || le.Name != "maxBufferSize" || !strings.Contains(err.Error(), "1024x1024") {
		t.Fatalf("got %v", err)
	}
	if err := mp.Check(wgpu.Limits{MaxBufferSize: 2 << 30}); err != nil {
		t.Fatal(err)
	}
	if _, err := Plan(context.Background(), PlanRequest{Width: 1000}); err == nil {
		t.Error("a width that is not a multiple of 16 was planned")
	}
}
