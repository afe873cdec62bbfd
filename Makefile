# DreamTeacher-Go. Every target sets up what it needs; `make help` lists them.
# The Go backend's SIMD matmul kernels need GOEXPERIMENT=simd at build time.
export GOEXPERIMENT := simd
export GOMLX_NO_AUTO_INSTALL ?= 1
export GOMLX_BACKEND ?= go
BIN := bin/dreamteacher
GO ?= go
# Test-run limits: the suite must stay well under 25 minutes on 2 cores.
TESTFLAGS ?= -count=1 -timeout 40m

.PHONY: help build test demo demo-quick demo-teacher bench lint pretrain-imagenet camvid clean

help:
	@echo "make demo               the demo on the embedded default (generated scenes, shipped teacher; TRAIN_TEACHER=1 trains it)"
	@echo "make demo-teacher       trains the demo's teacher again (~20 min) and ships it (cmd/dreamteacher/demo_teacher.safetensors)"
	@echo "make test               the test suite (Go backend)"
	@echo "make bench              training steps (ResNet-18, ADM teacher, distillation): GoMLX vs PyTorch, side by side"
	@echo "make lint               gofmt + go vet"
	@echo "make camvid CAMVID=dir  the CamVid in-domain experiment (teacher, distillation, 4 fine-tunings)"
	@echo "make camvid-campaign CAMVID=dir  issue #11's campaign: DT vs random, MoCo v2, BYOL; 12/37/367 labels x 3 seeds (resumable)"
	@echo "make pretrain-imagenet  the paper's ImageNet pre-training of ResNet-50 (IMAGENET=dir, GPU; DRY_RUN=1: the plan)"
	@echo "make overfit-maskrcnn   Mask R-CNN over-fits 8 scenes: box and mask AP >= 0.7 (OVERFIT_SEEDS=0,1,2)"

build:
	$(GO) build -o $(BIN) ./cmd/dreamteacher

# The vendored backend, third_party/compute, is a module of its own that ./... leaves out: its
# tests (all of them, about 1 minute on 2 cores) run in the same `go test`.
test:
	$(GO) test $(TESTFLAGS) ./... github.com/gomlx/compute/...

# TRAIN_TEACHER=1 pre-trains the teacher (configs/demo_teacher.conf, ~20 min on 2 cores) instead
# of using the shipped one.
TRAIN_TEACHER ?=
demo: build
	./$(BIN) demo $(if $(TRAIN_TEACHER),--train-teacher)

# The shipped demo teacher, made again: the demo with --train-teacher, then its EMA UNet in float16
# into the file the binary embeds (rebuild to ship it).
demo-teacher: build
	./$(BIN) demo --train-teacher --out out/demo-teacher
	./$(BIN) export --checkpoint out/demo-teacher/teacher --scope /ema/unet --dtype float16 --out cmd/dreamteacher/demo_teacher.safetensors
	$(GO) build -o $(BIN) ./cmd/dreamteacher

demo-quick: build
	./$(BIN) demo --quick

bench: build
	@command -v /usr/bin/python3 >/dev/null && /usr/bin/python3 -c "import torch, torchvision" 2>/dev/null || \
		{ echo "installing the PyTorch peer (Debian python3-torch)"; \
		  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torch python3-torchvision) >/dev/null || \
		  echo "could not install python3-torch: the PyTorch column will be missing"; }
	./$(BIN) bench --workload resnet18-cifar
	./$(BIN) bench --workload adm
	./$(BIN) bench --workload distill

lint:
	@out=$$(gofmt -l $$(git ls-files "*.go" | grep -v "^third_party/")); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# The paper's ImageNet-1k pre-training of ResNet-50 (configs/imagenet_resnet50.conf): the official
# guided-diffusion 256x256 ADM as the teacher (downloaded, or put in the weights cache: the error
# says where), then feature distillation. Run it on a GPU machine: BACKEND=xla:cuda.
# DRY_RUN=1 prints the plan instead (settings, backend, steps per epoch, the step time measured
# on the real data at a small batch and the projected time), before the teacher is downloaded:
# a random teacher of the same architecture times the same.
IMAGENET ?=
BACKEND ?=
OUT ?= out
DRY_RUN ?=
DRY_STEPS ?= 2
pretrain-imagenet: build
	@test -n "$(IMAGENET)" || { echo "pretrain-imagenet: set IMAGENET=/path/to/imagenet (train/<wnid>/*.JPEG)" >&2; exit 2; }
	@test -d "$(IMAGENET)" || { echo "pretrain-imagenet: IMAGENET=$(IMAGENET) is not a folder" >&2; exit 2; }
ifeq ($(DRY_RUN),)
	test -f $(OUT)/imagenet/teacher/ckpt-00000000.safetensors || \
		./$(BIN) convert --input adm_256x256_uncond --scope /ema/unet --out $(OUT)/imagenet/teacher
	./$(BIN) distill $(if $(BACKEND),--backend $(BACKEND)) --config imagenet_resnet50 \
		--set data=$(IMAGENET) --set teacher=$(OUT)/imagenet/teacher --out $(OUT)/imagenet/distill-r50
else
	./$(BIN) distill $(if $(BACKEND),--backend $(BACKEND)) --config imagenet_resnet50 --dry-run $(DRY_STEPS) \
		--set data=$(IMAGENET) --set teacher=random:adm_256x256_uncond --out $(OUT)/imagenet/distill-r50
endif

# The CamVid in-domain experiment of docs/RESULTS.md (about 3-4 hours on 2 CPU cores).
CAMVID ?=
camvid: build
	@test -n "$(CAMVID)" || { echo "camvid: set CAMVID=/path/to/camvid (SegNet layout: train/, trainannot/, val/, valannot/, train.txt, val.txt)" >&2; exit 2; }
	@test -d "$(CAMVID)" || { echo "camvid: CAMVID=$(CAMVID) is not a folder" >&2; exit 2; }
	./$(BIN) pretrain-diffusion --config camvid_teacher --set data=$(CAMVID) --out $(OUT)/camvid/teacher
	./$(BIN) distill --config camvid_distill --set data=$(CAMVID) --set teacher=$(OUT)/camvid/teacher --out $(OUT)/camvid/distill
	for init in random dt; do for frac in 1.0 0.1; do \
		if [ $$init = dt ]; then src=$(OUT)/camvid/distill/$$(ls $(OUT)/camvid/distill | grep '^ckpt-' | tail -1); else src=random; fi; \
		./$(BIN) finetune --task semseg --config camvid_finetune --set data=$(CAMVID) --set init=$$src \
			--set label_fraction=$$frac --out $(OUT)/camvid/$$init-$$frac || exit 1; \
	done; done
	./$(BIN) eval --results "$(OUT)/camvid/random-1.0,$(OUT)/camvid/dt-1.0,$(OUT)/camvid/random-0.1,$(OUT)/camvid/dt-0.1"

# The CamVid campaign of issue #11 (scripts/camvid_campaign.sh: teacher, distillation, MoCo v2 and
# BYOL, 36 fine-tunings, test predictions, the mean ± std table): many hours on 2 CPU cores, and
# resumable: rerun the same command after a stop. CAMPAIGN_STAGES picks stages (default: all).
CAMPAIGN_OUT ?= $(HOME)/runs/camvid
CAMPAIGN_STAGES ?=
.PHONY: camvid-campaign
camvid-campaign: build
	@test -n "$(CAMVID)" || { echo "camvid-campaign: set CAMVID=/path/to/camvid" >&2; exit 2; }
	CAMVID=$(CAMVID) OUT=$(CAMPAIGN_OUT) BIN=$(BIN) bash scripts/camvid_campaign.sh $(CAMPAIGN_STAGES)

clean:
	rm -rf bin

# Mask R-CNN demonstrably learns: trained on 8 generated scenes, it must find them again with box
# and mask AP >= 0.7 (train/finetune TestMaskRCNNOverfits8Images; docs/RESULTS.md). About 8 minutes
# per seed on 2 cores. OVERFIT_SEEDS=0,1,2 trains once per seed; OVERFIT_OUT=dir keeps the runs.
OVERFIT_SEEDS ?= 0
OVERFIT_OUT ?=
.PHONY: overfit-maskrcnn
overfit-maskrcnn:
	DREAMTEACHER_OVERFIT=1 DREAMTEACHER_OVERFIT_SEEDS=$(OVERFIT_SEEDS) DREAMTEACHER_OVERFIT_OUT=$(abspath $(OVERFIT_OUT)) \
		$(GO) test -count=1 -timeout 3h -run '^TestMaskRCNNOverfits8Images$$' -v ./train/finetune
