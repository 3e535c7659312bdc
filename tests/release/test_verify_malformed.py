"""verify-bundles on a damaged bundle: each failing check names the file and what is wrong with it in words, and a
bundle path that does not exist is said to not exist."""

from __future__ import annotations

import shutil

import pytest

from unimiss_monai.release.verify import verify_bundle, verify_bundles


def _failed(repo_root, tmp_path, file: str, content: str) -> dict[str, str]:
    """``{check: detail}`` of the checks that fail on the DRR bundle with ``configs/<file>`` holding ``content``."""
    bundle = tmp_path / "unimiss_drr_generation"
    shutil.copytree(repo_root / "bundles" / "unimiss_drr_generation", bundle)
    (bundle / "configs" / file).write_text(content)
    results = verify_bundle(bundle, tmp_path / "work", tmp_path, lambda line: None)
    return {r["check"]: r["detail"] for r in results if r["status"] == "FAILED"}


def test_metadata_that_is_a_list_is_named_in_words(repo_root, tmp_path):
    failed = _failed(repo_root, tmp_path, "metadata.json", "[]\n")
    assert set(failed) == {"metadata", "changelog", "properties(inference)"}, failed
    for detail in failed.values():
        assert "configs/metadata.json: holds a JSON array, not an object" in detail and "AttributeError" not in detail


def test_truncated_metadata_is_named_as_not_valid_json(repo_root, tmp_path):
    failed = _failed(repo_root, tmp_path, "metadata.json", '{"version": "0.1')
    assert "metadata" in failed and "properties(inference)" in failed, failed
    for detail in failed.values():
        assert detail.startswith("ValueError: ") and "configs/metadata.json: not valid JSON (" in detail, detail


def test_a_config_that_is_no_object_is_named(repo_root, tmp_path):
    failed = _failed(repo_root, tmp_path, "inference.json", '"x"')
    # every check that reads it, instead of "skipped: no network" for a config it could not read
    assert set(failed) == {"net_in_out", "export", "properties(inference)"}, failed
    for detail in failed.values():
        assert "configs/inference.json: holds a JSON string, not an object" in detail


def test_a_bundle_path_that_does_not_exist_or_is_a_file_says_so(tmp_path):
    with pytest.raises(ValueError, match=r"nope does not exist; pass a bundle folder"):
        verify_bundles(str(tmp_path / "nope"), dataset_dir=str(tmp_path))
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match=r"afile is a file, not a bundle folder"):
        verify_bundles(str(tmp_path / "afile"), dataset_dir=str(tmp_path))
