#!/usr/bin/env bash
# Serve the segmentation bundles with MONAI Label 0.8.5 on 127.0.0.1 and check it end to end:
# /info lists the models, /infer returns a label map on the input's grid, /train runs a short training (CXR: on label
# maps as a viewer saves them); the app also ranks unlabelled studies (/scoring/<bundle>_tta, strategy <bundle>_tta_uncertainty)
# and checks a submitted label against its image (PUT /datastore/label). The clinician workflow: docs/monai_label.md.
#   bash tools/monai_label.sh                                   # unimiss_cxr_segmentation
#   BUNDLE=unimiss_ct_segmentation bash tools/monai_label.sh
#   BUNDLES=unimiss_cxr_segmentation,unimiss_ct_segmentation bash tools/monai_label.sh   # one server, both models
#   PREPARE_ONLY=1 BUNDLE=unimiss_ct_segmentation STUDIES=/path/to/my/studies bash tools/monai_label.sh
# Options (environment):
#   BUNDLE        unimiss_cxr_segmentation (default) or unimiss_ct_segmentation
#   BUNDLES       several of them, comma-separated, served by one app (overrides BUNDLE); /train and the scoring of a
#                 model take only the studies of its dimensionality (2D radiographs, 3D volumes)
#   STUDIES       your studies folder (images, labels in labels/final), served as it is: this script never writes
#                 or deletes anything in it (MONAI Label saves submitted labels there). Default: a folder of sample
#                 studies, built in $WORK/studies
#   PREPARE_ONLY  1 prepares the app (and the weights, and the sample studies without STUDIES), prints the command
#                 that starts the server, and exits without starting it
#   PORT          server port (default: a free one; 8000 in the printed command of PREPARE_ONLY)
#   VENV_ONLY     1 makes .venv-label (if absent) and exits: what CI runs before the tests when the disk has room
#   OVERLAY       config merged into the served copy (default smoke.yaml: the tiny network, trained here in a minute
#                 or two, once per overlay, into $WORK/train/<overlay name without .yaml>/<bundle>: delete that folder
#                 to retrain); OVERLAY= serves the full-size network and needs bundles/<bundle>/models/model.pt
#   INFER_OVERLAYS  configs merged after OVERLAY into the served inference config only, where the bundle has them
#                 (comma-separated; default auto: inference_cpu.yaml,inference_cpu_fast.yaml,inference_openvino.yaml
#                 when MONAI Label's torch sees no CUDA device, nothing otherwise; INFER_OVERLAYS= merges none). The CT
#                 segmentation bundle's CPU path: one window per pass, fewer windows (less overlap), the network
#                 compiled by OpenVINO, bfloat16 where the CPU has it (its docs/README.md, "Performance")
#   TRAIN_EPOCHS  epochs of the /train check (default 1; 0 skips it)
#   REQUEST_TIMEOUT  seconds one /infer or /train request may take before the check fails (default 1800), so a hung
#                 server stops the script rather than holding it forever
#   KEEP_SERVER   1 leaves the server running for a viewer (3D Slicer, OHIF) until Ctrl-C
#   SAMPLES       the samples folder (default samples/, written if absent)
#   UNIMISS_LABEL_VENV  MONAI Label's venv (default .venv-label, made there if absent)
#   WORK          where everything lands (default outputs/monai_label/<bundle>, or <bundle>+<bundle> for several:
#                 app/, studies/, train/<overlay>/<bundle>/, server.log, the returned labels and pictures <bundle>_pred.*)
# A rerun rebuilds app/ and studies/, and refuses to when a label was submitted or /train saved weights or
# checkpoints (app/model/<bundle>/models, app/model/<bundle>/eval) there since they were prepared (a clinician's
# work); a folder an interrupted run of this script left half-built is simply rebuilt. MONAI Label needs its own
# venv (.venv-label, ~8 GB: torch 2.14.1 + torchvision, pydicom 2, OpenVINO); made here if absent.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
cd "$ROOT"

BUNDLES="${BUNDLES:-${BUNDLE:-unimiss_cxr_segmentation}}"
IFS=, read -r -a BUNDLE_LIST <<< "${BUNDLES// /}"
OVERLAY="${OVERLAY-smoke.yaml}"
INFER_OVERLAYS="${INFER_OVERLAYS-auto}"
TRAIN_EPOCHS="${TRAIN_EPOCHS:-1}"
REQUEST_TIMEOUT="${REQUEST_TIMEOUT:-1800}"
KEEP_SERVER="${KEEP_SERVER:-0}"
PREPARE_ONLY="${PREPARE_ONLY:-0}"
VENV_ONLY="${VENV_ONLY:-0}"
SAMPLES="${SAMPLES:-$ROOT/samples}"
WORK="${WORK:-$ROOT/outputs/monai_label/$(IFS=+; echo "${BUNDLE_LIST[*]}")}"
STUDIES="${STUDIES:-}"
LABEL_VENV="${UNIMISS_LABEL_VENV:-$ROOT/.venv-label}"
LPY="$LABEL_VENV/bin/python"
log() { echo "[monai_label] $*"; }
elapsed() { awk -v s="$1" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'; }
dataset_of() {
    case "$1" in
        unimiss_cxr_segmentation) echo cxr_segmentation ;;
        unimiss_ct_segmentation) echo ct_segmentation ;;
        *) return 1 ;;
    esac
}
[ "${#BUNDLE_LIST[@]}" -gt 0 ] || { log "BUNDLES is empty; name unimiss_cxr_segmentation and/or unimiss_ct_segmentation"; exit 2; }
for b in "${BUNDLE_LIST[@]}"; do
    dataset_of "$b" > /dev/null || { log "$b: not a segmentation bundle; use unimiss_cxr_segmentation and/or unimiss_ct_segmentation"; exit 2; }
done
[ "$(printf '%s\n' "${BUNDLE_LIST[@]}" | sort -u | wc -l)" = "${#BUNDLE_LIST[@]}" ] || { log "BUNDLES=$BUNDLES names a bundle twice"; exit 2; }
if [ -n "$STUDIES" ]; then
    [ -d "$STUDIES" ] || { log "STUDIES=$STUDIES is not a folder; give the folder of your images (labels in its labels/final)"; exit 2; }
    STUDIES="$(cd "$STUDIES" && pwd)"
fi
STUDIES_DIR="${STUDIES:-$WORK/studies}"
MODELS="$(IFS=,; echo "${BUNDLE_LIST[*]}")"

# --- 1. MONAI Label venv: its own torch/torchvision pair and pydicom 2 (pydicom-seg), then this package without deps
stamp="$LABEL_VENV/.monailabel-installed"
if [ ! -f "$stamp" ]; then
    log "creating $LABEL_VENV (first run: ~8 GB, several minutes)"
    [ -x "$LPY" ] || python3 -m venv "$LABEL_VENV"
    pipq() { "$LPY" -m pip install -q "$@" 2>&1 | grep -v "is ignored" || true; }
    pipq "torch==2.14.1" "torchvision==0.29.1"
    pipq "monailabel==0.8.5" "monai==1.6.1"
    pipq "pydicom==2.4.4" "dicomweb-client[gcp]==0.59.1" "pynetdicom==2.0.2"
    pipq --no-deps -e "$ROOT"
    "$LPY" -c "import monailabel.main, unimiss_monai" || { log "MONAI Label venv does not import; see the pip output above"; exit 1; }
    touch "$stamp"
fi
# OpenVINO for the CT bundle's CPU path (configs/inference_openvino.yaml); also added to a venv made before it was used.
# Looked for, not imported: importing it would start OpenVINO's usage statistics (see unimiss_monai/inferers/openvino.py)
if ! "$LPY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('openvino') is None)"; then
    "$LPY" -m pip install -q "openvino==2026.4.1" 2>&1 | grep -v "is ignored" || true
fi
if [ "$VENV_ONLY" = 1 ]; then log "$LABEL_VENV is ready"; exit 0; fi

# --- 2. sample data and trained weights (trained with the project venv; MONAI Label only serves them)
# The weights trained for an overlay are kept per overlay ($WORK/train/<overlay>/<bundle>): each overlay may define
# another network, so weights (and resumable checkpoints) of one are never served or resumed under another.
for b in "${BUNDLE_LIST[@]}"; do
    [ -z "$OVERLAY" ] || [ -f "$ROOT/bundles/$b/configs/$OVERLAY" ] || { log "OVERLAY=$OVERLAY: bundles/$b/configs/$OVERLAY does not exist; name a config of that folder (e.g. smoke.yaml), or OVERLAY= for the full-size network"; exit 2; }
done
TRAIN_DIR="$WORK/train/${OVERLAY%.*}"
mkdir -p "$WORK"
declare -A WEIGHTS
for b in "${BUNDLE_LIST[@]}"; do
    src="$ROOT/bundles/$b"
    WEIGHTS[$b]="$([ -n "$OVERLAY" ] && echo "$TRAIN_DIR/$b/models/model.pt" || echo "$src/models/model.pt")"
    if [ -z "$STUDIES" ] || { [ -n "$OVERLAY" ] && [ ! -f "${WEIGHTS[$b]}" ]; }; then
        "$PY" -m unimiss_monai samples --out "$SAMPLES" --only "$(dataset_of "$b")" > /dev/null
    fi
    if [ -n "$OVERLAY" ]; then
        if [ ! -f "${WEIGHTS[$b]}" ]; then
            mkdir -p "$TRAIN_DIR"
            log "training $b with configs/$OVERLAY for the served weights (into $TRAIN_DIR/$b)"
            "$PY" -m monai.bundle run --config_file "['$src/configs/train.json','$src/configs/$OVERLAY']" \
                --meta_file "$src/configs/metadata.json" --logging_file "$src/configs/logging.conf" \
                --bundle_root "$src" --dataset_dir "$SAMPLES" --output_dir "$TRAIN_DIR/$b" --ckpt_dir "$TRAIN_DIR/$b/models" \
                > "$TRAIN_DIR/$b.log" 2>&1 || { log "bundle training failed; see $TRAIN_DIR/$b.log"; exit 1; }
        else
            log "serving $b with the weights trained earlier with configs/$OVERLAY (${WEIGHTS[$b]}; delete $TRAIN_DIR/$b to retrain)"
        fi
    else
        [ -f "${WEIGHTS[$b]}" ] || { log "${WEIGHTS[$b]} is missing: train the full-size bundle first (python -m monai.bundle run --config_file $src/configs/train.json ...), or leave OVERLAY at smoke.yaml"; exit 1; }
    fi
done

# --- 3. the app (MONAI Label's monaibundle sample app + each bundle as app/model/<bundle>) and the studies folder.
# What a rerun would delete is checked against what the last run left there (.prepared.sha256): a label submitted, or
# weights and checkpoints saved by /train (models/, and eval/ where a stopped /train leaves its best and resumable
# checkpoints) since then are a clinician's work, so the rerun stops instead. .preparing marks a folder this script
# is building (written once the check passed, removed with the manifest recorded): never served, so a rerun after an
# interrupted or failed preparation rebuilds it rather than stopping for want of a manifest.
MANIFEST="$WORK/.prepared.sha256"
PREPARING="$WORK/.preparing"
guarded_files() { (cd "$WORK" && { find app/model \( -path 'app/model/*/models/*' -o -path 'app/model/*/eval/*' \) -type f; [ -n "$STUDIES" ] || find studies/labels -type f; } 2>/dev/null | sort); }
record_prepared() { (cd "$WORK" && guarded_files | xargs -r -d '\n' sha256sum > "$MANIFEST.tmp" && mv "$MANIFEST.tmp" "$MANIFEST"); }
if [ -f "$PREPARING" ]; then
    log "$WORK/app was left half-built by an earlier run of this script (interrupted or failed while preparing it); rebuilding it"
elif [ -e "$WORK/app" ] || { [ -z "$STUDIES" ] && [ -e "$WORK/studies" ]; }; then
    [ -f "$MANIFEST" ] || { log "$WORK/app or $WORK/studies was not prepared by this script (no $MANIFEST): move anything of yours out of them (labels, model.pt) and delete them, or set WORK= to another folder"; exit 2; }
    changed="$(cd "$WORK" && { sha256sum --check --quiet --ignore-missing "$MANIFEST" 2>/dev/null | cut -d: -f1; comm -13 <(cut -c67- "$MANIFEST" | sort) <(guarded_files); } | head -1 || true)"
    rebuilt="$WORK/app"; [ -n "$STUDIES" ] || rebuilt="$rebuilt and $WORK/studies"
    [ -z "$changed" ] || { log "$WORK/$changed was saved after this folder was prepared (a submitted label, or /train's weights or checkpoints): copy what you want to keep elsewhere and delete $rebuilt, or set WORK= to another folder"; exit 2; }
fi
if [ "$INFER_OVERLAYS" = auto ]; then
    INFER_OVERLAYS="$("$LPY" -c '
import importlib.util, torch
openvino = importlib.util.find_spec("openvino") is not None
print("" if torch.cuda.is_available() else "inference_cpu.yaml,inference_cpu_fast.yaml" + (",inference_openvino.yaml" if openvino else ""))')"
fi
log "served inference overlays (where a bundle has them): ${INFER_OVERLAYS:-none}"
echo "tools/monai_label.sh is building app/ (and the sample studies) here; a rerun rebuilds them" > "$PREPARING"
rm -rf "$WORK/app" "$MANIFEST"
[ -n "$STUDIES" ] || rm -rf "$WORK/studies"
cp -r "$LABEL_VENV/monailabel/sample-apps/monaibundle" "$WORK/app"
for b in "${BUNDLE_LIST[@]}"; do
    src="$ROOT/bundles/$b"
    mkdir -p "$WORK/app/model/$b/models"
    cp -r "$src/configs" "$src/docs" "$src/LICENSE" "$WORK/app/model/$b/"
    cp "${WEIGHTS[$b]}" "$WORK/app/model/$b/models/model.pt"
    "$PY" - "$src/configs" "$WORK/app/model/$b/configs" "$OVERLAY" "$INFER_OVERLAYS" <<'EOF'
# Merge the overlay into the served inference/train configs (MONAI Label reads one config file each), and the
# inference overlays into the inference config; the checkpoint folder stays <bundle>/models, where MONAI Label loads
# and /train saves model.pt. "served_overlays" records what was merged, in order.
import os, sys
from monai.bundle import ConfigParser
src, dst, overlay, infer_overlays = sys.argv[1:]
extra = [o.strip() for o in infer_overlays.split(",") if o.strip() and os.path.isfile(os.path.join(src, o.strip()))]
for name in ("inference.json", "train.json"):
    names = ([overlay] if overlay else []) + (extra if name == "inference.json" else [])
    parser = ConfigParser(ConfigParser.load_config_files([os.path.join(src, name)] + [os.path.join(src, o) for o in names]))
    parser["ckpt_dir"] = "$@bundle_root + '/models'"
    if name == "inference.json" and "post_transforms" in parser.get():
        # MONAI Label 0.8.5 evaluates "postprocessing" too (and keeps "post_transforms"); the bundle's own lists the
        # data set's images to name its files, and the server has no data set: /infer would fail without samples/
        parser["postprocessing"] = "@post_transforms"
    parser["served_overlays"] = names
    ConfigParser.export_config_file(parser.get(), os.path.join(dst, name + ".tmp"), indent=2)
    os.replace(os.path.join(dst, name + ".tmp"), os.path.join(dst, name))
# The served copy answers with one label map (post_transforms), not the bundle's per-structure channels: MONAI Label
# names label values by channel_def, so the CXR copy describes 0 = background and 1..N = the structures' channels.
meta_path = os.path.join(dst, "metadata.json")
meta = ConfigParser.load_config_file(meta_path)
pred = meta["network_data_format"]["outputs"]["pred"]
if "background" not in pred["channel_def"].values():
    channels = sorted(pred["channel_def"].items(), key=lambda kv: int(kv[0]))
    pred["channel_def"] = {"0": "background", **{str(int(k) + 1): v for k, v in channels}}
    ConfigParser.export_config_file(meta, meta_path + ".tmp", indent=2)
    os.replace(meta_path + ".tmp", meta_path)
EOF
done
# What the monaibundle app of 0.8.5 lacks for these bundles is added to its class by tools/monai_label_app.py
# (appended to the app's main.py; its docstring lists what and why).
cat "$ROOT/tools/monai_label_app.py" >> "$WORK/app/main.py"
if [ -z "$STUDIES" ]; then
    for b in "${BUNDLE_LIST[@]}"; do
        "$PY" - "$SAMPLES/$(dataset_of "$b")" "$WORK/studies" "$(dataset_of "$b")" <<'EOF'
# Studies: labelled cases as image + labels/final/<same name> (MONAI Label's local datastore layout) and the test
# split's images unlabelled (for the "which image next" strategy and a first label to draw); for the radiographs also
# the real DICOM converted to a 2D NIfTI (ITK's reader has already made MONOCHROME1 bright-is-dense).
# Radiograph labels go in as a viewer saves them: one label map, 0 background and i the i-th structure, a later
# structure painted over an earlier one where they overlap (heart over lungs, clavicles over both); the bundle's
# training turns such a map back into its per-structure masks (unimiss_monai.transforms.LabelMapToMasksd).
import json, os, shutil, sys
import nibabel as nib
import numpy as np
from monai.transforms import LoadImage
data, studies, dataset = sys.argv[1:]
os.makedirs(os.path.join(studies, "labels", "final"), exist_ok=True)
datalist = json.load(open(os.path.join(data, "datalist.json")))
for item in datalist["training"][:8 if dataset == "cxr_segmentation" else None]:
    image, label = (os.path.join(data, item[k]) for k in ("image", "label"))
    name = os.path.basename(image)
    shutil.copy(image, os.path.join(studies, name))
    if dataset != "cxr_segmentation":
        shutil.copy(label, os.path.join(studies, "labels", "final", name))
        continue
    masks = nib.load(label)
    channels = np.asanyarray(masks.dataobj).reshape(masks.shape[:2] + (-1,))  # (X, Y, 1, N) -> (X, Y, N)
    label_map = np.zeros(channels.shape[:2], np.uint8)
    for i in range(channels.shape[-1]):
        label_map[channels[..., i] > 0] = i + 1
    out = os.path.join(studies, "labels", "final", name)
    nib.save(nib.Nifti1Image(label_map, masks.affine), out + ".tmp.nii.gz")
    os.replace(out + ".tmp.nii.gz", out)
for item in datalist.get("test", []):  # unlabelled: the test split's images, without their labels
    shutil.copy(os.path.join(data, item["image"]), os.path.join(studies, os.path.basename(item["image"])))
if dataset == "cxr_segmentation":
    radiograph = LoadImage(image_only=True)(os.path.join(data, "inference", "RG1_UNCR.dcm"))
    pixels = np.asarray(radiograph).squeeze().astype(np.float32)
    out = os.path.join(studies, "RG1_UNCR.nii.gz")
    nib.save(nib.Nifti1Image(pixels, np.asarray(radiograph.affine)), out + ".tmp.nii.gz")
    os.replace(out + ".tmp.nii.gz", out)
EOF
    done
fi

# --- 4. the server command; PREPARE_ONLY prints it, otherwise it runs here and is always stopped on exit
PORT="${PORT:-$([ "$PREPARE_ONLY" = 1 ] && echo 8000 || "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
SERVE=("$LPY" -m monailabel.main start_server --app "$WORK/app" --studies "$STUDIES_DIR" --conf models "$MODELS"
       --conf zoo_source github --conf sam2 false --conf preload false --host 127.0.0.1 --port "$PORT")
# recorded now, before any check can fail: a rerun after a failed check rebuilds what this run prepared
record_prepared
rm -f "$PREPARING"
if [ "$PREPARE_ONLY" = 1 ]; then
    log "prepared $WORK/app serving $MODELS on the studies in $STUDIES_DIR; start the server (Ctrl-C stops it) with:"
    words() { local w out=(); for w in "$@"; do [[ "$w" =~ ^[A-Za-z0-9_./:,=+-]+$ ]] && out+=("$w") || out+=("$(printf %q "$w")"); done; echo "${out[*]}"; }
    echo "cd $(words "$WORK") && PATH=$(words "$LABEL_VENV/bin"):\"\$PATH\" $(words "${SERVE[@]}")"
    exit 0
fi
URL="http://127.0.0.1:$PORT"
log "starting MONAI Label on $URL (log: $WORK/server.log)"
start=$(date +%s.%N)
(cd "$WORK" && PATH="$LABEL_VENV/bin:$PATH" exec setsid "${SERVE[@]}") > "$WORK/server.log" 2>&1 &
SERVER=$!
stop_server() { kill -TERM -- "-$SERVER" 2>/dev/null && sleep 2; kill -KILL -- "-$SERVER" 2>/dev/null || true; }
trap stop_server EXIT
rm -f "$WORK/info.json"
for _ in $(seq 180); do
    curl -sf --max-time 10 "$URL/info/" -o "$WORK/info.json" && break
    kill -0 "$SERVER" 2>/dev/null || { tail -20 "$WORK/server.log"; log "server exited during start-up; see $WORK/server.log"; exit 1; }
    sleep 2
done
[ -s "$WORK/info.json" ] || { log "server not up after 360 s; see $WORK/server.log"; exit 1; }
t_start=$(elapsed "$start")
log "server up in $t_start s"

# --- 5.-7. per bundle: /infer on one study of its dimensionality (the real radiograph, or the first CT), /train for
# a few epochs on the labelled studies (synchronous; saves app/model/<bundle>/models/model.pt), the label checked
# against the input (project venv) and drawn
for b in "${BUNDLE_LIST[@]}"; do
    image_id=$("$PY" - "$STUDIES_DIR" "$(dataset_of "$b")" <<'EOF'
import glob, os, sys
import nibabel as nib
studies, dataset = sys.argv[1:]
ndim = 2 if dataset == "cxr_segmentation" else 3
names = sorted(os.path.basename(p)[:-len(".nii.gz")] for p in glob.glob(os.path.join(studies, "*.nii.gz")))
names = [n for n in names if len([s for s in nib.load(os.path.join(studies, n + ".nii.gz")).shape if s > 1]) == ndim]
print("RG1_UNCR" if "RG1_UNCR" in names else (names[0] if names else ""))
EOF
)
    [ -n "$image_id" ] || { log "$b: no ${b/unimiss_/} NIfTI study in $STUDIES_DIR to check /infer on; skipped"; continue; }
    start=$(date +%s.%N)
    curl -sf --max-time "$REQUEST_TIMEOUT" -X POST "$URL/infer/$b?image=$image_id&output=image" -F 'params={"device": "cpu"}' -o "$WORK/${b}_pred.tmp.nii.gz" \
        || { tail -30 "$WORK/server.log"; log "/infer/$b failed; see $WORK/server.log"; exit 1; }
    mv "$WORK/${b}_pred.tmp.nii.gz" "$WORK/${b}_pred.nii.gz"
    t_infer=$(elapsed "$start")
    train_note="/train skipped"
    if [ "$TRAIN_EPOCHS" -gt 0 ]; then
        weights="$WORK/app/model/$b/models/model.pt"
        before=$(sha256sum "$weights" | cut -d' ' -f1)
        start=$(date +%s.%N)
        curl -sf --max-time "$REQUEST_TIMEOUT" -X POST "$URL/train/$b?run_sync=true" -H "Content-Type: application/json" \
            -d "{\"max_epochs\": $TRAIN_EPOCHS, \"val_split\": 0.25, \"multi_gpu\": false, \"device\": \"cpu\"}" \
            -o "$WORK/${b}_train_response.json" || { tail -30 "$WORK/server.log"; log "/train/$b failed; see $WORK/server.log"; exit 1; }
        t_train=$(elapsed "$start")
        record_prepared  # the weights this check's /train saved are this script's, not a clinician's
        after=$(sha256sum "$weights" | cut -d' ' -f1)
        train_note="/train $TRAIN_EPOCHS epoch(s) in $t_train s, model.pt $([ "$after" != "$before" ] && echo replaced || echo kept: no validation ran)"
    fi
    result=$("$PY" - "$WORK" "$STUDIES_DIR" "$b" "$image_id" <<'EOF'
import json, os, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import nibabel as nib
import numpy as np
from matplotlib.patches import Patch
from unimiss_monai.conventions import CT_AXCODES, display_2d, structure_colour
work, studies, bundle, image_id = sys.argv[1:]
info = json.load(open(os.path.join(work, "info.json")))
if bundle not in info.get("models", {}):
    sys.exit(f"/info does not list {bundle}: models {sorted(info.get('models', {}))}")
image = np.asanyarray(nib.load(os.path.join(studies, image_id + ".nii.gz")).dataobj)
label = np.asanyarray(nib.load(os.path.join(work, bundle + "_pred.nii.gz")).dataobj)
if label.shape != image.shape:
    sys.exit(f"label shape {label.shape} != image shape {image.shape}")
values = sorted(int(v) for v in np.unique(label))
shape = label.shape
labels = info["models"][bundle].get("labels") or {}
names = {int(v): k for k, v in labels.items()} if isinstance(labels, dict) else {i + 1: n for i, n in enumerate(labels)}
if image.ndim == 3 and image.shape[-1] == 1:  # a radiograph stored as (X, Y, 1): a 2D image, not a CT
    image, label = image[..., 0], label[..., 0]
if image.ndim == 3:  # CT: in the project's orientation, the axial slice with most labelled voxels
    to_lps = nib.orientations.ornt_transform(nib.orientations.io_orientation(nib.load(os.path.join(studies, image_id + ".nii.gz")).affine),
                                             nib.orientations.axcodes2ornt(tuple(CT_AXCODES)))
    image, label = (nib.orientations.apply_orientation(a, to_lps) for a in (image, label))
    z = int(np.argmax((label > 0).sum((0, 1))))
    image, label = image[..., z], label[..., z]
fig, ax = plt.subplots(figsize=(6, 6))  # displayed as every picture of the project (unimiss_monai.conventions)
ax.imshow(display_2d(image), cmap="gray")
shown = display_2d(label)
overlay = np.zeros((*shown.shape, 4))
for v in values[1:] if values and values[0] == 0 else values:  # each structure in its colour of every picture
    overlay[shown == v] = (*(c / 255 for c in structure_colour(names.get(v, str(v)))), 0.45)
ax.imshow(overlay, interpolation="nearest")
ax.legend(handles=[Patch(color=[c / 255 for c in structure_colour(names.get(v, str(v)))], label=names.get(v, str(v)))
                   for v in values if v], loc="lower right", fontsize=7)
ax.set_title(f"{bundle} via MONAI Label: {image_id}")
ax.axis("off")
out = os.path.join(work, bundle + "_pred.png")
fig.savefig(out + ".tmp", format="png", dpi=100, bbox_inches="tight")
os.replace(out + ".tmp", out)
print(f"label {shape} == image shape, values {values}")
EOF
)
    log "OK $b: /infer $t_infer s on $image_id, $result, $train_note; picture $WORK/${b}_pred.png"
done
record_prepared
if [ "$KEEP_SERVER" = 1 ]; then log "serving $URL (server process group $SERVER) until Ctrl-C"; wait "$SERVER"; fi
