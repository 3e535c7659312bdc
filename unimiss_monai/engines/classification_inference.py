"""Classification inference over a folder: a dataset that survives bad files, and a writer of per-class probabilities.

:class:`TolerantDataset` turns a case whose loading or preprocessing fails into a placeholder (zeros) flagged with
the error, so one unreadable file does not stop the batch; :class:`ClassProbabilityWriter` then records it as failed
instead of writing its (meaningless) probabilities, writes ``predictions.csv`` / ``predictions.json`` atomically at the
end of the run, optionally a Grad-CAM PNG per image, and prints a summary that lists the failures.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from monai.config import KeysCollection
from monai.data import Dataset
from monai.transforms import MapTransform

from unimiss_monai.data.writers import atomic_path, save_json

logger = logging.getLogger(__name__)

__all__ = ["CheckSpatialDimsd", "TolerantDataset", "ClassProbabilityWriter"]


class CheckSpatialDimsd(MapTransform):
    """Fail with a one-line message naming the file when a channel-first image is not ``spatial_dims``-dimensional.

    Args:
        keys: keys of the images to check. spatial_dims: 2 (radiographs) or 3 (CT volumes).
        hint: what to do instead, appended to the message.
    """

    def __init__(self, keys: KeysCollection, spatial_dims: int, hint: str = "", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.spatial_dims, self.hint = int(spatial_dims), hint

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
        return d


class TolerantDataset(Dataset):
    """A MONAI ``Dataset`` whose items carry ``case`` (the input path) and ``failed`` (``""`` or the error message).

    Args:
        data: items with an ``"image"`` path. transform: the preprocessing.
        placeholder_shape: (C, *spatial) of the zeros that stand in for a failed image (the network input size).
    """

    def __init__(self, data: Sequence[dict], transform: Callable | None, placeholder_shape: Sequence[int]) -> None:
        super().__init__(data=data, transform=transform)
        self.placeholder_shape = tuple(int(s) for s in placeholder_shape)

    def _transform(self, index: int):
        item = self.data[index]
        case = str(item.get("image", f"item {index}"))
        try:
            out = super()._transform(index)
        except Exception as err:  # noqa: BLE001 - any failure of one case is reported, the others go on
            reason = _root_cause(err)
            logger.error("inference: %s failed: %s", case, reason)
            return {"image": torch.zeros(self.placeholder_shape), "case": case, "failed": reason}
        return {**out, "case": case, "failed": ""}


def _root_cause(err: BaseException) -> str:
    # MONAI wraps transform errors in "applying transform ..." RuntimeErrors; the innermost one says what is wrong
    while err.__cause__ is not None:
        err = err.__cause__
    return f"{type(err).__name__}: {err}".splitlines()[0]


class ClassProbabilityWriter:
    """Ignite handler: per-class probabilities of every case to ``predictions.csv`` and ``predictions.json``.

    Args:
        output_dir: output folder.
        class_names: the C class names, in channel order.
        multi_label: findings are independent (each reported when ``>= threshold``); otherwise the top class is.
        threshold: decision threshold of multi-label findings. Defaults to 0.5.
        saliency: also write ``saliency/<case>.png`` (Grad-CAM of the top class / each positive finding's top one).
        network: the classifier, needed for ``saliency``.

    Rows: ``case, status, <prob per class>..., prediction``; a failed case has ``status`` = its error.
    """

    def __init__(
        self, output_dir: str | os.PathLike, class_names: Sequence[str], multi_label: bool = False,
        threshold: float = 0.5, saliency: bool = False, network: torch.nn.Module | None = None,
    ) -> None:
        if saliency and network is None:
            raise ValueError("ClassProbabilityWriter: saliency=True needs network=")
        self.output_dir, self.class_names = Path(output_dir), list(class_names)
        self.multi_label, self.threshold = multi_label, float(threshold)
        self.saliency, self.network = saliency, network
        self.rows: list[dict] = []

    def attach(self, engine) -> None:
        from ignite.engine import Events

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
            row = {"case": case, "status": "ok", "probabilities": dict(zip(self.class_names, probs)), "prediction": self._decide(probs)}
            if self.saliency:
                row["saliency"] = self._save_saliency(item["image"], probs, case)
            self.rows.append(row)

    def _save_saliency(self, image: torch.Tensor, probs: list[float], case: str) -> str:
        from unimiss_monai.engines.saliency import grad_cam, saliency_png

        top = max(range(len(probs)), key=probs.__getitem__)
        device = next(self.network.parameters()).device
        x = torch.as_tensor(image)[None].to(device)
        cam = grad_cam(self.network, x, class_index=top)[0]
        name = Path(case).name.split(".")[0] or "case"
        path = self.output_dir / "saliency" / f"{name}.png"
        title = f"{name}: Grad-CAM of {self.class_names[top]} (p = {probs[top]:.2f})"
        return saliency_png(torch.as_tensor(image)[0], cam, path, title)

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
                   "cases": self.rows, "num_failed": len(failed)}, self.output_dir / "predictions.json")
        summary = f"[inference] {len(self.rows) - len(failed)} of {len(self.rows)} cases classified -> {self.output_dir / 'predictions.csv'}"
        print(summary, flush=True)
        for r in failed:
            print(f"[inference]   {r['case']}: {r['status']}", flush=True)
        logger.info(summary)
