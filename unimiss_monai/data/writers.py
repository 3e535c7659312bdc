"""Output writers that never leave a half-written file: each writes a temporary sibling, then renames it into place."""

from __future__ import annotations

import json
import os
import shutil
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from unimiss_monai.data.folder_marker import changed_file, marker_text, unlisted_file
from unimiss_monai.data.grid_checks import is_sheared
from unimiss_monai.data.temporaries import (OLD_TAG, TMP_TAG, held_temporary, remove_leftovers,
                                            remove_stale_temporaries, remove_temporary, temporaries_of,
                                            temporary_beside)
from unimiss_monai.utils.paths import check_no_symlink_loop, file_in_the_way

__all__ = [
    "OUTPUT_MARKER", "atomic_path", "check_output_dir", "check_output_file", "check_replaceable", "check_replaceable_json",
    "keep_previous", "remove_leftovers", "remove_stale_temporaries", "save_bytes", "save_torch", "staged_dir", "save_contact_sheet", "save_ct",
    "save_json", "save_nifti", "save_png", "temporary_beside",
]


def _make_parent(path: Path) -> None:
    """Create ``path``'s parent folders, unless one of them is a staging folder of :func:`staged_dir`: one that
    vanished was removed by another process, and making it again would hide that its earlier files are gone."""
    for folder in (path.parent, *path.parent.parents):
        if folder.exists():
            break
        if folder.name.endswith(TMP_TAG):
            raise FileNotFoundError(
                f"{folder}: this staging folder vanished while it was being written (another process removed it); "
                "run again"
            )
    _check_parents(path, "output")
    path.parent.mkdir(parents=True, exist_ok=True)


def _check_parents(path: Path, what: str) -> None:
    """Refuse, in one line, a ``path`` whose nearest existing parent is a file: no folder can be made inside it."""
    blocker = file_in_the_way(path.parent)
    if blocker is not None:
        raise FileExistsError(f"{what} {path}: {blocker} is a file, not a folder, so nothing can be written inside it; "
                              "move that file away or choose another path")


def check_output_file(
    path: str | Path, overwrite: bool = True, what: str = "output", flag: str = "--overwrite"
) -> Path:
    """Refuse, in one line (``FileExistsError``) naming ``what`` (e.g. ``"bench-drr --out"``), an output file
    ``path`` that is a folder, that lies under a file where a folder has to be, or that exists when ``overwrite`` is
    false, which the message says ``flag`` allows (the command's own option: ``--force`` for convert-checkpoint);
    returns ``path``. Commands call it before their work, :func:`atomic_path` before every write."""
    path = Path(path)
    if path.is_dir():
        raise FileExistsError(f"{what} {path} is a folder, not a file: give the path of a file (a new name inside "
                              "it, or elsewhere)")
    _check_parents(path, what)
    if not overwrite and (path.exists() or path.is_symlink()):
        raise FileExistsError(f"{what} {path} exists and is not replaced: pass {flag} true to replace it, or "
                              "choose another path")
    return path


#: written into every folder :func:`staged_dir` assembles: only a folder holding it may be replaced by a rerun
OUTPUT_MARKER = ".unimiss_monai_output"


def check_replaceable(path: str | Path) -> None:
    """Raise ``FileExistsError`` when ``path`` exists and is not a folder this package wrote (see :func:`staged_dir`),
    or holds a file its marker does not list, or one changed since (:mod:`~unimiss_monai.data.folder_marker`)."""
    path = Path(path)
    if path.exists() and not (path / OUTPUT_MARKER).is_file():
        raise FileExistsError(
            f"{path} already exists and was not written by unimiss_monai; nothing in it is replaced: move it away or "
            "choose another output folder"
        )
    extra = unlisted_file(path, OUTPUT_MARKER) if path.is_dir() else None
    if extra is not None:  # a file the user put into a folder of ours is not deleted with it
        raise FileExistsError(f"{path / extra} was not written by unimiss_monai and would be deleted when {path} is "
                              "replaced; nothing is replaced: move that file away or choose another output folder")
    edited = changed_file(path, OUTPUT_MARKER) if path.is_dir() else None
    if edited is not None:  # nor is the user's edit of one of ours
        raise FileExistsError(f"{path / edited} was changed after unimiss_monai wrote it (an edit of yours?) and "
                              f"would be lost when {path} is replaced; nothing is replaced: move that file away (a "
                              "copy under another name keeps your edit) or choose another output folder")


def check_replaceable_json(path: str | Path, keys: Sequence[str]) -> None:
    """Raise ``FileExistsError`` unless ``path`` is absent or a JSON object of exactly ``keys``, as this package
    writes it there: a file of the user's of that name is neither removed nor replaced."""
    path = Path(path)
    try:
        content = json.loads(path.read_text())
    except FileNotFoundError:  # none, or another rank of the run removed it meanwhile
        return
    except (OSError, ValueError):
        content = None
    if not isinstance(content, dict) or set(content) != set(keys):
        # all of ours and more: ours, edited (an 'xray' section added for pretraining); the edit would be lost
        added = sorted(set(content) - set(keys)) if isinstance(content, dict) and set(keys) <= set(content) else []
        why = (f"holds keys unimiss_monai does not write there ({', '.join(map(repr, added))}: an edit of yours?)"
               if added else "was not written by unimiss_monai")
        raise FileExistsError(f"{path} {why} and would be replaced: move it away (a copy under another name keeps "
                              "your edit) or choose another output folder")


@contextmanager
def staged_dir(path: str | Path) -> Iterator[Path]:
    """Yield a new hidden folder beside ``path`` to assemble a whole output folder in; on success it replaces
    ``path``, on error it is deleted. Permissions follow the umask, as with ``mkdir``.

    An existing ``path`` is replaced only when this package made it (it holds :data:`OUTPUT_MARKER`): a user's folder
    of the same name raises ``FileExistsError`` before anything is written, and is left as it was.
    """
    path = Path(path)
    _restore_previous(path)
    check_replaceable(path)
    _make_parent(path)
    remove_leftovers(path, TMP_TAG)
    with held_temporary(path, folder=True) as tmp:  # removed with its contents if anything below fails
        yield tmp
        if not tmp.is_dir():  # removed by another process: there is nothing whole to put in place
            raise FileNotFoundError(f"{tmp}: this staging folder vanished before it was complete; run again")
        (tmp / OUTPUT_MARKER).write_text(marker_text(tmp))
        check_replaceable(path)  # the user may have put a folder there while this one was assembled
        # two renames, never a removal in between: a run killed at any point leaves the old folder or the new one,
        # whole (a half-removed old folder would have lost its marker and blocked every rerun)
        aside = None
        if path.exists():
            aside = temporary_beside(path, OLD_TAG, folder=True)
            os.replace(path, aside)  # onto the empty folder just made
        try:
            os.replace(tmp, path)
        except BaseException:
            if aside is not None:  # the old folder back in place at once, not only on the next run
                _restore_previous(path)
            raise
        if aside is not None:
            remove_temporary(aside)


def _restore_previous(path: Path) -> None:
    """Put back the folder a run killed between :func:`staged_dir`'s two renames moved aside (``path`` is missing),
    and remove those a run killed after them left (``path`` is the new folder)."""
    aside = temporaries_of(path, OLD_TAG)
    if aside and not (path.exists() or path.is_symlink()):
        os.replace(aside[0], path)
    remove_leftovers(path, OLD_TAG)


def check_output_dir(output_dir: str | os.PathLike, input_dir: str | os.PathLike | None, what: str = "output_dir",
                     input_what: str = "dataset_dir") -> str:
    """Refuse an output folder that is, holds or lies inside the input folder: outputs there would be read back as
    inputs by the next run (or replace them), and either folder when it leads into a loop of symbolic links (``what``
    and ``input_what`` name them). Returns ``output_dir``; raises ``ValueError`` with one line otherwise."""
    # resolve() raises a bare RuntimeError on such a loop (Python 3.11, 3.12), and mkdir an OSError: named here instead
    check_no_symlink_loop(Path(output_dir).expanduser(), what)
    if input_dir is None:
        return str(output_dir)
    check_no_symlink_loop(Path(input_dir).expanduser(), input_what)
    out, src = Path(output_dir).expanduser().resolve(), Path(input_dir).expanduser().resolve()
    if out == src or src in out.parents or out in src.parents:
        raise ValueError(
            f"{what} {str(output_dir)!r} overlaps the input folder {str(input_dir)!r}: outputs there would be mistaken "
            "for inputs; choose an output folder outside it (e.g. outputs/<bundle>)"
        )
    return str(output_dir)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffixes, so writers pick the same format); on success rename it to
    ``path``, on error delete it. The parent folder is created (but never a staging folder that vanished); a
    ``path`` that is a folder, or under a file, is refused in one line (:func:`check_output_file`)."""
    path = check_output_file(path)
    _make_parent(path)
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    marker = f"{TMP_TAG}{suffix}"
    # a writer killed before its rename leaves its temporary file behind: the next write of the same file removes it
    remove_leftovers(path, marker)
    with held_temporary(path, marker) as tmp:  # removed if the write fails
        yield tmp
        os.replace(tmp, path)


def keep_previous(path: str | Path) -> Path | None:
    """Copy an existing ``path`` to ``<path>.prev`` (atomically) before it is replaced; returns that copy, or ``None``
    when there was nothing to keep.

    When ``<path>.prev`` exists already (an earlier replacement, or a file of the user's), the copy goes to the first
    free ``<path>.prev.2``, ``<path>.prev.3``, ...: no earlier copy is overwritten, so the model a folder started with
    survives any number of replacements.
    """
    path = Path(path)
    if not path.is_file():
        return None
    previous, n = path.with_name(path.name + ".prev"), 1
    while previous.exists():
        n += 1
        previous = path.with_name(f"{path.name}.prev.{n}")
    with atomic_path(previous) as tmp:
        shutil.copyfile(path, tmp)
    return previous


def save_torch(obj, path: str | Path) -> Path:
    """``torch.save`` (weights, checkpoints) with every tensor on the CPU: a kill never leaves a half-written file,
    and a file written by a GPU run loads with a plain ``torch.load`` on a machine without one."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(_on_cpu(obj), tmp)
    return Path(path)


def _on_cpu(obj):
    """``obj`` with its tensors, also inside dicts, lists and tuples, on the CPU (those already there are not copied);
    a state dict keeps its ``_metadata``, which ``load_state_dict`` reads."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu() if obj.device.type != "cpu" else obj
    if isinstance(obj, OrderedDict):
        out = OrderedDict((k, _on_cpu(v)) for k, v in obj.items())
        if hasattr(obj, "_metadata"):
            out._metadata = obj._metadata
        return out
    if isinstance(obj, dict):
        return {k: _on_cpu(v) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a named tuple
        return type(obj)(*(_on_cpu(v) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(_on_cpu(v) for v in obj)
    return obj


def save_bytes(data: str | bytes, path: str | Path) -> Path:
    """Write text (UTF-8) or bytes."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    return Path(path)


def save_json(obj, path: str | Path) -> Path:
    """Write ``obj`` as indented JSON."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2))
    return Path(path)


def save_ct(hu: np.ndarray, affine: np.ndarray, path: str | Path) -> Path:
    """Write a CT volume in HU as NIfTI: as int16 when that loses nothing (every voxel a whole number within int16's
    range, as scanners store CT), else as float32. Readers get the same values either way; int16 halves the bytes to
    compress, which is most of the time of writing a CT (see the DRR bundle docs, slab mode)."""
    hu = np.asarray(hu)
    with np.errstate(invalid="ignore"):  # NaN, inf and out-of-range values do not survive the cast: caught below
        whole = hu.astype(np.int16)
    return save_nifti(whole if np.array_equal(whole, hu) else hu.astype(np.float32, copy=False), affine, path)


def save_nifti(array: np.ndarray, affine: np.ndarray, path: str | Path) -> Path:
    """Write ``array`` with its 4x4 ``affine`` as NIfTI-1 (``.nii`` or ``.nii.gz`` by the name)."""
    import nibabel as nib

    image = nib.Nifti1Image(np.asarray(array), np.asarray(affine, dtype=np.float64))
    # a qform holds rotations and voxel sizes only: a sheared affine (a tilted gantry) would get a qform that is no
    # longer the same grid, which readers take in place of the sform, so then the sform alone is written
    image.set_qform(image.affine, code=0 if is_sheared(image.affine) else 1)
    image.set_sform(image.affine, code=1)
    with atomic_path(path) as tmp:
        nib.save(image, tmp)
    return Path(path)


def save_png(image: np.ndarray, path: str | Path, pixel_spacing: Sequence[float] | float | None = None) -> Path:
    """Write a (H, W) uint8 grey or (H, W, 3|4) uint8 colour image as PNG.

    With ``pixel_spacing`` ``(row, col)`` mm (a scalar for square pixels) the picture is resampled to square pixels
    of the size :func:`~unimiss_monai.conventions.display_shape` gives, since viewers ignore a PNG's physical pixel
    size: a resized slab DRR of 0.3 x 1.8 mm pixels stored as 224 x 224 would otherwise look six times too tall.
    """
    from PIL import Image

    from unimiss_monai.conventions import display_shape

    picture = Image.fromarray(np.asarray(image))
    if pixel_spacing is not None:
        h, w = display_shape(np.shape(image)[:2], pixel_spacing)
        if (h, w) != np.shape(image)[:2]:
            picture = picture.resize((w, h), Image.Resampling.BILINEAR)  # PIL widens the filter when shrinking
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG")
    return Path(path)


def save_contact_sheet(images: np.ndarray, titles: Sequence[str], path: str | Path, title: str = "",
                       overlays: np.ndarray | None = None, pixel_spacing: Sequence | float | None = None) -> Path:
    """One PNG with the (N, H, W) grey ``images`` side by side, each under its title; when ``overlays`` (N, H, W) is
    given (the projected thickness of all labelled structures, mm), a second row shows it as a heat map over the
    image, on one scale with a colour bar. A heat map of one quantity, not structure colours: with dozens of
    structures (TotalSegmentator) a colour each would not read; the report draws the named structures in theirs.

    ``pixel_spacing`` ``(row, col)`` mm, one pair for all images or ``(N, 2)``, draws each image in its true
    proportions; without it every pixel is drawn square."""
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    n = len(images)
    # imshow's aspect is a pixel's height over its width
    aspects = [1.0] * n if pixel_spacing is None else [
        float(dr) / float(dc) for dr, dc in np.broadcast_to(np.asarray(pixel_spacing, dtype=float), (n, 2))]
    rows = 1 if overlays is None else 2
    fig = Figure(figsize=(3.2 * n + (0.8 if overlays is not None else 0), 3.4 * rows), layout="constrained")
    axes = fig.subplots(rows, n, squeeze=False)
    top = float(np.max(overlays)) if overlays is not None and np.size(overlays) else 0.0
    shown = None
    for i in range(n):
        axes[0, i].imshow(images[i], cmap="gray", aspect=aspects[i])
        axes[0, i].set_title(titles[i])
        if overlays is not None:
            axes[1, i].imshow(images[i], cmap="gray", aspect=aspects[i])
            masked = np.ma.masked_less_equal(overlays[i], 0)
            shown = axes[1, i].imshow(masked, cmap="turbo", alpha=0.45, vmin=0.0, vmax=max(top, 1e-6),
                                      aspect=aspects[i])
            axes[1, i].set_title(f"{titles[i]}: labelled thickness")
    for ax in axes.ravel():
        ax.axis("off")
    if shown is not None:
        fig.colorbar(shown, ax=list(axes[1]), shrink=0.8, label="labelled tissue along the ray (mm)")
    if title:
        fig.suptitle(title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return Path(path)
