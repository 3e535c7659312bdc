"""Weighted k-NN accuracy of the teacher backbone on a small labelled probe set, tracked during pretraining."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from ignite.engine import Engine, Events
from monai.transforms import Compose, EnsureTyped, LoadImaged
from torch import nn

from unimiss_monai.data.writers import save_json
from unimiss_monai.engines.student_teacher import split_backbone_output

__all__ = ["KNNProbe", "knn_accuracy", "load_probe_items"]

logger = logging.getLogger(__name__)


def knn_accuracy(embeddings: torch.Tensor, labels: torch.Tensor, k: int = 20, temperature: float = 0.07) -> float:
    """Leave-one-out weighted k-NN accuracy (DINO's k-NN protocol, Wu et al. 2018) on L2-normalised embeddings.

    Each sample is classified by its ``k`` most cosine-similar other samples; a neighbour with similarity ``s`` votes
    for its label with weight ``exp(s / temperature)``, and the label with the largest total wins (ties: the smaller
    label index).

    Args:
        embeddings: ``(N, D)`` embeddings (normalised here), ``N >= 2``.
        labels: ``(N,)`` integer labels in ``[0, C)``.
        k: neighbours per sample; capped at ``N - 1``.
        temperature: softness of the similarity weighting (small: the nearest neighbour dominates).

    Returns:
        the fraction of samples whose predicted label equals their own.
    """
    if embeddings.ndim != 2 or labels.shape != embeddings.shape[:1]:
        raise ValueError(f"knn_accuracy needs (N, D) embeddings and (N,) labels, got {tuple(embeddings.shape)} and {tuple(labels.shape)}")
    n = embeddings.shape[0]
    if n < 2:
        raise ValueError(f"knn_accuracy needs at least 2 samples for leave-one-out, got {n}; add probe items")
    feats = F.normalize(embeddings.double(), dim=1)
    sim = feats @ feats.T
    sim.fill_diagonal_(float("-inf"))  # leave-one-out: a sample is never its own neighbour
    top_sim, top_idx = sim.topk(min(int(k), n - 1), dim=1)
    labels = labels.long()
    votes = torch.zeros(n, int(labels.max()) + 1, dtype=torch.float64)
    votes.scatter_add_(1, labels[top_idx], (top_sim / temperature).exp())
    return float((votes.argmax(dim=1) == labels).double().mean())


def load_probe_items(probe_data: str | os.PathLike | Sequence[dict] | None, key: str = "probe") -> list[dict]:
    """Probe items ``[{"image": path, "label": int | str}]``, from a list or from the ``key`` section of a datalist
    JSON (relative paths resolved against its folder). A missing file or section gives an empty list."""
    if probe_data is None:
        return []
    if isinstance(probe_data, (str, os.PathLike)):
        path = Path(probe_data)
        if not path.is_file():
            return []
        raw = json.loads(path.read_text()).get(key) or []
        items = []
        for i, entry in enumerate(raw):
            if not isinstance(entry, dict) or "image" not in entry or "label" not in entry:
                raise ValueError(f"{path}: {key}[{i}] must be {{'image': path, 'label': int or str}}, got {entry!r}")
            items.append({**entry, "image": str((path.parent / entry["image"]).resolve())})
        return items
    return [dict(item) for item in probe_data]


class KNNProbe:
    """Every ``every_n_epochs`` epochs, embeds a labelled probe set with ``backbone`` (eval mode, no gradients; the
    embedding the DINO head consumes, L2-normalised) and records the leave-one-out weighted k-NN accuracy
    (:func:`knn_accuracy`) in ``engine.state.metrics["knn_accuracy"]``, the log and ``history_path`` (JSON list of
    ``{"epoch", "iteration", "knn_accuracy", ...}``, rewritten atomically by rank 0).

    With no probe items (no datalist, or no ``probe`` section) the handler logs once and does nothing. A probe item that
    fails to load is skipped with a warning naming its file; fewer than two items left, or one class only, skips the
    probe for that run.

    Args:
        backbone: maps ``(B, C, *spatial)`` to ``(B, D)`` (or an ``(embedding, reconstruction)`` pair), e.g. the
            teacher backbone ``network.teacher.backbone``.
        probe_data: datalist JSON path holding a ``probe_key`` section, or a list of ``{"image", "label"}`` items.
        transform: MONAI transform(s) mapping an item to a channel-first ``image`` the backbone accepts; default
            ``LoadImaged`` with channel-first, as float32.
        every_n_epochs: probe period in epochs.
        k: neighbours. temperature: vote weighting, as in :func:`knn_accuracy`.
        history_path: JSON file for the accuracy history; ``None`` keeps it in memory only.
        batch_size: images per backbone pass.
        probe_key: datalist section with the probe items.
    """

    def __init__(
        self,
        backbone: nn.Module,
        probe_data: str | os.PathLike | Sequence[dict] | None,
        transform: Callable | Sequence[Callable] | None = None,
        every_n_epochs: int = 1,
        k: int = 20,
        temperature: float = 0.07,
        history_path: str | os.PathLike | None = None,
        batch_size: int = 8,
        probe_key: str = "probe",
    ) -> None:
        self.backbone, self.every, self.k, self.temperature = backbone, max(1, int(every_n_epochs)), int(k), float(temperature)
        self.items = load_probe_items(probe_data, probe_key)
        self.source = str(probe_data) if isinstance(probe_data, (str, os.PathLike)) else "the given list"
        self.probe_key = probe_key
        if transform is None:
            transform = [LoadImaged("image", image_only=True, ensure_channel_first=True), EnsureTyped("image", dtype=torch.float32, track_meta=False)]
        self.transform = transform if isinstance(transform, Compose) else Compose(list(transform) if isinstance(transform, Sequence) else [transform])
        self.history_path = Path(history_path) if history_path is not None else None
        self.batch_size = max(1, int(batch_size))
        self.history: list[dict] = []
        self._images: list[torch.Tensor] | None = None
        self._labels: torch.Tensor | None = None
        self.class_names: list = []
        self._disabled = False
        self.pixel_baseline: float | None = None

    def attach(self, engine: Engine) -> None:
        if not self.items:
            logger.info("k-NN probe off: no %r items in %s; add a %r section [{'image': ..., 'label': ...}] to enable it", self.probe_key, self.source, self.probe_key)
            return
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.every), self)

    def _load(self) -> None:
        """Load and transform the probe once (it is deterministic); labels of any hashable type map to 0..C-1."""
        images, raw_labels = [], []
        for item in self.items:
            try:
                images.append(torch.as_tensor(self.transform(dict(item))["image"]).float())
                raw_labels.append(item["label"])
            except Exception as e:  # noqa: BLE001 - one bad probe file must not stop the probe or the run
                msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
                logger.warning("k-NN probe: skipping %s: %s", item.get("image"), msg)
        self.class_names = sorted(set(raw_labels), key=str)
        index = {c: i for i, c in enumerate(self.class_names)}
        self._images, self._labels = images, torch.tensor([index[c] for c in raw_labels], dtype=torch.long)
        if len(images) < 2 or len(self.class_names) < 2:
            logger.warning("k-NN probe off: %d usable items in %d classes; it needs at least 2 items and 2 classes", len(images), len(self.class_names))
            self._disabled = True
            return
        # what "learned something" means on this probe: the same k-NN on the raw voxels (same-shaped images only)
        if all(img.shape == images[0].shape for img in images):
            self.pixel_baseline = knn_accuracy(torch.stack(images).flatten(1), self._labels, self.k, self.temperature)

    def _earlier_history(self, epoch: int) -> list[dict]:
        # a resumed run keeps the entries of the epochs before the one it resumes at
        try:
            old = json.loads(self.history_path.read_text())  # type: ignore[union-attr]
        except (OSError, ValueError):
            logger.warning("k-NN probe: %s is unreadable; starting a new history", self.history_path)
            return []
        return [e for e in old if isinstance(e, dict) and isinstance(e.get("epoch"), int) and e["epoch"] < epoch] if isinstance(old, list) else []

    @torch.no_grad()
    def embed(self) -> torch.Tensor:
        """``(N, D)`` L2-normalised embeddings of the probe images (consecutive same-shaped images share a pass)."""
        assert self._images is not None
        device = next(self.backbone.parameters()).device
        was_training = self.backbone.training
        self.backbone.eval()
        out: list[torch.Tensor] = []
        try:
            start = 0
            while start < len(self._images):
                end = start + 1
                while end < len(self._images) and end - start < self.batch_size and self._images[end].shape == self._images[start].shape:
                    end += 1
                emb, _ = split_backbone_output(self.backbone(torch.stack(self._images[start:end]).to(device)))
                out.append(F.normalize(emb.float().flatten(1), dim=1).cpu())
                start = end
        finally:
            self.backbone.train(was_training)
        return torch.cat(out)

    def __call__(self, engine: Engine) -> None:
        if self._images is None:
            self._load()
        if self._disabled:
            return
        assert self._labels is not None
        if not self.history and self.history_path is not None and self.history_path.is_file():
            self.history = self._earlier_history(engine.state.epoch)
        accuracy = knn_accuracy(self.embed(), self._labels, self.k, self.temperature)
        engine.state.metrics["knn_accuracy"] = accuracy
        entry = {
            "epoch": engine.state.epoch, "iteration": engine.state.iteration, "knn_accuracy": accuracy,
            "k": min(self.k, len(self._labels) - 1), "temperature": self.temperature,
            "num_items": len(self._labels), "num_classes": len(self.class_names), "pixel_baseline": self.pixel_baseline,
        }
        self.history.append(entry)
        baseline = "n/a" if self.pixel_baseline is None else f"{self.pixel_baseline:.4f}"
        logger.info("epoch %d: teacher k-NN accuracy %.4f (raw-voxel k-NN %s; %d probe items, %d classes, k=%d)", entry["epoch"], accuracy, baseline, entry["num_items"], entry["num_classes"], entry["k"])
        if self.history_path is not None and getattr(engine.state, "rank", 0) == 0:
            save_json(self.history, self.history_path)
