// Package ref is the float64 reference of every shader family in package
// shaders: plain loops, accumulation in float64, inputs and outputs in the
// storage precision (float32). It is the living definition of each op and
// the engine of the CPU backend; it is never optimised. Misuse (lengths that
// do not match the sizes) panics, as it is a programmer error.
package ref
