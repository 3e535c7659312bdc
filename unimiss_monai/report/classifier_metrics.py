"""A classifier's evaluation ``metrics.json`` as the report reads it: the numbers it understands, and one line naming
the file where it is not a metrics file of this project, so that a stray file is neither shown as it is nor the end
of the page."""

from __future__ import annotations

import math

from .run_folder import RunFolder, read_json

__all__ = ["read_classifier_metrics"]

#: the values of ``metrics.json`` the report shows, as :func:`~unimiss_monai.handlers.write_report` writes them:
#: numbers (``None`` where undefined) and counts of cases
_NUMBERS, _COUNTS = ("macro_auc", "macro_ap", "accuracy", "threshold"), ("num_cases", "num_failed")
#: the same for each entry of its ``per_class`` list
_CLASS_NUMBERS, _CLASS_COUNTS = ("auc", "ap", "sensitivity", "specificity"), ("positives", "negatives", "tp", "fn",
                                                                             "fp", "tn")


def _understood(value, count: bool) -> bool:
    """Whether ``value`` is a value of this project's file: ``None`` (undefined), or a finite number (a count: a
    whole number ``>= 0``); never a bool, a string or a NaN, which a table would show as they are."""
    if value is None:
        return True
    if count:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _checked(entry: dict, numbers: tuple[str, ...], counts: tuple[str, ...], odd: list[str], where: str) -> dict:
    """``entry`` with each of its ``numbers`` and ``counts`` that is not understood set to ``None`` (missing), its
    key (after ``where``) added to ``odd``."""
    out = dict(entry)
    for keys, count in ((numbers, False), (counts, True)):
        for key in keys:
            if not _understood(entry.get(key), count):
                odd.append(f"{where}{key}")
                out[key] = None
    return out


def read_classifier_metrics(run: RunFolder, bundle: str) -> tuple[dict | None, str | None]:
    """``(metrics, note)`` of the ``eval/metrics.json`` of classifier ``bundle`` (``"cxr_classification"``) in
    ``run``: ``(None, None)`` when there is none.

    ``metrics`` holds the values the report shows, each as the evaluation writes it; a value of another kind (a
    string, a NaN, a list) is missing (``None``), a ``per_class`` entry that is no object of a class name is left out.
    ``note`` is one line naming the file when it is not a metrics file of this project, with the fix (the evaluation
    replaces no file it did not write: the file is moved away first): then ``metrics`` is ``None`` if it is no JSON
    object with ``per_class`` or ``num_cases``, else the parts it understands.

    Raises:
        ValueError: the file is not valid JSON (:func:`~unimiss_monai.report.run_folder.read_json`).
    """
    path = run.bundle(bundle) / "eval" / "metrics.json"
    data = read_json(path)
    if data is None:
        return None, None
    fix = "move it away, then " + run.to_evaluate(bundle)
    if not isinstance(data, dict) or not {"per_class", "num_cases"} & set(data):
        return None, f"{path} is not a metrics file of this project (neither per_class nor num_cases); {fix}."
    odd: list[str] = []
    metrics = _checked(data, _NUMBERS, _COUNTS, odd, "")
    classes = data.get("per_class", [])
    if not isinstance(classes, list):
        odd.append("per_class")
        classes = []
    metrics["per_class"] = []
    for i, entry in enumerate(classes):
        if isinstance(entry, dict) and isinstance(entry.get("class"), str):  # an entry of one class, by its name
            metrics["per_class"].append(_checked(entry, _CLASS_NUMBERS, _CLASS_COUNTS, odd,
                                                 f"per_class {entry['class']!r} "))
        else:
            odd.append(f"per_class[{i}]")
    if not odd:
        return metrics, None
    shown = ", ".join(odd[:4]) + (f" and {len(odd) - 4} more" if len(odd) > 4 else "")
    return metrics, (f"{path} is not a metrics file of this project in part ({shown}: not values an evaluation "
                     f"writes), so those are left out here; {fix}.")
