"""The DRR bundle under ``torchrun`` with two gloo ranks on CPU: every CT rendered exactly once over the ranks, a rerun
skips finished CTs without touching them, and a CT left without its done record (a rank killed mid-case) is redone.
Case names extend one another (``ct0`` and ``ct0.1``), and the ranks write such pairs at the same time."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bundle_runner import configs
from unimiss_monai.data.sample_sets.drr_generation import write_phantom_case

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BUNDLE = "unimiss_drr_generation"
# odd: the ranks get 3 and 2; dealt in name order, rank 0 renders ct0 and ct1 while rank 1 renders ct0.1 and ct1.v2
NAMES = ["ct0", "ct0.1", "ct1", "ct1.v2", "ct2"]
TINY = {"detector_shape": [20, 16], "pixel_spacing": 20.0, "views": ["AP", "LAT_LEFT"], "progress": False}
RENDERED = re.compile(r"DRR rank (\d): (\S+) rendered in")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(data: Path, out: Path, returncode: int = 0) -> tuple[str, list[tuple[int, str]]]:
    """One two-rank run that ends with ``returncode``; returns its log and the (rank, CT) of every CT rendered."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", "-m", "monai.bundle", "run",
           "--config_file", str(configs(BUNDLE, "inference.json", "multi_gpu_inference.json")),
           "--meta_file", configs(BUNDLE, "metadata.json")[0], "--logging_file", configs(BUNDLE, "logging.conf")[0],
           "--dataset_dir", str(data), "--output_dir", str(out)]
    for key, value in TINY.items():
        cmd += [f"--{key}", json.dumps(value)]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    log = proc.stdout + proc.stderr
    assert proc.returncode == returncode, log[-4000:]
    return log, [(int(r), name) for r, name in RENDERED.findall(log)]


def _mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_two_ranks_render_each_ct_once_and_resume(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    for i, name in enumerate(NAMES):
        write_phantom_case(data, name, (24, 20, 16), (12.0, 12.0, 14.0), seed=i)

    log, rendered = _run(data, out)
    names = [name for _, name in rendered]
    assert sorted(names) == NAMES, log[-3000:]  # each CT exactly once over both ranks
    assert {rank for rank, _ in rendered} == {0, 1}
    for rank, name in rendered:  # the done record names the rank that wrote the CT
        assert json.loads((out / name / f"{name}_done.json").read_text())["rank"] == rank
    run = json.loads((out / "datalist.json").read_text())  # merged by rank 0 after both finished
    assert run["failures"] == [] and len(run["testing"]) == len(NAMES) * 2
    assert all((out / item[key]).is_file() for item in run["testing"] for key in ("image", "preview", "label"))
    first = _mtimes(out)

    log, rendered = _run(data, out)
    assert rendered == [] and log.count("already finished") == 2, log[-3000:]
    second = _mtimes(out)
    assert {k: v for k, v in second.items() if k != "datalist.json"} == {k: v for k, v in first.items() if k != "datalist.json"}
    assert json.loads((out / "datalist.json").read_text()) == run

    # a rank killed while writing ct2: its outputs there, but no done record (and one view missing)
    (out / "ct2" / "ct2_done.json").unlink()
    (out / "ct2" / "ct2_LAT_LEFT.nii.gz").unlink()
    log, rendered = _run(data, out)
    assert [name for _, name in rendered] == ["ct2"], log[-3000:]
    third = _mtimes(out)
    assert (out / "ct2" / "ct2_done.json").is_file() and (out / "ct2" / "ct2_LAT_LEFT.nii.gz").is_file()
    for path, mtime in second.items():
        if path.startswith("ct2/"):
            assert path not in third or third[path] > mtime  # redone
        elif path != "datalist.json":
            assert third[path] == mtime, path  # finished CTs untouched
    assert json.loads((out / "datalist.json").read_text()) == run

    # a CT that cannot be rendered: the others stay finished, it fails in one line, listed once (by rank 0), and the
    # run ends non-zero
    import nibabel as nib
    import numpy as np

    bad = nib.load(data / "ct0.nii.gz")
    hu = np.asarray(bad.dataobj, dtype=np.float32)
    hu[2:4, 2:4, 2:4] = np.nan
    nib.save(nib.Nifti1Image(hu, bad.affine), data / "ct3.nii.gz")
    log, rendered = _run(data, out, returncode=1)
    assert rendered == [] and log.count("1 of 6 CT(s) failed:") == 1 and "1 of 6 CT(s) failed (rank 0 lists them)" in log
    assert log.count("ct3.nii.gz: has 8 NaN voxels; replace them") == 2  # the failing rank's log line, rank 0's list
    assert json.loads((out / "datalist.json").read_text())["failures"][0]["name"] == "ct3"
