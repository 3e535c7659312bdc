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
