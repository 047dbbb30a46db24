//go:build !js && !cgo && !wasip1

package wgpu

import (
	"context"
	"fmt"
	"runtime"
)

const implemented = false

// openDriver on a build without cgo (CGO_ENABLED=0, wasip1) has no WebGPU
// implementation to offer.
func openDriver(context.Context, Options) (driver, AdapterInfo, Limits, []string, error) {
	return nil, AdapterInfo{}, Limits{}, nil, fmt.Errorf("%w: this build (GOOS=%s GOARCH=%s, no cgo) has no WebGPU implementation; build natively with CGO_ENABLED=1, or use the CPU backend", ErrUnavailable, runtime.GOOS, runtime.GOARCH)
}
