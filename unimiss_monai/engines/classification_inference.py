"""Classification inference over a folder: a dataset that survives bad files, and a writer of per-class probabilities.

:class:`~unimiss_monai.engines.tolerant_inference.TolerantDataset` turns a case whose loading or preprocessing fails into a placeholder (zeros) flagged with
the error, so one unreadable file does not stop the batch; :class:`ClassProbabilityWriter` then records it as failed
instead of writing its (meaningless) probabilities, writes ``predictions.csv`` / ``predictions.json`` atomically at the
end of the run, optionally a saliency PNG per image (Grad-CAM or attention rollout), and prints a summary that lists
the failures. :func:`guard_forward` (installed by the writers) does the same for a case whose network forward fails.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from unimiss_monai.data.ct_io import warn_if_not_ct_hu
from unimiss_monai.data.writers import atomic_path, save_json
from unimiss_monai.engines.tolerant_inference import guard_forward, root_cause
from unimiss_monai.transforms.utility import CheckImage

logger = logging.getLogger(__name__)

__all__ = ["CheckSpatialDimsd", "ClassProbabilityWriter"]

SALIENCY_METHODS = ("gradcam", "rollout")


class CheckSpatialDimsd(MapTransform):
    """Fail with a one-line message naming the file when a channel-first image is not ``spatial_dims``-dimensional,
    holds non-finite values or has a degenerate grid (:class:`~unimiss_monai.transforms.CheckImage`).

    Args:
        keys: keys of the images to check. spatial_dims: 2 (radiographs) or 3 (CT volumes).
        hint: what to do instead, appended to the message.
    """

    def __init__(self, keys: KeysCollection, spatial_dims: int, hint: str = "", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.spatial_dims, self.hint = int(spatial_dims), hint
        # non-finite voxels, a degenerate grid or a constant image: one failed case, not a NaN verdict
        self.check_image = CheckImage(fail_constant=True)

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            if img.ndim - 1 != self.spatial_dims:
                source = getattr(img, "meta", {}).get("filename_or_obj", key)
                raise ValueError(
                    f"{source}: a {img.ndim - 1}D image (channel-first shape {tuple(img.shape)}) given to a "
                    f"{self.spatial_dims}D classifier{'; ' + self.hint if self.hint else ''}"
                )
            self.check_image(img)
            if self.spatial_dims == 3:
                warn_if_not_ct_hu(img, str(getattr(img, "meta", {}).get("filename_or_obj", key)),
                                  "its classification is unlikely to mean anything")
        return d


class ClassProbabilityWriter:
    """Ignite handler: per-class probabilities of every case to ``predictions.csv`` and ``predictions.json``.

    Args:
        output_dir: output folder.
        class_names: the C class names, in channel order.
        multi_label: findings are independent (each reported when ``>= threshold``); otherwise the top class is.
        threshold: decision threshold of multi-label findings. Defaults to 0.5.
        saliency: also write ``saliency/<case>.png``.
        network: the classifier, needed for ``saliency``.
        saliency_method: ``"gradcam"`` (Grad-CAM of the top class, :func:`~unimiss_monai.engines.saliency.grad_cam`)
            or ``"rollout"`` (class-agnostic attention rollout of the last encoder stage,
            :func:`~unimiss_monai.engines.attention_rollout.attention_rollout`). Defaults to ``"gradcam"``.

    Rows: ``case, status, <prob per class>..., prediction``; a failed case has ``status`` = its error. Attaching also
    installs :func:`guard_forward`, so a case whose forward pass fails is recorded as failed and the run goes on.
    """

    def __init__(
        self, output_dir: str | os.PathLike, class_names: Sequence[str], multi_label: bool = False,
        threshold: float = 0.5, saliency: bool = False, network: torch.nn.Module | None = None,
        saliency_method: str = "gradcam",
    ) -> None:
        if saliency and network is None:
            raise ValueError("ClassProbabilityWriter: saliency=True needs network=")
        if saliency_method not in SALIENCY_METHODS:
            raise ValueError(f"ClassProbabilityWriter: saliency_method must be one of {SALIENCY_METHODS}, got {saliency_method!r}")
        self.output_dir, self.class_names = Path(output_dir), list(class_names)
        self.multi_label, self.threshold = multi_label, float(threshold)
        self.saliency, self.network, self.saliency_method = saliency, network, saliency_method
        self.rows: list[dict] = []

    def attach(self, engine) -> None:
        from ignite.engine import Events

        # at STARTED: MONAI evaluators set their inferer only after attaching the handlers
        engine.add_event_handler(Events.STARTED, guard_forward)
        engine.add_event_handler(Events.STARTED, lambda _: self.rows.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _decide(self, probs: list[float]) -> str:
        if self.multi_label:
            return ";".join(n for n, p in zip(self.class_names, probs) if p >= self.threshold)
        return self.class_names[max(range(len(probs)), key=probs.__getitem__)]

    def _collect(self, engine) -> None:
        batch, output = engine.state.batch, engine.state.output
        items = batch if isinstance(batch, list) else [batch]
        outputs = output if isinstance(output, list) else [output]
        for item, out in zip(items, outputs):
            case, failed = str(item["case"]), str(item.get("failed", ""))
            if failed:
                self.rows.append({"case": case, "status": f"failed: {failed}", "probabilities": None, "prediction": None})
                continue
            probs = [float(p) for p in torch.as_tensor(out["pred"]).reshape(-1)]
            if len(probs) != len(self.class_names):
                raise ValueError(f"ClassProbabilityWriter: {len(probs)} outputs but {len(self.class_names)} class_names {self.class_names}")
            if not all(math.isfinite(p) for p in probs):  # never a NaN probability marked ok
                reason = "the network output has non-finite values (NaN or Inf); check the input and the weights"
                self.rows.append({"case": case, "status": f"failed: {reason}", "probabilities": None, "prediction": None})
                continue
            row = {"case": case, "status": "ok", "probabilities": dict(zip(self.class_names, probs)), "prediction": self._decide(probs)}
            if self.saliency:
                try:
                    row["saliency"] = self._save_saliency(item["image"], probs, case)
                except Exception as err:  # noqa: BLE001 - the probabilities stand; only the picture is missing
                    logger.error("inference: %s: no saliency map: %s", case, root_cause(err))
                    row["saliency"] = None
            self.rows.append(row)

    def _save_saliency(self, image: torch.Tensor, probs: list[float], case: str) -> str:
        from unimiss_monai.engines.attention_rollout import attention_rollout
        from unimiss_monai.conventions import network_spacing
        from unimiss_monai.engines.saliency import grad_cam, saliency_png

        top = max(range(len(probs)), key=probs.__getitem__)
        device = next(self.network.parameters()).device
        x = torch.as_tensor(image)[None].to(device)
        name = Path(case).name.split(".")[0] or "case"
        if self.saliency_method == "rollout":
            cam = attention_rollout(self.network, x)[0]
            title = f"{name}: attention rollout (top: {self.class_names[top]}, p = {probs[top]:.2f})"
        else:
            cam = grad_cam(self.network, x, class_index=top)[0]
            title = f"{name}: Grad-CAM of {self.class_names[top]} (p = {probs[top]:.2f})"
        path = self.output_dir / "saliency" / f"{name}.png"
        spacing = network_spacing(getattr(image, "affine", None)) if image.ndim == 4 else None
        return saliency_png(torch.as_tensor(image)[0], cam, path, title, spacing=spacing)

    def _write(self, engine) -> None:
        header = ["case", "status", *[f"prob_{n}" for n in self.class_names], "prediction"]
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(header)
        for r in self.rows:
            probs = r["probabilities"] or {}
            writer.writerow([r["case"], r["status"], *[f"{probs[n]:.6f}" if n in probs else "" for n in self.class_names], r["prediction"] or ""])
        with atomic_path(self.output_dir / "predictions.csv") as tmp:
            tmp.write_text(buf.getvalue())
        failed = [r for r in self.rows if r["status"] != "ok"]
        save_json({"class_names": self.class_names, "multi_label": self.multi_label, "threshold": self.threshold,
                   "saliency": self.saliency_method if self.saliency else None, "cases": self.rows, "num_failed": len(failed)}, self.output_dir / "predictions.json")
        summary = f"[inference] {len(self.rows) - len(failed)} of {len(self.rows)} cases classified -> {self.output_dir / 'predictions.csv'}"
        print(summary, flush=True)
        for r in failed:
            print(f"[inference]   {r['case']}: {r['status']}", flush=True)
        logger.info(summary)
        if len(failed) == len(self.rows):  # nothing classified: the work failed and the run must not exit 0
            raise RuntimeError(f"inference: no case was classified ({len(failed)} failed, see above)")
