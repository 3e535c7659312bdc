"""Dictionary transforms that read the files of a case, and write them during post-processing: its prediction, a
picture of it."""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from contextlib import ExitStack
from contextvars import ContextVar
from pathlib import Path

import torch
from monai.config import KeysCollection
from monai.data import FolderLayout
from monai.transforms import LoadImaged, MapTransform, SaveImaged

from unimiss_monai.data.case_names import OutputNames, split_image_name
from unimiss_monai.data.case_outputs import case_file, one_case
from unimiss_monai.data.output_ledger import check_own_file
from unimiss_monai.data.xray import (
    drop_trailing_singletons,
    source_name,
    write_overlay_png,
)
from unimiss_monai.transforms.io.array import register_series_reader

__all__ = [
    "LoadCTImageD", "LoadCTImageDict", "LoadCTImaged", "SaveCaseImageD", "SaveCaseImageDict", "SaveCaseImaged",
    "SaveOverlayPNGD", "SaveOverlayPNGDict", "SaveOverlayPNGd",
]


class LoadCTImaged(LoadImaged):
    """Dictionary form of :class:`~unimiss_monai.transforms.io.array.LoadCTImage`: MONAI ``LoadImaged`` that reads a
    folder of grey DICOM slices with float pixels, every other input as ``LoadImaged`` does. Arguments are
    ``LoadImaged``'s; reader arguments reach the series reader too."""

    def __init__(self, keys: KeysCollection, *args, **kwargs) -> None:
        super().__init__(keys, *args, **kwargs)
        register_series_reader(self._loader, LoadImaged.__init__, keys, *args, **kwargs)


class SaveCaseImaged(SaveImaged):
    """MONAI ``SaveImaged`` whose file is named by the run's :class:`~unimiss_monai.data.case_names.OutputNames`
    (two inputs of one stem, ``x.nii.gz`` and ``x.png``, get two files instead of one overwriting the other), and
    which records the path it wrote under ``output_key``, for
    :class:`~unimiss_monai.handlers.InferenceSummary` to list beside the case.

    Args:
        keys: the image key to save (one).
        output_names: the names of the run's inputs, decided before the run; ``None``: each file's plain stem.
        output_key: data key of the written path. Defaults to ``"output"``.
        companions: the suffixes of the case's other outputs, written after this one (``"_overlay.png"``: by
            :class:`SaveOverlayPNGd`), checked before this one is written, so that a case one of whose files is the
            user's writes none. Defaults to none. Should a later output fail all the same (a full disk), the file
            written here is undone where the case is one of
            :func:`~unimiss_monai.data.case_outputs.one_case` (:class:`~unimiss_monai.transforms.SkipFailedd`).
        kwargs: the other ``SaveImaged`` arguments (``output_name_formatter`` and ``savepath_in_metadict`` are set
            here).

    A write that fails (a full disk) raises the writer's ``OSError``, not MONAI's ``RuntimeError`` that hides it,
    so that :class:`~unimiss_monai.transforms.SkipFailedd` fails that case alone; the files of the call (each key's,
    the failed one's part-written file among them) are undone with the case, or with the call outside of one.
    """

    def __init__(self, keys: KeysCollection, output_names: OutputNames | None = None, output_key: str = "output",
                 companions: Sequence[str] = (), **kwargs) -> None:
        self.output_names = output_names if output_names is not None else OutputNames([])
        super().__init__(keys, output_name_formatter=self.output_names, savepath_in_metadict=True, **kwargs)
        self.saver.folder_layout.__class__ = _StemLayout  # the same settings; the name is made another way
        self.saver.writers = tuple(_KeepingOSError(writer) for writer in self.saver.writers)
        self.output_key, self.companions = output_key, tuple(companions)

    def __call__(self, data):
        # the file each key goes to, as SaveImage names it: a file of that name of the user's is not replaced
        root = self.saver.folder_layout.output_dir
        paths = [Path(self.saver.folder_layout.filename(**self.saver.fname_formatter(_meta(data, key), self.saver)))
                 for key in self.key_iterator(dict(data))]
        for key in self.key_iterator(dict(data)):  # a case fails before any of its files is written
            stem = self.output_names(_meta(data, key), self.saver)["subject"]
            for suffix in self.companions:
                check_own_file(Path(root) / f"{stem}{suffix}", root)
        failed_writes: list[OSError] = []
        token = _WRITE_ERRORS.set(failed_writes)
        # checked, then recorded once written; undone should this write or a later output of the case fail
        with one_case(), ExitStack() as stack:
            for path in paths:
                stack.enter_context(case_file(path, root))
            try:
                d = super().__call__(data)
            except RuntimeError:
                if not failed_writes:
                    raise
                # SaveImage tried each writer, then raised a RuntimeError of its own with none of them as its cause
                raise failed_writes[0] from None
            finally:
                _WRITE_ERRORS.reset(token)
        for key in self.key_iterator(d):
            meta = getattr(d[key], "meta", None) or d.get(f"{key}_{self.meta_key_postfix}") or {}
            if meta.get("saved_to"):
                d[self.output_key] = str(meta["saved_to"])
        return d


_WRITE_ERRORS: ContextVar[list[OSError] | None] = ContextVar("unimiss_monai_write_errors", default=None)


class _KeepingOSError:
    """A writer class of ``SaveImage``'s list (called as the class is) whose writers keep the ``OSError`` their
    write raises in ``_WRITE_ERRORS``: ``SaveImage`` catches it, tries the next writer, then raises a
    ``RuntimeError`` of its own in which the ``OSError`` is only text."""

    def __init__(self, writer_cls: type) -> None:
        self.writer_cls = writer_cls

    def __call__(self, **kwargs):
        writer = self.writer_cls(**kwargs)
        write = writer.write

        def keeping(*args, **write_kwargs):
            errors = _WRITE_ERRORS.get()
            try:
                written = write(*args, **write_kwargs)
            except OSError as err:
                if errors is not None:
                    errors.append(err)
                raise
            if errors is not None:
                errors.clear()  # a file written after all: an error of another key is that key's own
            return written

        writer.write = keeping
        return writer

    def __repr__(self) -> str:
        return repr(self.writer_cls)  # SaveImage's message lists its writers


class _StemLayout(FolderLayout):
    """MONAI's ``FolderLayout`` for a subject that is already the output's stem. MONAI takes the subject for a file
    name and drops what follows its last dot as the format, so inputs ``a.v2.nii.gz`` and ``a.v3.nii.gz`` (stems
    ``a.v2``, ``a.v3``) both wrote ``a_seg.nii.gz``, the second over the first."""

    def filename(self, subject, idx=None, **kwargs):
        return super().filename(subject=f"{subject}.stem", idx=idx, **kwargs)  # the part dropped is this one


class SaveOverlayPNGd(MapTransform):
    """Write ``<output_dir>/<input name>_overlay.png``: the image with its predicted masks (post-processing).

    Args:
        keys: the mask key (``(S, X, Y)``, binary).
        image_key: the image key (``(C, X, Y)``, same size as the masks).
        output_dir: folder of the PNGs (created).
        names: structure names for the legend, one per mask channel.
        alpha: mask opacity. Defaults to 0.4.
        output_names: the names of the run's inputs (:class:`~unimiss_monai.data.case_names.OutputNames`, the same
            as the prediction file's); ``None``: the input file's stem.
        allow_missing_keys: skip missing mask keys, and write nothing when ``image_key`` is missing (otherwise a
            missing key raises ``KeyError``).
    """

    def __init__(self, keys: KeysCollection, image_key: str = "image", output_dir: str | os.PathLike = ".", names: Sequence[str] = (), alpha: float = 0.4, output_names: OutputNames | None = None, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_names = output_names
        self.image_key = image_key
        self.output_dir = Path(output_dir)
        self.names = list(names)
        self.alpha = alpha

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        if self.image_key not in d and self.allow_missing_keys:
            return d
        image = d[self.image_key]
        source = source_name(image)
        stem = self.output_names.name(source) if self.output_names is not None else split_image_name(source)[0]
        for key in self.key_iterator(d):
            mask, img = drop_trailing_singletons(d[key]), drop_trailing_singletons(image)
            with case_file(self.output_dir / f"{stem}_overlay.png", self.output_dir):
                write_overlay_png(self.output_dir / f"{stem}_overlay.png", img, mask, self.names, self.alpha)
        return d


def _meta(data, key) -> dict | None:
    """The metadata SaveImage names ``data[key]``'s file by: a MetaTensor's own (what SaveImage reads)."""
    return getattr(data[key], "meta", None)


SaveCaseImageD = SaveCaseImageDict = SaveCaseImaged
SaveOverlayPNGD = SaveOverlayPNGDict = SaveOverlayPNGd
LoadCTImageD = LoadCTImageDict = LoadCTImaged
