"""The case names of one run's inputs: each names its outputs, so two inputs of one name would overwrite each other.

Names are compared case-insensitively: ``CT01`` and ``ct01`` are one file on a case-insensitive file system.
"""

from __future__ import annotations

__all__ = ["CaseNames"]


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
