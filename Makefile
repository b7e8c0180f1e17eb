# spectraclip — build, test and run. `make train VARIANT=drcnn` and `make test` install
# what is missing first (make deps).
SHELL := /bin/bash
VARIANT ?= drcnn
GO ?= go
BUILD_DIR ?= build
TORCH_DIR ?=
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CSRC_LIB := $(BUILD_DIR)/libspectraclip_c.so
CSRC_SRC := $(wildcard csrc/*.cpp csrc/*.h) CMakeLists.txt
GOFILES := $(shell find . -name '*.go' -not -path './third_party/*' 2>/dev/null)
APT_PKGS := libtorch-dev libgloo-dev libopenblas0-openmp cmake ccache g++ python3-torch python3-numpy protobuf-compiler git slurm-wlm munge chromium libtcmalloc-minimal4
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
ARGS ?=

.PHONY: chaos sweep-slurm gpu-prep all deps build csrc test test-short bench bench-compare lint clean train compare synth version gpu-check

all: build

# deps installs the system packages the build and tests need (Debian 12), only when one
# is missing, and fetches the Go modules.
deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null || exit 1; \
	fi
	@$(GO) mod download

$(BUILD_DIR)/Makefile: CMakeLists.txt
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=Release $(if $(TORCH_DIR),-DTORCH_DIR=$(TORCH_DIR)) >/dev/null

$(CSRC_LIB): $(BUILD_DIR)/Makefile $(CSRC_SRC)
	cmake --build $(BUILD_DIR) -j $(JOBS)

csrc: $(CSRC_LIB)

bin/spectraclip: $(CSRC_LIB) $(GOFILES) go.mod
	@mkdir -p bin
	$(GO) build -o bin/spectraclip ./cmd/spectraclip

build: bin/spectraclip

version: build
	./bin/spectraclip version

test: deps csrc
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 40m ./...
	@if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import torch' 2>/dev/null; then \
	  /usr/bin/python3 -m unittest discover -s scripts -p 'test_*.py' -v; \
	else echo "skipping Python tests: /usr/bin/python3 with torch not found"; fi

test-short: csrc
	$(GO) test -short -count=1 ./...

bench: deps build
	./bin/spectraclip bench $(ARGS)

bench-go: csrc
	$(GO) test -run '^$$' -bench . -benchtime 20x ./...

# bench-compare runs bench and both Python peers (naive, tcmalloc preloaded) at 1 and 2
# threads, 4x256x256x61, best of 2 interleaved rounds, e.g. ARGS="--threads 2 --rounds 3".
bench-compare: deps build
	bash scripts/bench_compare.sh $(ARGS)

train: deps build
	./bin/spectraclip train --variant $(VARIANT) $(ARGS)

compare: deps build
	./bin/spectraclip compare $(ARGS)

synth: deps build
	./bin/spectraclip synth $(ARGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# sweep-slurm runs the sweep's job array on a real single-node Slurm that the test starts
# (as root; it skips, saying why, where Slurm or munge cannot start).
sweep-slurm: deps csrc
	$(GO) test -count=1 -v -run 'TestSlurmJobArray' ./sweep/

# chaos runs the whole reliability harness (chaos/): every bad-input corpus case and every
# kill/resume trial, printing one summary line per part; make test runs a short sample.
chaos: csrc
	CHAOS_FULL=1 $(GO) test -count=1 -v -timeout 60m ./chaos/

gpu-check:
	bash scripts/gpu_check.sh

# gpu-prep builds, on this CPU machine, the Go binaries that scripts/gpu_check.sh runs on a
# GPU machine (which has no Go): they link only libspectraclip_c.so, rebuilt there.
gpu-prep: build
	$(GO) test -c -o bin/torch.test ./torch
	$(GO) test -c -o bin/detect.test ./nodes/detect

clean:
	rm -rf $(BUILD_DIR) bin

# regenerate serve/servepb from serve/proto/serve.proto (the generated files are committed)
PROTOC_TOOLS := $(abspath $(BUILD_DIR))/protoc-tools
proto:
	GOBIN=$(PROTOC_TOOLS) go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	GOBIN=$(PROTOC_TOOLS) go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
	PATH="$(PROTOC_TOOLS):$$PATH" protoc -I serve/proto --go_out=serve/servepb --go_opt=paths=source_relative --go-grpc_out=serve/servepb --go-grpc_opt=paths=source_relative serve/proto/serve.proto
