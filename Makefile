# spectraclip — build, test and run. `make train VARIANT=drcnn` and `make test` install
# what is missing first (make deps).
SHELL := /bin/bash
VARIANT ?= drcnn
GO ?= go
# TORCH picks the LibTorch: debian (default: Debian's libtorch-dev 1.13.1, CPU) or pip
# (torch==2.11.0 from PyPI with its CUDA 13 and NCCL wheels, in the project's own virtual
# environment $(VENV); the shim is then built with CUDA and NCCL). Each has its own build
# folder and Go build tag, so the two never mix: build/ and build-pip/.
TORCH ?= debian
TORCH_PIP_VERSION := 2.11.0
VENV ?= .venv
ifeq ($(TORCH),debian)
BUILD_DIR ?= build
TORCH_DIR ?=
else ifeq ($(TORCH),pip)
BUILD_DIR ?= build-pip
TORCH_DIR ?= $(shell $(VENV)/bin/python -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null)/Torch
# the Go side links build-pip/ (torch/builddir_pip.go); go commands started by tests inherit it
export GOFLAGS := -tags=torchpip $(GOFLAGS)
# the tests' Python (torch.load, exporters, numpy references) is the venv's torch 2.11
export PYTHON := $(abspath $(VENV))/bin/python
else
$(error TORCH=$(TORCH): use TORCH=debian (Debian's LibTorch 1.13) or TORCH=pip (PyPI torch $(TORCH_PIP_VERSION)))
endif
TEST_PYTHON := $(if $(filter pip,$(TORCH)),$(PYTHON),/usr/bin/python3)
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CSRC_LIB := $(BUILD_DIR)/libspectraclip_c.so
CSRC_SRC := $(wildcard csrc/*.cpp csrc/*.h) CMakeLists.txt third_party/torch_wheel.cmake
GOFILES := $(shell find . -path ./.venv -prune -o -name '*.go' -not -path './third_party/*' -print 2>/dev/null)
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
ifeq ($(TORCH),pip)
	@bash scripts/torch_pip.sh "$(VENV)" "$(TORCH_PIP_VERSION)"
endif

# configure whenever the LibTorch changes (TORCH_DIR is compared inside CMakeLists.txt too)
$(BUILD_DIR)/Makefile: CMakeLists.txt third_party/torch_wheel.cmake
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=Release -DTORCH_DIR=$(TORCH_DIR) >/dev/null

$(CSRC_LIB): $(BUILD_DIR)/Makefile $(CSRC_SRC)
	cmake --build $(BUILD_DIR) -j $(JOBS)

csrc: $(CSRC_LIB)

# bin/spectraclip is rebuilt on every make build (go's cache makes that cheap), so that
# switching TORCH relinks it against the other build folder.
.PHONY: bin/spectraclip
bin/spectraclip: $(CSRC_LIB)
	@mkdir -p bin
	$(GO) build -o bin/spectraclip ./cmd/spectraclip

build: bin/spectraclip

version: build
	./bin/spectraclip version

# make test ends with the Go suite's one line "N passed, N failed, N skipped" after the list of
# every skipped test and its reason (internal/tools/testsum). Under CI=true a skip of a test
# whose service make deps installs is a failure (CI_REQUIRED).
# On the 2.11 build the compiled-detector round trips must run too (they skip on 1.13).
CI_REQUIRED_PIP := |torch\.TestAOTIPackage|nodes/detect\.TestBuiltinAOTIRoundTrip|nodes/detect\.TestCompiledDetectorNode|cmd/spectraclip\.TestCompiledDetectorRun
CI_REQUIRED := ^github.com/spectraclip/spectraclip/(sweep\.TestSlurmJobArray|serve\.TestLivePageInBrowser|serve\.TestShmOnlyFromThisMachine$(if $(filter pip,$(TORCH)),$(CI_REQUIRED_PIP)))$$
test: deps build
	$(GO) vet ./...
	@if [ -x $(TEST_PYTHON) ] && $(TEST_PYTHON) -c 'import torch' 2>/dev/null; then \
	  $(TEST_PYTHON) -m unittest discover -s scripts -p 'test_*.py' -v; \
	else echo "skipping Python tests: $(TEST_PYTHON) with torch not found"; exit 1; fi
	set -o pipefail; $(GO) test -json -count=1 -timeout 40m ./... | $(GO) run ./internal/tools/testsum $(if $(filter true,$(CI)),-required '$(CI_REQUIRED)')

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
