"""Both segmentation bundles served by one real MONAI Label 0.8.5 (``BUNDLES=... tools/monai_label.sh`` with
``KEEP_SERVER=1`` on a free port of 127.0.0.1, everything under tmp), driven the way 3D Slicer and OHIF drive it:
next sample, infer, submit a label, train, infer with the new weights; bad inputs and labels refused with a reason
while the datastore and the weights stay as they were; the geometry of returned and submitted labels; 50 concurrent
``/infer`` requests (latencies written to ``outputs/infer_latency.json`` of the server's tmp folder).

Needs ``.venv-label`` (MONAI Label's own venv, ~8 GB, made by the first ``bash tools/monai_label.sh``); without it
every test here is skipped, saying so. One server serves every test (about 8 minutes on 2 loaded cores, most of it
training the two smoke networks and the 50 requests).
"""


from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import nibabel as nib
import numpy as np
import pytest
import torch
from monai_label_client import (
    CT,
    CXR,
    REPO,
    REQUEST_TIMEOUT_S,
    SERVER_MARKS,
    _bad_labels,
    _infer,
    _label,
    _local_label,
    _nifti,
    _nifti_bytes,
    _objects,
    _put_label,
    _snapshot,
    _train,
    _unlabelled,
    _unlabelled_test_study,
    _wait_for,
    _weights_sha256,
    serving,
)
from test_geometry_contract import _assert_2d, _centre, _marker_ct, _marker_radiograph, _reordered

from unimiss_monai.data.writers import save_json
from unimiss_monai.utils.hashing import sha256_file

pytestmark = SERVER_MARKS


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``tools/monai_label.sh`` serving both bundles (its /infer check of each, no /train), left serving; stopped
    after the module by its process group."""
    with serving(tmp_path_factory.mktemp("monai_label")) as served:
        yield served


def test_script_checked_both_models_and_info_lists_them(server):
    import requests

    for bundle in (CXR, CT):
        assert any(line.startswith(f"[monai_label] OK {bundle}: /infer") for line in server.lines), "".join(server.lines[-20:])
        assert (server.work / f"{bundle}_pred.png").is_file()
    info = requests.get(f"{server.url}/info/", timeout=60).json()
    names = {b: {v: k for k, v in info["models"][b]["labels"].items()} for b in (CXR, CT)}
    assert names[CXR] == {1: "lung_left", 2: "lung_right", 3: "heart", 4: "clavicle_left", 5: "clavicle_right"}
    assert names[CT] == dict(enumerate(["liver", "spleen", "kidney_right", "kidney_left", "stomach", "pancreas", "lung", "heart", "aorta"], 1))
    assert {f"{CXR}_tta", f"{CT}_tta"} <= set(info["scoring"]) and {f"{CXR}_tta_uncertainty", f"{CT}_tta_uncertainty"} <= set(info["strategies"])
    assert set(info["trainers"]) == {CXR, CT}


def test_ct_inference_is_served_with_the_cpu_overlays_on_a_cpu_server(server):
    """INFER_OVERLAYS=auto (the default): without CUDA the served CT inference config has the CPU overlays (one window
    per pass, fewer windows) and the OpenVINO overlay (the script installs OpenVINO into MONAI Label's venv) merged
    after the smoke overlay, and the script's own /infer check above and the CT requests below ran with them; the CXR
    bundle, which has no such overlays, and every train config get the smoke overlay only."""
    cpu = [] if torch.cuda.is_available() else ["inference_cpu.yaml", "inference_cpu_fast.yaml", "inference_openvino.yaml"]
    assert any(f"served inference overlays (where a bundle has them): {','.join(cpu) or 'none'}" in line for line in server.lines)
    for bundle, extra in ((CT, cpu), (CXR, [])):
        configs = server.work / "app" / "model" / bundle / "configs"
        inference, train = (json.loads((configs / name).read_text()) for name in ("inference.json", "train.json"))
        assert inference["served_overlays"] == ["smoke.yaml", *extra] and train["served_overlays"] == ["smoke.yaml"]
        assert ("OpenVINOInferer" in json.dumps(inference["inferer"])) == bool(extra)
        if extra:
            assert inference["sw_batch_size"] == 1 and inference["num_workers"] == 0
            assert inference["sw_overlap"] == [0.25, 0.1, 0.1]


def test_ct_label_keeps_the_image_geometry(server):
    """The returned CT label carries its input's affine and orientation; the same patient stored in another voxel
    order (the marker CT of test_geometry_contract, RAS and axis-permuted) gets the same label in patient space."""
    image = nib.load(str(server.studies / "chest_ct_slab5.nii.gz"))
    reply = _infer(server.url, "chest_ct_slab5", model=CT)
    assert reply.status_code == 200, reply.text[:500]
    label = _nifti(reply.content)
    assert label.shape == image.shape and np.allclose(label.affine, image.affine, atol=1e-4)
    assert nib.aff2axcodes(label.affine) == nib.aff2axcodes(image.affine) == ("L", "A", "S")

    hu, marker, affine = _marker_ct()
    labels = []
    for name, (volume, _, grid) in {"ras": (hu, marker, affine), "reordered": _reordered(hu, marker, affine)}.items():
        reply = _infer(server.url, upload=(f"marker_{name}.nii.gz", _nifti_bytes(volume, grid)), model=CT)
        assert reply.status_code == 200, reply.text[:500]
        returned = _nifti(reply.content)
        assert returned.shape == volume.shape and np.allclose(returned.affine, grid, atol=1e-4), name
        assert nib.aff2axcodes(returned.affine) == nib.aff2axcodes(grid), name
        labels.append(np.asanyarray(returned.dataobj))
    ras, reordered = labels
    assert len(np.unique(ras)) > 1  # a constant label would agree with any voxel order
    back = np.transpose(np.flip(reordered, 1), (1, 2, 0))  # (Z, X flipped, Y) -> (X, Y, Z), undoing _reordered
    assert (back == ras).mean() > 0.999, f"labels of the two layouts agree on {(back == ras).mean():.4f} of the voxels"


def test_cxr_label_keeps_the_image_geometry(server):
    """The returned 2D label carries its radiograph's affine (MONAI Label alone writes 2D labels without one) and is
    the bundle's own answer on the input's grid, neither flipped nor transposed: the bundle's answer is held to the
    display convention by test_geometry_contract.py, so the served label is too."""
    returned = {}
    for image_id in ("RG1_UNCR", "test_000"):  # a real radiograph, and a DRR with an oblique affine
        image = nib.load(str(server.studies / f"{image_id}.nii.gz"))
        reply = _infer(server.url, image_id)
        assert reply.status_code == 200, reply.text[:500]
        returned[image_id] = _nifti(reply.content)
        assert returned[image_id].shape == image.shape, image_id
        assert np.allclose(returned[image_id].affine, image.affine, atol=1e-4), (image_id, returned[image_id].affine, image.affine)
    served = np.asanyarray(returned["test_000"].dataobj)
    local = _local_label(server.work / "app" / "model" / CXR, str(server.studies / "test_000.nii.gz"))
    assert served.shape == local.shape
    agree = (served == local).mean()
    mirrored = {"flipped left-right": np.flip(local, 0), "flipped top-bottom": np.flip(local, 1), "transposed": local.T}
    assert agree > 0.99, f"the served label agrees with the bundle's on {agree:.4f} of the pixels"
    for what, other in mirrored.items():
        if other.shape == served.shape:
            assert (served == other).mean() < agree - 0.01, f"the served label matches the bundle's {what} as well"


def test_submitted_cxr_label_keeps_the_display_convention(server, tmp_path):
    """A clinician's label of a radiograph with a marker top right (test_geometry_contract's picture) goes in
    through PUT /datastore/label, comes back byte for byte, and through the bundle's validation transforms (as
    /train reads it) its marker lands top right on the image's marker."""
    import requests
    from monai.bundle import ConfigParser
    from monai.transforms import LoadImage

    pixels = np.asarray(LoadImage(image_only=True)(_marker_radiograph(tmp_path / "marker.png")), np.float32)  # (X, Y)
    affine = np.diag([0.5, 0.5, 1.0, 1.0])
    reply = requests.put(f"{server.url}/datastore/image", params={"image": "marker_radiograph"},
                         files={"file": ("marker_radiograph.nii.gz", _nifti_bytes(pixels, affine), "application/octet-stream")}, timeout=60)
    assert reply.status_code == 200, reply.text[:500]
    label = np.where(pixels == pixels.max(), 3, 0).astype(np.uint8)  # 3: heart, painted on the marker
    content = _nifti_bytes(label, affine)
    reply = _put_label(server.url, "marker_radiograph", "marker_radiograph.nii.gz", content)
    assert reply.status_code == 200, reply.text[:500]
    back = requests.get(f"{server.url}/datastore/label", params={"label": "marker_radiograph", "tag": "final"}, timeout=60)
    assert back.status_code == 200 and back.content == content
    stored = server.studies / "labels" / "final" / "marker_radiograph.nii.gz"
    parser = ConfigParser()
    parser.read_config(str(server.work / "app" / "model" / CXR / "configs" / "train.json"))
    parser.config.update({"bundle_root": str(server.work / "app" / "model" / CXR), "device": "cpu"})
    item = parser.get_parsed_content("validate#preprocessing")({"image": str(server.studies / "marker_radiograph.nii.gz"), "label": str(stored)})
    _assert_2d(item["image"], "submitted radiograph")
    _assert_2d(item["label"][2:3], "submitted label (heart channel)")
    assert np.abs(_centre(item["image"]) - _centre(item["label"][2:3])).max() < 0.05


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


@pytest.mark.parametrize("route", ["infer", "train"])
def test_unknown_model_is_refused(server, route):
    before = _snapshot(server)
    reply = _infer(server.url, "RG1_UNCR", model="no_such_model") if route == "infer" else _train(server.url, "no_such_model")
    assert reply.status_code == 404 and "no model 'no_such_model'" in reply.json()["detail"], reply.text[:300]
    assert CXR in reply.json()["detail"] and CT in reply.json()["detail"]
    assert _snapshot(server) == before


def test_unknown_image_id_is_refused_naming_it_and_how_to_list_ids(server):
    before = _snapshot(server)
    reply = _infer(server.url, "no_such_image")
    detail = reply.json().get("detail", "")
    assert reply.status_code == 404 and "no image 'no_such_image'" in detail and "/datastore/?output=all" in detail, reply.text[:300]
    assert _snapshot(server) == before


@pytest.mark.parametrize("params, words", [
    ({"max_epochs": "abc"}, "max_epochs must be a positive whole number of epochs; got 'abc'"),
    ({"max_epochs": 0}, "max_epochs must be a positive whole number of epochs; got 0"),
    ({"max_epochs": 1.5}, "max_epochs must be a positive whole number of epochs; got 1.5"),
    ({"val_split": 1.0}, "val_split must be a number in [0, 1)"),
    ({"val_split": "a quarter"}, "val_split must be a number in [0, 1)"),
])
def test_bad_train_parameters_are_refused_before_training(server, params, words):
    before = _snapshot(server)
    reply = _train(server.url, CXR, {"device": "cpu", **params})
    detail = reply.json().get("detail", "")
    assert reply.status_code == 422 and words in detail and "\n" not in detail, f"{reply.status_code}: {reply.text[:300]}"
    assert _snapshot(server) == before


@pytest.mark.parametrize("name", ["wrong_shape.nii.gz", "wrong_values.nii.gz", "fractions.nii.gz", "off_grid.nii.gz",
                                  "not_an_image.nii.gz", "unknown_image"])
def test_bad_label_is_refused_and_nothing_changes(server, name):
    image_id = _unlabelled(server.url, 2, server.studies)[0]
    before = _snapshot(server)
    if name == "unknown_image":
        reply = _put_label(server.url, "no_such_image", "label.nii.gz", _nifti_bytes(np.zeros((8, 8), np.uint8)))
        status, words = 404, "no image 'no_such_image'"
    else:
        content, status, words = _bad_labels(nib.load(str(server.studies / f"{image_id}.nii.gz")))[name]
        reply = _put_label(server.url, image_id, name, content)
    detail = reply.json().get("detail", "")
    assert reply.status_code == status and words in detail and "\n" not in detail, f"{reply.status_code}: {reply.text[:300]}"
    if name != "unknown_image":
        assert f"label '{name}' of image '{image_id}'" in detail
    assert _snapshot(server) == before
    assert not _objects(server.url)[image_id]["labels"].get("final")


def test_train_refuses_a_bad_label_saved_beside_the_studies_naming_it(server):
    """A label that reached labels/final without the PUT check (saved there by hand): /train answers 422 naming the
    label and its image, and model.pt stays as it was."""
    image_id = _unlabelled(server.url, 2, server.studies)[0]
    image = nib.load(str(server.studies / f"{image_id}.nii.gz"))
    values = np.zeros(image.shape, np.uint8)
    values[10:40, 10:40] = 9
    bad = server.studies / "labels" / "final" / f"{image_id}.nii.gz"
    nib.save(nib.Nifti1Image(values, image.affine), str(bad))
    try:
        _wait_for(lambda: _objects(server.url)[image_id]["labels"].get("final"), f"the datastore listing {bad.name}")
        before = _snapshot(server)
        reply = _train(server.url, CXR)
        assert reply.status_code == 422, reply.text[:500]
        detail = reply.json()["detail"]
        named = (os.path.realpath(bad), f"label of {os.path.realpath(server.studies / image_id)}.nii.gz", "[9.0]")
        assert all(words in detail for words in named), detail
        assert "\n" not in detail
        assert _snapshot(server) == before
    finally:
        bad.unlink()
    _wait_for(lambda: not _objects(server.url)[image_id]["labels"].get("final"), f"the datastore dropping {bad.name}")


def test_fifty_concurrent_infer_requests_all_return_the_same_label(server):
    reference = _label(_infer(server.url, "RG1_UNCR").content)

    def timed(_):
        start = time.monotonic()
        reply = _infer(server.url, "RG1_UNCR")
        return reply, time.monotonic() - start

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=50) as pool:  # 50 requests in flight at once, each with a bounded timeout
        results = list(pool.map(timed, range(50)))
    elapsed = time.monotonic() - start
    codes = [r.status_code for r, _ in results]
    assert codes == [200] * 50, codes
    for reply, _ in results:
        np.testing.assert_array_equal(_label(reply.content), reference)
    latency = np.array([s for _, s in results])
    load = os.getloadavg()
    stats = {"requests": 50, "concurrent": 50, "image": "RG1_UNCR (1841x1955)", "wall_s": round(elapsed, 1),
             **{k: round(float(v), 2) for k, v in (("min_s", latency.min()), ("p50_s", np.percentile(latency, 50)),
                                                    ("p95_s", np.percentile(latency, 95)), ("max_s", latency.max()))},
             "load_average_1_5_15": [round(x, 2) for x in load], "cpus": os.cpu_count()}
    # the latencies are recorded, not asserted (they follow the machine's load); that /infer runs one inference at a
    # time off the event loop, leaving the server free for other requests, is checked by the order of events in
    # tests/utils/test_monai_label_app.py
    out = save_json(stats, server.work / "outputs" / "infer_latency.json")
    print(f"50 concurrent /infer: {elapsed:.1f} s, latency min {stats['min_s']} s, p50 {stats['p50_s']} s, p95 {stats['p95_s']} s, max "
          f"{stats['max_s']} s (load average {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}; {out})")


def test_next_sample_is_the_most_uncertain_and_moves_on_once_labelled(server):
    import requests

    reply = requests.post(f"{server.url}/scoring/{CXR}_tta", params={"run_sync": "true"}, json={"device": "cpu"}, timeout=REQUEST_TIMEOUT_S)
    assert reply.status_code == 200, reply.text[:500]
    unlabelled = _unlabelled(server.url, 2, server.studies)
    assert len(unlabelled) >= 3  # the test split's images and the real radiograph
    for image_id in unlabelled:
        assert image_id in reply.text, f"{image_id} neither scored nor reported: {reply.text[:500]}"
    scores = {i: requests.get(f"{server.url}/datastore/image/info", params={"image": i}, timeout=60).json()
              .get(f"unimiss_tta_uncertainty_{CXR}") for i in unlabelled}
    assert all(isinstance(s, float) and 0.0 <= s <= 1.0 for s in scores.values()), scores

    def next_sample() -> str:
        return requests.post(f"{server.url}/activelearning/{CXR}_tta_uncertainty", json={}, timeout=60).json()["id"]

    chosen = next_sample()
    assert scores[chosen] == max(scores.values()), (chosen, scores)
    image = nib.load(str(server.studies / f"{chosen}.nii.gz"))
    values = np.zeros(image.shape, np.uint8)
    values[: image.shape[0] // 2, : image.shape[1] // 2] = 1
    reply = _put_label(server.url, chosen, f"{chosen}.nii.gz", _nifti_bytes(values, image.affine))
    assert reply.status_code == 200, reply.text[:500]
    assert chosen not in _unlabelled(server.url)
    # every other unlabelled study once (the most uncertain first), then around again: never the labelled one, which
    # MONAI Label's strategy would serve again once all others were served, were it still unlabelled
    rest = set(_unlabelled(server.url))
    served = [next_sample() for _ in range(len(rest) + 1)]
    assert chosen not in served, served
    assert set(served[:len(rest)]) == rest
    others = {i: scores[i] for i in scores if i != chosen}
    assert scores[served[0]] == max(others.values()), (served[0], others)


@pytest.mark.parametrize("bundle", [CT, CXR])
def test_submitted_label_trains_a_new_model_that_infer_then_uses(server, bundle):
    """The clinician loop: a label map saved on the image's grid (3D Slicer's form: CT int16, radiograph uint8) is
    submitted, /train runs one epoch on it and the other labels, model.pt is replaced (the previous one kept as
    model.pt.prev), and /infer answers with the new weights."""
    dataset = "ct_segmentation" if bundle == CT else "cxr_segmentation"
    image_id, values, affine = _unlabelled_test_study(server, dataset)
    content = _nifti_bytes(values.astype(np.int16 if bundle == CT else np.uint8), affine)
    reply = _put_label(server.url, image_id, f"{image_id}.nii.gz", content)
    assert reply.status_code == 200, reply.text[:500]
    stored = nib.load(str(server.studies / "labels" / "final" / f"{image_id}.nii.gz"))
    image = nib.load(str(server.studies / f"{image_id}.nii.gz"))
    assert stored.shape == image.shape and np.allclose(stored.affine, image.affine, atol=1e-4)
    assert nib.aff2axcodes(stored.affine) == nib.aff2axcodes(image.affine)

    model = server.model[bundle]
    before_file, before_weights = sha256_file(model), _weights_sha256(model)
    reply = _infer(server.url, image_id, model=bundle, output="json")
    assert reply.status_code == 200 and reply.json()["weights_sha256"] == before_weights, reply.text[:500]
    start = time.monotonic()
    reply = _train(server.url, bundle)
    assert reply.status_code == 200, reply.text[:500]
    print(f"/train {bundle}: 1 epoch in {time.monotonic() - start:.1f} s")
    after_weights = _weights_sha256(model)
    assert sha256_file(model) != before_file and after_weights != before_weights
    assert sha256_file(model.with_name("model.pt.prev")) == before_file
    reply = _infer(server.url, image_id, model=bundle, output="json")
    assert reply.status_code == 200 and reply.json()["weights_sha256"] == after_weights, reply.text[:500]


def test_prepare_only_prints_the_start_command_and_leaves_the_studies_alone(server, tmp_path):
    """PREPARE_ONLY=1 with a studies folder of one's own: the app is built, the start command printed, no server
    started, the studies not touched; a rerun refuses to rebuild over weights saved since (a clinician's /train)."""
    studies = tmp_path / "my studies"
    (studies / "labels" / "final").mkdir(parents=True)
    for name in ("chest_ct_slab0.nii.gz", "test_000.nii.gz"):
        shutil.copy(server.studies / name, studies / name)
    shutil.copy(server.studies / "labels" / "final" / "chest_ct_slab0.nii.gz", studies / "labels" / "final")
    before = {str(p): sha256_file(p) for p in studies.rglob("*") if p.is_file()}
    work = tmp_path / "work"
    shutil.copytree(server.work / "train", work / "train")  # the smoke weights the server fixture trained
    env = {**os.environ, "PREPARE_ONLY": "1", "BUNDLES": f"{CT},{CXR}", "STUDIES": str(studies), "WORK": str(work),
           "SAMPLES": str(server.samples)}

    def prepare():
        return subprocess.run(["bash", str(REPO / "tools" / "monai_label.sh")], cwd=REPO, env=env, text=True,
                              capture_output=True, timeout=600)

    done = prepare()
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    command = done.stdout.strip().splitlines()[-1]
    for words in ("monailabel.main start_server", f"--app {work / 'app'}", f"--conf models {CT},{CXR}", "--host 127.0.0.1 --port 8000"):
        assert words in command, command
    assert "--studies " + str(studies).replace(" ", "\\ ") in command, command
    assert "starting MONAI Label" not in done.stdout and not (work / "server.log").exists() and not (work / "studies").exists()
    for bundle in (CT, CXR):
        assert sha256_file(work / "app" / "model" / bundle / "models" / "model.pt") == sha256_file(work / "train" / "smoke" / bundle / "models" / "model.pt")
    assert "added by unimiss_monai: tools/monai_label_app.py" in (work / "app" / "main.py").read_text()
    assert {str(p): sha256_file(p) for p in studies.rglob("*") if p.is_file()} == before

    trained = work / "app" / "model" / CT / "models" / "model.pt"
    trained.write_bytes(trained.read_bytes() + b"\0")  # as if /train had published new weights
    done = prepare()
    assert done.returncode == 2 and f"{trained} was saved after this folder was prepared" in done.stdout, done.stdout[-2000:]
    assert trained.is_file() and trained.read_bytes().endswith(b"\0")
