# DreamTeacher-Go. Every target sets up what it needs; `make help` lists them.
# The Go backend's SIMD matmul kernels need GOEXPERIMENT=simd at build time.
export GOEXPERIMENT := simd
export GOMLX_NO_AUTO_INSTALL ?= 1
export GOMLX_BACKEND ?= go
BIN := bin/dreamteacher
GO ?= go
# Test-run limits: the suite must stay well under 25 minutes on 2 cores.
TESTFLAGS ?= -count=1 -timeout 40m

.PHONY: help build test demo demo-quick bench lint pretrain-imagenet camvid clean

help:
	@echo "make demo               the demo on the embedded default (generated scenes)"
	@echo "make test               the test suite (Go backend)"
	@echo "make bench              ResNet-18 training step: GoMLX vs PyTorch, side by side"
	@echo "make lint               gofmt + go vet"
	@echo "make pretrain-imagenet  the paper's ImageNet pre-training (IMAGENET=path, GPU)"

build:
	$(GO) build -o $(BIN) ./cmd/dreamteacher

test:
	$(GO) test $(TESTFLAGS) ./...

demo: build
	./$(BIN) demo

bench: build
	@command -v /usr/bin/python3 >/dev/null && /usr/bin/python3 -c "import torch, torchvision" 2>/dev/null || \
		{ echo "installing the PyTorch peer (Debian python3-torch)"; \
		  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torch python3-torchvision) >/dev/null || \
		  echo "could not install python3-torch: the PyTorch column will be missing"; }
	./$(BIN) bench

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

pretrain-imagenet:
	@echo "pretrain-imagenet: not available yet — the ImageNet distillation recipe lands with issue #3/#4 (DreamTeacher core, datasets)." >&2
	@exit 2

clean:
	rm -rf bin
