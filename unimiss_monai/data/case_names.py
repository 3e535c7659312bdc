"""The case names of one run's inputs: each names its outputs, so two inputs of one name would overwrite each other.

Names are compared case-insensitively: ``CT01`` and ``ct01`` are one file on a case-insensitive file system.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from unimiss_monai.data.image_formats import split_image_name

__all__ = ["CaseNames", "OutputNames", "NAME_KEY", "datalist_order", "datalist_place", "name_below", "named_inputs",
           "names_apart", "numbered_repeats"]

#: the data item key of a case's own name, which names its outputs where the file name would be shared: a DICOM
#: series folder's path below the scanned folder (``P1/ST1/SE1`` -> ``P1_ST1_SE1``) or a datalist entry's ``name``
NAME_KEY = "name"


def name_below(root: str | os.PathLike, path: str | os.PathLike) -> str:
    """The case name of ``path`` (a file or a DICOM series folder under ``root``) by its path below ``root``: its
    folders and its name without the format, joined by ``_`` (``P1/ST1/IM1.dcm`` -> ``P1_ST1_IM1``), a folder the name
    already starts with not repeated (``ct01/ct01_AP.png`` -> ``ct01_AP``, as the DRR bundle names its outputs). It
    depends on no other input, so it stays the same when inputs are added; ``root`` itself: its name."""
    relative = Path(os.path.abspath(path)).relative_to(os.path.abspath(root))
    if not relative.parts:
        return Path(os.path.abspath(root)).name
    stem = split_image_name(relative.name)[0]
    folders = [f for f in relative.parent.parts if not (stem == f or stem.startswith(f + "_"))]
    return "_".join([*folders, stem])


def names_apart(paths: Sequence[str | os.PathLike], names: Sequence[str], fixed: Sequence[bool] = ()) -> list[str]:
    """``names`` (one per file of ``paths``) with each name that several files share, in any letter case, replaced by
    each file's :func:`name_below` the folder that group's files share: TotalSegmentator's ``s0001/ct.nii.gz`` and
    ``s0002/ct.nii.gz``, both ``ct``, become ``s0001_ct`` and ``s0002_ct``. Each group is named apart from the others,
    so files of another name change nothing, and a name no other file shares stays as it is. ``fixed`` names (a
    datalist entry's own ``name``) are kept and join no group. Files of one name in one folder (``a.nii`` and
    ``a.nii.gz``) keep it: no path tells them apart, and the callers refuse them as one name."""
    fixed = list(fixed) or [False] * len(names)
    groups: dict[str, list[int]] = {}
    for i, (name, kept) in enumerate(zip(names, fixed)):
        if not kept:
            groups.setdefault(name.casefold(), []).append(i)
    out = list(names)
    for members in (m for m in groups.values() if len(m) > 1):
        root = os.path.commonpath([os.path.abspath(Path(paths[i]).parent) for i in members])
        for i in members:
            out[i] = name_below(root, paths[i])
    return out


def named_inputs(root: str | os.PathLike, paths: Iterable[str | os.PathLike],
                 series: Iterable[str | os.PathLike] = ()) -> list[dict[str, str]]:
    """``[{"image": path}, ...]`` of the inputs found under ``root``, each in a sub-folder and each DICOM series
    folder (``series``, as the CT bundles name them) with ``"name"``: its :func:`name_below`. Alike file names in
    sub-folders (``P1/IM1.dcm``, ``P2/IM1.dcm``) numbered by their order instead would pass to other inputs as inputs
    are added, and a rerun would write one input's outputs under another's earlier name."""
    paths, series, root = [Path(p) for p in paths], {Path(p) for p in series}, Path(root)
    return [{"image": str(p), **({NAME_KEY: name_below(root, p)} if p in series or p.parent != root else {})}
            for p in paths]


def _free_name(name: str, given: set[str], taken: set[str]) -> str:
    """``name``, or where an earlier input was ``given`` it, the first of ``name_2``, ``name_3`` ... that none was
    given and none wants as it is (``taken``); both sets casefolded."""
    final, n = name, 1
    while final.casefold() in given or (n > 1 and final.casefold() in taken):
        n += 1
        final = f"{name}_{n}"
    return final


def numbered_repeats(names: Sequence[str]) -> list[str]:
    """``names`` (one per entry of a run, in its order) with each repeat numbered in turn (``a.png``, ``a.png`` ->
    ``a.png``, ``a.png_2``), never into a name that another entry has as it is. Entries of one image (two labels of
    one scan) then each have a row of their own name in a per-case file, where one name would hide which row is which
    entry's. Compared case-insensitively; the same list always gives the same names."""
    taken, given, out = {n.casefold() for n in names}, set(), []
    for name in names:
        out.append(final := _free_name(name, given, taken))
        given.add(final.casefold())
    return out


def datalist_place(seen: int, rank: int = 0, world: int = 1) -> int:
    """The datalist place (from 0) of case number ``seen`` (from 0) of rank ``rank`` of ``world`` ranks, for an
    evaluation whose sampler deals the entries unshuffled, in turn to each rank (MONAI's ``DistributedSampler`` with
    ``even_divisible=False, shuffle=False``; the bundles' evaluate configs set no sampler): item ``i`` of rank ``r``
    is entry ``i * world + r``; one process: ``seen`` as it is."""
    return seen * max(world, 1) + rank


def datalist_order(places: Sequence[Sequence[int]], count: int | None = None) -> list[int]:
    """The order that puts the cases of shards joined rank after rank back in datalist order: indices into the join,
    by each case's :func:`datalist_place` (``places``: one list per shard, one place per case). A report written in
    it, its repeated entries numbered in it (:func:`numbered_repeats`), is that of one process whatever the number of
    ranks: in rank order the second listing of an image dealt to rank 0 and its first to rank 1 would swap names.
    When the places do not number ``count`` cases (an output transform that gives no row per case), the join order
    as it is."""
    joined = [p for shard in places for p in shard]
    if count is not None and len(joined) != count:
        return list(range(count))
    return sorted(range(len(joined)), key=joined.__getitem__)


class CaseNames:
    """Which input took each case name in this run; a second input of a taken name is refused, never written.

    Example::

        names = CaseNames()
        if reason := names.clash("scan", "/b/scan.nii.gz", "it would overwrite out/scan_seg.nii.gz"):
            ...  # fail this case with ``reason``
        names.take("scan", "/b/scan.nii.gz")
    """

    def __init__(self) -> None:
        self._first: dict[str, str] = {}  # casefolded name -> the input that took it

    def clear(self) -> None:
        """Forget every name (a new run of the same writer)."""
        self._first.clear()

    def clash(self, name: str, source: str, consequence: str, fix: str = "") -> str:
        """One line saying why ``source`` may not take ``name`` (another input took it), or ``""`` when it may.

        Args:
            name: the case name ``source`` would write under.
            source: the input (a path or case), as the user knows it.
            consequence: what would happen, e.g. ``"it would overwrite out/scan_seg.nii.gz"``.
            fix: another way out, said before "or put them in separate runs".
        """
        first = self._first.get(name.casefold())
        if first is None:
            return ""
        return (f"{first} and {source} have the same case name {name!r}, so {consequence}; rename one of them"
                f"{', ' + fix if fix else ''}, or put them in separate runs")

    def take(self, name: str, source: str) -> None:
        """Record that ``source`` wrote (or will write) under ``name``; the first input to take a name keeps it."""
        self._first.setdefault(name.casefold(), source)


def _key(path: str | os.PathLike) -> str:
    return os.path.normcase(os.path.abspath(str(path)))


class OutputNames:
    """The output name (stem) of each input of a run, decided from the whole list before any case is processed.

    An input is named by the name its data-list item gives (:data:`NAME_KEY`), else by its file name without the
    format (``/d/x.nii.gz`` -> ``x``), as long as no other input of the run has that name. Inputs whose names clash
    keep their format in the name, all of them (``x.nii.gz`` -> ``x_nii_gz``, ``x.png`` -> ``x_png``), so that none
    of them depends on which one was listed first; inputs still alike (``a/x.png`` and ``b/x.png``) are numbered in
    the order of their sorted paths (``x_png``, ``x_png_2``).
    Names are compared case-insensitively (one file on a case-insensitive file system), and the same list always
    gives the same names, so a rerun writes the same files.

    An instance is also a MONAI ``SaveImage`` ``output_name_formatter`` (the file name comes from the metadata's
    ``filename_or_obj``).

    Args:
        inputs: the run's input paths, or its ``[{"image": path}, ...]`` data list.
        key: the path key of data-list items. Defaults to ``"image"``.
    """

    def __init__(self, inputs: Iterable[str | os.PathLike | Mapping], key: str = "image") -> None:
        inputs = list(inputs)
        paths = [str(i[key]) if isinstance(i, Mapping) else str(i) for i in inputs]
        # a name the item gives stands for the stem; the format still tells clashing names apart
        parts = [(str(i[NAME_KEY]), split_image_name(p)[1]) if isinstance(i, Mapping) and i.get(NAME_KEY)
                 else split_image_name(p) for i, p in zip(inputs, paths)]
        distinct: dict[str, tuple[str, str]] = {}  # a file listed twice is one input, its name no clash with itself
        for path, part in zip(paths, parts):
            distinct.setdefault(_key(path), part)
        stems = Counter(stem.casefold() for stem, _ in distinct.values())
        wanted = [stem if stems[stem.casefold()] == 1 or not fmt else f"{stem}_{fmt.replace('.', '_')}" for stem, fmt in parts]
        taken = {w.casefold() for w in wanted}
        self._names: dict[str, str] = {}
        self._repeats: dict[tuple[str, int], str] = {}  # (input, n) -> the name of its n-th listing (repeat_name)
        given: set[str] = set()
        for path, name in sorted(zip(paths, wanted), key=lambda pw: pw[0]):
            if _key(path) in self._names:  # the same file listed twice writes one output
                continue
            final = _free_name(name, given, taken)  # a numbered name never takes one another input wants as it is
            given.add(final.casefold())
            self._names[_key(path)] = final

    def __len__(self) -> int:
        return len(self._names)

    def name(self, path: str | os.PathLike) -> str:
        """The output name of ``path``; an input not in the list gets its plain stem."""
        return self._names.get(_key(path)) or split_image_name(path)[0]

    def repeat_name(self, path: str | os.PathLike, n: int) -> str:
        """The name of the ``n``-th entry of the run (from 1) that lists ``path``: its output name, numbered from the
        second on (``x``, ``x_2``) into a name that no input of the run has and no other repeat took, so that two
        entries of one image (two labels of one scan) each keep an output of their own. The same every time asked."""
        if n <= 1:
            return self.name(path)
        if (key := (_key(path), n)) not in self._repeats:
            given = {v.casefold() for v in (*self._names.values(), *self._repeats.values(), self.name(path))}
            self._repeats[key] = _free_name(self.name(path), given, given)
        return self._repeats[key]

    def __call__(self, metadict: Mapping | None, saver: object = None) -> dict:
        """``output_name_formatter`` of MONAI ``SaveImage``: the file name kwargs of the image ``metadict`` describes."""
        meta = metadict or {}
        source = meta.get("filename_or_obj") or f"case_{getattr(saver, '_data_index', 0)}"
        return {"subject": self.name(source), "idx": meta.get("patch_index")}
