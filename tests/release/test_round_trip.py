"""The whole release path: smoke pretraining export -> package -> served on loopback -> monai.bundle download --url
and our download -> verify-bundles on the download -> fine-tuning from the downloaded folder gets the same weights as
from the local file."""

from __future__ import annotations

import json

import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "bundles"))
from bundle_runner import configs, run_workflow  # noqa: E402

# the pretraining bundle's current version: releases are named after it
PV = json.loads((Path(__file__).resolve().parents[2] / "bundles" / "unimiss_pretraining" / "configs" / "metadata.json").read_text())["version"]

NAME = "unimiss_pretraining"


@pytest.mark.slow
def test_release_round_trip(serve, tmp_path, one_thread):
    from monai.bundle import ConfigWorkflow

    from unimiss_monai.data.samples import samples
    from unimiss_monai.release.download import download
    from unimiss_monai.release.package import package_bundle
    from unimiss_monai.release.verify import verify_bundle

    data = Path(samples(str(tmp_path / "samples"), synthetic=True, only=["pretraining", "cxr_segmentation"]))
    out = tmp_path / "pretraining"
    wf = ConfigWorkflow(config_file=configs(NAME, "train.json", "smoke.yaml"), workflow_type="train",
                        dataset_dir=str(data), output_dir=str(out), bundle_root=str(out / "bundle"))
    wf.initialize()
    wf.run()
    wf.finalize()
    local = out / "models" / "model.pt"

    site = tmp_path / "site"
    package_bundle(str(REPO / "bundles" / NAME), weights=str(local), out=str(site), overlay="smoke.yaml",
                   training="smoke overlay on the synthetic sample set: exercises the pipeline, learns nothing")
    url = serve(site)
    done = subprocess.run([sys.executable, "-m", "monai.bundle", "download", "--name", NAME, "--url",
                           f"{url}/{NAME}_v{PV}.zip", "--bundle_dir", str(tmp_path / "monai")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    got = download(NAME, index=f"{url}/model_info.json", bundle_dir=str(tmp_path / "bundles"),
                   cache_dir=str(tmp_path / "cache"), progress=False)
    folder = Path(got["bundle"])
    assert (tmp_path / "monai" / NAME / "models" / "model.pt").read_bytes() == (folder / "models" / "model.pt").read_bytes()

    results = verify_bundle(folder, tmp_path / "verify", data, lambda line: None)
    assert {r["check"]: r["status"] for r in results if r["status"] != "skipped"} == {
        "files": "ok", "metadata": "ok", "changelog": "ok", "net_in_out": "ok", "export": "ok", "properties(train)": "ok"}

    # fine-tuning (smoke overlay: the same tiny widths) from the downloaded folder and from the local export
    nets = {}
    for how, path in (("folder", folder), ("file", local)):
        wf = run_workflow("unimiss_cxr_segmentation", ["train.json", "smoke.yaml"], "train", run=how == "folder",
                          dataset_dir=str(data), output_dir=str(tmp_path / f"ft_{how}"),
                          bundle_root=str(tmp_path / f"ft_{how}"), pretrained_path=str(path), max_epochs=1)
        nets[how] = wf
    source = torch.load(local, weights_only=True)["model"]
    # the local run was only initialised; the folder run trained one epoch: compare the initialised encoders
    fresh = run_workflow("unimiss_cxr_segmentation", ["train.json", "smoke.yaml"], "train", run=False,
                         dataset_dir=str(data), output_dir=str(tmp_path / "ft_folder2"),
                         bundle_root=str(tmp_path / "ft_folder2"), pretrained_path=str(folder))
    a, b = fresh.network_def.state_dict(), nets["file"].network_def.state_dict()
    encoder = [k for k in a if k.startswith("encoder.")]
    assert encoder and all(torch.equal(a[k], b[k]) for k in encoder)
    same = [k for k in encoder if k in source and source[k].shape == a[k].shape]
    assert len(same) > len(encoder) // 2 and all(torch.equal(a[k], source[k]) for k in same)
    assert (tmp_path / "ft_folder" / "models" / "smoke" / "model.pt").is_file()
