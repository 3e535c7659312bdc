"""verify-bundles: one line per bundle and check; a broken bundle fails the check that concerns it."""

from __future__ import annotations

import json
import shutil

import pytest

from unimiss_monai.release.verify import verify_bundle, verify_bundles


def _by_check(results):
    return {r["check"]: r for r in results}


def test_drr_bundle_passes_and_skips_its_network_checks(repo_root, tmp_path, capsys):
    lines = []
    results = _by_check(verify_bundle(repo_root / "bundles" / "unimiss_drr_generation", tmp_path, tmp_path, lines.append))
    assert {k: v["status"] for k, v in results.items()} == {
        "files": "ok", "metadata": "ok", "changelog": "ok", "net_in_out": "skipped", "export": "skipped",
        "properties(train)": "skipped", "properties(inference)": "ok"}
    assert results["net_in_out"]["detail"] == "no network" and len(lines) == 7


def test_broken_bundle_fails_the_right_checks(repo_root, tmp_path):
    bundle = tmp_path / "unimiss_drr_generation"
    shutil.copytree(repo_root / "bundles" / "unimiss_drr_generation", bundle)
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    meta["version"] = "9.9.9"  # not in the changelog
    del meta["network_data_format"]["inputs"]["image"]["num_channels"]  # required by the schema
    (bundle / "configs" / "metadata.json").write_text(json.dumps(meta))
    (bundle / "LICENSE").unlink()
    results = _by_check(verify_bundle(bundle, tmp_path / "work", tmp_path, lambda line: None))
    assert results["files"]["status"] == "FAILED" and "LICENSE" in results["files"]["detail"]
    assert results["metadata"]["status"] == "FAILED" and "num_channels" in results["metadata"]["detail"]
    assert results["changelog"]["status"] == "FAILED" and "9.9.9 is not in its changelog" in results["changelog"]["detail"]
    with pytest.raises(ValueError, match="3 check\\(s\\) failed: unimiss_drr_generation files"):
        verify_bundles(str(bundle), dataset_dir=str(tmp_path))


@pytest.mark.slow
def test_network_bundle_passes_every_check(repo_root, tmp_path):
    from unimiss_monai.data.samples import samples

    data = samples(str(tmp_path / "samples"), synthetic=True, only="cxr_classification")
    results = _by_check(verify_bundle(repo_root / "bundles" / "unimiss_cxr_classification", tmp_path, data,
                                      lambda line: None))
    assert {r["status"] for r in results.values()} == {"ok"}, results
    assert "max |diff|" in results["export"]["detail"] and "-> 2 channels" in results["net_in_out"]["detail"]
