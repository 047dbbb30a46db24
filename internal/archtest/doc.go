// Package archtest holds the test that enforces the import rules of
// DESIGN.md. It has no code of its own.
package archtest
