"""The CXR bundle served by a real MONAI Label 0.8.5 (``tools/monai_label.sh`` with ``KEEP_SERVER=1`` on a free
port of 127.0.0.1, everything under tmp): ``/train`` on the label maps a viewer saves, bad inputs through ``/infer``
refused with a reason while the server keeps serving, and 50 concurrent ``/infer`` requests answered alike.

Needs ``.venv-label`` (MONAI Label's own venv, ~8 GB, made by the first ``bash tools/monai_label.sh``); without it
every test here is skipped, saying so.
"""

from __future__ import annotations

import gzip
import os
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
BUNDLE = "unimiss_cxr_segmentation"
INSTALLED = REPO / ".venv-label" / ".monailabel-installed"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not INSTALLED.is_file(), reason=(
        "MONAI Label venv .venv-label is absent: run `bash tools/monai_label.sh` once (about 10 min, 8 GB) to test "
        "against a real MONAI Label server")),
]
START_TIMEOUT_S = 900  # smoke training of the served weights (1-3 min) plus the server's start-up and one /train


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``tools/monai_label.sh`` (one /infer and one /train epoch on label-map studies), left serving; stopped after."""
    work = tmp_path_factory.mktemp("monai_label")
    port = _free_port()
    env = {**os.environ, "PORT": str(port), "WORK": str(work), "SAMPLES": str(work / "samples"), "KEEP_SERVER": "1",
           "TRAIN_EPOCHS": "1", "OMP_NUM_THREADS": "2"}
    proc = subprocess.Popen(["bash", str(REPO / "tools" / "monai_label.sh")], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    lines: list[str] = []
    ready = threading.Event()

    def read():
        for line in proc.stdout:
            lines.append(line)
            if "serving http" in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready.wait(1.0) and proc.poll() is None and time.monotonic() < deadline:
        pass
    group = None
    try:
        assert ready.is_set(), "tools/monai_label.sh did not reach serving:\n" + "".join(lines[-30:])
        group = int(lines[-1].split("server process group ")[1].split(")")[0])
        yield SimpleNamespace(url=f"http://127.0.0.1:{port}", work=work, lines=lines)
    finally:
        # Ctrl-C as documented: the script's exit trap stops the server; its process group is ended too if it stays
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        if group is not None:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _infer(url: str, image_id: str | None = None, upload: tuple[str, bytes] | None = None, model: str = BUNDLE):
    import requests

    params = {"output": "image", **({"image": image_id} if image_id else {})}
    files = {"params": (None, '{"device": "cpu"}')}
    if upload is not None:
        files["file"] = (upload[0], upload[1], "application/octet-stream")
    return requests.post(f"{url}/infer/{model}", params=params, files=files, timeout=600)


def _label(content: bytes) -> np.ndarray:
    return np.asanyarray(nib.Nifti1Image.from_bytes(gzip.decompress(content)).dataobj)


def _nifti_bytes(array: np.ndarray) -> bytes:
    return gzip.compress(nib.Nifti1Image(array, np.diag([0.5, 0.5, 1.0, 1.0])).to_bytes())


def test_train_on_viewer_label_maps_finished(server):
    # the studies' labels/final are one-channel label maps (0-5), as a viewer saves them
    final = sorted((server.work / "studies" / "labels" / "final").glob("*.nii.gz"))
    assert final and all(nib.load(str(f)).ndim == 2 and np.asanyarray(nib.load(str(f)).dataobj).max() <= 5 for f in final)
    log = (server.work / "server.log").read_text()
    assert "Training Finished" in log and "Traceback" not in log
    assert any("/train 1 epoch(s)" in line for line in server.lines)


def test_info_and_good_infer(server):
    import requests

    info = requests.get(f"{server.url}/info/", timeout=60).json()
    labels = info["models"][BUNDLE]["labels"]
    assert {v: k for k, v in labels.items()} == {1: "lung_left", 2: "lung_right", 3: "heart", 4: "clavicle_left", 5: "clavicle_right"}
    image = nib.load(str(server.work / "studies" / "RG1_UNCR.nii.gz"))
    reply = _infer(server.url, "RG1_UNCR")
    assert reply.status_code == 200, reply.text[:500]
    label = _label(reply.content)
    assert label.shape == image.shape and set(np.unique(label).tolist()) <= set(range(6))


@pytest.mark.parametrize("name, make, reason", [
    ("ct_volume.nii.gz", lambda: _nifti_bytes(np.random.default_rng(0).normal(size=(32, 32, 16)).astype(np.float32)),
     "the uploaded file: got a 3D volume of spatial shape (32, 32, 16); this 2D X-ray model takes one projection image"),
    ("nan_pixels.nii.gz", lambda: _nifti_bytes(np.full((64, 64), np.nan, np.float32)),
     "the uploaded file: has 4096 non-finite (NaN or Inf) value(s) of 4096"),
    ("blank.nii.gz", lambda: _nifti_bytes(np.zeros((64, 64), np.float32)),
     "the uploaded file: every voxel has the same value (0)"),
    ("not_an_image.nii.gz", lambda: b"this is a text file, not a NIfTI image\n", "the uploaded file is not a gzip file"),
])
def test_bad_input_is_refused_with_its_reason_and_the_server_keeps_serving(server, name, make, reason):
    reply = _infer(server.url, upload=(name, make()))
    assert reply.status_code == 422, f"{name}: status {reply.status_code}: {reply.text[:300]}"
    detail = reply.json()["detail"]
    assert reason in detail and "\n" not in detail, detail
    good = _infer(server.url, "RG1_UNCR")
    assert good.status_code == 200, good.text[:500]


def test_unknown_model_is_refused(server):
    reply = _infer(server.url, "RG1_UNCR", model="no_such_model")
    assert reply.status_code == 404 and "no model 'no_such_model'" in reply.json()["detail"]
    assert BUNDLE in reply.json()["detail"]


def test_fifty_concurrent_infer_requests_all_return_the_same_label(server):
    reference = _label(_infer(server.url, "RG1_UNCR").content)
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=50) as pool:
        replies = list(pool.map(lambda _: _infer(server.url, "RG1_UNCR"), range(50)))
    elapsed = time.monotonic() - start
    codes = [r.status_code for r in replies]
    assert codes == [200] * 50, codes
    for reply in replies:
        np.testing.assert_array_equal(_label(reply.content), reference)
    print(f"50 concurrent /infer: {elapsed:.1f} s")


def test_tta_scoring_ranks_the_unlabelled_studies(server):
    import requests

    info = requests.get(f"{server.url}/info/", timeout=60).json()
    assert f"{BUNDLE}_tta" in info["scoring"] and "tta_uncertainty" in info["strategies"]
    reply = requests.post(f"{server.url}/scoring/{BUNDLE}_tta", params={"run_sync": "true"}, json={"device": "cpu"}, timeout=600)
    assert reply.status_code == 200, reply.text[:500]
    text = reply.text
    unlabelled = sorted(p.name[:-len(".nii.gz")] for p in (server.work / "studies").glob("*.nii.gz")
                        if not (server.work / "studies" / "labels" / "final" / p.name).exists())
    assert len(unlabelled) >= 3  # the test split's images and the real radiograph
    for image_id in unlabelled:
        assert image_id in text, f"{image_id} neither scored nor reported: {text[:500]}"
    # the strategy serves the highest-scored unlabelled study
    scores = {i: requests.get(f"{server.url}/datastore/image/info", params={"image": i}, timeout=60).json()
              .get("unimiss_tta_uncertainty") for i in unlabelled}
    assert all(isinstance(s, float) and 0.0 <= s <= 1.0 for s in scores.values()), scores
    chosen = requests.post(f"{server.url}/activelearning/tta_uncertainty", json={}, timeout=60).json()
    assert scores[chosen["id"]] == max(scores.values()), (chosen, scores)
