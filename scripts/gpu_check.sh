#!/usr/bin/env bash
# The GPU check, one prepared script for a lent machine with an NVIDIA GPU and jax's CUDA PJRT
# plugin (pip install jax[cuda13] or jax[cuda12]), no network and no Go toolchain. Run it from a
# checkout of the repository (only this script is needed from it) with the binary built here:
#
#   GOEXPERIMENT=simd make build                # here: bin/dreamteacher (needs glibc >= 2.34 there)
#   bash scripts/gpu_check.sh                   # there, from the repository root
#   bash scripts/gpu_check.sh --print-env       # only print what it found and would run
#
# What it does (docs/BENCHMARKS.md, "Running the GPU check"):
#  1. asks python where jax's CUDA plugin is (its site-packages; no search of the disk) and sets
#     the environment as jax does before loading that plugin: every site-packages/nvidia/*/lib
#     on LD_LIBRARY_PATH, and XLA_FLAGS=--xla_gpu_cuda_data_dir=<the pip CUDA toolkit folder
#     with ptxas and libdevice: nvidia/cu13 for CUDA 13, nvidia/cuda_nvcc for CUDA 12>;
#  2. for each bench workload, in ONE process (each XLA compilation takes a long while, so
#     nothing is compiled twice): compares the loss and gradients of a training step on the GPU
#     with the Go backend's on the same weights and inputs (`bench --verify`), with TF32 off
#     everywhere (tf32=false for dot products, NVIDIA_TF32_OVERRIDE=0 for cuDNN's convolutions
#     and cuBLAS), and fails if they differ by more than the tolerances below; then times the
#     workload's training step at all its sizes, in float32;
#  3. with GPU_CHECK_TF32=1, times every workload again with TF32 on (one more process each).
# `bench` takes one workload per invocation, so the workloads run in one process each (all of a
# workload's sizes share that process and its batch size).
#
# Settings (environment):
#   DREAMTEACHER_BIN   the binary (default bin/dreamteacher)
#   PYTHON             the python that has jax (default python3, then /usr/bin/python3)
#   SITE_PACKAGES      skip asking python: the site-packages holding jax_plugins/ and nvidia/
#   PJRT_PLUGIN        the plugin's absolute path (default: found in site-packages)
#   WORKLOADS          space-separated workloads (default: all that `bench -h` lists)
#   GPU_CHECK_TOL_LOSS relative difference of the loss allowed (default 1e-4)
#   GPU_CHECK_TOL_GRAD largest relative L2 error of a variable's gradient allowed (default 1e-3)
#   GPU_CHECK_TIMEOUT  seconds allowed to each process (default 600)
#   GPU_CHECK_LOG      a copy of everything printed (default gpu_check.log)
#   PEAK_TFLOPS        the GPU's float32 peak for the MFU (default 67: H100/H200 SXM without
#                      tensor cores); PEAK_TFLOPS_TF32 the TF32 one (default 494.7, dense)
# Tolerances: float32 reorderings alone (summation order, GEMM blocking) move the loss by ~2e-7
# and a gradient by ~6e-6 (docs/BENCHMARKS.md, Correctness); cuDNN's float32 algorithms stay
# well inside 1e-4 / 1e-3; TF32 (10-bit mantissa) errors are ~1e-3 and above.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${DREAMTEACHER_BIN:-bin/dreamteacher}
TOL_LOSS=${GPU_CHECK_TOL_LOSS:-1e-4}
TOL_GRAD=${GPU_CHECK_TOL_GRAD:-1e-3}
TIMEOUT=${GPU_CHECK_TIMEOUT:-600}
LOG=${GPU_CHECK_LOG:-gpu_check.log}
PEAK_TFLOPS=${PEAK_TFLOPS:-67}
PEAK_TFLOPS_TF32=${PEAK_TFLOPS_TF32:-494.7}
export GOMLX_NO_AUTO_INSTALL=1

dry=false
case "${1:-}" in
--print-env) dry=true ;;
"") ;;
*)
	echo "usage: $0 [--print-env]" >&2
	exit 2
	;;
esac

die() {
	echo "gpu_check: $*" >&2
	exit 1
}

# --- 1. The plugin and the pip NVIDIA libraries, from python's site-packages. ---------------
# Prints: the plugin, then each folder of the "nvidia" namespace package (where the pip NVIDIA
# wheels put their lib/ folders), one per line. find_spec imports neither jax nor the plugin.
locate() {
	"$1" - <<'PY'
import importlib.util, os, sys
plugin = None
for name in ("jax_plugins.xla_cuda13", "jax_plugins.xla_cuda12"):
    try:
        spec = importlib.util.find_spec(name)
    except ImportError:
        spec = None
    for d in (spec.submodule_search_locations or []) if spec else []:
        if plugin is None and os.path.isfile(os.path.join(d, "xla_cuda_plugin.so")):
            plugin = os.path.join(d, "xla_cuda_plugin.so")
if plugin is None:
    sys.exit(1)
print(plugin)
try:
    nv = importlib.util.find_spec("nvidia")
except ImportError:
    nv = None
for d in (nv.submodule_search_locations or []) if nv else []:
    print(d)
PY
}

plugin=${PJRT_PLUGIN:-}
nvidia_dirs=()
if [ -n "${SITE_PACKAGES:-}" ]; then
	[ -d "$SITE_PACKAGES" ] || die "SITE_PACKAGES=$SITE_PACKAGES is not a folder"
	if [ -z "$plugin" ]; then
		for c in 13 12; do
			if [ -f "$SITE_PACKAGES/jax_plugins/xla_cuda$c/xla_cuda_plugin.so" ]; then
				plugin=$SITE_PACKAGES/jax_plugins/xla_cuda$c/xla_cuda_plugin.so
				break
			fi
		done
	fi
	[ -d "$SITE_PACKAGES/nvidia" ] && nvidia_dirs=("$SITE_PACKAGES/nvidia")
else
	found=""
	for py in ${PYTHON:-python3 /usr/bin/python3}; do
		command -v "$py" >/dev/null 2>&1 || continue
		if found=$(locate "$py" 2>/dev/null); then
			break
		fi
		found=""
	done
	[ -n "$found" ] || die "no python (${PYTHON:-python3, /usr/bin/python3}) has jax's CUDA plugin (jax_plugins.xla_cuda13 or xla_cuda12): set PYTHON to the one that has jax, or SITE_PACKAGES=/path/to/site-packages, or PJRT_PLUGIN=/abs/path/xla_cuda_plugin.so"
	[ -n "$plugin" ] || plugin=$(head -n 1 <<<"$found")
	mapfile -t nvidia_dirs < <(tail -n +2 <<<"$found")
fi
[ -n "$plugin" ] || die "jax's CUDA plugin (jax_plugins/xla_cuda13/xla_cuda_plugin.so) is not in $SITE_PACKAGES; set PJRT_PLUGIN=/abs/path"
[ -f "$plugin" ] || die "PJRT plugin $plugin does not exist"
case "$plugin" in
/*) ;;
*) plugin=$(cd "$(dirname "$plugin")" && pwd)/$(basename "$plugin") ;;
esac

# As jax's plugin loads libcudart, cuBLAS, cuDNN, NCCL, ... from the pip wheels first.
libs=""
for nv in "${nvidia_dirs[@]}"; do
	for d in "$nv"/*/lib; do
		[ -d "$d" ] && libs=$libs${libs:+:}$d
	done
done
[ -n "$libs" ] || echo "gpu_check: warning: no site-packages/nvidia/*/lib folder: the CUDA libraries must be on the system's loader path" >&2
export LD_LIBRARY_PATH=$libs${LD_LIBRARY_PATH:+${libs:+:}$LD_LIBRARY_PATH}

# XLA's CUDA data folder (bin/ptxas, nvvm/libdevice), as jax points XLA at it: the toolkit
# wheel of the plugin's CUDA version first.
case "$plugin" in
*xla_cuda12*) toolkits=(cuda_nvcc cu13) ;;
*) toolkits=(cu13 cuda_nvcc) ;;
esac
data_dir=""
for nv in "${nvidia_dirs[@]}"; do
	for t in "${toolkits[@]}"; do
		if [ -z "$data_dir" ] && { [ -e "$nv/$t/bin/ptxas" ] || [ -d "$nv/$t/nvvm/libdevice" ]; }; then
			data_dir=$nv/$t
		fi
	done
done
if [ -n "$data_dir" ]; then
	export XLA_FLAGS="--xla_gpu_cuda_data_dir=$data_dir${XLA_FLAGS:+ $XLA_FLAGS}"
else
	echo "gpu_check: warning: no pip CUDA toolkit (nvidia/cu13 or nvidia/cuda_nvcc with bin/ptxas): XLA looks for ptxas on its own" >&2
fi

# --- 2. The workloads. ------------------------------------------------------------------
# GPU sizes and batch per workload: "sizes batch". Workloads not listed run at their own
# defaults (bench -h).
declare -A gpu_cfg=(
	[resnet18-cifar]="32,64,224 64"
	[adm]="64x48 64"
	[distill]="128x96 32"
)
workloads=${WORKLOADS:-}
if [ -z "$workloads" ]; then
	if [ -x "$BIN" ]; then
		workloads=$("$BIN" bench -h 2>&1 | sed -n 's/.*workload: \(.*\), or loader.*/\1/p' | tr -d ',' | head -n 1)
	fi
	[ -n "$workloads" ] || workloads="resnet18-cifar adm distill"
	# The cheapest and most telling first, in case the machine's time runs out.
	ordered=""
	for w in resnet18-cifar adm distill $workloads; do
		case " $workloads " in *" $w "*) case " $ordered " in *" $w "*) ;; *) ordered="$ordered $w" ;; esac ;; esac
	done
	workloads=${ordered# }
fi

verify_env=(env NVIDIA_TF32_OVERRIDE=0)
bench_args() { # workload -> the size and batch flags
	local cfg=${gpu_cfg[$1]:-}
	if [ -n "$cfg" ]; then
		echo "--sizes ${cfg% *} --batch ${cfg#* }"
	fi
}

if $dry; then
	echo "plugin=$plugin"
	echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
	echo "XLA_FLAGS=${XLA_FLAGS:-}"
	echo "binary=$BIN"
	echo "tolerances: loss $TOL_LOSS, gradients $TOL_GRAD"
	for w in $workloads; do
		echo "${verify_env[*]} $BIN bench --backend xla:$plugin,tf32=false --workload $w $(bench_args "$w") --verify --warmup 3 --steps 10 --torch=false --peak-tflops $PEAK_TFLOPS"
		if [ "${GPU_CHECK_TF32:-0}" = 1 ]; then
			echo "$BIN bench --backend xla:$plugin --workload $w $(bench_args "$w") --warmup 3 --steps 10 --torch=false --peak-tflops $PEAK_TFLOPS_TF32"
		fi
	done
	exit 0
fi

[ -x "$BIN" ] || die "$BIN is missing: build it on a machine with Go (GOEXPERIMENT=simd make build) and copy it here; this machine needs no Go toolchain"
: >"$LOG"
exec > >(tee -a "$LOG") 2>&1

# within VALUE TOL: VALUE is a number (not NaN/Inf) no larger than TOL.
within() {
	[[ $1 =~ ^[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$ ]] && awk -v v="$1" -v t="$2" 'BEGIN { exit !(v + 0 <= t + 0) }'
}

start=$SECONDS
failed=()
echo "== plugin: $plugin"
echo "== LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
echo "== XLA_FLAGS=${XLA_FLAGS:-}"
if command -v nvidia-smi >/dev/null; then
	nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
timeout "$TIMEOUT" "$BIN" inspect backend --backend "xla:$plugin" || die "the XLA backend did not start with $plugin"

for w in $workloads; do
	t0=$SECONDS
	echo
	echo "== $w: verify on the GPU against the Go backend (TF32 off, tolerances loss $TOL_LOSS, gradients $TOL_GRAD), then float32 timing"
	out=$(mktemp)
	# shellcheck disable=SC2046
	if ! timeout "$TIMEOUT" "${verify_env[@]}" "$BIN" bench --backend "xla:$plugin,tf32=false" --workload "$w" $(bench_args "$w") \
		--verify --warmup 3 --steps 10 --torch=false --peak-tflops "$PEAK_TFLOPS" 2>&1 | tee "$out"; then
		failed+=("$w: bench failed (exit status ${PIPESTATUS[0]})")
	else
		line=$(grep -m 1 '^verify ' "$out" || true)
		rel=$(sed -n 's/.*(rel\. diff \([^)]*\)).*/\1/p' <<<"$line")
		ngrad=$(sed -n 's/.*gradients of \([0-9]*\) variables.*/\1/p' <<<"$line")
		grad=$(sed -n 's/.*max relative error \([^ ]*\).*/\1/p' <<<"$line")
		if [ -z "$line" ]; then
			failed+=("$w: no verify line in bench's output")
		elif ! within "$rel" "$TOL_LOSS"; then
			failed+=("$w: loss relative difference $rel above $TOL_LOSS")
		elif [ "${ngrad:-0}" -eq 0 ]; then
			failed+=("$w: no gradient compared")
		elif ! within "$grad" "$TOL_GRAD"; then
			failed+=("$w: gradient relative error $grad above $TOL_GRAD")
		else
			echo "== $w: GPU matches the Go backend (loss $rel <= $TOL_LOSS, $ngrad gradients, max $grad <= $TOL_GRAD)"
		fi
	fi
	rm -f "$out"
	if [ "${GPU_CHECK_TF32:-0}" = 1 ]; then
		echo "== $w: timing with TF32 on"
		# shellcheck disable=SC2046
		timeout "$TIMEOUT" "$BIN" bench --backend "xla:$plugin" --workload "$w" $(bench_args "$w") \
			--warmup 3 --steps 10 --torch=false --peak-tflops "$PEAK_TFLOPS_TF32" || failed+=("$w: TF32 timing failed")
	fi
	echo "== $w: $((SECONDS - t0)) s"
done

echo
echo "== total $((SECONDS - start)) s"
if [ ${#failed[@]} -gt 0 ]; then
	printf 'gpu_check: FAILED: %s\n' "${failed[@]}" >&2
	exit 1
fi
echo "gpu_check: passed"
