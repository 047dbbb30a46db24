package wgpu

import (
	"errors"
	"fmt"
)

// ErrUnavailable means WebGPU cannot be used from this build or this host:
// no adapter, no driver, or a build without a WebGPU implementation.
var ErrUnavailable = errors.New("wgpu: WebGPU is unavailable")

// ErrDeviceLost means the device stopped working, most often because the
// GPU ran out of memory or the driver reset. Everything made on the device is
// gone; open a new one (with a smaller resolution or model if memory was the
// cause).
var ErrDeviceLost = errors.New("wgpu: device lost")

// LimitError says a request needs more of a device limit than the device has.
type LimitError struct {
	Name string // the WebGPU limit, e.g. "maxStorageBufferBindingSize"
	Need uint64 // what the request needs
	Have uint64 // what the device grants
	What string // what asked for it, e.g. `buffer "act.x"`
}

func (e *LimitError) Error() string {
	s := fmt.Sprintf("wgpu: %s needs %s = %d, the device allows %d", e.What, e.Name, e.Need, e.Have)
	return s + "; lower the resolution or the batch, or use a GPU with a higher limit"
}

// FeatureError says a required WebGPU feature is missing on the adapter.
type FeatureError struct {
	Name string // the WebGPU feature, e.g. "shader-f16"
}

func (e *FeatureError) Error() string {
	return fmt.Sprintf("wgpu: the adapter lacks the feature %q; use a build or model that does not need it, or another GPU", e.Name)
}
