"""Batch DRR generation: render every CT in a folder from named C-arm views and write NIfTI + PNG + datalists.

Used by the ``unimiss_drr_generation`` bundle (``DRRGenerator(...).run()``). Per CT ``<name>`` it writes, under
``output_dir/<name>/``:

- ``<name>_<VIEW>.nii.gz``: float32 line-integral DRR, array ``(W, H)`` (column axis first, as MONAI loads 2D images),
  with a 4x4 affine whose first two columns are the detector pixel spacing (mm) along the columns and rows;
- ``<name>_<VIEW>.png``: 8-bit preview (bone bright), rows top to bottom = head to feet, hung as the view's film is
  (:mod:`unimiss_monai.conventions`), on square pixels (true proportions);
- ``<name>_<VIEW>_labels.nii.gz`` when a label map is paired: ``(W, H, L)`` float32 projected thickness (mm) of each
  labelled structure, aligned with the DRR; ``<name>_labels.json`` names the ``L`` channels;
- ``<name>_contact_sheet.png``: all views side by side (with label overlays when present);
- ``<name>_datalist.json``: everything written for this CT;
- ``<name>_done.json``: the done record (settings, rank, run-level datalist entries) a rerun checks to skip the CT.

With ``slab_depth > 0`` (UniMiSS+ CT-DRR pairs, no labels) each CT is cut into axial slabs of that thickness; per
slab ``<i>``: ``slabs/<name>_slab<i>.nii.gz`` (the CT slab in HU, its own affine; int16 when that loses nothing) and
``slabs/<name>_slab<i>_<VIEW>.nii.gz`` (its DRR resized to ``slab_detector_shape``, anisotropic pixel spacing in the
affine) + ``.png`` (its preview resampled to square pixels), rendered by :mod:`~unimiss_monai.engines.drr_slabs`.
``output_dir/datalist.json`` gathers all CTs: ``{"testing": [one entry per DRR], "training": [one {"ct", "drr",
"view", "slab"} pair per slab DRR], "failures": [{"name", "image", "error"} per failed CT]}``; paths are relative
to ``output_dir``, but a failed CT's ``image`` is absolute.

Each CT's outputs are written in a hidden temporary folder and renamed into place once complete; a failing CT is
logged and skipped, and :meth:`DRRGenerator.run` raises at the end, listing every failure (a bundle run exits
non-zero). A rerun skips the CTs finished with the same settings. Under ``torchrun`` the CTs are dealt out over ranks.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from unimiss_monai.data.ct_inputs import CTCase, find_ct_cases, is_datalist_file, label_channels, read_label_names
from unimiss_monai.data.ct_io import load_ct, load_label_map
from unimiss_monai.data.drr_run_folder import DATALIST, RUN_KEYS
from unimiss_monai.data.samples import find_dataset
from unimiss_monai.data.writers import (
    check_output_dir,
    check_replaceable_json,
    save_contact_sheet,
    save_json,
    save_nifti,
    save_png,
    staged_dir,
)
from unimiss_monai.engines.drr_done_records import input_signature, is_finished, listed_files, merge_records, relative
from unimiss_monai.engines.drr_slabs import render_slab_pairs
from unimiss_monai.utils.args import as_bool
from unimiss_monai.utils.devices import check_device
from unimiss_monai.utils.dist import (
    broadcast_object,
    coordination_group,
    gather_objects,
    local_rank,
    rank_and_world,
    share_cpu_threads,
)

__all__ = ["DRRGenerator", "DRRGenerationError"]

logger = logging.getLogger(__name__)

DATASET_NAME = "drr_generation"
MERGED_KEYS = RUN_KEYS  # of output_dir/datalist.json, which a rerun may replace


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
        pixel_spacing: detector pixel size, mm: a scalar (square pixels) or ``(row, col)``, in slab mode too.
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
        pixel_spacing: float | Sequence[float] = 1.5625,
        sdd: float = 1020.0,
        sid: float = 850.0,
        method: str = "siddon",
        slab_depth: float = 0.0,
        slab_detector_shape: Sequence[int] | int = (224, 224),
        device: str | torch.device = "cpu",
        project_labels: bool = True,
        progress: bool = True,
    ) -> None:
        from unimiss_monai.drr import METHODS, ConeBeam, canonical_views
        from unimiss_monai.drr.render import check_memory

        # absolute: ITK, loaded by the reader thread's first DICOM series, changes the working folder while it loads
        self.dataset_dir = None if dataset_dir in (None, "") else Path(dataset_dir).expanduser().absolute()
        # outputs among the input CTs would be read as CTs by the next run, a case folder could replace a series
        listed = self.dataset_dir is not None and is_datalist_file(self.dataset_dir)
        self.output_dir = Path(check_output_dir(output_dir, self.dataset_dir.parent if listed else self.dataset_dir)
                               ).expanduser().absolute()
        views = [views] if isinstance(views, str) else list(views)
        try:  # an alias is said once a run (rank 0; under torchrun the process group is up before this is made)
            self.views = canonical_views(views, say=logger.info if rank_and_world()[0] == 0 else None)
        except ValueError as err:
            raise ValueError(f"views: {err}") from None
        if not self.views:
            raise ValueError("views: empty list; pass at least one view name, e.g. --views \"['AP']\"")
        twice = sorted({v for v in self.views if self.views.count(v) > 1})
        if twice:  # one file per view: a second entry would list the same image again
            raise ValueError(f"views: {', '.join(twice)} given more than once; name each view once")
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
        self.device = check_device(str(device), use="render on")  # before any CT: each would fail
        self.project_labels, self.progress = as_bool(project_labels, "project_labels"), as_bool(progress, "progress")

    # ------------------------------------------------------------------ inputs
    def cases(self) -> list[CTCase]:
        """The CTs this run renders."""
        if self.dataset_dir is None:
            from unimiss_monai.data.sample_sets.drr_generation import sample_ct_case

            # rank 0 alone writes the stand-in phantom (when the real CT is not installed): under torchrun every rank
            # writing the same files would delete each other's temporary files, and fail
            rank, _ = rank_and_world()
            return [broadcast_object(sample_ct_case(self.output_dir / ".sample_ct") if rank == 0 else None,
                                     coordination_group())]
        return find_ct_cases(find_dataset(self.dataset_dir, DATASET_NAME))

    # ------------------------------------------------------------------ run
    def run(self) -> dict:
        """Render every CT not already finished; returns the run datalist. Raises :class:`DRRGenerationError` if any
        CT failed.

        Under ``torchrun`` (a joined process group) the CTs still to render are dealt out over the ranks, each
        rendered exactly once; rank 0 writes ``datalist.json`` once every rank is done, and removes the one of an
        earlier run before any CT is rendered, so that it exists only for a finished run. A CT is finished when its
        folder holds a done record (``<name>/<name>_done.json``, written with the outputs in one atomic rename)
        for the same settings and every file the record lists exists; a rerun skips it and redoes anything else.
        """
        rank, world = rank_and_world()
        group = coordination_group()  # made here by every rank at once; its collectives wait for the slowest rank
        if world > 1 and self.device == "cpu":
            share_cpu_threads()  # the CPU kernels default to every core in each process
        cases = self.cases()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        merged = self.output_dir / DATALIST
        check_replaceable_json(merged, MERGED_KEYS)  # on every rank, so that all stop together
        if rank == 0:  # an earlier run's would list the files of CTs this run replaces, until it is written anew
            merged.unlink(missing_ok=True)
        # rank 0 alone reads the done records (and logs why a CT is rendered again): once per run, not per rank
        todo = broadcast_object([c.name for c in cases
                                 if not is_finished(self.output_dir, c.name, self._settings(c), self._inputs(c))]
                                if rank == 0 else None, group)
        share = set(todo[rank::world])
        mine = [c for c in cases if c.name in share]
        logger.info("DRR rank %d/%d: %d of %d CT(s) to render here, %d already finished", rank, world, len(mine),
                    len(cases), len(cases) - len(todo))
        if self.slab_depth > 0 and self.project_labels and (paired := sum(c.labels is not None for c in mine)):
            logger.warning("slab mode (slab_depth %g mm) projects no label maps: the %d beside the CTs are left out; "
                           "run without --slab_depth for DRRs with projected labels", self.slab_depth, paired)
        # one unit per rendered image; slab mode adds units once a CT's slab count is known
        bar = tqdm(total=len(mine) * len(self.views), desc=f"DRR rank {rank}" if world > 1 else "DRR", unit="image",
                   disable=not self.progress, dynamic_ncols=True, position=local_rank())  # one line per rank here
        failures = []
        with warnings.catch_warnings(), ThreadPoolExecutor(max_workers=1) as reader:
            # an MR-like CT warns once per file, not once per run; only our own warnings, or the first load would
            # also print every deprecation warning of the libraries it imports
            warnings.filterwarnings("always", category=UserWarning, module=r"unimiss_monai\.")
            # the next CT is read while this one renders and is written: gzip, the kernels and the writers' compression
            # run without the interpreter lock, so the read hides behind the rest; at most two CTs are in memory
            reads = [reader.submit(self._read, case) for case in mine[:1]]
            for i, case in enumerate(mine):
                if i + 1 < len(mine):
                    reads.append(reader.submit(self._read, mine[i + 1]))
                bar.set_postfix_str(case.name)
                start = time.perf_counter()
                try:
                    self._process(case, reads[i].result(), bar, rank)
                except Exception as err:  # one bad CT must not stop the others; it is reported at the end
                    message = str(err).splitlines()[0] if str(err) else type(err).__name__
                    if str(case.image) not in message:
                        message = f"{case.image}: {message}"
                    logger.error("DRR generation failed: %s", message)
                    # absolute: the datalist is read from output_dir, not from where this run was started
                    failures.append({"name": case.name, "image": os.path.abspath(case.image), "error": message})
                    continue
                finally:
                    reads[i] = None  # this CT's arrays are not kept while the next ones render
                logger.info("DRR rank %d: %s rendered in %.2f s", rank, case.name, time.perf_counter() - start)
        bar.close()
        failures = gather_objects(failures, group)  # also the barrier: every rank has finished its CTs
        run_list = merge_records(self.output_dir, [c.name for c in cases], failures)
        if rank == 0:
            save_json(run_list, merged)
        gather_objects([], group)  # no rank returns (and no launcher exits) before the datalist is written
        failed = len(run_list["failures"])
        # every rank exits non-zero on a failure, but only rank 0 sums up and lists them: once per run, not per rank
        if rank == 0:  # a rerun that skipped every CT says so, instead of claiming to have rendered them
            logger.info("DRR generation: %d of %d CT(s) done in %s (%d rendered now, %d finished by an earlier run)",
                        len(cases) - failed, len(cases), self.output_dir, len(todo) - failed, len(cases) - len(todo))
        if failed and rank > 0:
            raise DRRGenerationError(f"{failed} of {len(cases)} CT(s) failed (rank 0 lists them)")
        if failed:
            lines = "\n".join(f"  - {f['error']}" for f in run_list["failures"])
            raise DRRGenerationError(f"{failed} of {len(cases)} CT(s) failed:\n{lines}")
        return run_list

    def _settings(self, case: CTCase) -> dict:
        """What a CT's outputs depend on, as JSON values: a done record with other settings is not reused."""
        g = self.geometry
        # absolute: the same CT named from another working folder is the same input (earlier records: _inputs_as_paths)
        settings = {"ct": os.path.abspath(case.image),
                    "labels": os.path.abspath(case.labels) if self.project_labels and case.labels else None,
                    "views": self.views, "detector_shape": g.detector_shape, "pixel_spacing": g.pixel_spacing,
                    "sdd": g.sdd, "sid": g.sid, "method": self.method, "slab_depth": self.slab_depth,
                    "slab_detector_shape": self.slab_detector_shape if self.slab_depth > 0 else None}
        if any(v.startswith("LAT_") for v in self.views):
            # lateral views are hung from the detector side since bundle 0.3.1: a lateral DRR rendered before is the
            # mirror image, so its record must not match (a run without laterals reuses its older records)
            settings["lateral_hanging"] = "detector side"
        if self.slab_depth > 0 and g.pixel_spacing[0] != g.pixel_spacing[1]:  # slab DRRs took the row spacing alone
            settings["slab_pixel_spacing"] = "row and column"  # before: their records must not match (square ones do)
        return json.loads(json.dumps(settings))

    def _inputs(self, case: CTCase) -> list:
        """The signature of the files a CT's outputs are made from (:func:`input_signature`)."""
        return input_signature([case.image, case.labels if self.project_labels else None,
                                case.label_names if self.project_labels else None])

    # ------------------------------------------------------------------ one CT
    def _read(self, case: CTCase) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict, list]:
        """A CT's HU, affine, (when projected) label map and its channels (label value -> name), and its inputs'
        signature taken before they were read: a file replaced while it is read is rendered again by the next run.
        A label map or names file that would lose structures fails here, before anything is rendered."""
        inputs = self._inputs(case)
        hu, affine = load_ct(case.image)
        if not (self.project_labels and case.labels is not None) or self.slab_depth > 0:  # slabs carry no labels
            return hu, affine, None, {}, inputs
        names = read_label_names(case.label_names)
        labels = load_label_map(case.labels, hu.shape, affine)
        return hu, affine, labels, self._label_channels(case, labels, names), inputs

    @staticmethod
    def _label_channels(case: CTCase, labels: np.ndarray, names: dict[int, str]) -> dict[int, str]:
        """:func:`label_channels` of a case's label map, from the one scan of its values: the channels to project,
        once the map is known to hold only values its names file names (nothing vanishes from the projections)."""
        from unimiss_monai.drr.labels import label_values

        return label_channels(case.labels, label_values(labels).tolist(), names, case.label_names)

    def _process(self, case: CTCase, read: tuple, bar: tqdm, rank: int = 0) -> None:
        from unimiss_monai.drr import prepare_volume

        hu, affine, labels, channels, inputs = read
        with staged_dir(self.output_dir / case.name) as tmp:
            if self.slab_depth > 0:
                entry = render_slab_pairs(self, case, hu, affine, tmp, bar)
            else:
                prepared = prepare_volume(hu, affine, device=None if self.device == "cpu" else self.device)
                entry = self._render_whole(case, prepared, labels, channels, tmp, bar)
            local = relative(entry, tmp)
            save_json(local, tmp / f"{case.name}_datalist.json")
            # the done record goes in last; the folder appears whole or not at all (staged_dir)
            run_entry = relative(entry, tmp, prefix=case.name)  # run-level paths are relative to output_dir
            record = {"settings": self._settings(case), "inputs": inputs, "rank": rank,
                      "testing": run_entry["testing"], "training": run_entry["training"]}
            save_json(record, tmp / f"{case.name}_done.json")
            # only a folder holding every file its record lists goes in place: reruns would skip one lacking some
            missing = [f for f in listed_files(local) if not (tmp / f).is_file()]
            if missing:
                raise FileNotFoundError(f"{tmp / missing[0]}: {len(missing)} file(s) of this CT vanished from its "
                                        "staging folder before it was finished (removed by another process); run again")

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

    def drr_affine(self, view: str, isocenter: np.ndarray, shape=None, spacing=None) -> np.ndarray:
        """Affine of a DRR stored column-first ``(W, H)``: columns 0/1 are the detector column/row steps in mm (of
        this run's detector, or of ``shape`` and ``spacing``: a slab DRR's)."""
        from unimiss_monai.drr import detector_affine

        g = self.geometry
        row_first = detector_affine(view, shape or g.detector_shape, spacing or g.pixel_spacing, g.sdd, g.sid, isocenter)
        return row_first[:, [1, 0, 2, 3]]

    def _render_whole(self, case: CTCase, prepared, labels, channels: dict[int, str], out: Path, bar: tqdm) -> dict:
        from unimiss_monai.drr import to_radiograph

        images = self._render_views(prepared, None, bar)
        previews = to_radiograph(images)
        thickness = None if labels is None else self._project_label_map(labels, list(channels), prepared.affine)
        testing = []
        for v, view in enumerate(self.views):
            affine = self.drr_affine(view, prepared.center)
            item = {"name": case.name, "ct": os.path.abspath(case.image), "view": view,
                    "image": save_nifti(images[v].T, affine, out / f"{case.name}_{view}.nii.gz"),
                    "preview": save_png(previews[v], out / f"{case.name}_{view}.png", self.geometry.pixel_spacing)}
            if thickness is not None:
                item["label"] = save_nifti(np.moveaxis(thickness[v], 0, -1).transpose(1, 0, 2), affine,
                                           out / f"{case.name}_{view}_labels.nii.gz")
            testing.append(item)
        if channels:
            save_json({str(i): n for i, n in enumerate(channels.values())}, out / f"{case.name}_labels.json")
        sheet = save_contact_sheet(previews, self.views, out / f"{case.name}_contact_sheet.png", title=case.name,
                                   overlays=None if thickness is None else thickness.sum(axis=1),
                                   pixel_spacing=self.geometry.pixel_spacing)
        return {"testing": testing, "training": [], "contact_sheet": sheet}

    def _project_label_map(self, labels: np.ndarray, values: list[int], affine: np.ndarray) -> np.ndarray:
        """``(V, C, H, W)`` projected thickness of the label ``values`` (the channels, in order)."""
        from unimiss_monai.drr import project_labels

        g = self.geometry
        thickness = project_labels(labels, affine, values, views=self.views, detector_shape=g.detector_shape,
                                   pixel_spacing=g.pixel_spacing, sdd=g.sdd, sid=g.sid)
        return np.asarray(thickness)


def _pair(value) -> tuple[int, int]:
    values = [int(v) for v in np.broadcast_to(np.asarray(value), (2,))]
    return values[0], values[1]

