"""The multi-process overlays replace ``initialize`` and ``finalize`` as whole lists (``monai.bundle`` merges configs
by id), so an overlay that forgot a step of the base config would drop it without a word: here every step of the base
config is kept, in order, around the process group's own steps, and the pretraining overlay still refuses to export
onto the published weights."""

from __future__ import annotations

import json

import pytest
from bundle_runner import BUNDLES, run_workflow

JOIN = "$unimiss_monai.utils.dist.init_distributed()"
LEAVE = "$unimiss_monai.utils.dist.destroy_distributed()"
OVERLAYS = sorted(BUNDLES.glob("*/configs/multi_gpu_*.json"))


def _steps(path, key: str) -> list[str]:
    return json.loads(path.read_text()).get(key, [])


def test_every_bundle_with_several_processes_is_covered():
    assert {p.parent.parent.name for p in OVERLAYS} == {p.name for p in BUNDLES.iterdir() if (p / "configs").is_dir()}


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_overlay_keeps_every_step_of_its_base_config(overlay):
    base = overlay.with_name(overlay.name.replace("multi_gpu_", ""))
    for key, own in (("initialize", JOIN), ("finalize", LEAVE)):
        steps = _steps(overlay, key)
        assert own in steps, (overlay, key)
        assert [s for s in steps if s != own] == _steps(base, key), (overlay, key)
    init = _steps(overlay, "initialize")
    # the argument checks come before the process group is joined (a refused run starts no rendezvous), and the
    # group is left before any step that may fail (every rank must reach its barrier)
    assert init[0].startswith("$unimiss_monai.utils.check_run_arguments(")
    assert _steps(overlay, "finalize")[0] == LEAVE


def test_the_pretraining_overlay_refuses_to_export_onto_the_published_weights(tmp_path, monkeypatch):
    """``--output_dir`` the bundle folder under ``torchrun``: refused before the process group is joined."""
    monkeypatch.setenv("WORLD_SIZE", "1")
    with pytest.raises(Exception) as err:
        run_workflow("unimiss_pretraining", ["train.json", "smoke.yaml", "multi_gpu_train.json"], "train", run=False,
                     bundle_root=str(tmp_path), output_dir=str(tmp_path), dataset_dir=str(tmp_path))
    assert "is where the published pretrained weights live" in str(err.value) + str(err.value.__cause__)
    assert not (tmp_path / "models").exists()
