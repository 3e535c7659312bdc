#!/usr/bin/env bash
# Quick start: set up .venv (idempotent), write the sample data, then run the whole chain on the real CT and the real
# radiograph and write one report:
#   DRRs -> UniMiSS+ pretraining -> CXR / CT segmentation and classification fine-tunes from those weights
#   -> evaluation on held-out data -> inference on the real CT and radiograph -> report.html (+ report.md)
#
#   bash tools/demo.sh [--fresh] [RUN_DIR]        (RUN_DIR defaults to outputs/demo, outputs/demo-smoke at smoke scale)
#
# Every step prints the exact command it runs (copy it to rerun that step alone). A step whose outputs exist and are
# newer than its inputs is skipped; --fresh runs every step again (each bundle replaces only its own outputs; the
# pretraining trains anew instead of resuming its finished checkpoint).
# Each step's command, wall time and exit status go to RUN_DIR/demo_steps.json, which the report reads.
# Environment: SAMPLES (default samples/), SAMPLES_OPTS (e.g. --synthetic), DEMO_SCALE=demo|smoke (smoke: the
# one-minute test overlays, meaningless pictures), OMP_NUM_THREADS (default 1: on a busy 2-core CPU the tiny
# networks train faster with one thread each). A run folder holds one scale (RUN_DIR/demo_scale.txt): another scale
# there is refused, since its trainings would resume the other scale's checkpoints; --fresh retrains it in place.
set -euo pipefail
FRESH=""
RUN_DIR=""
for arg in "$@"; do
    case "$arg" in
        --fresh) FRESH="--fresh" ;;
        -h|--help) sed -n '2,16p' "$0" | sed -E 's/^# ?//'; exit 0 ;;
        -*) echo "tools/demo.sh: unknown option $arg (use --fresh, or a run folder)" >&2; exit 2 ;;
        *) RUN_DIR="$arg" ;;
    esac
done
# the scale and run folder are settled before the set-up, so a refused folder costs nothing; the steps run from the
# repository root (the set-up's cd "$ROOT" below), so a relative run folder or SAMPLES typed in another folder is
# made absolute there first (from the root itself it stays as typed: the recorded commands, and what they skip, hold)
CALLER="$PWD"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE/.."
if [ "$(cd "$CALLER" && pwd -P)" != "$(pwd -P)" ]; then
    case "$RUN_DIR" in ""|/*) ;; *) RUN_DIR="$CALLER/$RUN_DIR" ;; esac
    case "${SAMPLES:-}" in ""|/*) ;; *) SAMPLES="$CALLER/$SAMPLES" ;; esac
fi
SCALE="${DEMO_SCALE:-demo}"
case "$SCALE" in
    demo) OVERLAY=demo.yaml; TRAIN_OVERLAY=demo_train.yaml; DRR_OVERLAY=demo.yaml; PRE_OVERLAY=demo.yaml ;;
    smoke) OVERLAY=smoke.yaml; TRAIN_OVERLAY=""; DRR_OVERLAY=demo.yaml; PRE_OVERLAY=smoke.yaml ;;
    *) echo "tools/demo.sh: DEMO_SCALE must be demo or smoke, got '$SCALE'" >&2; exit 2 ;;
esac
# each scale its own folder: the pretraining and fine-tunes resume the checkpoints in their folder, and a smoke run's
# finished checkpoint has the demo networks' shapes, so the demo would silently train only the epochs after it
RUN_DIR="${RUN_DIR:-outputs/demo$([ "$SCALE" = demo ] || echo "-$SCALE")}"
SCALE_FILE="$RUN_DIR/demo_scale.txt"
if [ -f "$SCALE_FILE" ]; then
    RUN_SCALE="$(tr -d '[:space:]' < "$SCALE_FILE")"
elif [ -f "$RUN_DIR/demo_steps.json" ]; then  # a folder written before demo_scale.txt: its commands name the overlay
    RUN_SCALE="$(grep -q "configs/smoke.yaml" "$RUN_DIR/demo_steps.json" && echo smoke || echo demo)"
else
    RUN_SCALE="$SCALE"
fi
if [ "$RUN_SCALE" != "$SCALE" ] && [ -z "$FRESH" ]; then
    echo "tools/demo.sh: $RUN_DIR holds a DEMO_SCALE=$RUN_SCALE run and this one is DEMO_SCALE=$SCALE, whose trainings" \
         "would resume its checkpoints: give another run folder (bash tools/demo.sh DIR), move $RUN_DIR away, or" \
         "retrain it in place with --fresh" >&2
    exit 2
fi
source "$HERE/_env.sh" ""  # no extras (the arguments above are ours)
cd "$ROOT"
SAMPLES="${SAMPLES:-samples}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
mkdir -p "$RUN_DIR"
echo "$SCALE" > "$SCALE_FILE"
T0=$SECONDS

# step NAME STAGE "OUTPUT..." "INPUT..." -- COMMAND...: print, run or skip, record (unimiss_monai/report/steps.py);
# the output and input lists are tab-separated ($T), so that a path with a space in it stays one path
T=$'\t'
step() {
    local name="$1" stage="$2" outs="$3" ins="$4" IFS=$'\t'; shift 5
    # the wrapper's start-up counts in the step's time end to end (STEP_CALLED); bash before 5 has no EPOCHREALTIME
    # shellcheck disable=SC2086  # the lists are split on tabs (IFS) on purpose
    UNIMISS_STEP_CALLED="${EPOCHREALTIME:-$(date +%s)}" \
    python -m unimiss_monai.report.steps "$RUN_DIR" "$name" --stage "$stage" --outputs $outs --inputs $ins $FRESH -- "$@" \
        || { echo "[demo] $name failed; the command is printed above. Rerun tools/demo.sh to resume from this step." >&2; exit 1; }
}
configs() {  # configs BUNDLE FILE... -> "['bundles/B/configs/F',...]"
    local b="$1" out="" f; shift
    for f in "$@"; do if [ -n "$f" ]; then out+="'bundles/$b/configs/$f',"; fi; done
    echo "[${out%,}]"
}
cfg_files() {  # cfg_files BUNDLE FILE...: the config files a step depends on, as paths
    local b="$1" f; shift
    for f in "$@"; do if [ -n "$f" ]; then echo -n "bundles/$b/configs/$f$T"; fi; done
}
bundle() {  # bundle BUNDLE CONFIGS...: sets CMD to the common head of a bundle command
    local b="$1"; shift
    CMD=(python -m monai.bundle run --config_file "$(configs "$b" "$@")" --meta_file "bundles/$b/configs/metadata.json"
         --logging_file "bundles/$b/configs/logging.conf")
}

step samples data "$SAMPLES/samples.json" "" -- python -m unimiss_monai samples --out "$SAMPLES" ${SAMPLES_OPTS:-}

B=unimiss_drr_generation
bundle $B inference.json "$DRR_OVERLAY"
step drr_generation drr "$RUN_DIR/$B/datalist.json" \
    "$SAMPLES/samples.json$T$(cfg_files $B inference.json "$DRR_OVERLAY")" -- \
    "${CMD[@]}" --dataset_dir "$SAMPLES/drr_generation" --output_dir "$RUN_DIR/$B"

# the backbone lands in RUN_DIR/unimiss_pretraining/models/model.pt; nothing is written under bundles/
B=unimiss_pretraining
PRETRAINED="$RUN_DIR/$B/models/model.pt"
bundle $B train.json "$PRE_OVERLAY"
step pretraining pretraining "$PRETRAINED$T$RUN_DIR/$B/loss_curves.json" \
    "$SAMPLES/samples.json$T$(cfg_files $B train.json "$PRE_OVERLAY")" -- \
    "${CMD[@]}" --bundle_root "bundles/$B" --dataset_dir "$SAMPLES" --output_dir "$RUN_DIR/$B" --seed 0 \
    --resume_finished "$([ -n "$FRESH" ] && echo false || echo true)"

# finetune BUNDLE STAGE REPORT_FILE INFERENCE_SUMMARY INFERENCE_INPUT [inference overrides...]: train from the pretrained backbone,
# evaluate (the test split; CT segmentation: its validation slabs, see its docs), run inference. Each bundle's
# folder in RUN_DIR holds models/ (weights), train/, eval/ and inference/; its bundle_root is that folder, so nothing
# is written under bundles/.
finetune() {
    local b="$1" stage="$2" report="$3" summary="$4" input="$5"; shift 5
    local home="$RUN_DIR/$b" model="$RUN_DIR/$b/models/model.pt"
    local common=(--bundle_root "$home" --ckpt_dir "$home/models") train_overlay="$TRAIN_OVERLAY"
    [ -n "$train_overlay" ] && [ -f "bundles/$b/configs/$train_overlay" ] || train_overlay=""  # only some bundles have one
    bundle "$b" train.json "$OVERLAY" "$train_overlay"
    step "${stage}_train" "$stage" "$model" "$PRETRAINED$T$(cfg_files "$b" train.json "$OVERLAY" "$train_overlay")" -- \
        "${CMD[@]}" "${common[@]}" --dataset_dir "$SAMPLES" --output_dir "$home/train" \
        --pretrained_path "$PRETRAINED" --seed 0
    bundle "$b" train.json evaluate.json "$OVERLAY"
    step "${stage}_evaluate" "$stage" "$home/eval/$report" "$model$T$(cfg_files "$b" evaluate.json "$OVERLAY")" -- \
        "${CMD[@]}" "${common[@]}" --dataset_dir "$SAMPLES" --output_dir "$home/eval" --seed 0
    bundle "$b" inference.json "$OVERLAY"
    step "${stage}_inference" "$stage" "$home/inference/$summary" \
        "$model$T$(cfg_files "$b" inference.json "$OVERLAY")" -- \
        "${CMD[@]}" "${common[@]}" --dataset_dir "$input" --output_dir "$home/inference" "$@"
}
# the real radiograph RG1_UNCR.dcm and two held-out DRRs (the sample set's inference/ folder)
finetune unimiss_cxr_segmentation cxr_segmentation segmentation_report.json summary.json \
    "$SAMPLES/cxr_segmentation/inference"
# the whole real chest CT (512x512x133), of which the training used slabs 0, 2, 4 and validation slabs 1, 3
finetune unimiss_ct_segmentation ct_segmentation segmentation_report.json summary.json "$SAMPLES/drr_generation"
# the held-out test images of each sample set, with a saliency map per image
finetune unimiss_cxr_classification cxr_classification metrics.json predictions.json "$SAMPLES" --save_saliency true
finetune unimiss_ct_classification ct_classification metrics.json predictions.json "$SAMPLES" --save_saliency true

REPORT="$RUN_DIR/report.html"
# always rewritten: demo_steps.json changes with every step
step report report "$REPORT$T$RUN_DIR/report.md" "$RUN_DIR/demo_steps.json" -- \
    python -m unimiss_monai.report "$RUN_DIR" --samples "$SAMPLES"

echo
echo "[demo] done in $(( (SECONDS - T0) / 60 )) min $(( (SECONDS - T0) % 60 )) s (steps: $RUN_DIR/demo_steps.json)"
echo "[demo] report: $(cd "$(dirname "$REPORT")" && pwd)/report.html  (Markdown: report.md beside it)"
