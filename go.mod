module github.com/luminaweb/lumina

go 1.26

require (
	github.com/cogentcore/webgpu v0.23.0
	github.com/eliben/go-sentencepiece v0.6.0
	github.com/nlpodyssey/safetensors v0.0.0-20250209183917-bfb01cc25f7c
	github.com/tetratelabs/wazero v1.12.0
)

require (
	golang.org/x/sys v0.44.0 // indirect
	google.golang.org/protobuf v1.34.2 // indirect
)
