"""Classification section: ROC curves on the evaluated split (held out when it is the test split) and saliency maps,
for the CXR and CT classifiers."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from unimiss_monai.utils.hashing import PREDICTIONS_KEY, sha256_file
from unimiss_monai.visualize.plots import roc_png

from ..classifier_metrics import read_classifier_metrics
from ..document import Figure, Note, Paragraph, Section, Table, fmt
from ..images import figure_png
from ..pairing import unpaired_note
from ..run_folder import RunFolder, failed_note, how_trained, read_json, stale_notes
from ..splits import evaluated_split, held_out, split_words

__all__ = ["classification_section", "one_answer_note", "read_predictions"]

_TASKS = (("cxr_classification", "Chest X-ray findings (multi-label, DRRs with simulated findings)"),
          ("ct_classification", "CT crops (normal / nodule / mass, simulated lesions)"))
#: the same tasks' titles for a run on a user's own data, of which the report knows only the files
_OWN_DATA_TASKS = (("cxr_classification", "Chest X-ray classification"), ("ct_classification", "CT classification"))


def read_predictions(path: Path) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """``(names, classes, probabilities (N, C), truth (N, C))`` of the scored cases in an evaluation's
    ``evaluation_predictions.csv`` (the rows of failed cases left out)."""
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if not r.get("failed")]  # a failed case has no probability to show
    if not rows:
        raise ValueError(f"{path}: no predictions; rerun the evaluate step")
    classes = [k[len("prob_"):] for k in rows[0] if k.startswith("prob_")]
    if not classes or any(f"true_{c}" not in rows[0] for c in classes):
        raise ValueError(f"{path}: expected prob_<class> and true_<class> columns, got {list(rows[0])}")
    probs = np.asarray([[float(r[f"prob_{c}"]) for c in classes] for r in rows])
    truth = np.asarray([[float(r[f"true_{c}"]) for c in classes] for r in rows])
    return [r.get("name", "") for r in rows], classes, probs, truth


def one_answer_note(classes: list[str], probs: np.ndarray, truth: np.ndarray, threshold: float | None,
                    what: str, cases: str = "test cases") -> str | None:
    """A note when the network gave every scored case the same answer though the cases differ: the arg-max class of
    exclusive classes, or with ``threshold`` the same yes or no for a finding that some cases have and others lack.
    Those sensitivities and specificities then describe one answer, not a classifier. None otherwise (a finding no
    case has is rightly called absent in all). ``cases`` names the scored cases (:func:`~..splits.split_words`)."""
    if len(probs) < 2:
        return None
    longer = " A briefly trained network often does this: train it longer."
    if threshold is None:
        answers = probs.argmax(axis=1)
        if (answers != answers[0]).any() or len(set(truth.argmax(axis=1).tolist())) < 2:
            return None
        return (f"{what}: the network gave {classes[answers[0]]} the highest probability in every one of its "
                f"{len(probs)} {cases}, which are not all {classes[answers[0]]}, so the sensitivities and "
                "specificities below describe that one answer, not a classifier; the ROC AUCs still rank its "
                "probabilities." + longer)
    decided = probs >= threshold
    both = [i for i in range(len(classes)) if 0 < truth[:, i].sum() < len(truth)]
    constant = [i for i in both if (decided[:, i] == decided[0, i]).all()]
    if not constant:
        return None
    calls = _and([f"{classes[i]} {'present' if decided[0, i] else 'absent'}" for i in constant])
    names = _and([classes[i] for i in constant])
    if len(constant) == 1:
        told = (f"though some have it and some do not, so the sensitivity and specificity of {names} describe that one "
                "call, not a classifier; its ROC AUC still ranks the probabilities.")
    else:
        told = (f"though each is present in some of them and absent in others, so the sensitivities and specificities "
                f"of {names} describe those calls, not a classifier; their ROC AUCs still rank the probabilities.")
    return (f"{what}: the network called {calls} in every one of its {len(probs)} {cases}, {told}"
            + (longer if len(constant) == len(both) else ""))


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def _saliency_figure(paths: list[Path]) -> bytes:
    """The bundle's saliency PNGs side by side (they carry their own titles); wide ones (3 planes) two per row."""
    from matplotlib.figure import Figure as MplFigure
    from PIL import Image

    images = []
    for path in paths:
        with Image.open(path) as im:
            images.append(np.asarray(im.convert("RGB")))
    wide = max(im.shape[1] / im.shape[0] for im in images) > 1.8
    cols = min(len(images), 2 if wide else 4)
    rows = -(-len(images) // cols)
    width = 12.0 if wide else 3.2 * cols
    fig = MplFigure(figsize=(width, rows * width / cols * images[0].shape[0] / images[0].shape[1] + 0.2))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, im in zip(axes, images):
        ax.imshow(im)
    fig.subplots_adjust(left=0, right=1, bottom=0, top=1, wspace=0.02, hspace=0.02)
    return figure_png(fig)


# what the inference's saliency_method draws, in the caption's words
_METHODS = {"gradcam": "Grad-CAM of its most probable class",
            "rollout": "attention rollout: how the class token's attention flows through the layers"}


def _saliency_maps(inference: Path) -> tuple[list[Path], str | None]:
    """The saliency PNGs of the last inference in ``inference`` and their method: the maps its ``predictions.json``
    lists (maps of an earlier run's other cases may still lie in ``saliency/``), looked up by name in that folder. An
    inference without that file (a version that did not list them): every PNG there, method unknown."""
    predictions = read_json(inference / "predictions.json")
    if not isinstance(predictions, dict) or not isinstance(predictions.get("cases"), list):
        return sorted((inference / "saliency").glob("*.png")), None
    names = [Path(str(c["saliency"])).name for c in predictions["cases"] if isinstance(c, dict) and c.get("saliency")]
    maps = [inference / "saliency" / n for n in names if (inference / "saliency" / n).is_file()]
    method = predictions.get("saliency")
    return sorted(maps), method if isinstance(method, str) else None


def _task_blocks(run: RunFolder, bundle: str, what: str, read: tuple[dict | None, str | None], split: str) -> list:
    """The blocks of one classifier: its evaluation's metrics and the note on them
    (:func:`~..classifier_metrics.read_classifier_metrics` of ``eval/metrics.json``) scored the cases of ``split``."""
    home = run.bundle(bundle)
    metrics, odd = read
    blocks: list = [Note(note) for note in stale_notes(home).values()]
    predictions = home / "eval" / "evaluation_predictions.csv"
    if not predictions.is_file():  # an evaluation written before the file had its own name
        predictions = home / "eval" / "predictions.csv"
    to_make = run.to_evaluate(bundle)
    said = [Note(f"{what}: {odd}")] if odd else []  # the values it understands are shown, the others said
    if odd and metrics is None:
        # a file of that name, not an evaluation's: said as such, where "no evaluation" sent one looking for it
        return said
    blocks += said
    if not metrics or not predictions.is_file():
        return [*said, Note(f"{what}: no evaluation in {home / 'eval'} (metrics.json, evaluation_predictions.csv): "
                            f"{to_make}.")]
    blocks += [Note(n) for n in [failed_note(metrics, home / "eval" / "metrics.json")] if n]
    if metrics.get("num_cases") == 0:  # every case failed: the note above is all there is to show
        return blocks
    _, classes, probs, truth = read_predictions(predictions)
    cases = split_words(split, "cases")
    unpaired = _unpaired_note(home, metrics, predictions, classes, truth)
    if unpaired:  # the curves are still the predictions', but the AUCs and the table below are another run's
        blocks.append(Note(unpaired))
    else:
        blocks += [Note(n) for n in [one_answer_note(classes, probs, truth, metrics.get("threshold"), what, cases)]
                   if n]
    macro = metrics.get("macro_auc")
    title = f"{bundle.split('_')[0].upper()}: {len(probs)} {split} cases"
    if unpaired:  # drawn without the AUCs of metrics.json, which scored other predictions
        alt = f"ROC curves of {', '.join(classes)} on the {len(probs)} cases of {predictions.name}"
        caption = (f"{what}: ROC per class of the predictions in {predictions.name}, without AUCs: metrics.json did "
                   "not score them (see the note above).")
    else:
        alt = f"ROC curves of {', '.join(classes)} on {len(probs)} {cases}, macro AUC {fmt(macro)}"
        caption = f"{what}: ROC per class on the {cases} (macro AUC {fmt(macro)})."
    blocks.append(Figure(roc_png(probs, truth, {} if unpaired else metrics, classes=classes, title=title),
                         name=f"roc_{bundle}", alt=alt, caption=caption))
    rows = [[str(e.get("class")), str(e.get("positives")), str(e.get("negatives")), fmt(e.get("auc")), fmt(e.get("ap")),
             fmt(e.get("sensitivity")), fmt(e.get("specificity"))] for e in metrics.get("per_class", [])]
    rows.append(["macro", "", "", fmt(macro), fmt(metrics.get("macro_ap")), "", ""])
    blocks.append(Table(["class", "positives", "negatives", "ROC AUC", "average precision", "sensitivity",
                         "specificity"], rows,
                        caption=f"{what}: metrics on the {cases}" + (f" (sensitivity and specificity at probability "
                                                           f"{metrics['threshold']})" if metrics.get("threshold") is not None
                                                           else " (sensitivity and specificity of the most probable class)")
                        + ("; not those of the ROC curves above (see the note)" if unpaired else "") + "."))
    saliency, method = _saliency_maps(home / "inference")
    if saliency:
        # one example per ground-truth class (the sample names end in the class), then the rest
        picked: list[Path] = []
        for cls in [*classes, "clear", "normal"]:
            picked += [p for p in saliency if p.stem.endswith(cls) and p not in picked][:1]
        picked = (picked + [p for p in saliency if p not in picked])[:4]
        blocks.append(Figure(_saliency_figure(picked), name=f"saliency_{bundle}",
                             alt=f"Saliency maps of the {bundle.replace('_', ' ')} network on {len(picked)} test "
                                 f"images: {', '.join(p.stem for p in picked)}",
                             caption=f"{what}: {_METHODS.get(method, 'saliency maps')} over the network input, "
                                     "with the probability (and the map's grid and cell size) above each picture. "
                                     "A map holds one value per token of the encoder's last stage, upsampled: it "
                                     "shows which of those cells weighed in the prediction, not where a finding lies."
                                     + (" A CT's planes go through the map's peak, marked +, wherever the finding "
                                        "lies; a map with no single peak (flat in-plane, or all zero) has no + and "
                                        "says so." if bundle.startswith("ct_") else "")
                                     + (" The file names give the true finding." if run.sample_data else "")))
    elif (home / "inference").is_dir():
        blocks.append(Note(f"No saliency maps in {home / 'inference' / 'saliency'}: run inference with "
                           "--save_saliency true."))
    return blocks


def _unpaired_note(home: Path, metrics: dict, predictions: Path, classes: list[str], truth: np.ndarray) -> str | None:
    """:func:`~..pairing.unpaired_note` for the evaluation's prediction file beside its ``metrics.json``, which records
    the file's SHA-256 (:data:`~unimiss_monai.utils.hashing.PREDICTIONS_KEY`): the two are paired when it matches, of
    two runs when not, whatever the file times (a copy may not keep them). An evaluation written before that record
    counts the cases and each class's positives it scored without naming them: one write puts both files there, so
    counts that differ, or file times further apart than that write, are of two runs."""
    scores = home / "eval" / "metrics.json"
    recorded = metrics.get(PREDICTIONS_KEY)
    if isinstance(recorded, str):
        found = sha256_file(predictions)
        if found == recorded:
            return None
        return unpaired_note(home, scores, tallies={"as the SHA-256 of the prediction file":
                                                    (recorded[:12], found[:12], predictions)})
    positives = {e.get("class"): e.get("positives") for e in metrics.get("per_class", []) if isinstance(e, dict)}
    tallies = {"scored cases": (metrics.get("num_cases"), len(truth), predictions)}
    tallies |= {f"positives of {c}": (positives.get(c), int(truth[:, i].sum()), predictions)
                for i, c in enumerate(classes)}
    # each was written in the write of the other: newer by more than that write in either order is a later run's
    return unpaired_note(home, scores, tallies=tallies, written=[(predictions, scores), (scores, predictions)])


def classification_section(run: RunFolder) -> Section:
    section = Section("classification", "Classification")
    metrics = {b: read_classifier_metrics(run, b) for b, _ in _TASKS}
    splits = {b: evaluated_split(run, b, metrics[b][0]) for b, _ in _TASKS}
    data = ("Both classifiers train on simulated findings with exact labels: nodules and an enlarged heart inserted into "
            f"the {'phantom' if run.synthetic else 'real'} CT before rendering DRRs, nodules and masses inserted into CT "
            "crops. " if run.sample_data else "Each classifier trains on the cases of its datalist. ")
    section.add(Paragraph(
        data
        + " ".join(f"The {which} classifier: {how_trained(run.bundle(b))}."
                   for b, which in (("cxr_classification", "chest X-ray"), ("ct_classification", "CT")))
        + (" Scores are on test cases the training never saw." if all(map(held_out, splits.values()))
           else " Each classifier's scores below say which of its cases they are on, and whether those are held out.")))
    for bundle, what in _TASKS if run.sample_data else _OWN_DATA_TASKS:
        section.add(*_task_blocks(run, bundle, what, metrics[bundle], splits[bundle]))
    return section
