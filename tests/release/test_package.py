"""package-bundle: a reproducible model-zoo zip, its sha256, index entry and large_files.yml."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
import shutil
import zipfile

import pytest
import torch
import yaml

from unimiss_monai.release.package import package_bundle

# the pretraining bundle's current version: releases are named after it
PV = json.loads((Path(__file__).resolve().parents[2] / "bundles" / "unimiss_pretraining" / "configs" / "metadata.json").read_text())["version"]

REPO_BUNDLE = "bundles/unimiss_pretraining"


def _package(repo_root, tiny_export, out, **kw):
    # the tiny export has the widths and sizes of the smoke overlay, which it is packaged with
    return package_bundle(str(repo_root / REPO_BUNDLE), weights=str(tiny_export), out=str(out),
                          training="random weights of a test", overlay="smoke.yaml", **kw)


def test_same_inputs_give_the_same_bytes(repo_root, tiny_export, tmp_path):
    a = _package(repo_root, tiny_export, tmp_path / "a")
    b = _package(repo_root, tiny_export, tmp_path / "b")
    assert (tmp_path / "a" / f"unimiss_pretraining_v{PV}.zip").read_bytes() == (tmp_path / "b" / f"unimiss_pretraining_v{PV}.zip").read_bytes()
    assert a["sha256"] == b["sha256"] == hashlib.sha256((tmp_path / "a" / f"unimiss_pretraining_v{PV}.zip").read_bytes()).hexdigest()
    # a second run into the same folder changes nothing
    again = _package(repo_root, tiny_export, tmp_path / "a")
    assert again["sha256"] == a["sha256"]


def test_zip_layout_and_weights(repo_root, tiny_export, tmp_path):
    res = _package(repo_root, tiny_export, tmp_path)
    with zipfile.ZipFile(res["zip"]) as zf:
        names = zf.namelist()
        assert names == sorted(names) and all(n.startswith("unimiss_pretraining/") for n in names)
        bundle = repo_root / REPO_BUNDLE
        expected = {"LICENSE", *(p.relative_to(bundle).as_posix() for p in (bundle / "configs").iterdir()),
                    *(p.relative_to(bundle).as_posix() for p in (bundle / "docs").rglob("*") if p.is_file()),
                    "models/model.pt"}
        assert {n.split("/", 1)[1] for n in names} == expected
        for info in zf.infolist():
            assert info.date_time == (1980, 1, 1, 0, 0, 0) and info.external_attr >> 16 == 0o100644
        assert zf.read("unimiss_pretraining/configs/train.json") == (bundle / "configs" / "train.json").read_bytes()
        payload = torch.load(io.BytesIO(zf.read("unimiss_pretraining/models/model.pt")), weights_only=True)
    source = torch.load(tiny_export, weights_only=True)
    assert payload["model"].keys() == source["model"].keys()
    assert all(torch.equal(payload["model"][k], v) for k, v in source["model"].items())
    info = payload["info"]
    assert info["variant"] == "mitplus" and info["img_size3d"] == [16, 64, 64]
    assert info["training"] == "random weights of a test" and info["bundle_version"] == f"{PV}"
    assert info["weights_sha256"] == hashlib.sha256(tiny_export.read_bytes()).hexdigest()


def test_sha256_index_and_large_files(repo_root, tiny_export, tmp_path):
    res = _package(repo_root, tiny_export, tmp_path, base_url="https://example.org/releases/v1/")
    digest = hashlib.sha256((tmp_path / f"unimiss_pretraining_v{PV}.zip").read_bytes()).hexdigest()
    assert (tmp_path / f"unimiss_pretraining_v{PV}.zip.sha256").read_text() == f"{digest}  unimiss_pretraining_v{PV}.zip\n"
    index = json.loads((tmp_path / "model_info.json").read_text())
    assert index == {f"unimiss_pretraining_v{PV}": {
        "name": "unimiss_pretraining", "version": f"{PV}",
        "source": f"https://example.org/releases/v1/unimiss_pretraining_v{PV}.zip", "hash_type": "sha256",
        "hash_val": digest, "size": res["size"]}}
    large = yaml.safe_load((tmp_path / f"unimiss_pretraining_v{PV}_large_files.yml").read_text())["large_files"]
    weights = (tmp_path / f"unimiss_pretraining_v{PV}_model.pt").read_bytes()
    with zipfile.ZipFile(res["zip"]) as zf:
        assert zf.read("unimiss_pretraining/models/model.pt") == weights
    assert large == [{"path": "models/model.pt", "url": f"https://example.org/releases/v1/unimiss_pretraining_v{PV}_model.pt",
                      "hash_val": hashlib.sha256(weights).hexdigest(), "hash_type": "sha256"}]


def test_download_large_files_fetches_the_weights_of_an_unpacked_release(repo_root, tiny_export, tmp_path):
    """The zip carries large_files.yml (given --base_url), as a model-zoo bundle does: MONAI's download_large_files
    run on the unpacked bundle fetches the released weights, checked against their sha256."""
    from monai.bundle import download_large_files

    dist = tmp_path / "dist"
    res = _package(repo_root, tiny_export, dist, base_url=dist.as_uri())
    with zipfile.ZipFile(res["zip"]) as zf:
        zf.extractall(tmp_path / "unpacked")
    bundle = tmp_path / "unpacked" / "unimiss_pretraining"
    assert (bundle / "large_files.yml").read_bytes() == (dist / f"unimiss_pretraining_v{PV}_large_files.yml").read_bytes()
    shipped = (bundle / "models" / "model.pt").read_bytes()
    (bundle / "models" / "model.pt").unlink()  # a repository that keeps the weights out of git
    download_large_files(bundle_path=str(bundle))
    assert (bundle / "models" / "model.pt").read_bytes() == shipped
    without = _package(repo_root, tiny_export, tmp_path / "relative")  # a relative URL: no large_files.yml in the zip
    with zipfile.ZipFile(without["zip"]) as zf:
        assert "unimiss_pretraining/large_files.yml" not in zf.namelist()


def test_index_keeps_other_releases(repo_root, tiny_export, tmp_path):
    _package(repo_root, tiny_export, tmp_path)
    package_bundle(str(repo_root / "bundles" / "unimiss_drr_generation"), out=str(tmp_path))
    drr = json.loads((repo_root / "bundles" / "unimiss_drr_generation" / "configs" / "metadata.json").read_text())["version"]
    index = json.loads((tmp_path / "model_info.json").read_text())
    assert sorted(index) == [f"unimiss_drr_generation_v{drr}", f"unimiss_pretraining_v{PV}"]
    with zipfile.ZipFile(tmp_path / f"unimiss_drr_generation_v{drr}.zip") as zf:
        assert not [n for n in zf.namelist() if "/models/" in n]


def test_refusals(repo_root, tiny_export, tmp_path):
    bundle = tmp_path / "unimiss_pretraining"
    shutil.copytree(repo_root / REPO_BUNDLE, bundle)
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    (bundle / "configs" / "metadata.json").write_text(json.dumps({**meta, "version": "9.9.9"}))
    with pytest.raises(ValueError, match="version 9.9.9 is not in its changelog"):
        package_bundle(str(bundle), weights=str(tiny_export), out=str(tmp_path / "out"), training="x", overlay="smoke.yaml")
    (bundle / "configs" / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="does not say how it was trained"):
        package_bundle(str(bundle), weights=str(tiny_export), out=str(tmp_path / "out"), overlay="smoke.yaml")
    package_bundle(str(bundle), weights=str(tiny_export), out=str(tmp_path / "out"), training="x", overlay="smoke.yaml")
    # the same version with other content is a different release: refused unless --overwrite
    (bundle / "docs" / "README.md").write_text("changed\n")
    with pytest.raises(ValueError, match="a released version never changes"):
        package_bundle(str(bundle), weights=str(tiny_export), out=str(tmp_path / "out"), training="x", overlay="smoke.yaml")
    (bundle / "LICENSE").unlink()
    with pytest.raises(ValueError, match="lacks LICENSE"):
        package_bundle(str(bundle), weights=str(tiny_export), out=str(tmp_path / "out2"), training="x", overlay="smoke.yaml")


def test_a_symbolic_link_in_the_bundle_is_refused(tmp_path):
    """A link's target (possibly outside the bundle) would be published: the writer refuses it, as the reader does."""
    from unimiss_monai.release.package import release_files

    bundle = tmp_path / "b"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "docs").mkdir()
    for rel in ("configs/metadata.json", "docs/README.md", "LICENSE"):
        (bundle / rel).write_text("{}")
    assert release_files(bundle) == ["LICENSE", "configs/metadata.json", "docs/README.md"]
    secret = tmp_path / "secret.txt"
    secret.write_text("not for release")
    (bundle / "configs" / "notes.txt").symlink_to(secret)
    with pytest.raises(ValueError, match=r"configs/notes.txt is a symbolic link \(to .*secret.txt\)"):
        release_files(bundle)
    (bundle / "configs" / "notes.txt").unlink()
    (bundle / "docs" / "more").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(ValueError, match=r"docs/more is a symbolic link"):
        release_files(bundle)
