"""The real MONAI Label 0.8.5 server of ``test_monai_label_server.py`` and the requests it sends it.

``tools/monai_label.sh`` serves both segmentation bundles (``BUNDLES=...`` with ``KEEP_SERVER=1`` on a free port of
127.0.0.1, everything under tmp; :func:`serving`). It needs ``.venv-label`` (MONAI Label's own venv, ~8 GB, made by
the first ``bash tools/monai_label.sh``); without it every test that uses it is skipped, saying so (``SERVER_MARKS``).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import torch

from unimiss_monai.utils.hashing import sha256_file
from unimiss_monai.utils.serialization import load_torch_file

REPO = Path(__file__).resolve().parents[2]
CXR, CT = "unimiss_cxr_segmentation", "unimiss_ct_segmentation"
INSTALLED = REPO / ".venv-label" / ".monailabel-installed"
SERVER_MARKS = [  # the pytestmark of the module that uses the server
    pytest.mark.slow,
    pytest.mark.skipif(not INSTALLED.is_file(), reason=(
        "MONAI Label venv .venv-label is absent: run `bash tools/monai_label.sh` once (about 10 min, 8 GB) to test "
        "against a real MONAI Label server")),
]
START_TIMEOUT_S = 900  # smoke training of both served networks (1-3 min each) plus the server's start-up and checks
REQUEST_TIMEOUT_S = 600
TRAIN = {"max_epochs": 1, "val_split": 0.25, "multi_gpu": False, "device": "cpu"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(work: Path) -> Iterator[SimpleNamespace]:
    """``tools/monai_label.sh`` serving both bundles from ``work`` (its /infer check of each, no /train), left serving;
    stopped on leaving by its process group. The sample data sets go beside ``work``, not into it, as by default (the
    server, which runs in ``work``, must not find a ``samples`` folder there)."""
    port = _free_port()
    samples = work.parent / f"{work.name}_samples"
    # MONAI Label rescores every unlabelled study in the background after each /train and next-sample request; off
    # here, so the scores the strategy reads are those of the test's own /scoring call
    env = {**os.environ, "BUNDLES": f"{CXR},{CT}", "PORT": str(port), "WORK": str(work), "SAMPLES": str(samples),
           "KEEP_SERVER": "1", "TRAIN_EPOCHS": "0", "OMP_NUM_THREADS": "2", "MONAI_LABEL_AUTO_UPDATE_SCORING": "false"}
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
    group = None
    try:  # from here on, a stop (Ctrl-C in the start-up wait too) ends the script's session
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready.wait(1.0) and proc.poll() is None and time.monotonic() < deadline:
            pass
        assert ready.is_set(), "tools/monai_label.sh did not reach serving:\n" + "".join(lines[-30:])
        group = int(lines[-1].split("server process group ")[1].split(")")[0])
        yield SimpleNamespace(url=f"http://127.0.0.1:{port}", work=work, samples=samples, lines=lines, studies=work / "studies",
                              model={b: work / "app" / "model" / b / "models" / "model.pt" for b in (CXR, CT)})
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


def _infer(url: str, image_id: str | None = None, upload: tuple[str, bytes] | None = None, model: str = CXR,
           output: str = "image"):
    import requests

    params = {"output": output, **({"image": image_id} if image_id else {})}
    files = {"params": (None, '{"device": "cpu"}')}
    if upload is not None:
        files["file"] = (upload[0], upload[1], "application/octet-stream")
    return requests.post(f"{url}/infer/{model}", params=params, files=files, timeout=REQUEST_TIMEOUT_S)


def _put_label(url: str, image_id: str, name: str, content: bytes):
    import requests

    return requests.put(f"{url}/datastore/label", params={"image": image_id},
                        files={"label": (name, content, "application/octet-stream")}, timeout=REQUEST_TIMEOUT_S)


def _train(url: str, model: str, params: dict | None = None):
    import requests

    return requests.post(f"{url}/train/{model}", params={"run_sync": "true"}, json=TRAIN if params is None else params,
                         timeout=REQUEST_TIMEOUT_S)


def _nifti(content: bytes) -> nib.Nifti1Image:
    return nib.Nifti1Image.from_bytes(gzip.decompress(content))


def _label(content: bytes) -> np.ndarray:
    return np.asanyarray(_nifti(content).dataobj)


def _nifti_bytes(array: np.ndarray, affine=np.diag([0.5, 0.5, 1.0, 1.0])) -> bytes:
    return gzip.compress(nib.Nifti1Image(array, affine).to_bytes())


def _objects(url: str) -> dict:
    import requests

    return requests.get(f"{url}/datastore/", params={"output": "all"}, timeout=60).json()["objects"]


def _unlabelled(url: str, ndim: int | None = None, studies: Path | None = None) -> list[str]:
    ids = sorted(i for i, o in _objects(url).items() if not o["labels"].get("final"))
    if ndim is not None:
        ids = [i for i in ids if len([s for s in nib.load(str(studies / f"{i}.nii.gz")).shape if s > 1]) == ndim]
    return ids


def _wait_for(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not seen after {timeout:.0f} s"
        time.sleep(0.5)


def _snapshot(server) -> dict[str, str]:
    """sha256 of every label file of the datastore and every file of the served models' folders."""
    files = [*(server.studies / "labels").rglob("*"), *(server.work / "app" / "model").glob("*/models/*")]
    return {str(p.relative_to(server.work)): sha256_file(p) for p in sorted(files) if p.is_file()}


def _weights_sha256(model_pt: Path) -> str:
    """The digest the served app puts in /infer's params (``weights_sha256``), here of the weights in a model.pt."""
    state = load_torch_file(model_pt, "served weights")
    digest = hashlib.sha256()
    for name, tensor in sorted((state["model"] if "model" in state else state).items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _unlabelled_test_study(server, dataset: str) -> tuple[str, np.ndarray, np.ndarray]:
    """An unlabelled study of the sample set's test split, with its label as a one-channel label map (a viewer's
    form) and the label's affine."""
    root = server.samples / dataset
    labels = {Path(i["image"]).name[:-len(".nii.gz")]: i["label"] for i in json.loads((root / "datalist.json").read_text())["test"]}
    image_id = next(i for i in _unlabelled(server.url) if i in labels)
    label = nib.load(str(root / labels[image_id]))
    values = np.asanyarray(label.dataobj)
    if dataset == "cxr_segmentation":  # (X, Y, 1, N) masks -> a label map, a later structure over an earlier one
        masks = values.reshape(values.shape[:2] + (-1,))
        values = np.zeros(masks.shape[:2], np.uint8)
        for i in range(masks.shape[-1]):
            values[masks[..., i] > 0] = i + 1
    return image_id, values, label.affine


def _bad_labels(image: nib.Nifti1Image) -> dict[str, tuple[bytes, int, str]]:
    """name -> (upload, expected status, expected words of the reason) for a label of a 2D radiograph."""
    grid, affine = image.shape, image.affine
    values = np.zeros(grid, np.uint8)
    values[10:40, 10:40] = 7
    shifted = affine.copy()
    shifted[:3, 3] += 5.0
    return {
        "wrong_shape.nii.gz": (_nifti_bytes(np.zeros((grid[0] // 2, grid[1]), np.uint8), affine), 422, f"differs from the image's {tuple(grid)}"),
        "wrong_values.nii.gz": (_nifti_bytes(values, affine), 422, "values [7] are not labels of this server"),
        "fractions.nii.gz": (_nifti_bytes(np.full(grid, 0.5, np.float32), affine), 422, "non-integer"),
        "off_grid.nii.gz": (_nifti_bytes(np.zeros(grid, np.uint8), shifted), 422, "affine (position in space) differs"),
        "not_an_image.nii.gz": (b"a text file, not a label\n", 422, "is not an image file"),
    }


def _local_label(bundle_dir: Path, image_path: str) -> np.ndarray:
    """The served bundle's label computed here the way MONAI Label's bundle task does (test_monai_label_contract.py):
    its pre_transforms, the inferer with the served weights, its post_transforms."""
    from monai.bundle import ConfigParser
    from monai.transforms import LoadImaged

    parser = ConfigParser()
    parser.read_config(str(bundle_dir / "configs" / "inference.json"))
    parser.config.update({"bundle_root": str(bundle_dir), "device": "cpu"})
    network = parser.get_parsed_content("network_def", instantiate=True)
    network.load_state_dict(load_torch_file(bundle_dir / "models" / "model.pt", "served weights")["model"])
    network.eval()
    pre = parser.get_parsed_content("pre_transforms" if "pre_transforms" in parser else "preprocessing")
    data = {"image": image_path, "image_path": image_path}
    for transform in pre.transforms:
        if isinstance(transform, LoadImaged):
            transform._loader.image_only = False
        data = transform(data)
    with torch.no_grad():
        data["pred"] = parser.get_parsed_content("inferer")(data["image"][None], network)[0]
    for transform in parser.get_parsed_content("post_transforms").transforms:
        data = transform(data)
    return np.asarray(data["pred"])
