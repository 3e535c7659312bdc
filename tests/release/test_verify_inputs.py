"""verify-bundles: no bundle to verify is an error with one line, not a pass or a traceback."""

from __future__ import annotations

import pytest

import unimiss_monai.release.verify as verify


@pytest.mark.parametrize("kind", ["missing", "empty"])
def test_no_bundles_to_verify(tmp_path, monkeypatch, kind):
    """An installed package has no bundles/ beside it; an empty folder holds nothing to verify either."""
    folder = tmp_path / "bundles"
    if kind == "empty":
        folder.mkdir()
    monkeypatch.setattr(verify, "DEFAULT_BUNDLES", folder)
    monkeypatch.setattr(verify, "_sample_set", lambda root: pytest.fail("nothing to verify, yet the samples were built"))
    with pytest.raises(ValueError, match=rf"^verify-bundles: no bundle folders in {folder}; pass the bundle folders to "
                                         r"check \(verify-bundles bundles/<name> \.\.\.\)$"):
        verify.verify_bundles()


def test_a_dataset_dir_that_is_no_folder_is_refused_before_any_check(tmp_path, repo_root, monkeypatch):
    monkeypatch.setattr(verify, "verify_bundle", lambda *a, **k: pytest.fail("checked without the data asked for"))
    (tmp_path / "afile").write_text("x")
    for data in (tmp_path / "absent", tmp_path / "afile"):
        with pytest.raises(ValueError, match=rf"^verify-bundles: --dataset_dir {data} is no folder; pass a"):
            verify.verify_bundles(str(repo_root / "bundles" / "unimiss_drr_generation"), dataset_dir=str(data))
