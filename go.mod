module github.com/luminaweb/lumina

go 1.26

require (
	github.com/cogentcore/webgpu v0.23.0 // indirect
	github.com/tetratelabs/wazero v1.12.0 // indirect
	golang.org/x/sys v0.44.0 // indirect
)
