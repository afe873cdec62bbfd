#!/usr/bin/env bash
# The CamVid campaign (issue #11, docs/RESULTS.md): DreamTeacher against random initialisation
# and the self-supervised baselines, with few and all labels, three seeds per cell.
#
#   CAMVID=/path/to/camvid OUT=$HOME/runs/camvid bash scripts/camvid_campaign.sh [stage ...]
#   make camvid-campaign CAMVID=/path/to/camvid CAMPAIGN_OUT=$HOME/runs/camvid
#
# Stages, in order (default: all): teacher distill select mocov2 byol finetune predict table.
#   teacher   pretrain-diffusion --config camvid_teacher, TEACHER_STEPS steps (default 6000)
#   distill   distill --config camvid_distill from that teacher, DISTILL_STEPS steps (default 600),
#             with DISTILL_SET's settings on top ("t=10 mode=mixed ...", default none)
#   select    the self-supervised baselines' learning rates, chosen on val: for each of
#             MOCOV2_LRS (default "0.001875 0.03": MoCo's rule for batch 16, and its batch-256
#             rate) and BYOL_LRS (default "0.0125 0.1"), pretrain-ssl into
#             OUT/select/<method>-lr<lr>, then UperNet with 37 labels, seed 0, into
#             OUT/select/ft-<method>-lr<lr>-37-s0; prints each val mIoU
#   mocov2    pretrain-ssl --method mocov2 --config camvid_mocov2 (the distillation's budget)
#   byol      pretrain-ssl --method byol --config camvid_byol (the same budget); at MOCOV2_LR and
#             BYOL_LR when set, else the select stage's best run on val becomes OUT/<method>
#   finetune  finetune --task semseg --config camvid_finetune for every INITS x LABELS x SEEDS,
#             into OUT/<init>-<labels>-s<seed> (seed: the labelled subset, the data order and the
#             head's initialisation); pre-trained backbones at BACKBONE_LR_MULT (default 1) of
#             the head's learning rate
#   predict   predict on the test split (CamVid's test.txt: images without labels) into
#             PRED/<init>-<labels>-s<seed>/ (default docs/results/camvid/test)
#   table     eval --results OUT/*-*-s* --layout paper (mean ± std over seeds, on val)
#   lever     (not in the default list) one fine-tuning lever for the lever table: LEVER names it,
#             LEVER_SET holds its settings ("freeze_backbone=true", "backbone_lr_mult=0.1", ...);
#             for LEVER_INITS (default dt) x LABELS x SEEDS into OUT/levers/LEVER/<init>-<labels>-s<seed>,
#             then its table
#
# Everything is resumable: a run with a result.json is skipped, an unfinished one resumes from its
# last checkpoint (stop it at any time; a later session reruns the same command). OUT should lie
# outside the repository: checkpoints are large. Tune on val only; the test split is scored
# independently.
set -euo pipefail

: "${CAMVID:?set CAMVID=/path/to/camvid (SegNet layout: train/, trainannot/, val/, valannot/, test/, *.txt)}"
OUT=${OUT:-$HOME/runs/camvid}
BIN=${BIN:-bin/dreamteacher}
TEACHER_STEPS=${TEACHER_STEPS:-6000}
DISTILL_STEPS=${DISTILL_STEPS:-600}
DISTILL_SET=${DISTILL_SET:-}
INITS=${INITS:-random mocov2 byol dt}
LABELS=${LABELS:-12 37 367}
SEEDS=${SEEDS:-0 1 2}
BACKBONE_LR_MULT=${BACKBONE_LR_MULT:-1}
PRED=${PRED:-docs/results/camvid/test}
MOCOV2_LRS=${MOCOV2_LRS:-0.001875 0.03}
BYOL_LRS=${BYOL_LRS:-0.0125 0.1}
STAGES=${*:-teacher distill select mocov2 byol finetune predict table}

[ -d "$CAMVID" ] || { echo "camvid_campaign: CAMVID=$CAMVID is not a folder" >&2; exit 2; }
[ -x "$BIN" ] || { echo "camvid_campaign: $BIN is missing: run make build first (or set BIN)" >&2; exit 2; }
mkdir -p "$OUT"
log() { echo "[$(date -u +%H:%M:%S)] $*"; }

# done_run DIR: the run finished (it wrote its result.json).
done_run() { [ -f "$1/result.json" ]; }

# miou DIR: the val mIoU in a fine-tuning run's result.json.
miou() { grep -o '"mIoU": *[0-9.]*' "$1/result.json" | grep -o '[0-9.]*$'; }

# best_lr METHOD: the select stage's learning rate of METHOD with the highest val mIoU.
best_lr() {
	local lrs=${1^^}_LRS best="" bestv=-1 v lr
	for lr in ${!lrs}; do
		done_run "$OUT/select/ft-$1-lr$lr-37-s0" || continue
		v=$(miou "$OUT/select/ft-$1-lr$lr-37-s0")
		if awk -v a="$v" -v b="$bestv" 'BEGIN { exit !(a > b) }'; then best=$lr bestv=$v; fi
	done
	echo "$best"
}

# latest DIR: the newest checkpoint of a run.
latest() { ls "$1"/ckpt-*.safetensors 2>/dev/null | tail -1; }

# init_of INIT: the --set init value of a pre-training name; an error when its stage has not run.
init_of() {
	local src
	case $1 in
	random) src=random ;;
	dt) src=$(latest "$OUT/distill") ;;
	*) src=$(latest "$OUT/$1") ;;
	esac
	[ -n "$src" ] || { echo "camvid_campaign: no checkpoint for init $1: run its stage first" >&2; return 1; }
	echo "$src"
}

# pretrain_ssl METHOD LR DIR: a self-supervised baseline with the distillation's budget, at LR.
pretrain_ssl() {
	"$BIN" pretrain-ssl --method "$1" --config "camvid_$1" --set data="$CAMVID" --set lr="$2" \
		--set checkpoint_every=100 --out "$3"
}

# finetune_semseg DIR INIT LABELS SEED [SETTING=VALUE ...]: the campaign's UperNet fine-tuning.
finetune_semseg() {
	local dir=$1 init=$2 labels=$3 seed=$4 kv sets=()
	shift 4
	for kv in "$@"; do sets+=(--set "$kv"); done
	"$BIN" finetune --task semseg --config camvid_finetune --set data="$CAMVID" --set init="$init" \
		--set label_count="$labels" --set seed="$seed" "${sets[@]}" \
		--set checkpoint_every=100 --set overlays=0 --out "$dir"
}

for stage in $STAGES; do
	case $stage in
	teacher)
		done_run "$OUT/teacher" || { log "teacher ($TEACHER_STEPS steps)"
			"$BIN" pretrain-diffusion --config camvid_teacher --set data="$CAMVID" --set steps="$TEACHER_STEPS" \
				--set checkpoint_every=200 --out "$OUT/teacher"; } ;;
	distill)
		done_run "$OUT/distill" || { log "distill ($DISTILL_STEPS steps${DISTILL_SET:+, $DISTILL_SET})"
			sets=()
			for kv in $DISTILL_SET; do sets+=(--set "$kv"); done
			"$BIN" distill --config camvid_distill --set data="$CAMVID" --set teacher="$OUT/teacher" \
				--set steps="$DISTILL_STEPS" "${sets[@]}" --set checkpoint_every=100 --out "$OUT/distill"; } ;;
	select)
		for m in mocov2 byol; do
			lrs=${m^^}_LRS
			for lr in ${!lrs}; do
				pre="$OUT/select/$m-lr$lr" ft="$OUT/select/ft-$m-lr$lr-37-s0"
				done_run "$pre" || { log "select: $m at lr $lr"; pretrain_ssl "$m" "$lr" "$pre"; }
				done_run "$ft" || { log "select: $m at lr $lr, finetune with 37 labels, seed 0"
					finetune_semseg "$ft" "$(latest "$pre")" 37 0; }
				log "select: $m lr $lr -> val mIoU $(miou "$ft") (37 labels, seed 0)"
			done
		done ;;
	mocov2 | byol)
		# MOCOV2_LR / BYOL_LR: the learning rate, else the select stage's best on val (MoCo's own
		# rule, 0.03 x batch/256, barely trains in 600 steps: docs/RESULTS.md).
		lrvar=${stage^^}_LR
		done_run "$OUT/$stage" && continue
		if [ -z "${!lrvar:-}" ]; then
			lr=$(best_lr "$stage")
			[ -n "$lr" ] || { echo "camvid_campaign: no learning rate for $stage: set ${lrvar} or run the select stage first" >&2; exit 1; }
			log "$stage: the select stage's best on val, lr $lr ($OUT/select/$stage-lr$lr)"
			rm -rf "$OUT/$stage"
			ln -s "select/$stage-lr$lr" "$OUT/$stage"
			continue
		fi
		log "$stage at lr ${!lrvar}"
		pretrain_ssl "$stage" "${!lrvar}" "$OUT/$stage" ;;
	finetune)
		for seed in $SEEDS; do for labels in $LABELS; do for init in $INITS; do
			run="$OUT/$init-$labels-s$seed"
			done_run "$run" && continue
			src=$(init_of "$init")
			mult=1
			[ "$init" = random ] || mult=$BACKBONE_LR_MULT
			log "finetune $init, $labels labels, seed $seed"
			finetune_semseg "$run" "$src" "$labels" "$seed" backbone_lr_mult="$mult"
		done; done; done ;;
	predict)
		want=$(grep -c . "$CAMVID/test.txt")
		for run in "$OUT"/*-*-s*; do
			[ -f "$run/result.json" ] || continue
			dst="$PRED/$(basename "$run")"
			[ "$(ls "$dst" 2>/dev/null | grep -c '\.png$')" = "$want" ] && continue
			log "predict $(basename "$run") -> $dst"
			"$BIN" predict --checkpoint "$run" --images "$CAMVID/test.txt" --out "$dst"
		done ;;
	table)
		"$BIN" eval --results "$OUT/*-*-s*" --layout paper ;;
	lever)
		: "${LEVER:?set LEVER=<name> and LEVER_SET='<setting>=<value> ...' for the lever stage}"
		: "${LEVER_SET:?set LEVER_SET='<setting>=<value> ...' for the lever stage}"
		for seed in $SEEDS; do for labels in $LABELS; do for init in ${LEVER_INITS:-dt}; do
			run="$OUT/levers/$LEVER/$init-$labels-s$seed"
			done_run "$run" && continue
			src=$(init_of "$init")
			log "lever $LEVER ($LEVER_SET): finetune $init, $labels labels, seed $seed"
			# shellcheck disable=SC2086 # LEVER_SET is a list of settings
			finetune_semseg "$run" "$src" "$labels" "$seed" $LEVER_SET
		done; done; done
		"$BIN" eval --results "$OUT/levers/$LEVER/*-*-s*" --layout paper ;;
	*)
		echo "camvid_campaign: unknown stage $stage (teacher distill select mocov2 byol finetune predict table)" >&2
		exit 2 ;;
	esac
done
