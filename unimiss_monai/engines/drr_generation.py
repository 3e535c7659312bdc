"""Batch DRR generation: render every CT in a folder from named C-arm views and write NIfTI + PNG + datalists.

Used by the ``unimiss_drr_generation`` bundle (``DRRGenerator(...).run()``). Per CT ``<name>`` it writes, under
``output_dir/<name>/``:

- ``<name>_<VIEW>.nii.gz``: float32 line-integral DRR, array ``(W, H)`` (column axis first, as MONAI loads 2D images),
  with a 4x4 affine whose first two columns are the detector pixel spacing (mm) along the columns and rows;
- ``<name>_<VIEW>.png``: 8-bit preview (bone bright), rows top to bottom = head to feet;
- ``<name>_<VIEW>_labels.nii.gz`` when a label map is paired: ``(W, H, L)`` float32 projected thickness (mm) of each
  labelled structure, aligned with the DRR; ``<name>_labels.json`` names the ``L`` channels;
- ``<name>_contact_sheet.png``: all views side by side (with label overlays when present);
- ``<name>_datalist.json``: everything written for this CT.

With ``slab_depth > 0`` (UniMiSS+ CT-DRR pairs) each CT is cut into axial slabs of that thickness; per slab ``<i>`` it
writes ``slabs/<name>_slab<i>.nii.gz`` (the CT slab, HU, its own affine) and ``slabs/<name>_slab<i>_<VIEW>.nii.gz`` +
``.png`` (the slab's DRR, resized to ``slab_detector_shape``). ``output_dir/datalist.json`` gathers all CTs:
``{"testing": [one entry per DRR], "training": [one {"ct", "drr", "view", "slab"} pair per slab DRR],
"failures": [...]}``; paths are relative to ``output_dir``.

Each CT's outputs are written in a hidden temporary folder and renamed into place once complete, so a failure never
leaves a partial result; a failing CT is logged and skipped, and :meth:`DRRGenerator.run` raises at the end, listing
every failure, so a bundle run exits non-zero.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from unimiss_monai.data.ct_inputs import CTCase, find_ct_cases, read_label_names
from unimiss_monai.data.ct_io import load_ct, load_label_map
from unimiss_monai.data.samples import find_dataset
from unimiss_monai.data.writers import check_output_dir, save_contact_sheet, save_json, save_nifti, save_png, staged_dir
from unimiss_monai.utils.args import as_bool

__all__ = ["DRRGenerator", "DRRGenerationError"]

logger = logging.getLogger(__name__)

DATASET_NAME = "drr_generation"


class DRRGenerationError(RuntimeError):
    """Raised at the end of a run in which some CTs failed; the message lists each failure."""


class DRRGenerator:
    """Render DRRs of every CT in ``dataset_dir`` into ``output_dir``.

    Args:
        dataset_dir: a folder of CTs (``*.nii``, ``*.nii.gz``, DICOM series folders, or a ``datalist.json``), a
            ``python -m unimiss_monai samples`` output (its ``drr_generation`` set is used), or one CT file. None
            renders the sample chest CT (the real one when installed, else a phantom, with a warning).
        output_dir: where the outputs go (created).
        views: view names (``"AP"``, ``"PA"``, ``"LAT_LEFT"``/``"LL"``, ``"LAT_RIGHT"``/``"RL"``), case-insensitive.
        detector_shape: ``(H, W)`` detector pixels (an int for square).
        pixel_spacing: detector pixel size, mm.
        sdd: source-to-detector distance, mm.
        sid: source-to-isocentre distance, mm; the isocentre is the volume (or slab) centre.
        method: ``"siddon"`` (exact) or ``"trilinear"``.
        slab_depth: 0 renders whole volumes; ``> 0`` (mm) renders axial slabs of that thickness (UniMiSS+ pairs).
        slab_detector_shape: ``(H, W)`` each slab DRR is resized to. Defaults to ``(224, 224)``.
        device: ``"cpu"`` (compiled kernels) or a torch device such as ``"cuda"``.
        project_labels: also project the label map paired with a CT.
        progress: show a tqdm progress bar over CTs and views.
    """

    def __init__(
        self,
        dataset_dir: str | Path | None = None,
        output_dir: str | Path = "outputs/unimiss_drr_generation",
        views: Sequence[str] | str = ("AP",),
        detector_shape: Sequence[int] | int = (256, 256),
        pixel_spacing: float = 1.5625,
        sdd: float = 1020.0,
        sid: float = 850.0,
        method: str = "siddon",
        slab_depth: float = 0.0,
        slab_detector_shape: Sequence[int] | int = (224, 224),
        device: str | torch.device = "cpu",
        project_labels: bool = True,
        progress: bool = True,
    ) -> None:
        from unimiss_monai.drr import METHODS, ConeBeam, canonical_view
        from unimiss_monai.drr.render import check_memory

        self.dataset_dir = None if dataset_dir in (None, "") else Path(dataset_dir).expanduser()
        # DRRs and CT slabs written among the input CTs would be read back as CTs by the next run, and a case folder
        # could replace an input DICOM series of the same name
        self.output_dir = Path(check_output_dir(output_dir, self.dataset_dir)).expanduser()
        views = [views] if isinstance(views, str) else list(views)
        try:
            self.views = [canonical_view(v) for v in views]
        except ValueError as err:
            raise ValueError(f"views: {err}") from None
        if not self.views:
            raise ValueError("views: empty list; pass at least one view name, e.g. --views \"['AP']\"")
        if method not in METHODS:
            raise ValueError(f"method: {method!r} is not one of {METHODS}; pass --method siddon or --method trilinear")
        if slab_depth < 0:
            raise ValueError(f"slab_depth: {slab_depth} must be >= 0 (0 = whole volume, > 0 = slab thickness in mm)")
        try:
            self.geometry = ConeBeam(_pair(detector_shape), pixel_spacing, sdd, sid)
        except ValueError as err:
            raise ValueError(f"detector_shape/pixel_spacing/sdd/sid: {err}") from None
        try:
            check_memory(len(self.views), self.geometry.detector_shape, channels=2)
        except ValueError as err:
            raise ValueError(f"detector_shape: {err}") from None
        self.method, self.slab_depth = method, float(slab_depth)
        self.slab_detector_shape = _pair(slab_detector_shape)
        self.device = str(device)
        self.project_labels, self.progress = as_bool(project_labels, "project_labels"), as_bool(progress, "progress")

    # ------------------------------------------------------------------ inputs
    def cases(self) -> list[CTCase]:
        """The CTs this run renders."""
        if self.dataset_dir is None:
            from unimiss_monai.data.sample_sets.drr_generation import sample_ct_case

            return [sample_ct_case(self.output_dir / ".sample_ct")]
        return find_ct_cases(find_dataset(self.dataset_dir, DATASET_NAME))

    # ------------------------------------------------------------------ run
    def run(self) -> dict:
        """Render every CT; returns the run datalist. Raises :class:`DRRGenerationError` if any CT failed."""
        cases = self.cases()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        run_list: dict[str, list] = {"testing": [], "training": [], "failures": []}
        # one unit per rendered image; slab mode adds units once a CT's slab count is known
        bar = tqdm(total=len(cases) * len(self.views), desc="DRR", unit="image", disable=not self.progress,
                   dynamic_ncols=True)
        for case in cases:
            bar.set_postfix_str(case.name)
            try:
                entry = self._process(case, bar)
            except Exception as err:  # one bad CT must not stop the others; it is reported at the end
                message = str(err).splitlines()[0] if str(err) else type(err).__name__
                if str(case.image) not in message:
                    message = f"{case.image}: {message}"
                logger.error("DRR generation failed: %s", message)
                run_list["failures"].append({"name": case.name, "image": str(case.image), "error": message})
                continue
            run_list["testing"].extend(entry["testing"])
            run_list["training"].extend(entry["training"])
        bar.close()
        save_json(run_list, self.output_dir / "datalist.json")
        done = len(cases) - len(run_list["failures"])
        logger.info("DRR generation: %d of %d CT(s) rendered into %s", done, len(cases), self.output_dir)
        print(f"[drr] {done} of {len(cases)} CT(s) rendered into {self.output_dir}", flush=True)
        if run_list["failures"]:
            lines = "\n".join(f"  - {f['error']}" for f in run_list["failures"])
            raise DRRGenerationError(f"{len(run_list['failures'])} of {len(cases)} CT(s) failed:\n{lines}")
        return run_list

    # ------------------------------------------------------------------ one CT
    def _process(self, case: CTCase, bar: tqdm) -> dict:
        from unimiss_monai.drr import prepare_volume

        with warnings.catch_warnings():
            warnings.simplefilter("always")  # an MR-like CT warns once per file, not once per run
            hu, affine = load_ct(case.image)
        labels = None
        if self.project_labels and case.labels is not None:
            labels = load_label_map(case.labels, hu.shape, affine)
        with staged_dir(self.output_dir / case.name) as tmp:
            if self.slab_depth > 0:
                entry = self._render_slabs(case, hu, affine, tmp, bar)
            else:
                prepared = prepare_volume(hu, affine, device=None if self.device == "cpu" else self.device)
                entry = self._render_whole(case, prepared, labels, tmp, bar)
            save_json(_relative(entry, tmp), tmp / f"{case.name}_datalist.json")
        return _relative(entry, tmp, prefix=case.name)  # run-level paths are relative to output_dir

    def _render_views(self, volume, affine, bar: tqdm) -> np.ndarray:
        from unimiss_monai.drr import render

        geometry = self.geometry
        images = []
        for view in self.views:
            image = render(volume, affine, views=(view,), detector_shape=geometry.detector_shape,
                           pixel_spacing=geometry.pixel_spacing, sdd=geometry.sdd, sid=geometry.sid, method=self.method,
                           device=self.device)
            images.append(image[0].detach().cpu().numpy())
            bar.update(1)
        return np.stack(images)

    def _detector_affine(self, view: str, isocenter: np.ndarray, shape=None, spacing=None) -> np.ndarray:
        """Affine of a DRR stored column-first ``(W, H)``: columns 0/1 are the detector column/row steps in mm."""
        from unimiss_monai.drr import detector_affine

        g = self.geometry
        row_first = detector_affine(view, shape or g.detector_shape, spacing or g.pixel_spacing, g.sdd, g.sid, isocenter)
        return row_first[:, [1, 0, 2, 3]]

    def _render_whole(self, case: CTCase, prepared, labels, out: Path, bar: tqdm) -> dict:
        from unimiss_monai.drr import to_radiograph

        images = self._render_views(prepared, None, bar)
        previews = to_radiograph(images)
        thickness, names = (None, {}) if labels is None else self._project_label_map(case, labels, prepared.affine)
        testing = []
        for v, view in enumerate(self.views):
            affine = self._detector_affine(view, prepared.center)
            item = {"name": case.name, "ct": str(case.image), "view": view,
                    "image": save_nifti(images[v].T, affine, out / f"{case.name}_{view}.nii.gz"),
                    "preview": save_png(previews[v], out / f"{case.name}_{view}.png")}
            if thickness is not None:
                item["label"] = save_nifti(np.moveaxis(thickness[v], 0, -1).transpose(1, 0, 2), affine,
                                           out / f"{case.name}_{view}_labels.nii.gz")
            testing.append(item)
        if names:
            save_json({str(i): n for i, n in enumerate(names.values())}, out / f"{case.name}_labels.json")
        sheet = save_contact_sheet(previews, self.views, out / f"{case.name}_contact_sheet.png", title=case.name,
                                   overlays=None if thickness is None else thickness.sum(axis=1))
        return {"testing": testing, "training": [], "contact_sheet": sheet}

    def _project_label_map(self, case: CTCase, labels: np.ndarray, affine: np.ndarray):
        from unimiss_monai.drr import project_labels

        names = read_label_names(case.label_names)
        values = sorted(names) if names else sorted(int(v) for v in np.unique(labels) if v != 0)
        names = {v: names.get(v, f"label_{v}") for v in values}
        g = self.geometry
        thickness = project_labels(labels, affine, values, views=self.views, detector_shape=g.detector_shape,
                                   pixel_spacing=g.pixel_spacing, sdd=g.sdd, sid=g.sid)
        return np.asarray(thickness), names

    def _render_slabs(self, case: CTCase, hu: np.ndarray, affine: np.ndarray, out: Path, bar: tqdm) -> dict:
        from unimiss_monai.drr import render_slabs, split_slabs, superior_axis, to_radiograph

        # slab_depth is in mm; the slab splitter counts slices along the superior axis
        axis = superior_axis(affine)
        thickness = max(1, int(round(self.slab_depth / float(np.linalg.norm(affine[:3, axis])))))
        slabs = split_slabs(hu, affine, thickness)
        bar.total += (len(slabs) - 1) * len(self.views)
        bar.refresh()
        g, (sh, sw) = self.geometry, self.slab_detector_shape
        images, spacing = {}, None
        for view in self.views:
            rendered, spacing = render_slabs(hu, affine, thickness, view=view, output_shape=(sh, sw),
                                             pixel_spacing=g.pixel_spacing[0], sdd=g.sdd, sid=g.sid,
                                             method=self.method, device=self.device, return_spacing=True)
            images[view] = rendered.detach().cpu().numpy()
            bar.update(len(slabs))
        training = []
        for i, slab in enumerate(slabs):
            stem = f"slabs/{case.name}_slab{i:03d}"
            ct_path = save_nifti(np.asarray(slab.volume, dtype=np.float32), slab.affine, out / f"{stem}.nii.gz")
            for view in self.views:
                image = images[view][i]
                affine_2d = self._detector_affine(view, _center(slab), (sh, sw), tuple(spacing[i]))
                training.append({"name": case.name, "slab": i, "start": slab.start, "stop": slab.stop, "view": view,
                                 "ct": ct_path, "drr": save_nifti(image.T, affine_2d, out / f"{stem}_{view}.nii.gz"),
                                 "preview": save_png(to_radiograph(image), out / f"{stem}_{view}.png")})
        return {"testing": [], "training": training}


def _center(slab) -> np.ndarray:
    from unimiss_monai.drr import volume_center

    return volume_center(slab.volume.shape, slab.affine)


def _pair(value) -> tuple[int, int]:
    values = [int(v) for v in np.broadcast_to(np.asarray(value), (2,))]
    return values[0], values[1]


def _relative(value, root: Path, prefix: str = ""):
    """JSON-ready copy of ``value`` in which each ``Path`` under ``root`` becomes ``prefix/<path relative to root>``."""
    if isinstance(value, list):
        return [_relative(v, root, prefix) for v in value]
    if isinstance(value, dict):
        return {k: _relative(v, root, prefix) for k, v in value.items()}
    if isinstance(value, Path):
        try:
            return str(Path(prefix) / value.relative_to(root)) if prefix else str(value.relative_to(root))
        except ValueError:
            return str(value)
    return value
