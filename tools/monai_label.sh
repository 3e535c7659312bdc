#!/usr/bin/env bash
# Serve a segmentation bundle with MONAI Label 0.8.5 on 127.0.0.1 and check it end to end:
# /info lists the model, /infer returns a label map on the input's grid, /train runs a short training (CXR: on label
# maps as a viewer saves them); the app also ranks unlabelled studies (/scoring/<bundle>_tta, strategy tta_uncertainty).
#   bash tools/monai_label.sh                                   # unimiss_cxr_segmentation
#   BUNDLE=unimiss_ct_segmentation bash tools/monai_label.sh
# Options (environment):
#   BUNDLE        unimiss_cxr_segmentation (default) or unimiss_ct_segmentation
#   PORT          server port (default: a free one)
#   OVERLAY       config merged into the served copy (default smoke.yaml: the tiny network, trained here in a minute
#                 or two, once: delete outputs/monai_label/$BUNDLE/train to retrain); OVERLAY= serves the full-size
#                 network and needs bundles/$BUNDLE/models/model.pt
#   TRAIN_EPOCHS  epochs of the /train check (default 1; 0 skips it)
#   KEEP_SERVER   1 leaves the server running for a viewer (3D Slicer, OHIF) until Ctrl-C
#   SAMPLES       the samples folder (default samples/, written if absent)
#   WORK          where everything lands (default outputs/monai_label/$BUNDLE: app/, studies/, server.log, the
#                 returned label and a PNG)
# MONAI Label needs its own venv (.venv-label, ~8 GB: torch 2.14.1 + torchvision, pydicom 2); made here if absent.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
cd "$ROOT"

BUNDLE="${BUNDLE:-unimiss_cxr_segmentation}"
OVERLAY="${OVERLAY-smoke.yaml}"
TRAIN_EPOCHS="${TRAIN_EPOCHS:-1}"
KEEP_SERVER="${KEEP_SERVER:-0}"
SAMPLES="${SAMPLES:-$ROOT/samples}"
WORK="${WORK:-$ROOT/outputs/monai_label/$BUNDLE}"
LABEL_VENV="$ROOT/.venv-label"
LPY="$LABEL_VENV/bin/python"
SRC="$ROOT/bundles/$BUNDLE"
case "$BUNDLE" in
    unimiss_cxr_segmentation) DATASET=cxr_segmentation ;;
    unimiss_ct_segmentation) DATASET=ct_segmentation ;;
    *) echo "[monai_label] BUNDLE=$BUNDLE: not a segmentation bundle; use unimiss_cxr_segmentation or unimiss_ct_segmentation"; exit 2 ;;
esac
log() { echo "[monai_label] $*"; }
elapsed() { awk -v s="$1" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'; }

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

# --- 2. sample data and trained weights (trained with the project venv; MONAI Label only serves them)
"$PY" -m unimiss_monai samples --out "$SAMPLES" --only "$DATASET"
mkdir -p "$WORK"
if [ -n "$OVERLAY" ]; then
    WEIGHTS="$WORK/train/models/model.pt"
    if [ ! -f "$WEIGHTS" ]; then
        log "training $BUNDLE with configs/$OVERLAY for the served weights"
        "$PY" -m monai.bundle run --config_file "['$SRC/configs/train.json','$SRC/configs/$OVERLAY']" \
            --meta_file "$SRC/configs/metadata.json" --logging_file "$SRC/configs/logging.conf" \
            --bundle_root "$SRC" --dataset_dir "$SAMPLES" --output_dir "$WORK/train" --ckpt_dir "$WORK/train/models" \
            > "$WORK/train.log" 2>&1 || { log "bundle training failed; see $WORK/train.log"; exit 1; }
    fi
else
    WEIGHTS="$SRC/models/model.pt"
    [ -f "$WEIGHTS" ] || { log "$WEIGHTS is missing: train the full-size bundle first (python -m monai.bundle run --config_file $SRC/configs/train.json ...), or leave OVERLAY at smoke.yaml"; exit 1; }
fi

# --- 3. the app (MONAI Label's monaibundle sample app + this bundle as app/model/$BUNDLE) and the studies folder
rm -rf "$WORK/app" "$WORK/studies"
cp -r "$LABEL_VENV/monailabel/sample-apps/monaibundle" "$WORK/app"
mkdir -p "$WORK/app/model/$BUNDLE/models"
cp -r "$SRC/configs" "$SRC/docs" "$SRC/LICENSE" "$WORK/app/model/$BUNDLE/"
cp "$WEIGHTS" "$WORK/app/model/$BUNDLE/models/model.pt"
"$PY" - "$SRC/configs" "$WORK/app/model/$BUNDLE/configs" "$OVERLAY" <<'EOF'
# Merge the overlay into the served inference/train configs (MONAI Label reads one config file each); the checkpoint
# folder stays <bundle>/models, where MONAI Label loads and /train saves model.pt.
import os, sys
from monai.bundle import ConfigParser
src, dst, overlay = sys.argv[1:]
for name in ("inference.json", "train.json"):
    files = [os.path.join(src, name)] + ([os.path.join(src, overlay)] if overlay else [])
    parser = ConfigParser(ConfigParser.load_config_files(files))
    parser["ckpt_dir"] = "$@bundle_root + '/models'"
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
# Which image next: a scoring method "<bundle>_tta" (unimiss_monai.metrics.uncertainty.bundle_uncertainty on every
# unlabelled study, stored in the datastore as "unimiss_tta_uncertainty") and a strategy "tta_uncertainty" that serves
# the highest-scored unlabelled study (MONAI Label's Epistemic strategy reading that key). The monaibundle app of 0.8.5
# registers only "random" and "first", and its own epistemic scoring (--conf epistemic_model) needs a network_def
# with a dropout argument, which UniMissSegmentation has not; so the app's class is extended here. /infer also answers
# an unknown model (404) and an input the bundle refuses (422) with the one-line reason instead of a bare 500.
ACTIVATION=sigmoid; [ "$DATASET" = cxr_segmentation ] || ACTIVATION=softmax
cat >> "$WORK/app/main.py" <<APPEOF

# --- added by unimiss_monai tools/monai_label.sh: rank unlabelled studies by test-time-augmentation uncertainty
from monailabel.tasks.activelearning.epistemic import Epistemic as _RankByInfoKey


class TTAUncertaintyScoring(ScoringMethod):
    """Score every unlabelled study with the bundle (shifted copies disagreeing = uncertain); store the score."""

    KEY = "unimiss_tta_uncertainty"

    def __init__(self, bundle_dir):
        super().__init__("Test-time-augmentation uncertainty of the unlabelled studies (unimiss_monai)")
        self.bundle_dir = bundle_dir

    def __call__(self, request, datastore):
        from unimiss_monai.metrics.uncertainty import bundle_uncertainty

        uris = {datastore.get_image_uri(i): i for i in datastore.get_unlabeled_images()}
        scores = bundle_uncertainty(self.bundle_dir, list(uris), activation="$ACTIVATION", device=request.get("device", "cpu"))
        for uri, score in scores.items():
            datastore.update_image_info(uris[uri], {self.KEY: score})
        return {"scored": {uris[u]: s for u, s in scores.items()}, "not_scored": sorted(uris[u] for u in uris if u not in scores)}


_bundle_scoring_methods, _bundle_strategies = MyApp.init_scoring_methods, MyApp.init_strategies


def _scoring_methods(self):
    methods = _bundle_scoring_methods(self)
    methods.update({f"{n}_tta": TTAUncertaintyScoring(b) for n, b in self.models.items()})
    return methods


def _strategies(self):
    strategies = _bundle_strategies(self)
    strategies["tta_uncertainty"] = _RankByInfoKey(key=TTAUncertaintyScoring.KEY, desc="Most uncertain unlabelled study first (run /scoring/<model>_tta first)")
    return strategies


_bundle_infer = MyApp.infer


def _infer(self, request, datastore=None):
    """MONAI Label 0.8.5 answers any failed /infer with a bare "500 Internal Server Error"; answer an unknown model
    with 404 and an input the bundle refuses with 422, each with the one-line reason (the server log has the rest)."""
    import os, tempfile
    from fastapi import HTTPException
    from nibabel.filebasedimages import ImageFileError
    from unimiss_monai.utils.errors import failure_reason, root_cause

    model = request.get("model")
    if model not in self._infers:
        raise HTTPException(status_code=404, detail=f"no model '{model}' on this server; it serves {sorted(self._infers)}")
    try:
        return _bundle_infer(self, request, datastore)
    except Exception as err:
        if not isinstance(root_cause(err), (ValueError, ImageFileError)):
            raise
        reason, image = failure_reason(err), str(request.get("image", ""))
        if os.path.dirname(image) == tempfile.gettempdir():  # an upload, saved by MONAI Label under a temporary name
            reason = reason.replace(image, "the uploaded file")
        raise HTTPException(status_code=422, detail=reason) from None


MyApp.init_scoring_methods, MyApp.init_strategies, MyApp.infer = _scoring_methods, _strategies, _infer
APPEOF
"$PY" - "$SAMPLES/$DATASET" "$WORK/studies" "$DATASET" <<'EOF'
# Studies: labelled cases as image + labels/final/<same name> (MONAI Label's local datastore layout), and for the
# radiographs the test split's images unlabelled and the real DICOM converted to a 2D NIfTI (ITK's reader has already
# made MONOCHROME1 bright-is-dense).
# Radiograph labels go in as a viewer saves them: one label map, 0 background and i the i-th structure, a later
# structure painted over an earlier one where they overlap (heart over lungs, clavicles over both); the bundle's
# training turns such a map back into its per-structure masks (unimiss_monai.transforms.LabelMapToMasksd).
import json, os, shutil, sys
import nibabel as nib
import numpy as np
from monai.transforms import LoadImage
data, studies, dataset = sys.argv[1:]
os.makedirs(os.path.join(studies, "labels", "final"))
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
if dataset == "cxr_segmentation":
    # unlabelled studies for the "which image next" strategy: the test split's images, without their labels
    for item in datalist.get("test", []):
        shutil.copy(os.path.join(data, item["image"]), os.path.join(studies, os.path.basename(item["image"])))
    radiograph = LoadImage(image_only=True)(os.path.join(data, "inference", "RG1_UNCR.dcm"))
    pixels = np.asarray(radiograph).squeeze().astype(np.float32)
    out = os.path.join(studies, "RG1_UNCR.nii.gz")
    nib.save(nib.Nifti1Image(pixels, np.asarray(radiograph.affine)), out + ".tmp.nii.gz")
    os.replace(out + ".tmp.nii.gz", out)
EOF
# the study sent to /infer: the real radiograph, or the first CT
if [ "$DATASET" = cxr_segmentation ]; then IMAGE_ID=RG1_UNCR; else cts=("$WORK"/studies/*.nii.gz); IMAGE_ID="$(basename "${cts[0]}" .nii.gz)"; fi

# --- 4. the server, always stopped on exit
PORT="${PORT:-$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
URL="http://127.0.0.1:$PORT"
log "starting MONAI Label on $URL (log: $WORK/server.log)"
start=$(date +%s.%N)
(cd "$WORK" && PATH="$LABEL_VENV/bin:$PATH" exec setsid "$LPY" -m monailabel.main start_server --app app --studies studies \
    --conf models "$BUNDLE" --conf zoo_source github --conf sam2 false --conf preload false \
    --host 127.0.0.1 --port "$PORT") > "$WORK/server.log" 2>&1 &
SERVER=$!
stop_server() { kill -TERM -- "-$SERVER" 2>/dev/null && sleep 2; kill -KILL -- "-$SERVER" 2>/dev/null || true; }
trap stop_server EXIT
rm -f "$WORK/info.json"
for _ in $(seq 180); do
    curl -sf "$URL/info/" -o "$WORK/info.json" && break
    kill -0 "$SERVER" 2>/dev/null || { tail -20 "$WORK/server.log"; log "server exited during start-up; see $WORK/server.log"; exit 1; }
    sleep 2
done
[ -s "$WORK/info.json" ] || { log "server not up after 360 s; see $WORK/server.log"; exit 1; }
t_start=$(elapsed "$start")

# --- 5. /infer on one study
start=$(date +%s.%N)
curl -sf -X POST "$URL/infer/$BUNDLE?image=$IMAGE_ID&output=image" -F 'params={"device": "cpu"}' -o "$WORK/pred.tmp.nii.gz" \
    || { tail -30 "$WORK/server.log"; log "/infer failed; see $WORK/server.log"; exit 1; }
mv "$WORK/pred.tmp.nii.gz" "$WORK/pred.nii.gz"
t_infer=$(elapsed "$start")

# --- 6. /train for a few epochs on the labelled studies (synchronous); /train saves app/model/$BUNDLE/models/model.pt
train_note="/train skipped"
if [ "$TRAIN_EPOCHS" -gt 0 ]; then
    before=$(stat -c %Y "$WORK/app/model/$BUNDLE/models/model.pt")
    start=$(date +%s.%N)
    curl -sf -X POST "$URL/train/$BUNDLE?run_sync=true" -H "Content-Type: application/json" \
        -d "{\"max_epochs\": $TRAIN_EPOCHS, \"val_split\": 0.25, \"multi_gpu\": false, \"device\": \"cpu\"}" \
        -o "$WORK/train_response.json" || { tail -30 "$WORK/server.log"; log "/train failed; see $WORK/server.log"; exit 1; }
    t_train=$(elapsed "$start")
    grep -q "Training Finished" "$WORK/server.log" || { tail -30 "$WORK/server.log"; log "/train did not finish; see $WORK/server.log"; exit 1; }
    after=$(stat -c %Y "$WORK/app/model/$BUNDLE/models/model.pt")
    train_note="/train $TRAIN_EPOCHS epoch(s) in $t_train s, model.pt $([ "$after" != "$before" ] && echo rewritten || echo kept: no better validation Dice)"
fi

# --- 7. check the label against the input (project venv) and draw it
result=$("$PY" - "$WORK" "$BUNDLE" "$IMAGE_ID" <<'EOF'
import json, os, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import nibabel as nib
import numpy as np
work, bundle, image_id = sys.argv[1:]
info = json.load(open(os.path.join(work, "info.json")))
if bundle not in info.get("models", {}):
    sys.exit(f"/info does not list {bundle}: models {sorted(info.get('models', {}))}")
image = np.asanyarray(nib.load(os.path.join(work, "studies", image_id + ".nii.gz")).dataobj)
label = np.asanyarray(nib.load(os.path.join(work, "pred.nii.gz")).dataobj)
if label.shape != image.shape:
    sys.exit(f"label shape {label.shape} != image shape {image.shape}")
values = sorted(int(v) for v in np.unique(label))
shape = label.shape
if image.ndim == 3:  # CT: the axial slice with most labelled voxels
    z = int(np.argmax((label > 0).sum((0, 1))))
    image, label = image[..., z], label[..., z]
fig, ax = plt.subplots(figsize=(6, 6))
ax.imshow(image.T, cmap="gray", origin="lower")
ax.imshow(np.ma.masked_equal(label.T, 0), cmap="tab10", alpha=0.45, origin="lower", vmin=0, vmax=10, interpolation="nearest")
ax.set_title(f"{bundle} via MONAI Label: {image_id}")
ax.axis("off")
fig.savefig(os.path.join(work, "pred.png.tmp"), format="png", dpi=100, bbox_inches="tight")
os.replace(os.path.join(work, "pred.png.tmp"), os.path.join(work, "pred.png"))
print(f"label {shape} == image shape, values {values}")
EOF
)
log "OK $BUNDLE: server up in $t_start s, /infer $t_infer s, $result, $train_note; picture $WORK/pred.png"
if [ "$KEEP_SERVER" = 1 ]; then log "serving $URL (server process group $SERVER) until Ctrl-C"; wait "$SERVER"; fi
