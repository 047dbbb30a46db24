package ops_test

import (
	"flag"
	"testing"

	"github.com/luminaweb/lumina/model/ops"
	"github.com/luminaweb/lumina/model/ops/opstest"
)

var (
	seed    = flag.Uint64("seed", 1, "seed for the conformance suite's random cases and inputs")
	digests = flag.String("digests", "", "write the SHA-256 of every GPU conformance output to this file (to compare two runs bit for bit)")
)

func TestConformanceCPU(t *testing.T) {
	opstest.Run(t, ops.NewCPU(), opstest.Config{Seed: *seed, Short: testing.Short()})
}
