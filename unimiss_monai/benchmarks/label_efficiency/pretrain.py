"""The pretrained weights of an arm, made once per study: the ``unimiss_pretraining`` bundle at its smoke scale, with
the arm's recipe overlay and the encoder widths and 2D size of the fine-tuning network, for a given number of epochs.

The export path is passed explicitly, so the result does not depend on where the bundle exports by default. An
interrupted pretraining resumes from ``<folder>/outputs/checkpoints``; a finished one (``pretraining.json`` beside
``model.pt``, with the same settings) is reused.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from unimiss_monai.benchmarks.label_efficiency.design import ARMS
from unimiss_monai.data.output_ledger import NotOursError
from unimiss_monai.data.writers import save_json
from unimiss_monai.utils.errors import root_cause
from unimiss_monai.utils.hashing import sha256_file

__all__ = ["knn_summary", "pretrain_arm"]

logger = logging.getLogger(__name__)


def knn_summary(history_path: Path) -> dict | None:
    """First and last k-NN probe accuracy of a pretraining run (CLS, and the stage maps where probed) and the probe's
    pixel baseline (``knn_probe.json``), or ``None`` when the run wrote no probe history."""
    try:
        history = json.loads(Path(history_path).read_text())
    except (OSError, ValueError):
        return None
    if not history:
        return None
    first, last = history[0], history[-1]
    baseline = last.get("pixel_baseline")
    out = {"knn_first": first.get("knn_accuracy"), "knn_last": last.get("knn_accuracy"),
           "pixel_baseline": baseline, "epochs": last.get("epoch"),
           "beats_pixel_baseline": None if baseline is None else bool(last.get("knn_accuracy", 0) > baseline)}
    if "feature_maps" in last:  # the encoder's stage maps (KNNProbe feature_maps), first and last epoch
        out["feature_maps_first"] = first.get("feature_maps")
        out["feature_maps_last"] = last["feature_maps"]
        out["feature_maps_beating_pixel_baseline"] = None if baseline is None else sorted(
            name for name, value in last["feature_maps"].items() if value > baseline)
    return out


def pretrain_arm(arm: str, out_dir: str | os.PathLike, epochs: int, network: dict, dataset_dir: str,
                 bundles_dir: str | os.PathLike, **overrides) -> tuple[str, dict]:
    """Pretrain the encoder of ``arm`` (its recipe overlays, :data:`ARMS`) and return ``(model.pt path, record)``.

    Args:
        arm: a name in :data:`ARMS` with a pretraining recipe.
        out_dir: its folder (``model.pt``, ``pretraining.json``, ``outputs/``).
        epochs: pretraining epochs.
        network: the fine-tuning network's encoder ids in the pretraining bundle's names (``backbone#preset``,
            ``image_size_2d``), so the export fits the fine-tuned network.
        dataset_dir: a ``samples`` output (its ``pretraining`` set).
        bundles_dir: the folder holding ``unimiss_pretraining``.
        overrides: further ids of the pretraining run (e.g. ``train#lr``).
    """
    from monai.bundle import ConfigWorkflow

    spec = ARMS[arm]
    if spec.pretraining_configs is None:
        raise ValueError(f"label-efficiency: arm {arm!r} has no pretraining")
    out = Path(out_dir).resolve()
    model_path, record_path = out / "model.pt", out / "pretraining.json"
    configs = Path(bundles_dir) / "unimiss_pretraining" / "configs"
    if not (configs / "train.json").is_file():
        raise FileNotFoundError(f"label-efficiency: {configs / 'train.json'} not found; pass --bundles_dir")
    files = [str(configs / n) for n in ("train.json", *spec.pretraining_configs, "smoke.yaml")]
    settings = {**network, **spec.pretraining_overrides, "train#epochs": int(epochs), "train#save_every": 0,
                "train#num_workers": 0, **overrides}
    wanted = {"arm": arm, "configs": [Path(f).name for f in files], "epochs": int(epochs),
              "dataset_dir": str(dataset_dir), "overrides": settings}
    old = json.loads(record_path.read_text()) if record_path.is_file() else None
    if old is not None and any(old.get(k) != v for k, v in wanted.items()):
        raise FileExistsError(f"label-efficiency: {out} holds a pretraining of other settings ({record_path}); "
                              "remove that folder or choose another --out / --pretraining_dir")
    if old is not None and model_path.is_file():
        return str(model_path), old
    logger.info("label-efficiency: pretraining arm %s for %d epochs into %s", arm, int(epochs), out)
    workflow = ConfigWorkflow(config_file=files, workflow_type="train", bundle_root=str(out),
                              output_dir=str(out / "outputs"), model_path=str(model_path), dataset_dir=dataset_dir,
                              **settings)
    try:
        workflow.initialize()
        workflow.run()
        workflow.finalize()
    except Exception as err:  # MONAI wraps what a config expression raised in "Failed to evaluate"
        refusal = root_cause(err)
        if not isinstance(refusal, NotOursError):
            raise
        # the study chose that folder, so the fix is one of the study's options
        raise refusal.naming("--out or --pretraining_dir") from None
    if not model_path.is_file():
        raise RuntimeError(f"label-efficiency: pretraining of arm {arm} finished but wrote no {model_path}")
    record = {**wanted, "sha256": sha256_file(model_path), "knn_probe": knn_summary(out / "outputs" / "knn_probe.json")}
    save_json(record, record_path)
    return str(model_path), record
