#!/usr/bin/env bash
# Quick start: set up .venv (idempotent), write the sample data, then run each bundle on it.
# Outputs land in outputs/<bundle>/; the last lines printed say where.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
cd "$ROOT"
SAMPLES="${SAMPLES:-$ROOT/samples}"
OUTPUTS="${OUTPUTS:-$ROOT/outputs}"

"$PY" -m unimiss_monai samples --out "$SAMPLES"

run_bundle() {  # run_bundle NAME CONFIG[,OVERLAY...] [extra overrides...]
    local name="$1" configs="$2"; shift 2
    local files="" c
    for c in ${configs//,/ }; do files+="'bundles/$name/configs/$c',"; done
    echo "[demo] $name: ${configs}"
    "$PY" -m monai.bundle run --config_file "[${files%,}]" --meta_file "bundles/$name/configs/metadata.json" \
        --logging_file "bundles/$name/configs/logging.conf" \
        --dataset_dir "$SAMPLES" --output_dir "$OUTPUTS/$name" "$@"
    echo "[demo] $name outputs: $OUTPUTS/$name"
}

run_bundle unimiss_drr_generation inference.json
# everything the run writes stays under its output dir: the teacher backbone in models/model.pt, the resumable training
# state in checkpoints/ (publishing weights into bundles/ is a separate step: python -m unimiss_monai publish-pretrained)
run_bundle unimiss_pretraining train.json,smoke.yaml --bundle_root bundles/unimiss_pretraining
# the fine-tuning smoke overlays start from scratch unless given weights: pass the backbone just exported (same tiny shape).
# Their bundle_root is the run's output folder, so the trained weights land in outputs/<bundle>/models and nothing is
# written under bundles/ (a full-size run with --bundle_root bundles/<name> publishes into bundles/<name>/models)
PRETRAINED="$OUTPUTS/unimiss_pretraining/models/model.pt"
run_bundle unimiss_cxr_segmentation train.json,smoke.yaml --bundle_root "$OUTPUTS/unimiss_cxr_segmentation" --pretrained_path "$PRETRAINED"
run_bundle unimiss_cxr_segmentation inference.json,smoke.yaml --bundle_root "$OUTPUTS/unimiss_cxr_segmentation"
run_bundle unimiss_ct_segmentation train.json,smoke.yaml --bundle_root "$OUTPUTS/unimiss_ct_segmentation" --pretrained_path "$PRETRAINED"
run_bundle unimiss_ct_segmentation inference.json,smoke.yaml --bundle_root "$OUTPUTS/unimiss_ct_segmentation"
run_bundle unimiss_ct_classification train.json,smoke.yaml --bundle_root "$OUTPUTS/unimiss_ct_classification" --pretrained_path "$PRETRAINED"
run_bundle unimiss_ct_classification inference.json,smoke.yaml --bundle_root "$OUTPUTS/unimiss_ct_classification"
run_bundle unimiss_cxr_classification train.json,smoke.yaml --bundle_root "$OUTPUTS/unimiss_cxr_classification" --pretrained_path "$PRETRAINED"
run_bundle unimiss_cxr_classification inference.json,smoke.yaml --bundle_root "$OUTPUTS/unimiss_cxr_classification"

echo
echo "[demo] done. Sample data: $SAMPLES   Outputs: $OUTPUTS"
