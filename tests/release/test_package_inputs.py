"""package-bundle: wrong inputs stop it with one line naming the file and the fix, before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from unimiss_monai.release.package import package_bundle

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "unimiss_pretraining"


@pytest.mark.parametrize("kind", ["missing", "folder"])
def test_weights_that_are_no_file(tmp_path, kind):
    weights = tmp_path / "outputs" / "models"
    if kind == "folder":
        weights.mkdir(parents=True)  # e.g. --weights <output_dir>/models instead of .../models/model.pt
    with pytest.raises(ValueError, match=rf"weights {weights} do not exist; pass the models/model.pt of a finished run"):
        package_bundle(str(BUNDLE), weights=str(weights), out=str(tmp_path / "dist"), training="x")
    assert not (tmp_path / "dist").exists()


def test_a_refused_file_leaves_the_release_folder_as_it_was(tiny_export, tmp_path):
    """Every file a release writes is checked before the first is written: a weights file of another release under
    the same name stops the command with the zip and the index still absent, not half a release."""
    import json

    version = json.loads((BUNDLE / "configs" / "metadata.json").read_text())["version"]
    out = tmp_path / "dist"
    out.mkdir()
    other = out / f"unimiss_pretraining_v{version}_model.pt"
    other.write_bytes(b"the weights of an earlier release")
    with pytest.raises(ValueError, match=rf"{other} exists with other content"):
        package_bundle(str(BUNDLE), weights=str(tiny_export), out=str(out), training="x")
    assert sorted(p.name for p in out.iterdir()) == [other.name]
    assert other.read_bytes() == b"the weights of an earlier release"
