#!/usr/bin/env bash
# One prepared GPU check, for a machine with an NVIDIA GPU and jax's CUDA PJRT plugin (run from
# the repository root). It uses bin/dreamteacher if present (build it with `make build` on a
# machine with the Go module proxy and carry it over), else builds it.
#
#  1. finds the jax CUDA PJRT plugin and loads it by absolute path (no auto-install);
#  2. verifies the XLA GPU backend against the Go backend on the same weights and inputs
#     (ResNet-18 loss and gradients, TF32 off so that float32 results are comparable);
#  3. times ResNet-18 training steps on the GPU at several sizes/batches, with GFLOP/s and MFU.
# Everything it prints goes into docs/BENCHMARKS.md.
set -euo pipefail
export GOEXPERIMENT=simd GOMLX_NO_AUTO_INSTALL=1
PEAK_TFLOPS=${PEAK_TFLOPS:-494.7} # H100/H200 SXM dense TF32 tensor-core peak; set for other GPUs

plugin=${PJRT_PLUGIN:-}
if [ -z "$plugin" ]; then
	for py in python3 /usr/bin/python3; do
		plugin=$($py - 2>/dev/null <<'PY' || true
import glob, os, importlib.util
for name in ("jax_plugins.xla_cuda13", "jax_plugins.xla_cuda12"):
    spec = importlib.util.find_spec(name)
    if spec and spec.submodule_search_locations:
        for d in spec.submodule_search_locations:
            for f in glob.glob(os.path.join(d, "xla_cuda_plugin.so")):
                print(f); raise SystemExit
PY
)
		[ -n "$plugin" ] && break
	done
fi
if [ -z "$plugin" ]; then
	plugin=$(find / -name xla_cuda_plugin.so -path '*jax_plugins*' 2>/dev/null | head -1 || true)
fi
if [ -z "$plugin" ] || [ ! -f "$plugin" ]; then
	echo "gpu_check: jax's CUDA PJRT plugin (xla_cuda_plugin.so) not found; set PJRT_PLUGIN=/abs/path" >&2
	exit 1
fi
echo "== plugin: $plugin"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

if [ ! -x bin/dreamteacher ]; then
	go build -o bin/dreamteacher ./cmd/dreamteacher
fi
bin=bin/dreamteacher
$bin inspect backend --backend "xla:$plugin"

echo "== verify: XLA GPU (TF32 off) vs Go backend, ResNet-18 CIFAR stem, 32 px, batch 4"
$bin bench --backend "xla:$plugin,tf32=false" --verify --sizes 32 --batch 4 --warmup 1 --steps 2 --torch=false

echo "== timing: ResNet-18 training step on the GPU (TF32 on)"
for cfg in "32 256" "64 128" "224 64"; do
	set -- $cfg
	$bin bench --backend "xla:$plugin" --sizes "$1" --batch "$2" --warmup 3 --steps 10 --torch=false --peak-tflops "$PEAK_TFLOPS"
done
