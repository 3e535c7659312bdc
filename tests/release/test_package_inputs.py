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
