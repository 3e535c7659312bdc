"""The report as data: sections of paragraphs, tables, figures and code, rendered to HTML and Markdown elsewhere."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

__all__ = ["Code", "Figure", "Note", "Paragraph", "Section", "Table", "fmt"]


@dataclass
class Paragraph:
    """Plain text (rendered escaped; ``**bold**`` is not interpreted)."""

    text: str


@dataclass
class Note:
    """Something the reader should know is missing or approximate, with what to do about it."""

    text: str


@dataclass
class Code:
    """Preformatted text: commands, versions."""

    text: str


@dataclass
class Table:
    """A table; cells are strings (format numbers with :func:`fmt`)."""

    header: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Figure:
    """A PNG picture with its alt text (what it shows, for screen readers and broken images) and caption."""

    png: bytes
    alt: str
    caption: str = ""
    name: str = "figure"  # file stem of the Markdown twin's copy


Block = Union[Paragraph, Note, Code, Table, Figure]


@dataclass
class Section:
    """One titled part of the report; ``key`` is its HTML id (stable: tests and links use it)."""

    key: str
    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> Section:
        self.blocks.extend(blocks)
        return self


def fmt(value, digits: int = 3) -> str:
    """A number for a table cell: ``digits`` decimals, ``-`` for missing or non-finite values."""
    if value is None:
        return "-"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if v != v or v in (float("inf"), float("-inf")):
        return "-"
    return f"{v:.{digits}f}"
