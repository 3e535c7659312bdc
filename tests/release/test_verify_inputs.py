"""verify-bundles: no bundle to verify is an error with one line, not a pass or a traceback."""

from __future__ import annotations

import pytest

import unimiss_monai.release.verify as verify
from unimiss_monai.utils import repository


@pytest.mark.parametrize("kind", ["missing", "empty"])
def test_no_bundles_to_verify(tmp_path, monkeypatch, kind):
    """An installed package has no bundles/ beside it; an empty folder holds nothing to verify either."""
    folder = tmp_path / "bundles"
    if kind == "empty":
        folder.mkdir()
    monkeypatch.setattr(repository, "REPOSITORY_BUNDLES", folder)
    monkeypatch.setattr(verify, "_sample_set", lambda root: pytest.fail("nothing to verify, yet the samples were built"))
    said = (r"this unimiss_monai has no bundles/ beside it \(installed from a wheel, not run from a clone of the "
            r"repository\)" if kind == "missing" else f"no bundle folders in {folder}")
    with pytest.raises(ValueError, match=rf"^verify-bundles: {said}; pass the bundle folders to check \(verify-bundles "
                                         r"DIR \.\.\.\)"):
        verify.verify_bundles()


def test_a_command_defaulting_to_a_bundle_of_the_clone_names_its_option_where_there_is_none(tmp_path, monkeypatch):
    assert repository.repository_bundle("unimiss_pretraining", "x", "--y") == repository.REPOSITORY_BUNDLES / (
        "unimiss_pretraining")  # the tests run from a clone
    monkeypatch.setattr(repository, "REPOSITORY_BUNDLES", tmp_path / "site-packages" / "bundles")
    with pytest.raises(ValueError, match=r"^bench-infer: this unimiss_monai has no bundles/ beside it .*; pass "
                                         r"--bundle, with a bundle folder of a clone or of `python -m unimiss_monai "
                                         r"download`$"):
        repository.repository_bundle("unimiss_ct_segmentation", "bench-infer", "--bundle")
    (tmp_path / "site-packages" / "bundles").mkdir(parents=True)  # a clone without that bundle is not a wheel
    with pytest.raises(ValueError, match=r"^bench-infer: no bundle folder unimiss_ct_segmentation in .*site-packages/"
                                         r"bundles; pass --bundle$"):
        repository.repository_bundle("unimiss_ct_segmentation", "bench-infer", "--bundle")


def test_a_dataset_dir_that_is_no_folder_is_refused_before_any_check(tmp_path, repo_root, monkeypatch):
    monkeypatch.setattr(verify, "verify_bundle", lambda *a, **k: pytest.fail("checked without the data asked for"))
    (tmp_path / "afile").write_text("x")
    for data in (tmp_path / "absent", tmp_path / "afile"):
        with pytest.raises(ValueError, match=rf"^verify-bundles: --dataset_dir {data} is no folder; pass a"):
            verify.verify_bundles(str(repo_root / "bundles" / "unimiss_drr_generation"), dataset_dir=str(data))
