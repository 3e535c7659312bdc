"""Where a demo run keeps each step's outputs, and tolerant readers for them.

Layout written by ``tools/demo.sh`` (``RUN_DIR``)::

    demo_steps.json                       steps: command, wall time, exit status (report/steps.py)
    unimiss_drr_generation/<case>/        DRRs, projected organ masks
    unimiss_pretraining/                  loss_curves.json, knn_probe.json, models/model.pt
    unimiss_<task>/{models,train,eval,inference}/   each fine-tune bundle

Inference summaries come in several shapes: the unified one (``InferenceSummary``: ``cases`` with ``status``) and
the older per-bundle files (``inference_summary.json``, ``summary.json`` with ``written`` / ``failed``,
``predictions.json``); :func:`inference_cases` reads them all.
"""

from __future__ import annotations

import functools
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from unimiss_monai.utils.hashing import SCORED_MODEL_KEY, sha256_file

from .samples_folder import checked_samples

__all__ = ["COPIED_HINT", "RunFolder", "inference_cases", "inference_summary", "read_json", "recorded_steps",
           "stale_notes"]

_SUMMARY_NAMES = ("inference_summary.json", "summary.json", "predictions.json")


def read_json(path: str | os.PathLike):
    """JSON content of ``path``, or ``None`` when the file is absent; ``ValueError`` naming the file when broken."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err}); rerun the step that writes it (tools/demo.sh --fresh)") from err


def _in_folder(folder: Path, recorded) -> str | None:
    """Where an output a summary recorded lies in ``folder``: the summary holds the path as the run wrote it
    (relative to the directory it ran in, or absolute), and the folder may since have been copied or moved, so the
    file is looked for under ``folder`` by the longest tail of that path; never outside it (a file at the recorded
    place belongs to whichever run last wrote there)."""
    if not recorded:
        return None
    parts = Path(str(recorded)).parts
    tails = [Path(*parts[i:]) for i in range(len(parts)) if not Path(parts[i]).anchor and ".." not in parts[i:]]
    return str(next((folder / t for t in tails if (folder / t).is_file()), folder / Path(str(recorded)).name))


def inference_summary(folder: str | os.PathLike) -> Path | None:
    """The inference summary of ``folder`` that :func:`inference_cases` reads (the first of the known names that lists
    a case); None when none does."""
    return _summary_cases(Path(folder))[0]


def inference_cases(folder: str | os.PathLike) -> list[dict]:
    """``[{"case": name or path, "status": "ok" | "failed", "input": path | None, "output": path | None, ...}]``
    from whichever inference summary ``folder`` holds; ``[]`` when none. Outputs are found in ``folder``
    (:func:`_in_folder`)."""
    return _summary_cases(Path(folder))[1]


def _summary_cases(folder: Path) -> tuple[Path | None, list[dict]]:
    """The first inference summary in ``folder`` that lists a case, and its cases as :func:`inference_cases` gives
    them; ``(None, [])`` when there is none."""
    for name in _SUMMARY_NAMES:
        data = read_json(folder / name)
        if not isinstance(data, dict):
            continue
        cases: list[dict] = []
        for c in data.get("cases", []) or []:
            if isinstance(c, dict):
                case = str(c.get("case") or c.get("image") or c.get("input") or "")
                cases.append({**c, "case": case, "status": c.get("status", "ok"),
                              "input": c.get("input") or c.get("image") or (case if os.sep in case else None),
                              "output": _in_folder(folder, c.get("output"))})
        for c in data.get("written", []) or []:  # older CT segmentation summary
            cases.append({**c, "case": str(c.get("case")), "status": "ok", "input": c.get("input") or c.get("image"),
                          "output": _in_folder(folder, c.get("output"))})
        for c in data.get("failed", []) or []:
            if isinstance(c, dict):
                cases.append({**c, "case": str(c.get("case") or c.get("image")), "status": "failed",
                              "input": c.get("image"), "output": None})
        if cases:
            return folder / name, cases
    return None, []


def _when(path: Path) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(path.stat().st_mtime))


def stale_notes(home: Path) -> dict[str, str]:
    """Why a bundle folder's results may not be those of the model it holds: ``{area: one sentence}``, the area being
    ``"eval"``, ``"inference"`` or ``"pretraining"``; empty when they are.

    Evaluation and inference record the checksum of the model file they ran (``model_sha256``); results whose
    checksum is not that of ``models/model.pt`` scored another model. Results from before it was recorded are judged
    by file times: the model is replaced only by a finished run, and evaluation and inference write their JSONs after
    the model they used, so one older than the model scored an earlier model. A finished pretraining saves its last
    checkpoint and its last probe before it exports the model (its loss curves just after); a checkpoint or probe
    history newer than the model is a later run's that has not finished, and so are the curves (each run rewrites
    them from its first iteration), unless the checkpoint records a finished run (one rerun with nothing left to
    train saves it anew and leaves its unchanged export as it was). Where file times are compared, a copy that rewrote
    them is said to be a possible cause.
    """
    model = home / "models" / "model.pt"
    if not model.is_file():
        return {}
    notes = {}
    at = model.stat().st_mtime
    for sub, step in (("eval", "evaluate"), ("inference", "inference")):
        jsons = [p for p in (home / sub).glob("*.json") if p.is_file()]
        recorded = [(p, c) for p, c in ((p, _recorded_checksum(p)) for p in jsons) if c]
        own = _checksum(model) if recorded else None  # hashed only where a result has a checksum to compare
        recorded = recorded if own else []
        other = [p for p, c in recorded if c != own]
        if other:
            notes[sub] = (f"{other[0]} records another model than {model} (written {_when(model)}; the checksums "
                          f"differ): the {sub}/ results below scored that model; rerun the {step} step.")
        elif not recorded and jsons and max(p.stat().st_mtime for p in jsons) < at:
            notes[sub] = (f"The {sub}/ results below predate {model} (written {_when(model)}): they scored an earlier "
                          f"model; rerun the {step} step{COPIED_HINT}.")
    later = [p for p in (home / "knn_probe.json", *(home / "checkpoints").glob("*")) if p.is_file()
             and p.stat().st_mtime > at]
    # a finished run that had nothing left to train (rerun, or resumed with --resume_finished) saves its checkpoint
    # anew and leaves the model it exported before, the same weights, as it was
    if later and not _finished(home / "checkpoints" / "checkpoint.pt"):
        shown = [p.name for p in (home / "loss_curves.json", home / "knn_probe.json") if p.is_file()]
        notes["pretraining"] = (
            f"{later[0]} was written after {model} ({_when(model)}) by a run that has not finished: "
            f"{' and '.join(shown) or 'its files'} below are that run's, not the model's that the fine-tunings read; "
            f"rerun the pretraining step{COPIED_HINT}.")
    return notes


def _finished(checkpoint: Path) -> bool:
    from unimiss_monai.networks.weights_file import finished_run  # torch only where a checkpoint is read

    return checkpoint.is_file() and finished_run(checkpoint)


def _recorded_checksum(path: Path) -> str | None:
    """The model checksum an evaluation or inference JSON records, or ``None`` (none recorded, or not readable)."""
    try:
        data = read_json(path)
    except (OSError, ValueError):  # a broken or unreadable JSON is named by the section that reads it
        return None
    value = data.get(SCORED_MODEL_KEY) if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def _checksum(model: Path) -> str | None:
    st = model.stat()
    return _cached_checksum(str(model), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _cached_checksum(model: str, size: int, mtime_ns: int) -> str | None:
    """The SHA-256 of ``model`` (``None`` when it cannot be read: the results are then judged by file times), read
    once per version of the file (its size and time in the key): the summary and a section both ask of each model."""
    try:
        return sha256_file(model)
    except OSError:
        return None


# the notes compare file times, which a copy that does not keep them (cp -r, a download) rewrites in its own order
COPIED_HINT = " (or, if the folder was copied without its file times, copy it again keeping them: cp -a or rsync -a)"


def how_trained(home: Path) -> str:
    """How the fine-tuned model of a bundle folder began, as a phrase for the report's prose: from the pretrained
    backbone or from scratch, as its ``models/model.pt`` records (``info["pretrained"]``); a model that does not
    record it, or none, is said to."""
    model = home / "models" / "model.pt"
    if not model.is_file():
        return f"trained (from the pretrained backbone or not: no {model} to tell)"
    st = model.stat()
    pretrained = _recorded_pretrained(str(model), st.st_size, st.st_mtime_ns)
    if pretrained is True:
        return "fine-tuned from the pretrained backbone"
    if pretrained is False:
        return "trained from scratch (its model records no pretrained weights)"
    return f"trained (whether from the pretrained backbone, {model} does not record)"


@functools.lru_cache(maxsize=16)
def _recorded_pretrained(model: str, size: int, mtime_ns: int):
    """``info["pretrained"]`` of the weights file ``model`` (None when it records none or cannot be read), read once
    per version of the file (its size and time in the key): the summary and a section both ask of each model."""
    from unimiss_monai.networks.weights_file import recorded_info
    from unimiss_monai.utils.serialization import load_torch_file

    try:
        return recorded_info(load_torch_file(model, "trained model")).get("pretrained")
    except (OSError, ValueError):  # a file the report cannot read
        return None


def failed_note(report: dict, path: Path) -> str | None:
    """One sentence for an evaluation report (``metrics.json``, ``segmentation_report.json``) some of whose cases
    failed and are not in its figures; ``None`` when none failed."""
    failed = report.get("num_failed") or 0
    if not failed:
        return None
    scored = report.get("num_cases")
    of = f" of {failed + scored}" if isinstance(scored, int) else ""
    return f"{failed}{of} evaluation case(s) failed and are not scored: {path} lists each with its reason and fix."


def inference_note(folder: Path, shown: int, what: str) -> str | None:
    """One sentence on the inference run in ``folder`` where its pictures are not all of it: how many of its cases
    are pictured (``shown``), and how many failed, with where their reasons are; ``None`` when every case worked and
    is pictured. ``what`` names the pictured cases (``"segmented CTs"``)."""
    summary, cases = _summary_cases(Path(folder))
    failed = [c for c in cases if c["status"] == "failed"]
    done = sum(c["status"] == "ok" for c in cases)
    said = [f"{shown} of the {done} {what} are pictured; the others are in {folder}"] if shown < done else []
    if failed:
        first = failed[0]
        why = str(first.get("reason") or first.get("error") or "").splitlines()[0][:160] if (
            first.get("reason") or first.get("error")) else ""
        said.append(f"{len(failed)} of the {len(cases)} inference case(s) failed ({summary} gives each reason; "
                    f"e.g. {first['case']}{': ' + why if why else ''})")
    return ("; ".join(said) + ".") if said else None


def scored_cases(report: dict) -> str:
    """``"12"``, or ``"12 (2 failed)"`` for a report with failed cases (``"?"`` for a report that does not say)."""
    failed = report.get("num_failed") or 0
    scored = report.get("num_cases")
    return f"{'?' if scored is None else scored}" + (f" ({failed} failed)" if failed else "")


def recorded_steps(root: str | os.PathLike) -> list[dict]:
    """The steps ``demo_steps.json`` in ``root`` records (report/steps.py), ``[]`` when there is no such file;
    ``ValueError`` naming the file when it holds no list of steps."""
    path = Path(root) / "demo_steps.json"
    data = read_json(path)
    steps = data.get("steps", []) if isinstance(data, dict) else [] if data is None else None
    if not isinstance(steps, list) or not all(isinstance(step, dict) for step in steps):
        raise ValueError(f"{path}: not a step record of tools/demo.sh (a \"steps\" list of objects); move it away, or "
                         "rerun tools/demo.sh --fresh to write it anew")
    return steps


def step_option(root: str | os.PathLike, name: str, option: str) -> tuple[str, dict] | None:
    """The value the recorded command of step ``name`` (``demo_steps.json`` in ``root``) gave ``option``
    (``--out x`` or ``--out=x``; the last one given, as the command read it), with the step's record; None when the
    step is not recorded or did not give it. Read from the step's ``argv``, as it ran, not from its quoted text."""
    for step in recorded_steps(root):
        if step.get("name") != name:
            continue
        argv, value = [str(a) for a in step.get("argv") or []], None
        for i, word in enumerate(argv):
            if word == option and i + 1 < len(argv):
                value = argv[i + 1]
            elif word.startswith(option + "="):
                value = word.split("=", 1)[1]
        return None if value is None else (value, step)
    return None


# what the report's sections read from a bundle folder (a glob under it each): the DRR datalist, pretraining curves,
# probe and model, a fine-tune's model and its evaluation and inference outputs; configs and docs are no run's
RUN_OUTPUTS = ("datalist.json", "loss_curves.json", "knn_probe.json", "models/model.pt", "eval/*.json", "eval/*.csv",
               "inference/*.json", "inference/saliency/*.png")


def holds_run_output(home: Path) -> bool:
    """Whether the bundle folder ``home`` holds at least one file of :data:`RUN_OUTPUTS`."""
    return any(p.is_file() for pattern in RUN_OUTPUTS for p in home.glob(pattern))


@dataclass
class RunFolder:
    """Paths of one run's outputs. ``samples`` is the sample-data folder the run read (for inputs and references)."""

    root: Path
    samples: Path | None = None

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if self.root.exists() and not self.root.is_dir():
            holder = self.root.parent if (self.root.parent / "demo_steps.json").is_file() else None
            raise ValueError(f"{str(self.root)!r} is a file, not a run folder; pass the folder tools/demo.sh wrote"
                             + (f" (here {str(holder)!r}, which holds it)" if holder else ""))
        if not self.root.is_dir():
            raise FileNotFoundError(f"run folder {str(self.root)!r} does not exist; run `bash tools/demo.sh {self.root}` first")
        self._samples_given = self.samples is not None
        self.samples = self._guess_samples() if self.samples is None else checked_samples(self.samples)

    def _guess_samples(self) -> Path | None:
        """The ``--out`` of the run's ``samples`` step (``demo_steps.json``), else ``samples/`` beside ``outputs/``.

        A relative ``--out`` is taken from the folder the step ran in (recorded since 0.2.1), not from the folder the
        report is written from: from elsewhere, the held-out DRRs lost their references and were called real
        radiographs. A record without that folder tries the current one, then the run folder's parents."""
        try:
            given = step_option(self.root, "samples", "--out")
        except ValueError:  # a broken step record: the sections that read it say so, the others are still built
            given = None
        if given is not None:
            value, step = given
            path = Path(value).expanduser()
            if path.is_absolute():
                return path if path.is_dir() else None
            recorded = [Path(step["cwd"])] if isinstance(step.get("cwd"), str) else []
            bases = [*recorded, Path.cwd(), *self.root.resolve().parents]
            # a samples folder (its manifest) first: a folder of that name elsewhere may be anything
            found = [b / path for b in bases if (b / path / "samples.json").is_file()]
            found += [b / path for b in [*recorded, Path.cwd()] if (b / path).is_dir()]
            return found[0] if found else None
        for parent in self.root.resolve().parents:
            if (parent / "samples" / "samples.json").is_file():
                return parent / "samples"
        return None

    @property
    def holds_a_run(self) -> bool:
        """Whether the folder holds anything a report is made of: the demo's step record, a bundle folder holding an
        output of a run (:data:`RUN_OUTPUTS`) or a label-efficiency study. A bundle folder alone is not enough: the
        source ``bundles/`` and a folder made ahead of a run hold them too, and their page would be only notes."""
        studies = self.find("label_efficiency.json") + self.find("*/label_efficiency.json") + [
            # a bundle source's docs/ carries a published study (bundles/ does): a document, not this run's output
            p for p in self.find("*/*/label_efficiency.json") if not (p.parent.name == "docs"
                                                                      and p.parent.parent.name.startswith("unimiss_"))]
        return ((self.root / "demo_steps.json").is_file() or any(map(holds_run_output, self.bundle_folders))
                or bool(studies))

    @property
    def bundle_folders(self) -> list[Path]:
        """The ``unimiss_*`` folders of the run folder, with or without outputs in them."""
        return sorted(p for p in self.root.glob("unimiss_*") if p.is_dir())

    def bundle(self, name: str) -> Path:
        """A bundle's folder in the run (``unimiss_<name>``)."""
        return self.root / (name if name.startswith("unimiss_") else f"unimiss_{name}")

    def sample_set(self, name: str) -> Path | None:
        """The sample data set ``name`` (e.g. ``cxr_segmentation``), or ``None``."""
        if self.samples is None:
            return None
        path = self.samples / name
        return path if path.is_dir() else None

    @property
    def sample_data(self) -> bool:
        """Whether the run read this package's sample data sets: ``tools/demo.sh`` wrote the folder (its
        ``demo_steps.json``), or the report was given their folder (``--samples``). Only then do the sections say what
        the data were (the real CT, its DRRs, simulated findings); a folder of runs on a user's own data is described
        by what its files record, never as the demo's data. A samples folder merely found above the run folder does
        not count: a user's runs in the clone's ``outputs/`` would be described as the demo's."""
        return self._samples_given or self.by_demo

    @property
    def by_demo(self) -> bool:
        """Whether ``tools/demo.sh`` wrote the folder (its ``demo_steps.json``): only then is the run the demo's chain,
        each stage fed by the one before; a folder given ``--samples`` alone holds whichever runs were put there."""
        return (self.root / "demo_steps.json").is_file()

    def to_make(self, step: str, run: str) -> str:
        """How to make a missing output: in a folder ``tools/demo.sh`` wrote, its step ``step`` (the step names of
        its ``demo_steps.json``); in a folder of one's own runs, ``run`` (``"unimiss_cxr_classification's evaluation
        (configs/train.json with configs/evaluate.json)"``), which the demo's steps are not."""
        if self.by_demo:
            return f"run the {step} step of tools/demo.sh"
        return f"run {run} with its outputs there"

    def to_evaluate(self, stage: str) -> str:
        """:meth:`to_make` of the evaluation of the fine-tune bundle ``stage`` (``"cxr_classification"``)."""
        return self.to_make(f"{stage}_evaluate",
                            f"unimiss_{stage}'s evaluation (configs/train.json with configs/evaluate.json)")

    @property
    def synthetic(self) -> bool:
        """Whether the run read synthetic sample data (``samples --synthetic``: phantoms, not the real CT and
        radiograph) in any of its data sets, as the samples manifest records it; a run on partly synthetic data is
        not said to be on the real CT and radiograph either."""
        try:
            manifest = read_json(self.samples / "samples.json") if self.samples is not None else None
        except ValueError:  # not JSON: nothing known, and no section lost to it
            return False
        datasets = manifest.get("datasets") if isinstance(manifest, dict) else None
        return isinstance(datasets, dict) and any(isinstance(e, dict) and e.get("synthetic") for e in datasets.values())

    def find(self, pattern: str, limit: int = 50) -> list[Path]:
        """Files under the run folder matching a glob ``pattern`` (sorted, at most ``limit``)."""
        return sorted(self.root.glob(pattern))[:limit]
