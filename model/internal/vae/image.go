package vae

import (
	"fmt"
	"image"
	"math"
)

// Pixel maps one decoder output value to an 8-bit channel value (spec
// §5.6): clamp(v/2 + 1/2, 0, 1)·255, rounded to the nearest integer (ties
// to even, as numpy's round in diffusers' VaeImageProcessor; ORIG's
// to_pil_image truncates instead, ±1 LSB). Computed in float32, as the
// references do. NaN maps to 0.
func Pixel(v float32) uint8 {
	u := v*0.5 + 0.5 // v·0.5 is exact, so a fused multiply-add changes nothing
	if !(u > 0) {
		return 0
	}
	if u >= 1 {
		return 255
	}
	return uint8(math.RoundToEven(float64(u * 255)))
}

// Image converts one decoded image, x the (3, h, w) values in channel-major
// order as Decode writes them (one batch entry of its output, read back),
// to an opaque RGB image with Pixel.
func Image(x []float32, h, w int) (*image.NRGBA, error) {
	if h <= 0 || w <= 0 || len(x) != 3*h*w {
		return nil, fmt.Errorf("vae: Image: %d values are not (3, %d, %d)", len(x), h, w)
	}
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	P := h * w
	for y := range h {
		row := img.Pix[y*img.Stride:]
		for i := range w {
			p := y*w + i
			row[4*i+0] = Pixel(x[p])
			row[4*i+1] = Pixel(x[P+p])
			row[4*i+2] = Pixel(x[2*P+p])
			row[4*i+3] = 255
		}
	}
	return img, nil
}
