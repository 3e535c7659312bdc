"""The pretraining bundle never exports onto the published weights the fine-tuning bundles load by default."""

from __future__ import annotations

import pytest
from bundle_runner import run_workflow

from unimiss_monai.networks import check_export_target


def test_a_pretraining_run_never_exports_onto_the_published_weights(tmp_path):
    """A run whose output folder is the bundle folder (``--output_dir .`` from inside it) would write its export over
    ``models/model.pt``, the weights every fine-tuning bundle loads by default: refused before any training."""
    with pytest.raises(ValueError, match="is where the published pretrained weights live.*publish-pretrained"):
        check_export_target(tmp_path / "models" / "model.pt", tmp_path)
    check_export_target(tmp_path / "outputs" / "models" / "model.pt", tmp_path)  # the default output folder is fine
    with pytest.raises(Exception) as err:
        run_workflow("unimiss_pretraining", ["train.json", "smoke.yaml"], "train", run=False, bundle_root=str(tmp_path),
                     output_dir=str(tmp_path), dataset_dir=str(tmp_path))
    assert "is where the published pretrained weights live" in str(err.value) + str(err.value.__cause__)
    assert not (tmp_path / "models").exists()
