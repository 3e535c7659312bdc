"""Single report sections built from the files the other stages write (tiny folders, no pictures rendered unless
needed): what each one says about missing, non-finite or partial results."""

from __future__ import annotations

import json
import math

import pytest

from unimiss_monai.report.document import Figure, Note, Table
from unimiss_monai.report.run_folder import RunFolder
from unimiss_monai.report.sections.label_efficiency import label_efficiency_section
from unimiss_monai.report.sections.pretraining import collapse_verdict, pretraining_section


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def _study(confidence=0.9):
    """A label-efficiency study as ``build_results`` writes it: three arms, one fraction without a complete pair."""
    diff = lambda arm, mean, lo, hi, n: {"arm": arm, "reference": "scratch", "mean": mean, "ci_low": lo,  # noqa: E731
                                         "ci_high": hi, "includes_zero": None if lo is None else lo <= 0 <= hi, "n": n,
                                         "conclusion": f"{arm} conclusion {n}"}
    paired = {"pretrained": {"0.1": diff("pretrained", 0.05, -0.01, 0.11, 3), "1": diff("pretrained", None, None, None, 0)},
              "unimiss": {"0.1": diff("unimiss", -0.02, -0.04, -0.005, 3), "1": diff("unimiss", None, None, None, 0)}}
    return {"bundle": "unimiss_cxr_segmentation", "metric": "Dice", "seeds": [0, 1, 2],
            "arms": ["scratch", "pretrained", "unimiss"], "reference": "scratch",
            "interval": {"method": "t", "confidence": confidence}, "complete": False, "num_runs": 18,
            "command": "python -m unimiss_monai label-efficiency --seeds 0,1,2",
            "results": {"scratch": {"0.1": {"mean": 0.5, "std": 0.1, "ci_low": 0.4, "ci_high": 0.6, "n": 3}}},
            "paired_difference": paired["pretrained"], "paired_differences": paired,
            "failures": [{"run_id": f"r{i}", "status": "failed", "error": "boom"} for i in range(6)]}


def test_label_efficiency_shows_every_arm_the_study_confidence_and_fractions_without_pairs(tmp_path):
    _write(tmp_path / "label_efficiency" / "label_efficiency.json", _study(confidence=0.9))
    section = label_efficiency_section(RunFolder(tmp_path))
    tables = [b for b in section.blocks if isinstance(b, Table)]
    assert len(tables) == 2
    scores, paired = tables
    # the intervals are at the study's confidence, not a fixed 95 %
    assert "90 % interval" in scores.header and "90 % interval" in paired.header
    assert not any("95" in h for t in tables for h in t.header)
    # every arm against scratch, and a fraction without a complete pair is a dash, not an error
    rows = {(r[0], r[1]): r for r in paired.rows}
    assert set(rows) == {("pretrained", "0.1"), ("pretrained", "1"), ("unimiss", "0.1"), ("unimiss", "1")}
    assert rows[("unimiss", "0.1")][2:4] == ["-0.020", "[-0.040, -0.005]"]
    assert rows[("pretrained", "1")][2] == "-" and "0 complete pair" in rows[("pretrained", "1")][3]
    # the failed runs are said, with the command that retries them
    notes = " ".join(b.text for b in section.blocks if isinstance(b, Note))
    assert "6 of 18" in notes and "--seeds 0,1,2" in notes


def test_label_efficiency_caption_describes_the_figure_at_the_study_confidence(tmp_path):
    study = _study(confidence=0.8)
    for per_fraction in study["paired_differences"].values():
        per_fraction.pop("1")
    path = _write(tmp_path / "label_efficiency" / "label_efficiency.json", study)
    path.with_suffix(".png").write_bytes(b"\x89PNG not decoded here")
    (figure,) = [b for b in label_efficiency_section(RunFolder(tmp_path)).blocks if isinstance(b, Figure)]
    # the figure (benchmarks.label_efficiency.plot) shows means and seeds on the left, the paired differences with
    # their interval on the right: no interval of the arms' means, and none at 95 % in an 80 % study
    assert "80 %" in figure.caption and "95" not in figure.caption + figure.alt
    assert "paired difference" in figure.alt and "seed" in figure.caption


def _curves(entropy):
    it = range(1, len(entropy) + 1)
    return {"distill": [[i, 5.0 - 0.01 * i] for i in it], "loss": [[i, 6.0 - 0.01 * i] for i in it],
            "teacher_entropy": [[i, v] for i, v in zip(it, entropy)]}


def test_non_finite_pretraining_curves_are_said_not_dropped_silently(tmp_path):
    curves = _curves([2.0] * 30)
    curves["distill"][24][1] = float("nan")
    curves["loss"][24][1] = float("inf")
    curves["distill"][27][1] = float("nan")
    pre = tmp_path / "unimiss_pretraining"
    pre.mkdir()
    (pre / "loss_curves.json").write_text(json.dumps(curves))  # NaN / Infinity, as json.dumps writes them
    section = pretraining_section(RunFolder(tmp_path))
    notes = [b.text for b in section.blocks if isinstance(b, Note)]
    assert any("distill (2 of 30 values, first at iteration 25)" in n and "loss (1 of 30 values" in n for n in notes)
    assert len([b for b in section.blocks if isinstance(b, Figure)]) == 2  # the figures are still drawn
    (pre / "loss_curves.json").write_text(json.dumps(_curves([2.0] * 30)))
    assert not any("Non-finite" in b.text for b in pretraining_section(RunFolder(tmp_path)).blocks if isinstance(b, Note))


def test_collapse_verdict_is_not_silenced_by_a_non_finite_tail():
    """A teacher stuck at log K whose last entropies are NaN is still called collapsed (the NaN is its own note)."""
    entropy = [math.log(64)] * 40 + [float("nan")] * 3
    assert "collapsed to a uniform output" in collapse_verdict(_curves(entropy), out_dim=64)


def test_results_of_another_model_than_the_one_in_the_folder_are_flagged_where_they_are_shown(tmp_path):
    import os

    from unimiss_monai.report.sections.classification import classification_section
    from unimiss_monai.report.sections.summary import summary_section

    def at(path, t):
        os.utime(path, (t, t))
        return path

    home = tmp_path / "unimiss_ct_classification"
    metrics = _write(home / "eval" / "metrics.json", {"macro_auc": 0.7, "num_cases": 4, "per_class": []})
    (home / "eval" / "evaluation_predictions.csv").write_text(
        "name,prob_a,prob_b,true_a,true_b\nx,0.8,0.2,1,0\ny,0.3,0.7,0,1\n")
    at(home / "eval" / "evaluation_predictions.csv", 1_000_000)
    model = _write(home / "models" / "model.pt", {})
    at(metrics, 1_000_000), at(model, 1_000_000 + 60)  # retrained after the evaluation: scores of the earlier model
    notes = [b.text for b in classification_section(RunFolder(tmp_path)).blocks if isinstance(b, Note)]
    assert any(n.startswith("The eval/ results below predate") and "rerun the evaluate step" in n
               and n.endswith("copy it again keeping them: cp -a or rsync -a).") for n in notes)
    (row,) = next(b for b in summary_section(RunFolder(tmp_path)).blocks if isinstance(b, Table)).rows
    assert row[2].endswith("(not of the model in the folder: see its section)")
    at(metrics, 1_000_000 + 120)  # evaluated again: nothing to say
    assert not any("predate" in b.text for b in classification_section(RunFolder(tmp_path)).blocks if isinstance(b, Note))
    (row,) = next(b for b in summary_section(RunFolder(tmp_path)).blocks if isinstance(b, Table)).rows
    assert "not of the model" not in row[2]

    pre = tmp_path / "unimiss_pretraining"
    probe = _write(pre / "knn_probe.json", [{"epoch": 0, "knn_accuracy": 0.1, "pixel_baseline": 0.2, "num_classes": 5}])
    at(_write(pre / "models" / "model.pt", {}), 1_000_000)
    at(probe, 1_000_000 + 60)  # a later pretraining, killed before its export, wrote the probe of its first epoch
    notes = [b.text for b in pretraining_section(RunFolder(tmp_path)).blocks if isinstance(b, Note)]
    assert any(n.startswith(f"{probe} was written after") and "has not finished" in n for n in notes)
    at(probe, 1_000_000 - 60)  # the finished run's probe, written before its export
    assert not any("has not finished" in b.text for b in pretraining_section(RunFolder(tmp_path)).blocks if isinstance(b, Note))


def test_results_that_record_their_model_are_judged_by_its_checksum_not_by_file_times(tmp_path):
    """A copy that rewrote file times (the model now newer than its scores) gives no note when the scores record the
    model's checksum; scores that record another model's are flagged even when they are newer than the model."""
    import hashlib
    import os

    from unimiss_monai.report.run_folder import stale_notes

    home = tmp_path / "unimiss_ct_segmentation"
    model = home / "models" / "model.pt"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"weights of the model the folder holds")
    own = hashlib.sha256(model.read_bytes()).hexdigest()
    report = _write(home / "eval" / "segmentation_report.json", {"mean_dice": 0.8, "model_sha256": own})
    summary = _write(home / "inference" / "summary.json", {"num_cases": 1, "model_sha256": own, "cases": []})
    for path in (report, summary):
        os.utime(path, (1_000_000, 1_000_000))
    os.utime(model, (1_000_000 + 60, 1_000_000 + 60))
    assert stale_notes(home) == {}
    _write(summary, {"num_cases": 1, "model_sha256": "0" * 64, "cases": []})  # newer than the model, of another
    note = stale_notes(home)["inference"]
    assert note.startswith(f"{summary} records another model than {model}") and "rerun the inference step" in note
    assert "cp -a" not in note  # no file times were compared
    model.write_bytes(b"a model retrained in place, after the evaluation")
    assert set(stale_notes(home)) == {"eval", "inference"}



def test_a_model_that_cannot_be_read_leaves_the_results_to_file_times_and_its_writer_warns(tmp_path, monkeypatch,
                                                                                          caplog):
    import os

    from unimiss_monai.report import run_folder
    from unimiss_monai.utils.hashing import model_checksum

    home = tmp_path / "unimiss_cxr_segmentation"
    model = home / "models" / "model.pt"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"weights")
    report = _write(home / "eval" / "segmentation_report.json", {"mean_dice": 0.8, "model_sha256": "0" * 64})
    os.utime(report, (1_000_000, 1_000_000))
    monkeypatch.setattr(run_folder, "_cached_checksum", lambda *_: None)  # as for a model.pt it may not read
    assert run_folder.stale_notes(home)["eval"].startswith("The eval/ results below predate")  # by times, not "0..."
    os.utime(report, (model.stat().st_mtime + 60,) * 2)
    assert run_folder.stale_notes(home) == {}
    with caplog.at_level("WARNING"):  # an evaluation given a model path it cannot read records none, and says so
        assert model_checksum(tmp_path / "absent.pt") is None and model_checksum(home / "models") is None
    assert str(tmp_path / "absent.pt") in caplog.text and "judge these results by file times" in caplog.text


def test_a_finished_pretraining_is_its_models_and_a_killed_later_one_is_not(tmp_path):
    """The pretraining bundle's handlers in its order (curves, then checkpoint and export): a finished run's files are
    its model's, though its curves are written after the export; a later run killed after a checkpoint is flagged."""
    import os
    import time

    import torch
    from ignite.engine import Engine

    from unimiss_monai.handlers import LossCurvePlotter, TrainingCheckpoint
    from unimiss_monai.report.run_folder import stale_notes

    def run(kill_at: int | None = None, resume: bool = False) -> None:
        model = torch.nn.Linear(2, 1)

        def step(engine, batch):
            if engine.state.iteration == kill_at:
                raise KeyboardInterrupt
            time.sleep(0.01)  # distinct modification times on coarse file systems
            return {"loss": float(engine.state.iteration)}

        engine = Engine(step)
        engine.state.rank = 0  # as the bundle's trainer sets it
        LossCurvePlotter(tmp_path / "loss_curves.png", write_every=2).attach(engine)
        TrainingCheckpoint(tmp_path / "checkpoints", {"model": model}, save_every=2, resume=resume,
                           export_path=tmp_path / "models" / "model.pt", export_fn=model.state_dict).attach(engine)
        engine.run([0] * 3, max_epochs=2)

    run()
    assert (tmp_path / "loss_curves.json").stat().st_mtime > (tmp_path / "models" / "model.pt").stat().st_mtime
    assert stale_notes(tmp_path) == {}
    # the finished run again (the demo's printed command resumes finished runs): nothing left to train, so its
    # checkpoint is saved anew and its export, the same weights, left as it was; the model is still the run's
    os.utime(tmp_path / "models" / "model.pt", (time.time() - 5, time.time() - 5))  # coarse file times told apart
    exported = (tmp_path / "models" / "model.pt").stat().st_mtime_ns
    run(resume=True)
    assert (tmp_path / "models" / "model.pt").stat().st_mtime_ns == exported
    assert (tmp_path / "checkpoints" / "checkpoint.pt").stat().st_mtime_ns > exported
    assert stale_notes(tmp_path) == {}
    with pytest.raises(KeyboardInterrupt):
        run(kill_at=4)  # a later run, checkpointed at iteration 2, killed before its export
    note = stale_notes(tmp_path)["pretraining"]
    assert "checkpoint.pt was written after" in note and "loss_curves.json" in note and "has not finished" in note


def test_failed_evaluation_cases_are_said_beside_the_scores_and_alone_when_none_was_scored(tmp_path):
    import numpy as np

    from unimiss_monai.handlers.classification_report import write_report
    from unimiss_monai.report.sections.classification import classification_section
    from unimiss_monai.report.sections.segmentation_tables import segmentation_table
    from unimiss_monai.report.sections.summary import summary_section

    eval_dir = tmp_path / "unimiss_cxr_classification" / "eval"
    failed = [{"case": "/data/bad.png", "reason": "bad.png: not finite; re-export it"}]
    write_report(eval_dir, np.array([[0.9, 0.2], [0.1, 0.8]]), np.array([[1, 0], [0, 1]]), ["a", "b"], True,
                 names=["x.png", "y.png"], failed=failed)
    blocks = classification_section(RunFolder(tmp_path)).blocks
    notes = [b.text for b in blocks if isinstance(b, Note)]
    assert any(n.startswith("1 of 3 evaluation case(s) failed") and str(eval_dir / "metrics.json") in n for n in notes)
    assert any(isinstance(b, Figure) for b in blocks)  # the two scored cases are still shown
    (row,) = next(b for b in summary_section(RunFolder(tmp_path)).blocks if isinstance(b, Table)).rows
    assert row[1] == "test ROC AUC, 2 (1 failed) cases"
    write_report(eval_dir, np.zeros((0, 2)), np.zeros((0, 2)), ["a", "b"], True, names=[], failed=failed * 2)
    blocks = classification_section(RunFolder(tmp_path)).blocks
    assert not any(isinstance(b, (Figure, Table)) for b in blocks)
    assert any(b.text.startswith("2 of 2 evaluation case(s) failed") for b in blocks if isinstance(b, Note))

    write_report(eval_dir, np.array([[0.9, 0.2], [0.1, 0.8]]), np.array([[1, 0], [0, 1]]), ["a", "b"], True,
                 names=["x.png", "y.png"])
    # a metrics.json of a version that did not count its cases: still shown, and no count made up
    older = json.loads((eval_dir / "metrics.json").read_text())
    del older["num_cases"]
    (eval_dir / "metrics.json").write_text(json.dumps({**older, "num_failed": 1, "failed": failed}))
    blocks = classification_section(RunFolder(tmp_path)).blocks
    assert any(isinstance(b, Figure) for b in blocks)
    assert any(b.text.startswith("1 evaluation case(s) failed") for b in blocks if isinstance(b, Note))
    (row,) = next(b for b in summary_section(RunFolder(tmp_path)).blocks if isinstance(b, Table)).rows
    assert row[1] == "test ROC AUC, ? (1 failed) cases"
    (eval_dir / "metrics.json").write_text(json.dumps({**older, "num_cases": None}))
    (row,) = next(b for b in summary_section(RunFolder(tmp_path)).blocks if isinstance(b, Table)).rows
    assert row[1] == "test ROC AUC, ? cases"

    seg = _write(tmp_path / "seg" / "segmentation_report.json", {"num_cases": 0, "num_failed": 1, "failed": failed,
                                                                  "structures": ["lung"], "mean": {}})
    (note,) = segmentation_table(seg.parent, "CXR segmentation")
    assert isinstance(note, Note) and note.text.startswith("1 of 1 evaluation case(s) failed") and str(seg) in note.text


def test_saliency_maps_shown_are_the_last_inferences_with_its_method(tmp_path):
    import numpy as np
    from PIL import Image

    from unimiss_monai.handlers.classification_report import write_report
    from unimiss_monai.report.sections.classification import classification_section

    home = tmp_path / "unimiss_cxr_classification"
    write_report(home / "eval", np.array([[0.9, 0.2], [0.1, 0.8]]), np.array([[1, 0], [0, 1]]), ["a", "b"], True,
                 names=["x.png", "y.png"])
    for name in ("test_000_a", "old_run_b"):  # old_run_b: a map of an earlier run's case, still in the folder
        (home / "inference" / "saliency").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(home / "inference" / "saliency" / f"{name}.png")
    cases = [{"case": "/in/test_000_a.png", "status": "ok", "saliency": "/elsewhere/saliency/test_000_a.png"}]
    _write(home / "inference" / "predictions.json", {"saliency": "rollout", "cases": cases})
    (figure,) = [b for b in classification_section(RunFolder(tmp_path)).blocks if isinstance(b, Figure)
                 and b.name.startswith("saliency")]
    assert figure.alt.endswith("images: test_000_a") and "attention rollout" in figure.caption
    (home / "inference" / "predictions.json").unlink()  # an inference that did not list its maps: all of them
    (figure,) = [b for b in classification_section(RunFolder(tmp_path)).blocks if isinstance(b, Figure)
                 and b.name.startswith("saliency")]
    assert "old_run_b" in figure.alt and "test_000_a" in figure.alt and "Grad-CAM" not in figure.caption


def test_a_run_on_synthetic_samples_is_not_said_to_be_on_the_real_ct(tmp_path):
    from unimiss_monai.report.sections.cxr_segmentation import cxr_segmentation_section
    from unimiss_monai.report.sections.summary import summary_section

    _write(tmp_path / "run" / "unimiss_ct_classification" / "eval" / "metrics.json", {"num_cases": 2, "per_class": []})
    for synthetic in (False, True):
        _write(tmp_path / "samples" / "samples.json", {"datasets": {"cxr_segmentation": {"synthetic": synthetic}}})
        run = RunFolder(tmp_path / "run", tmp_path / "samples")
        text = " ".join(b.text for s in (summary_section(run), cxr_segmentation_section(run)) for b in s.blocks
                        if hasattr(b, "text"))
        assert run.synthetic is synthetic and ("real radiograph" in text) is not synthetic
        assert ("synthetic phantoms" in text) is synthetic


def test_the_prose_says_how_each_model_began_as_the_model_records_it(tmp_path):
    import torch

    from unimiss_monai.report.run_folder import how_trained
    from unimiss_monai.report.sections.ct_segmentation import ct_segmentation_section
    from unimiss_monai.report.sections.summary import summary_section

    (tmp_path / "run").mkdir()
    run = RunFolder(tmp_path / "run")
    home = run.bundle("ct_segmentation")
    model = home / "models" / "model.pt"
    assert how_trained(home) == f"trained (from the pretrained backbone or not: no {model} to tell)"
    (home / "models").mkdir(parents=True)
    for info, said in (({"pretrained": True}, "fine-tuned from the pretrained backbone"),
                       ({"pretrained": False}, "trained from scratch (its model records no pretrained weights)"),
                       ({}, "trained (whether from the pretrained backbone, ")):
        torch.save({"model": {}, "info": info}, home / "models" / "model.pt")
        text = " ".join(b.text for b in ct_segmentation_section(run).blocks if hasattr(b, "text"))
        assert f"The 3D network {said}" in text, text
    _write(run.bundle("ct_classification") / "eval" / "metrics.json", {"num_cases": 2, "per_class": []})
    _write(tmp_path / "run" / "demo_steps.json", {"steps": []})  # the demo's chain, whose prose names every stage
    summary = " ".join(b.text for b in summary_section(run).blocks if hasattr(b, "text"))
    assert "from the pretrained backbone or not: see each section" in summary  # the others hold no model


def test_the_table_names_the_unit_the_evaluation_measured_in(tmp_path):
    from unimiss_monai.report.sections.segmentation_tables import segmentation_table

    mean = {"lung": {"dice": 0.9, "hd95": 4.0, "surface_dice": 0.8, "dice_n": 1, "missed": 0, "false_positives": 0}}
    for unit, header in (("pixel", "HD95 (pixels)"), (None, "HD95 (mm)"), ("mixed", "HD95 (mm or pixels)")):
        report = {"structures": ["lung"], "num_cases": 1, "mean": mean, **({"distance_unit": unit} if unit else {})}
        folder = tmp_path / f"eval_{unit}"
        _write(folder / "segmentation_report.json", report)
        table = [b for b in segmentation_table(folder, "CXR") if isinstance(b, Table)][0]
        assert header in table.header and f"in {header[6:-1]}" in table.caption, table.header


def test_a_classifier_giving_every_test_case_one_answer_is_said_to_beside_its_scores(tmp_path):
    import numpy as np

    from unimiss_monai.handlers.classification_report import write_report
    from unimiss_monai.report.sections.classification import classification_section

    def notes(bundle, probs, labels, classes, multi_label):
        write_report(tmp_path / bundle / "eval", np.array(probs), np.array(labels), classes, multi_label,
                     names=[f"case{i}" for i in range(len(probs))])
        return [b.text for b in classification_section(RunFolder(tmp_path)).blocks
                if isinstance(b, Note) and "test cases" in b.text]

    ct, classes = "unimiss_ct_classification", ["normal", "nodule", "mass"]
    # exclusive classes: "normal" is the arg-max of all three cases, whatever their truth
    (note,) = notes(ct, [[0.5, 0.3, 0.2], [0.4, 0.35, 0.25], [0.6, 0.1, 0.3]], [0, 1, 2], classes, False)
    assert ("gave normal the highest probability in every one of its 3 held-out test cases, which are not all normal"
            in note)
    assert note.endswith("train it longer.")
    assert notes(ct, [[0.5, 0.3, 0.2], [0.3, 0.5, 0.2], [0.6, 0.1, 0.3]], [0, 1, 2], classes, False) == []
    # findings: "a" is called present in both cases though one lacks it; "b" is told apart
    cxr = "unimiss_cxr_classification"
    (note,) = notes(cxr, [[0.9, 0.2], [0.8, 0.7]], [[1, 0], [0, 1]], ["a", "b"], True)
    assert "called a present in every one of its 2 held-out test cases, though some have it and some do not" in note
    assert "sensitivity and specificity of a describe that one call" in note and "train it longer" not in note
    # nothing told apart, but c, which no test case has, is rightly called absent
    (note,) = notes(cxr, [[0.9, 0.2, 0.1], [0.8, 0.3, 0.2]], [[1, 0, 0], [0, 1, 0]], ["a", "b", "c"], True)
    assert ("called a present and b absent in every one of its 2 held-out test cases, though each is present in some"
            in note)
    assert "specificities of a and b describe those calls" in note and note.endswith("train it longer.")
    assert notes(cxr, [[0.9, 0.2], [0.3, 0.7]], [[1, 0], [0, 1]], ["a", "b"], True) == []
    # a finding no test case has is rightly called absent in all of them
    assert notes(cxr, [[0.9, 0.2], [0.3, 0.1]], [[1, 0], [0, 0]], ["a", "b"], True) == []


@pytest.mark.parametrize("content", [{"steps": "x"}, {"steps": ["x"]}, ["x"]])
def test_a_step_record_of_another_shape_is_named_in_each_section_that_reads_it(tmp_path, content):
    """Each section reading demo_steps.json said ``AttributeError: 'str' object has no attribute 'get'``, naming no
    file; the rest of the page is still built."""
    from unimiss_monai.report.command import build_sections

    _write(tmp_path / "demo_steps.json", content)
    failed: list[str] = []
    sections = build_sections(RunFolder(tmp_path), failed)
    assert failed and set(failed) < {s.key.replace("-", "_") for s in sections}
    for section in sections:
        if section.key.replace("-", "_") in failed:
            (note,) = section.blocks
            assert note.text.startswith(f"This section could not be built: ValueError: {tmp_path / 'demo_steps.json'}: "
                                        "not a step record of tools/demo.sh")
