"""Classification inference output: per-class probabilities of every case, and optionally a saliency PNG per case."""

from __future__ import annotations

import csv
import io
import logging
import math
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import torch

from unimiss_monai.data.case_names import CaseNames, OutputNames
from unimiss_monai.data.output_ledger import check_own_file, replacing_own
from unimiss_monai.data.tolerant import CASE_KEY, FAILED_KEY, batch_items, mark_failed
from unimiss_monai.data.writers import save_bytes, save_json
from unimiss_monai.handlers.forward_failure_guard import guard_forward
from unimiss_monai.utils.args import as_bool
from unimiss_monai.utils.errors import failure_reason

logger = logging.getLogger(__name__)

__all__ = ["SALIENCY_METHODS", "ClassProbabilityWriter"]

SALIENCY_METHODS = ("gradcam", "rollout")


class ClassProbabilityWriter:
    """Ignite handler: per-class probabilities of every case to ``predictions.csv`` and ``predictions.json``.

    Args:
        output_dir: output folder.
        class_names: the C class names, in channel order.
        multi_label: findings are independent (each reported when ``>= threshold``); otherwise the top class is.
        threshold: decision threshold of multi-label findings. Defaults to 0.5.
        saliency: also write ``saliency/<name>.png``, ``<name>`` the input's name in ``output_names``. Defaults to
            False.
        network: the classifier, needed for ``saliency``.
        saliency_method: ``"gradcam"`` (Grad-CAM of the top class, :func:`~unimiss_monai.visualize.grad_cam`)
            or ``"rollout"`` (class-agnostic attention rollout of the last encoder stage,
            :func:`~unimiss_monai.visualize.attention_rollout`). Defaults to ``"gradcam"``.
        output_names: the names of the run's inputs (:class:`~unimiss_monai.data.case_names.OutputNames` of the
            evaluator's data list, as the bundles' ``output_names``), so that inputs of one name get a map each
            (``x_png``, ``x_nii_gz``). Defaults to every input's file name without its format, where the second
            input of a name fails its map. An input the run lists again (two entries of one image) has its map
            numbered (``x_2``).

    Rows: ``case, status, <prob per class>..., prediction``; a failed case has ``status`` = ``failed: <reason>`` and no
    probabilities, also when only its saliency map failed: a case's outputs are all written or none (its map was
    asked for), so that the failed cases are exactly those to run again. A case whose output is
    not finite, or (with ``saliency``) whose saliency file name another case of this run already took or whose map
    could not be made, is marked failed in the batch, so that
    :class:`~unimiss_monai.handlers.InferenceSummary` (listed after this handler) counts it. Attaching also installs
    :func:`~unimiss_monai.handlers.guard_forward`.
    """

    def __init__(
        self, output_dir: str | os.PathLike, class_names: Sequence[str], multi_label: bool = False,
        threshold: float = 0.5, saliency: bool = False, network: torch.nn.Module | None = None,
        saliency_method: str = "gradcam", output_names: OutputNames | None = None,
    ) -> None:
        # as_bool: from the command line a value is a string, and bool("false") is True
        multi_label, saliency = as_bool(multi_label, "multi_label"), as_bool(saliency, "saliency")
        if saliency and network is None:
            raise ValueError("ClassProbabilityWriter: saliency=True needs network=")
        if saliency_method not in SALIENCY_METHODS:
            raise ValueError(f"ClassProbabilityWriter: saliency_method must be one of {SALIENCY_METHODS}, got {saliency_method!r}")
        self.output_dir, self.class_names = Path(output_dir), list(class_names)
        self.multi_label, self.threshold = multi_label, float(threshold)
        self.saliency, self.network, self.saliency_method = saliency, network, saliency_method
        self.rows: list[dict] = []
        self._saliency_names = CaseNames()  # never two cases of one run into one saliency map
        self._listed: Counter[str] = Counter()  # how often each input came so far: a repeat's map is numbered
        self.output_names = output_names if output_names is not None else OutputNames([])

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, guard_forward)
        engine.add_event_handler(Events.STARTED,
                                 lambda _: (self.rows.clear(), self._saliency_names.clear(), self._listed.clear()))
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._write)
        engine.add_event_handler(Events.STARTED, self._check_files)

    def _check_files(self, engine=None) -> None:
        """Refuse, before any case and again before writing, a predictions file of the user's in ``output_dir``."""
        for name in ("predictions.csv", "predictions.json"):
            check_own_file(self.output_dir / name, self.output_dir)

    def _decide(self, probs: list[float]) -> str:
        if self.multi_label:
            return ";".join(n for n, p in zip(self.class_names, probs) if p >= self.threshold)
        return self.class_names[max(range(len(probs)), key=probs.__getitem__)]

    def _collect(self, engine) -> None:
        output = engine.state.output
        outputs = output if isinstance(output, list) else [output]
        for item, out in zip(batch_items(engine.state.batch), outputs):
            case = str(item.get(CASE_KEY, ""))
            self._listed[case] += 1
            if not item.get(FAILED_KEY):
                probs = [float(p) for p in torch.as_tensor(out["pred"]).reshape(-1)]
                if len(probs) != len(self.class_names):
                    raise ValueError(f"ClassProbabilityWriter: {len(probs)} outputs but {len(self.class_names)} class_names {self.class_names}")
                if not all(math.isfinite(p) for p in probs):  # never a NaN probability marked ok
                    mark_failed(item, "the network output has non-finite values (NaN or Inf); check the input and the weights")
                elif self.saliency and (clash := self._saliency_clash(case)):
                    mark_failed(item, clash)
            if item.get(FAILED_KEY):
                self.rows.append({"case": case, "status": f"failed: {item[FAILED_KEY]}", "probabilities": None, "prediction": None})
                continue
            row = {"case": case, "status": "ok", "probabilities": dict(zip(self.class_names, probs)), "prediction": self._decide(probs)}
            if self.saliency:
                try:
                    row["saliency"] = self._save_saliency(item["image"], probs, case)
                    self._saliency_names.take(self._map_name(case), case)
                except Exception as err:  # noqa: BLE001 - one case's picture, not the run
                    # the case lacks an output that was asked for: it fails, so the summary counts it and the run does
                    # not exit 0, and it keeps none of its outputs, its probabilities neither (all or none)
                    reason = f"no saliency map: {failure_reason(err)}"
                    mark_failed(item, reason)
                    row.update(status=f"failed: {reason}", probabilities=None, prediction=None, saliency=None)
            self.rows.append(row)

    def _map_name(self, case: str) -> str:
        """The saliency map name of ``case``: its output name, numbered where the run lists that input again (two
        entries of one image, ``x``, ``x_2``), so that each entry keeps a map of its own, as its row."""
        return self.output_names.repeat_name(case, self._listed[case])

    def _saliency_clash(self, case: str) -> str:
        """Why ``case`` may not write its saliency map (another input of this run wrote that file), or ``""``."""
        name = self._map_name(case)
        return self._saliency_names.clash(name, case, f"{case} would overwrite {self.output_dir / 'saliency' / f'{name}.png'}")

    def _save_saliency(self, image: torch.Tensor, probs: list[float], case: str) -> str:
        from unimiss_monai.conventions import network_spacing
        from unimiss_monai.visualize.attention_rollout import attention_rollout
        from unimiss_monai.visualize.saliency import grad_cam, map_grid, saliency_png

        top = max(range(len(probs)), key=probs.__getitem__)
        device = next(self.network.parameters()).device
        x = torch.as_tensor(image)[None].to(device)
        name = self._map_name(case)
        if self.saliency_method == "rollout":
            cam = attention_rollout(self.network, x)[0]
            title = f"{name}: attention rollout (top: {self.class_names[top]}, p = {probs[top]:.2f})"
        else:
            cam = grad_cam(self.network, x, class_index=top)[0]
            title = f"{name}: Grad-CAM of {self.class_names[top]} (p = {probs[top]:.2f})"
        path = self.output_dir / "saliency" / f"{name}.png"
        spacing = network_spacing(getattr(image, "affine", None)) if image.ndim == 4 else None
        with replacing_own(path, self.output_dir):
            return saliency_png(torch.as_tensor(image)[0], cam, path, title, spacing=spacing,
                                grid=map_grid(self.network, x.shape[2:]))

    def _write(self, engine) -> None:
        header = ["case", "status", *[f"prob_{n}" for n in self.class_names], "prediction"]
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(header)
        for r in self.rows:
            probs = r["probabilities"] or {}
            writer.writerow([r["case"], r["status"], *[f"{probs[n]:.6f}" if n in probs else "" for n in self.class_names], r["prediction"] or ""])
        self._check_files()
        with replacing_own(self.output_dir / "predictions.csv", self.output_dir):
            save_bytes(buf.getvalue(), self.output_dir / "predictions.csv")
        failed = [r for r in self.rows if r["status"] != "ok"]
        with replacing_own(self.output_dir / "predictions.json", self.output_dir):
            save_json({"class_names": self.class_names, "multi_label": self.multi_label, "threshold": self.threshold,
                       "saliency": self.saliency_method if self.saliency else None, "cases": self.rows,
                       "num_failed": len(failed)}, self.output_dir / "predictions.json")
        classified = sum(r["probabilities"] is not None for r in self.rows)
        logger.info("inference: %d of %d cases classified -> %s", classified, len(self.rows),
                    self.output_dir / "predictions.csv")

