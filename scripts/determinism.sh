#!/bin/bash
# Fresh-run determinism with several threads: each training command twice from scratch with the
# same seed, 10 steps, then the losses compared step by step. `make test` checks the same at
# GOMAXPROCS=1 (TestFreshRunsAreIdentical); this measures it at GOMAXPROCS (default 2).
#   GOMAXPROCS=2 bash scripts/determinism.sh      (after `make build`; about 3 minutes on 2 cores)
set -e
BIN=${BIN:-bin/dreamteacher}
export GOMLX_BACKEND=go GOMLX_NO_AUTO_INSTALL=1 GOMAXPROCS=${GOMAXPROCS:-2}
D=${OUT:-/tmp/determinism}; rm -rf $D; mkdir -p $D
$BIN pretrain-diffusion --config demo_teacher --set data=$D/scenes --set adm=adm_tiny --set size=32,32 --set batch=4 --set steps=1 --set samples=0 --out $D/prep >/dev/null 2>&1
for r in a b; do
 $BIN pretrain-diffusion --config demo_teacher --set data=$D/scenes --set size=32,32 --set batch=4 --set steps=10 --set samples=0 --set log_every=1 --out $D/teacher-$r >/dev/null 2>&1
 $BIN pretrain-gan --set dataset=scenes --set data=$D/scenes --set batch=4 --set steps=10 --set samples=0 --set log_every=1 --out $D/gan-$r >/dev/null 2>&1
 $BIN distill --config demo_distill --set data=$D/scenes --set teacher=$D/teacher-a --set size=32,32 --set small_stem=true --set batch=4 --set steps=10 --set warmup=1 --set feature_images=0 --set log_every=1 --out $D/distill-$r >/dev/null 2>&1
 $BIN finetune --task semseg --config demo_semseg --set data=$D/scenes --set small_stem=true --set crop=32,32 --set scale=32,32 --set batch=4 --set steps=10 --set warmup=1 --set overlays=0 --set log_every=1 --out $D/semseg-$r >/dev/null 2>&1
 $BIN finetune --task instseg --config demo_instseg --set data=$D/scenes --set small_stem=true --set min_size_train=32 --set max_size_train=32 --set min_size_test=32 --set max_size_test=32 --set canvas=32,32 --set batch=2 --set steps=10 --set warmup=1 --set overlays=0 --set log_every=1 --out $D/instseg-$r >/dev/null 2>&1
done
D=$D python3 - <<'PY'
import json, os
D = os.environ["D"]
for c in ["teacher","gan","distill","semseg","instseg"]:
    l=[[json.loads(x)["loss"] for x in open(f"{D}/{c}-{r}/metrics.jsonl")] for r in "ab"]
    same=sum(1 for x,y in zip(*l) if x==y)
    rel=max(abs(x-y)/abs(x) for x,y in zip(*l))
    print(f"{c}: {same}/{len(l[0])} steps identical, max relative difference {rel:.2e}")
PY
