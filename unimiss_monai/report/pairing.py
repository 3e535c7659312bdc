"""Whether the predictions a section pictures are those its scores were computed from.

A bundle folder holds whatever ran there last. An evaluation writes its scores (``metrics.json``,
``segmentation_report.json``) and, for a classifier, its predictions (``evaluation_predictions.csv``) in one go; an
inference writes its outputs, then the summary that lists them. A later run, or one stopped part-way, can leave
predictions beside scores of another run: :func:`unpaired_note` says so in one sentence, and the section then does
not give those scores as the pictured predictions'.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

from .run_folder import COPIED_HINT

__all__ = ["ONE_WRITE_SECONDS", "unpaired_note"]

#: how far apart the file times of one write may lie: the files follow each other within milliseconds, but some file
#: systems keep times to one or two seconds; a later run needs longer than this to load its model and reach a case
ONE_WRITE_SECONDS = 5.0


def _names(cases: Collection[str]) -> str:
    shown = sorted(cases)
    return ", ".join(shown[:3]) + (f" and {len(shown) - 3} more" if len(shown) > 3 else "")


def unpaired_note(home: Path, scores: Path, *, scored: Collection[str] | None = None, shown: Collection[str] = (),
                  tallies: Mapping[str, tuple[object, object, Path]] | None = None,
                  written: Sequence[tuple[Path, Path]] = (), step: str = "evaluate step") -> str | None:
    """One sentence when the predictions pictured in the section of bundle folder ``home`` are not those the scores
    file ``scores`` scored; ``None`` when nothing says so.

    Args:
        scored: the cases ``scores`` lists as scored (``None`` when it lists none: not compared by name).
        shown: the cases pictured as among those scored; one that ``scored`` lacks is another run's.
        tallies: ``{what: (count in scores, count in the prediction file, that file)}``, for scores that count their
            cases without naming them (a classifier's ``metrics.json``); ``None`` counts are not compared.
        written: ``(file, record)`` pairs where ``file`` was written before ``record``, or in the same write: a file
            newer than its record by more than :data:`ONE_WRITE_SECONDS` is a later run's.
        step: the step(s) to rerun, as the fix names them.
    """
    reasons = []
    extra = set(shown) - set(scored) if scored is not None else set()
    if extra:
        reasons.append(f"predictions of {len(extra)} case(s) that {_rel(home, scores)} did not score ({_names(extra)})")
    for what, (expected, found, path) in (tallies or {}).items():
        if expected is not None and found is not None and expected != found:
            reasons.append(f"{expected} {what} in {_rel(home, scores)} but {found} in {_rel(home, path)}")
    late = [(f, r) for f, r in written if f.is_file() and r.is_file()
            and f.stat().st_mtime > r.stat().st_mtime + ONE_WRITE_SECONDS]
    # file times alone may be a copy's that did not keep them: said as a possible cause, as the stale notes do
    copied = COPIED_HINT if late and not reasons else ""
    reasons += [f"{_rel(home, f)} written after {_rel(home, r)}" for f, r in late[:2]]
    reasons += [f"{len(late) - 2} more such file(s)"] if len(late) > 2 else []
    if not reasons:
        return None
    return (f"{home} holds predictions and scores of different runs ({'; '.join(reasons)}): the scores of "
            f"{_rel(home, scores)} are not given as those of the predictions pictured here; rerun the {step}{copied}.")


def _rel(home: Path, path: Path) -> str:
    try:
        return str(Path(path).relative_to(home))
    except ValueError:  # a file outside the bundle folder: named in full
        return str(path)
