"""The data layout of the official UniMiSS / UniMiSS+ code as a pretraining datalist.

The reference pretraining (github.com/YtongXie/UniMiSS-code: ``UniMiSSPlus/data_loader3D2D.py``,
``UniMiSSPlus/data_loader2D.py``, ``UniMiSSPlus/data/listSSL.py``; ``UniMiSS/data_loader3D.py`` likewise) reads one
data root::

    <root>/3D_images.txt                  one path per line, relative to <root> (first column; listSSL.py)
    <root>/2D_images.txt                  likewise for the 2D images
    <root>/3D_subvolumes/<name>.nii.gz    CT sub-volumes (24 axial slices, HU; extract_subvolumes.py)
    <root>/3D_subvolumes/<name>.png       UniMiSS+ only: the DRR of that sub-volume, same folder and name
    <root>/2D_images/<name>.png           chest X-rays (ChestX-ray8 resized to 512x512)

UniMiSS (ECCV 2022) uses the same layout without the DRR PNGs. When a list file is absent its folder is searched
instead. :func:`official_datalist` (``python -m unimiss_monai official-datalist``) writes
``{"ct": [{"image": <sub-volume>, "drr": <png>}], "xray": [{"image": <png>}]}``, which
:func:`unimiss_monai.data.load_pretraining_datalist` reads, with paths relative to the datalist's folder.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from unimiss_monai.data.image_formats import NIFTI_SUFFIXES, SCANNED_SUFFIXES, image_suffix

__all__ = ["build_official_datalist", "official_datalist"]

#: suffixes PIL opens; other scanned formats (DICOM, NRRD, ...) are only checked for being empty
_PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _nifti_problem(path: Path) -> str | None:
    """Why the NIfTI file ``path`` cannot be read, from its header and its size alone, or None.

    The reference data loader reads every sub-volume each epoch, so a damaged one stops pretraining hours in; the
    voxels are not decompressed here (thousands of sub-volumes), only the header and the size the data needs."""
    import gzip

    import nibabel as nib

    gz = path.name.lower().endswith(".gz")
    try:
        image = nib.load(path)  # the header and its extensions only: the voxels stay on disk
        header = image.header
        # where the voxels start (after any header extension) plus their size
        needed = int(image.dataobj.offset) + int(np.prod(header.get_data_shape(), dtype=np.int64)) * int(
            header.get_data_dtype().itemsize)
    except Exception as err:  # noqa: BLE001 - gzip, zlib and nibabel each raise their own types
        reason = str(err).strip().splitlines()[0][:120] if str(err).strip() else type(err).__name__
        return f"no readable NIfTI header ({reason})"
    if gz:
        # the gzip trailer ends with the uncompressed size (mod 2**32): a copy cut short ends in other bytes
        with open(path, "rb") as f:
            f.seek(-4, os.SEEK_END)
            stored = int.from_bytes(f.read(4), "little")
        if stored != needed % 2**32:
            # rare (a writer's padding after the voxels, several gzip members): only then is the stream read through
            try:
                with gzip.open(path, "rb") as f:
                    got = sum(len(chunk) for chunk in iter(lambda: f.read(1 << 20), b""))
            except Exception as err:  # noqa: BLE001 - EOFError for a copy cut short, zlib.error for damaged bytes
                return f"cut short or damaged ({type(err).__name__}: {str(err).strip()[:120]})"
            if got < needed:
                return f"cut short ({got} bytes of NIfTI where its header needs {needed})"
    elif path.stat().st_size < needed:
        return f"cut short ({path.stat().st_size} bytes where its header needs {needed})"
    return None


def _unusable(path: Path) -> str | None:
    """Why the listed image ``path`` cannot be read, with the fix, or None: empty, or a header that is not the format
    its suffix names. Said here, once per file, rather than as a failed sample in every epoch of the run."""
    size = path.stat().st_size
    if size == 0:
        return "empty (0 bytes); copy or render it again, or remove it"
    if image_suffix(path.name, NIFTI_SUFFIXES):
        problem = _nifti_problem(path)
    elif image_suffix(path.name, _PIL_SUFFIXES):
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                im.verify()  # chunk checksums, no decoding: a text file renamed or a copy cut short fails
            problem = None
        except Exception as err:  # noqa: BLE001 - PIL raises many types for a damaged file
            reason = str(err).strip().splitlines()[0][:120] if str(err).strip() else type(err).__name__
            if isinstance(err, UnidentifiedImageError):  # PIL's line repeats the path already said
                reason = "no image header PIL knows"
            problem = f"not a readable {image_suffix(path.name, _PIL_SUFFIXES)[1:].upper()} image ({reason})"
    else:
        return None
    return f"{problem}; copy or render it again, or remove it" if problem else None


def _listed(root: Path, list_name: str, folder: str) -> tuple[list[str], str, list[str]]:
    """Relative paths from ``root/list_name`` (first column of each non-empty line, each path once), else every file
    under ``root/folder`` (sorted, hidden files left out); where they came from, for messages; and one line per
    repeated path of the list file, which is listed once (a repeat would train that sample twice as often)."""
    list_path = root / list_name
    if list_path.is_file():
        data = list_path.read_bytes()
        try:
            text = data.decode("utf-8-sig")  # listSSL.py writes UTF-8; an editor may add a byte-order mark
        except UnicodeDecodeError as err:
            # Windows editors save "Unicode" as UTF-16: its byte-order mark is the usual first unreadable byte
            bom = data[:2] in (b"\xff\xfe", b"\xfe\xff")
            where = "starts with a UTF-16 byte-order mark" if bom else f"byte {err.start} is not UTF-8"
            raise ValueError(f"{list_path}: not UTF-8 text ({where}); save it as UTF-8 text, one path per line, or "
                             f"delete it to search {folder}/ instead") from None
        first_line: dict[str, int] = {}
        lines, repeats = [], []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            rel = line.split()[0]
            key = os.path.normpath(rel)  # ./3D_subvolumes/a.nii.gz is 3D_subvolumes/a.nii.gz
            if key in first_line:
                repeats.append(f"{list_path}: line {number} ({rel}) repeats line {first_line[key]}; listed once")
                continue
            first_line[key] = number
            lines.append(rel)
        return lines, list_name, repeats
    base = root / folder
    if base.is_dir():
        files = sorted(p for p in base.rglob("*") if p.is_file() and not p.name.startswith("."))
        return [p.relative_to(root).as_posix() for p in files], f"{folder}/", []
    return [], "", []


def build_official_datalist(
    root: str | os.PathLike,
    list_3d: str = "3D_images.txt",
    list_2d: str = "2D_images.txt",
    ct_dir: str = "3D_subvolumes",
    xray_dir: str = "2D_images",
    require_drr: bool = True,
    relative_to: str | os.PathLike | None = None,
) -> tuple[dict[str, list[dict]], list[str]]:
    """Pair the CT sub-volumes of an official UniMiSS(+) data root with their DRRs and list its X-rays.

    Args:
        root: the data root (the reference code's ``--data_path``).
        list_3d / list_2d: list files under ``root``; when absent, ``ct_dir`` / ``xray_dir`` are searched.
        require_drr: leave out a CT without its ``<name>.png`` DRR (False: list it without ``drr``, for
            ``drr_on_the_fly`` or the UniMiSS recipe).
        relative_to: folder the written paths are relative to (the datalist's); default absolute paths.

    Returns:
        ``({"ct": [...], "xray": [...]}, problems)``: one line per file that could not be used, naming it, and per
        repeated line of a list file (its path is listed once).

    Raises:
        ValueError: a list file that is not UTF-8 text (one line naming it and the fix).
    """
    root = Path(root).expanduser().resolve()
    problems: list[str] = []
    if not root.is_dir():
        what = "a file, not a folder" if root.exists() else "no such folder"
        return {"ct": [], "xray": []}, [f"{root}: {what}; pass the official data root (its --data_path)"]

    def out_path(p: Path) -> str:
        return os.path.relpath(p, relative_to) if relative_to is not None else str(p)

    ct_paths, ct_source, repeats = _listed(root, list_3d, ct_dir)
    problems += repeats
    if not ct_source:
        problems.append(f"{root}: neither {list_3d} nor {ct_dir}/ found: no CT")
    volumes = {rel: rel[: -len(image_suffix(rel, NIFTI_SUFFIXES))] for rel in ct_paths if image_suffix(rel, NIFTI_SUFFIXES)}
    stems = set(volumes.values())
    by_stem: dict[str, list[str]] = {}
    for rel, stem in volumes.items():
        if (root / rel).is_file():  # one listed but absent is said below, and leaves the other unambiguous
            by_stem.setdefault(os.path.normpath(stem), []).append(rel)
    # a.nii and a.nii.gz would both pair with a.png, and a DRR render names its output by the case name alone: which
    # one is meant is unknown, so both are left out with one line naming them, as every unusable file is here, and the
    # rest of the root is still written (refusing the whole root for one stray copy would hold up the other thousands)
    ambiguous = {rel for same in by_stem.values() if len(same) > 1 for rel in same}
    for same in (s for s in by_stem.values() if len(s) > 1):
        name, two = Path(volumes[same[0]]).name, len(same) == 2
        problems.append(f"{' and '.join(str(root / r) for r in same)} have the same case name {name!r}, so they would "
                        f"share the DRR {name}.png; {'both' if two else 'all'} skipped: delete or rename "
                        f"{'one' if two else 'all but one'} of them")
    ct: list[dict] = []
    for rel in ct_paths:
        if rel not in volumes:
            stem = rel[: -len(".png")] if rel.lower().endswith(".png") else None
            if stem is not None and stem in stems:
                continue  # a DRR next to its CT (listSSL.py lists both when run after rendering)
            why = "a DRR with no CT sub-volume of the same name" if stem is not None else "not a NIfTI volume (.nii, .nii.gz)"
            problems.append(f"{root / rel}: {why} (from {ct_source}); skipped")
            continue
        if rel in ambiguous:
            continue
        image = root / rel
        if not image.is_file():
            problems.append(f"{image}: listed in {ct_source} but missing; skipped")
            continue
        if problem := _unusable(image):
            problems.append(f"{image}: {problem}; skipped")
            continue
        entry = {"image": out_path(image)}
        drr = root / f"{volumes[rel]}.png"
        drr_problem = _unusable(drr) if drr.is_file() else None
        if drr_problem:
            then = "its CT skipped" if require_drr else "its CT listed without it"
            problems.append(f"{drr}: {drr_problem}; {then}")
            if require_drr:
                continue
        elif drr.is_file():
            entry["drr"] = out_path(drr)
        elif require_drr:
            problems.append(f"{image}: no DRR {drr.name} beside it; skipped (render it, or pass --require_drr False to train it with drr_on_the_fly)")
            continue
        ct.append(entry)

    xray_paths, xray_source, repeats = _listed(root, list_2d, xray_dir)
    problems += repeats
    if not xray_source:
        problems.append(f"{root}: neither {list_2d} nor {xray_dir}/ found: no X-ray")
    xray: list[dict] = []
    for rel in xray_paths:
        image = root / rel
        if not image_suffix(rel, SCANNED_SUFFIXES):
            problems.append(f"{image}: not an image ({', '.join(SCANNED_SUFFIXES)}) (from {xray_source}); skipped")
        elif not image.is_file():
            problems.append(f"{image}: listed in {xray_source} but missing; skipped")
        elif problem := _unusable(image):
            problems.append(f"{image}: {problem}; skipped")
        else:
            xray.append({"image": out_path(image)})
    return {"ct": ct, "xray": xray}, problems


def official_datalist(
    root: str,
    out: str,
    list_3d: str = "3D_images.txt",
    list_2d: str = "2D_images.txt",
    require_drr: bool = True,
    overwrite: bool = False,
) -> None:
    """Write a pretraining datalist for an official UniMiSS / UniMiSS+ data root.

    Prints one line per file it cannot use (to stderr) and a summary; exits non-zero when nothing usable is found
    and never replaces an existing ``--out`` unless ``--overwrite``.

    Args:
        root: the official data root (``3D_subvolumes/``, ``2D_images/``, ``3D_images.txt``, ``2D_images.txt``).
        out: the datalist JSON to write; its paths are relative to its folder.
        list_3d: the CT list file's name under ``root``; when absent, ``root/3D_subvolumes`` is searched.
        list_2d: the X-ray list file's name under ``root``; when absent, ``root/2D_images`` is searched.
        require_drr: leave out a CT without a readable ``<name>.png`` DRR beside it (False: list it without one).
        overwrite: replace an existing ``out``.
    """
    from unimiss_monai.data.writers import check_output_file, save_json

    # a folder, a file in the way of its folder, or an existing datalist: refused before the data root is walked
    out_path = check_output_file(Path(out).expanduser().resolve(), overwrite, "official-datalist: --out")
    datalist, problems = build_official_datalist(root, list_3d, list_2d, require_drr=require_drr, relative_to=out_path.parent)
    for line in problems:
        print(f"official-datalist: {line}", file=sys.stderr)
    if not datalist["ct"] and not datalist["xray"]:
        raise SystemExit(f"official-datalist: no usable CT or X-ray under {Path(root).expanduser().resolve()}; nothing written")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_json(datalist, out_path)
    with_drr = sum("drr" in e for e in datalist["ct"])
    said = f" ({len(problems)} line(s) on stderr say what was left out)" if problems else ""
    print(f"[official-datalist] {len(datalist['ct'])} CT ({with_drr} with DRR) and {len(datalist['xray'])} X-ray entries "
          f"-> {out_path}{said}")
