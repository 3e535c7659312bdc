"""Weighted k-NN accuracy of the teacher backbone on a small labelled probe set, tracked during pretraining."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from ignite.engine import Engine, Events
from monai.networks import eval_mode
from monai.transforms import Compose, EnsureTyped
from torch import nn

from unimiss_monai.data.output_ledger import check_own_files, replacing_own
from unimiss_monai.data.writers import save_json
from unimiss_monai.handlers.probe_items import load_probe_items, probe_exclusion
from unimiss_monai.metrics.knn import knn_accuracy, knn_predict
from unimiss_monai.networks.nets.student_teacher import split_backbone_output
from unimiss_monai.transforms.io import LoadCTImaged
from unimiss_monai.utils.args import as_bool

__all__ = ["KNNProbe", "knn_accuracy", "knn_predict", "load_probe_items", "probe_exclusion"]

logger = logging.getLogger(__name__)


def _is_probe_history(path: Path) -> bool:
    """Whether ``path`` holds a probe history as :class:`KNNProbe` writes it: a list of entries with an integer
    ``epoch`` and a ``knn_accuracy``."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, list) and bool(data) and all(
        isinstance(e, dict) and type(e.get("epoch")) is int and "knn_accuracy" in e for e in data)


class KNNProbe:
    """Every ``every_n_epochs`` epochs, embeds a labelled probe set with ``backbone`` (eval mode, no gradients; the
    embedding the DINO head consumes, i.e. the CLS feature, L2-normalised) and records the weighted k-NN accuracy
    (:func:`knn_predict`) in ``engine.state.metrics["knn_accuracy"]``, the log and ``history_path`` (JSON list of
    ``{"epoch", "iteration", "knn_accuracy", "pixel_baseline", ...}``, rewritten atomically by rank 0; one of the
    user's there stops the run before it trains, see :mod:`unimiss_monai.data.output_ledger`). With
    ``probe_at_start`` the untrained backbone is probed too, as epoch 0, before the first iteration of a new run.

    Which neighbours may vote: never the item itself, never an item of another ``group`` (e.g. real scans and
    phantoms), and per ``exclude`` (:func:`probe_exclusion`): ``"overlap"`` (default) drops crops of the same
    ``case`` whose voxel ``box`` shares a voxel with the query's, ``"case"`` every crop of the same case
    (leave-one-case-out), ``"self"`` nothing more. Overlapping crops would let a k-NN match a crop to a near-copy of
    itself. ``pixel_baseline`` is the same k-NN, with the same exclusions, on the raw voxels of the same transformed
    crops: an embedding worth having beats it. With several groups, each group's accuracy and baseline are also
    reported (``groups``).

    With ``feature_maps`` and a backbone that has ``forward_intermediates`` (timm's contract, e.g. ``MiT`` and
    ``MiTPlus``), the same k-NN also runs on each of the encoder's four stage maps, flattened without pooling
    (``stage1``, finest, to ``stage4``): the features a segmentation decoder reads, compared position by position like
    the raw voxels. The CLS embedding averages over positions, and after the instance norms of the stem and patch
    embeddings that average hardly depends on a small crop's content; the stage maps keep where things are. Their
    accuracies go to ``feature_maps`` in the history and to ``engine.state.metrics["knn_accuracy_stage<i>"]``;
    ``knn_accuracy`` stays the CLS one. A stage map larger than ``max_feature_bytes`` for the whole probe is left out,
    with a warning. A backbone with ``embed_with_intermediates`` (``MiT``, ``MiTPlus``) gives the embedding and the maps
    from one pass per batch; others are run twice.

    With no probe items (no datalist, or no ``probe`` section) the handler logs once and does nothing. A probe item that
    fails to load is skipped with a warning naming its file; fewer than two items left, or one class only, skips the
    probe for that run. Items without ``case``/``box``, and classes found in only one case of a group, are warned about.

    Args:
        backbone: maps ``(B, C, *spatial)`` to ``(B, D)`` (or an ``(embedding, reconstruction)`` pair), e.g. the
            teacher backbone ``network.teacher.backbone``.
        probe_data: datalist JSON path holding a ``probe_key`` section, or a list of
            ``{"image", "label"[, "case", "group", "box"]}`` items (``box``: ``[start, stop)`` voxel range in the case).
        transform: MONAI transform(s) mapping an item to a channel-first ``image`` the backbone accepts; default
            ``LoadCTImaged`` (a DICOM series in float pixels) with channel-first, as float32.
        every_n_epochs: probe period in epochs.
        k: neighbours. temperature: vote weighting, as in :func:`knn_predict`.
        history_path: JSON file for the accuracy history; ``None`` keeps it in memory only.
        batch_size: images per backbone pass.
        probe_key: datalist section with the probe items.
        exclude: ``"overlap"``, ``"case"`` or ``"self"``: which same-case neighbours are not counted.
        probe_at_start: also probe the untrained backbone (epoch 0).
        feature_maps: also probe the encoder's stage maps (when the backbone has ``forward_intermediates``).
        max_feature_bytes: largest float32 size of one stage map over the whole probe.
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
        exclude: str = "overlap",
        probe_at_start: bool = True,
        feature_maps: bool = True,
        max_feature_bytes: int = 512 * 2**20,
    ) -> None:
        self.backbone, self.every, self.k, self.temperature = backbone, max(1, int(every_n_epochs)), int(k), float(temperature)
        self.items = load_probe_items(probe_data, probe_key)
        self.source = str(probe_data) if isinstance(probe_data, (str, os.PathLike)) else "the given list"
        self.probe_key = probe_key
        if transform is None:
            transform = [LoadCTImaged("image", image_only=True, ensure_channel_first=True),
                         EnsureTyped("image", dtype=torch.float32, track_meta=False)]
        self.transform = transform if isinstance(transform, Compose) else Compose(list(transform) if isinstance(transform, Sequence) else [transform])
        self.history_path = Path(history_path) if history_path is not None else None
        self.batch_size = max(1, int(batch_size))
        self.history: list[dict] = []
        self._images: list[torch.Tensor] | None = None
        self._one_shape = False  # set by _load: all probe images share one shape (stage maps and pixels comparable)
        self._labels: torch.Tensor | None = None
        self.class_names: list = []
        self._disabled = False
        self.pixel_baseline: float | None = None
        self.exclude = exclude
        probe_exclusion([], exclude)  # a wrong mode fails at construction, not after the first epoch
        # as_bool: from the command line a value is a string, and bool("false") is True
        self.probe_at_start = as_bool(probe_at_start, "probe_at_start")
        self._exclude: torch.Tensor | None = None
        self._groups: list = []
        self.group_baselines: dict[str, float] = {}
        self.feature_maps = as_bool(feature_maps, "feature_maps") and callable(getattr(backbone, "forward_intermediates", None))
        self.max_feature_bytes = int(max_feature_bytes)
        self._said_too_large: set[str] = set()

    def attach(self, engine: Engine) -> None:
        if not self.items:
            logger.info("k-NN probe off: no %r items in %s; add a %r section [{'image': ..., 'label': ...}] to enable it", self.probe_key, self.source, self.probe_key)
            return
        if self.history_path is not None:  # a file of the user's there stops the run before it trains, not after
            engine.add_event_handler(Events.STARTED, self._check_history_file)
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.every), self)
        if self.probe_at_start:
            engine.add_event_handler(Events.STARTED, self._at_start)

    def _check_history_file(self, engine: Engine) -> None:
        path = self.history_path
        assert path is not None
        if getattr(engine.state, "rank", 0) != 0:  # the rank that writes it: another could record a stale signature
            return
        # a history in this handler's format, which versions before the record wrote without recording it, is ours
        check_own_files([path], path.parent, written_earlier=_is_probe_history(path))

    def _at_start(self, engine: Engine) -> None:
        # the untrained network's score (epoch 0): what the architecture gives before any learning
        if engine.state.iteration == 0:
            self(engine)

    def _load(self) -> None:
        """Load and transform the probe once (it is deterministic); labels of any hashable type map to 0..C-1."""
        images, raw_labels, kept = [], [], []
        for item in self.items:
            try:
                images.append(torch.as_tensor(self.transform(dict(item))["image"]).float())
                raw_labels.append(item["label"])
                kept.append(item)
            except Exception as e:  # noqa: BLE001 - one bad probe file must not stop the probe or the run
                msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
                logger.warning("k-NN probe: skipping %s: %s", item.get("image"), msg)
        self.class_names = sorted(set(raw_labels), key=str)
        index = {c: i for i, c in enumerate(self.class_names)}
        self._images, self._labels = images, torch.tensor([index[c] for c in raw_labels], dtype=torch.long)
        self._one_shape = all(img.shape == images[0].shape for img in images)
        if len(images) < 2 or len(self.class_names) < 2:
            logger.warning("k-NN probe off: %d usable items in %d classes; it needs at least 2 items and 2 classes", len(images), len(self.class_names))
            self._disabled = True
            return
        self._exclude = probe_exclusion(kept, self.exclude)
        self._groups = [item.get("group") for item in kept]
        # an item never votes for itself (knn_predict), so the diagonal counts as excluded too
        lonely = (self._exclude | torch.eye(len(kept), dtype=torch.bool)).all(dim=1)
        if bool(lonely.all()):
            # knn_accuracy would raise at every probe and stop the run: a probe that can score nothing is skipped
            logger.warning("k-NN probe off: none of the %d items has an allowed neighbour under exclude=%r (every other "
                           "item is of another group or excluded as the same case); give the items disjoint 'box'es, "
                           "add items from more cases, or set exclude='self'", len(kept), self.exclude)
            self._disabled = True
            return
        self._check_metadata(kept)
        if bool(lonely.any()):
            names = [kept[i]["image"] for i in range(len(kept)) if bool(lonely[i])]
            logger.warning("k-NN probe: %d item(s) have no allowed neighbour under exclude=%r and are not scored, e.g. %s", len(names), self.exclude, names[0])
        # what "learned something" means on this probe: the same k-NN on the raw voxels (same-shaped images only),
        # with the same excluded pairs and groups
        if self._one_shape:
            pixels = torch.stack(images).flatten(1)
            self.pixel_baseline = knn_accuracy(pixels, self._labels, self.k, self.temperature, self._exclude)
            self.group_baselines = self._per_group(knn_predict(pixels, self._labels, self.k, self.temperature, self._exclude))

    def _check_metadata(self, items: list[dict]) -> None:
        """Say when the probe cannot tell near-copies apart, or when a class could be told by its case alone."""
        if self.exclude != "self" and any(item.get("case") is None or (self.exclude == "overlap" and item.get("box") is None) for item in items):
            need = "'case'" + (" and 'box'" if self.exclude == "overlap" else "")
            logger.warning(
                "k-NN probe: items of %s lack %s, so crops sharing voxels may be counted as neighbours and inflate the "
                "accuracies; add them (a samples folder: rebuild it with `python -m unimiss_monai samples --overwrite`)",
                self.source, need)
        by_group: dict = {}
        for item in items:
            by_group.setdefault(item.get("group"), {}).setdefault(item["label"], set()).add(item.get("case"))
        for group, classes in by_group.items():
            cases = set().union(*classes.values()) - {None}
            single = sorted((str(c) for c, where in classes.items() if len(cases) > 1 and len(where) == 1), key=str)
            if single:
                logger.warning("k-NN probe: class(es) %s of group %r occur in one case only: a neighbour can match them by "
                               "their case rather than their content", single, group)

    def _per_group(self, predicted: torch.Tensor) -> dict[str, float]:
        """Accuracy of each group's scored items (only when the probe has more than one group)."""
        assert self._labels is not None
        names = sorted({str(g) for g in self._groups})
        if len(names) < 2:
            return {}
        out = {}
        for name in names:
            rows = torch.tensor([str(g) == name for g in self._groups]) & (predicted >= 0)
            if rows.any():
                out[name] = float((predicted[rows] == self._labels[rows]).double().mean())
        return out

    def _earlier_history(self, epoch: int) -> list[dict]:
        # a resumed run keeps the entries of the epochs before the one it resumes at
        try:
            old = json.loads(self.history_path.read_text())  # type: ignore[union-attr]
        except (OSError, ValueError):
            logger.warning("k-NN probe: %s is unreadable; starting a new history", self.history_path)
            return []
        return [e for e in old if isinstance(e, dict) and isinstance(e.get("epoch"), int) and e["epoch"] < epoch] if isinstance(old, list) else []

    def _device(self) -> torch.device:
        param = next(iter(self.backbone.parameters()), None)  # a parameter-free backbone runs on the CPU
        return param.device if param is not None else torch.device("cpu")

    def embed_feature_maps(self) -> dict[str, torch.Tensor]:
        """``{"stage1": (N, D1), ...}``: the encoder's four stage maps of the probe images, each flattened and
        L2-normalised; empty without ``feature_maps``, or when the images differ in shape (maps of different sizes
        cannot be compared position by position)."""
        assert self._images is not None
        if not self.feature_maps or not self._one_shape:
            return {}

        def maps_only(batch: torch.Tensor) -> tuple[None, Sequence[torch.Tensor]]:
            out = self.backbone.forward_intermediates(batch)  # type: ignore[operator]
            # (maps, cls) from MiT / MiT+, a list of maps from the slice encoder
            return None, out[0] if isinstance(out, tuple) else out

        return self._passes(maps_only)[1]

    def embed_with_feature_maps(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(embed(), embed_feature_maps())``, from one backbone pass per batch where the backbone has
        ``embed_with_intermediates`` (``MiT``, ``MiTPlus``) and the stage maps are probed; from two passes otherwise."""
        assert self._images is not None
        one_pass = (self.feature_maps and self._one_shape
                    and callable(getattr(self.backbone, "embed_with_intermediates", None)))
        if not one_pass:
            return self.embed(), self.embed_feature_maps()
        embeddings, maps = self._passes(self.backbone.embed_with_intermediates)  # type: ignore[arg-type]
        assert embeddings is not None
        return embeddings, maps

    def _passes(self, forward: Callable) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        """``forward(batch) -> (embedding (B, D) or None, features)`` over the probe images in batches of one shape
        each: the L2-normalised embeddings (None if there were none) and the last four feature maps, flattened and
        L2-normalised, per stage (a stage too large for the whole probe is left out, with a warning, once; the
        callers ask for maps only when ``_load`` found all images of one shape)."""
        assert self._images is not None
        device = self._device()
        embeddings: list[torch.Tensor] = []
        maps: dict[str, list[torch.Tensor] | None] = {}  # None: a stage too large to keep for the whole probe
        with eval_mode(self.backbone):
            for start, end in self._batches():
                emb, feats = forward(torch.stack(self._images[start:end]).to(device))
                if emb is not None:
                    embeddings.append(F.normalize(emb.float().flatten(1), dim=1).cpu())
                for i, f in enumerate(feats[-4:]):
                    name = f"stage{i + 1}"
                    if name not in maps:  # first batch: the whole probe's size of this stage, before keeping any
                        size = len(self._images) * f[0].numel() * 4
                        maps[name] = [] if size <= self.max_feature_bytes else None
                        if maps[name] is None and name not in self._said_too_large:
                            self._said_too_large.add(name)
                            logger.warning("k-NN probe: %s maps of the probe take %.1f MiB, above max_feature_bytes "
                                           "(%.1f MiB); not probed", name, size / 2**20, self.max_feature_bytes / 2**20)
                    kept = maps[name]
                    if kept is not None:
                        kept.append(F.normalize(f.float().flatten(1), dim=1).cpu())
        return (torch.cat(embeddings) if embeddings else None), {n: torch.cat(parts) for n, parts in maps.items() if parts is not None}

    def embed(self) -> torch.Tensor:
        """``(N, D)`` L2-normalised embeddings of the probe images (consecutive same-shaped images share a pass)."""
        embeddings, _ = self._passes(lambda batch: (split_backbone_output(self.backbone(batch))[0], ()))
        assert embeddings is not None
        return embeddings

    def _batches(self) -> Iterator[tuple[int, int]]:
        """``(start, end)`` of each pass: up to ``batch_size`` consecutive probe images of one shape."""
        assert self._images is not None
        start = 0
        while start < len(self._images):
            end = start + 1
            while (end < len(self._images) and end - start < self.batch_size
                   and self._images[end].shape == self._images[start].shape):
                end += 1
            yield start, end
            start = end

    def __call__(self, engine: Engine) -> None:
        if self._images is None:
            self._load()
        if self._disabled:
            return
        assert self._labels is not None
        if not self.history and self.history_path is not None and self.history_path.is_file():
            self.history = self._earlier_history(engine.state.epoch)
        embeddings, stage_maps = self.embed_with_feature_maps()
        predicted = knn_predict(embeddings, self._labels, self.k, self.temperature, self._exclude)
        scored = predicted >= 0
        accuracy = float((predicted[scored] == self._labels[scored]).double().mean())
        engine.state.metrics["knn_accuracy"] = accuracy
        entry = {
            "epoch": engine.state.epoch, "iteration": engine.state.iteration, "knn_accuracy": accuracy,
            "k": min(self.k, len(self._labels) - 1), "temperature": self.temperature, "exclude": self.exclude,
            "num_items": int(scored.sum()), "num_classes": len(self.class_names), "pixel_baseline": self.pixel_baseline,
        }
        groups = self._per_group(predicted)
        if groups:
            entry["groups"] = {g: {"knn_accuracy": a, "pixel_baseline": self.group_baselines.get(g)} for g, a in groups.items()}
        maps = {name: knn_accuracy(emb, self._labels, self.k, self.temperature, self._exclude)
                for name, emb in stage_maps.items()}
        if maps:
            entry["feature_maps"] = maps
            for name, value in maps.items():
                engine.state.metrics[f"knn_accuracy_{name}"] = value
        self.history = [e for e in self.history if e.get("epoch") != entry["epoch"]] + [entry]
        baseline = "n/a" if self.pixel_baseline is None else f"{self.pixel_baseline:.4f}"
        per_group = "".join(f"; {g} {a:.4f} vs {self.group_baselines.get(g, float('nan')):.4f}" for g, a in groups.items())
        on_maps = ("; stage maps " + ", ".join(f"{n} {a:.4f}" for n, a in maps.items())) if maps else ""
        logger.info("epoch %d: k-NN accuracy of the probed backbone %.4f%s (raw-voxel k-NN %s%s; %d probe items, %d classes, k=%d, exclude=%s)",
                    entry["epoch"], accuracy, on_maps, baseline, per_group, entry["num_items"], entry["num_classes"], entry["k"], self.exclude)
        if self.history_path is not None and getattr(engine.state, "rank", 0) == 0:
            with replacing_own(self.history_path, self.history_path.parent):
                save_json(self.history, self.history_path)
