"""What the report's prose claims about a run: a smoke run is called one, only truly held-out cases are called held
out, and the suggested label-efficiency command reuses the run's backbone and says what it costs."""

from __future__ import annotations

import inspect
import json
import shlex

import pytest

from unimiss_monai.report.command import report
from unimiss_monai.report.document import Note, Paragraph, Table
from unimiss_monai.report.run_folder import RunFolder
from unimiss_monai.report.sections.ct_segmentation import ct_segmentation_section
from unimiss_monai.report.sections.label_efficiency import label_efficiency_section
from unimiss_monai.report.sections.summary import summary_section

SMOKE = "tiny networks trained for about a minute"


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def _ct_run(root, command_tail=""):
    """A run holding a CT evaluation and the step that wrote it."""
    _write(root / "unimiss_ct_segmentation" / "eval" / "segmentation_report.json",
           {"structures": ["liver"], "num_cases": 2, "mean": {"liver": {"dice": 0.5, "dice_n": 2}}, "mean_dice": 0.5})
    command = ("python -m monai.bundle run --config_file \"['bundles/unimiss_ct_segmentation/configs/train.json',"
               "'bundles/unimiss_ct_segmentation/configs/evaluate.json']\" --output_dir x/eval --seed 0" + command_tail)
    # as run_step records a step: the command's text and the argv it ran
    _write(root / "demo_steps.json", {"steps": [{"name": "ct_segmentation_evaluate", "command": command,
                                                 "argv": shlex.split(command),
                                                 "status": "ok", "wall_seconds": 5}]})
    return RunFolder(root)


def _text(section) -> str:
    return "\n".join(getattr(b, "text", "") or getattr(b, "caption", "") for b in section.blocks) + "\n" + "\n".join(
        " | ".join(r) for b in section.blocks if isinstance(b, Table) for r in b.rows)


@pytest.mark.parametrize("scale", ["smoke", "smoke\n", "demo", None])
def test_a_smoke_run_says_its_numbers_mean_nothing_at_the_top_and_only_then(tmp_path, scale):
    run = _ct_run(tmp_path)
    if scale is not None:
        (tmp_path / "demo_scale.txt").write_text(scale)
    blocks = summary_section(run).blocks
    smoke = scale is not None and scale.strip() == "smoke"
    assert (isinstance(blocks[0], Note) and SMOKE in blocks[0].text) is smoke
    if smoke:
        assert "say nothing about the method" in blocks[0].text and "bash tools/demo.sh" in blocks[0].text
    assert sum(SMOKE in getattr(b, "text", "") for b in blocks) == int(smoke)
    page = report(tmp_path).with_suffix(".md").read_text()
    head = page[:page.index("## ")]  # the header, before any section
    assert (SMOKE in head) is smoke


def test_validation_slabs_that_chose_the_checkpoint_are_not_called_held_out(tmp_path):
    run = _ct_run(tmp_path)
    summary = summary_section(run)
    row = next(b for b in summary.blocks if isinstance(b, Table)).rows[0]
    assert "validation" in row[1] and "chose the checkpoint" in row[1] and "held-out" not in row[1]
    prose = next(b.text for b in summary.blocks if isinstance(b, Paragraph))
    assert "Held-out scores of every stage" not in prose
    assert "CT segmentation: its validation slab(s)" in prose
    (table,) = [b for b in ct_segmentation_section(run).blocks if isinstance(b, Table)]
    assert "2 validation case(s)" in table.caption and "held-out case" not in table.caption
    assert "chose the checkpoint" in table.caption


@pytest.mark.parametrize("tail", [" --eval_split test", " --eval_split=test"])
def test_a_ct_evaluation_of_the_test_split_is_called_held_out(tmp_path, tail):
    run = _ct_run(tmp_path, tail)
    row = next(b for b in summary_section(run).blocks if isinstance(b, Table)).rows[0]
    assert "held-out test slab(s)" in row[1] and "validation" not in row[1]
    (table,) = [b for b in ct_segmentation_section(run).blocks if isinstance(b, Table)]
    assert "2 held-out case(s)" in table.caption and "validation" not in table.caption


def test_a_run_without_any_evaluation_claims_no_held_out_scores(tmp_path):
    _write(tmp_path / "unimiss_pretraining" / "knn_probe.json",
           [{"epoch": 0, "knn_accuracy": 0.1, "pixel_baseline": 0.2, "num_classes": 5}])  # only pretraining ran
    prose = next(b.text for b in summary_section(RunFolder(tmp_path)).blocks if isinstance(b, Paragraph))
    assert "held-out" not in prose and "evaluation (none in this folder yet)" in prose


def test_the_split_an_evaluation_records_is_what_the_report_calls_its_cases(tmp_path):
    """An evaluation run outside tools/demo.sh (no recorded command) with --eval_split training: its file records the
    split, and no section calls those cases held out; the recorded split also wins over the step's command."""
    from unimiss_monai.report.sections.classification import classification_section
    from unimiss_monai.report.sections.cxr_segmentation import cxr_segmentation_section

    _write(tmp_path / "unimiss_cxr_segmentation" / "eval" / "segmentation_report.json",
           {"structures": ["heart"], "num_cases": 3, "mean": {"heart": {"dice": 0.9, "dice_n": 3}}, "mean_dice": 0.9,
            "split": "training"})
    home = tmp_path / "unimiss_cxr_classification" / "eval"
    _write(home / "metrics.json", {"macro_auc": 0.7, "num_cases": 2, "per_class": [], "split": "training"})
    # one answer (a) for both cases, which differ: the note about it names the cases as the split they are
    (home / "evaluation_predictions.csv").write_text("name,prob_a,prob_b,true_a,true_b\nx,0.8,0.2,1,0\ny,0.6,0.4,0,1\n")
    run = _ct_run(tmp_path, " --eval_split test")
    _write(tmp_path / "unimiss_ct_segmentation" / "eval" / "segmentation_report.json",
           {"structures": ["liver"], "num_cases": 2, "mean": {"liver": {"dice": 0.5, "dice_n": 2}}, "mean_dice": 0.5,
            "split": "validation"})
    summary = summary_section(run)
    rows = {r[0]: r[1] for r in next(b for b in summary.blocks if isinstance(b, Table)).rows}
    assert rows["CXR segmentation"] == "Dice, 3 training DRRs (trained on, so not held out)"
    assert rows["CXR classification"] == "ROC AUC, 2 training cases (trained on, so not held out)"
    assert "validation slab(s)" in rows["CT segmentation"] and "held-out" not in rows["CT segmentation"]
    prose = next(b.text for b in summary.blocks if isinstance(b, Paragraph))
    assert "CXR segmentation: its training DRRs" in prose and "CXR classification: its training cases" in prose
    assert "held-out test data" not in prose  # no stage scored its test split
    texts = "".join(_text(section(run)) for section in (cxr_segmentation_section, classification_section,
                                                        ct_segmentation_section))
    assert "held-out" not in texts and "never saw" not in texts and "3 training case(s)" in texts
    assert "ROC per class on the training cases (trained on, so not held out)" in texts
    assert "highest probability in every one of its 2 training cases (trained on, so not held out)" in texts


def test_the_suggested_study_uses_the_runs_backbone_and_says_its_size(tmp_path):
    from unimiss_monai.benchmarks.label_efficiency.command import label_efficiency
    from unimiss_monai.benchmarks.label_efficiency.tasks import TASKS

    root = tmp_path / "a run's folder"  # a space and a quote: the command must still paste into a shell
    backbone = root / "unimiss_pretraining" / "models" / "model.pt"
    backbone.parent.mkdir(parents=True)
    (note,) = label_efficiency_section(RunFolder(root)).blocks
    assert "--pretrained" not in note.text  # none to reuse: the study pretrains its own
    backbone.write_bytes(b"weights")
    (note,) = label_efficiency_section(RunFolder(root)).blocks
    words = shlex.split(note.text.split("`")[1])
    assert words[words.index("--pretrained") + 1] == str(backbone.resolve())
    assert words[words.index("--out") + 1] == str((root / "label_efficiency" / "unimiss_cxr_segmentation").resolve())
    assert words[words.index("--bundle") + 1] == "unimiss_cxr_segmentation"
    # the size it states is the command's defaults
    defaults = {k: v.default for k, v in inspect.signature(label_efficiency).parameters.items()}
    arms, fractions = defaults["arms"].split(","), defaults["fractions"].split(",")
    runs = len(arms) * len(fractions) * defaults["seeds"]
    task = TASKS[defaults["bundle"]]
    assert (f"{len(arms)} arms ({', '.join(arms)}) x {len(fractions)} label fractions ({', '.join(fractions)}) x "
            f"{defaults['seeds']} seeds = {runs} small trainings of {task.max_epochs} epochs x "
            f"{defaults['epoch_iterations']} iterations") in note.text


def test_a_folder_of_runs_on_own_data_is_not_described_as_the_sample_data(tmp_path):
    """A user's runs gathered in the demo's layout were described as the demo's: the real chest CT and RG1_UNCR, CT
    slabs and their DRRs for an X-ray-only pretraining, DRRs with simulated findings for their own radiographs. Only
    a folder tools/demo.sh wrote (its demo_steps.json) or a report given --samples describes the sample data."""
    from unimiss_monai.report.sections.classification import classification_section
    from unimiss_monai.report.sections.cxr_segmentation import cxr_segmentation_section
    from unimiss_monai.report.sections.pretraining import pretraining_section

    from .synthetic_run import make_run

    run, samples = make_run(tmp_path)
    (run / "demo_steps.json").unlink()  # the user's own runs: no demo wrote the folder
    sections = (summary_section, pretraining_section, cxr_segmentation_section, ct_segmentation_section,
                classification_section)
    claims = ("real chest CT", "sample CT", "sample chest CT", "simulated", "CT slabs", "RG1_UNCR", "DRRs")

    def prose(folder: RunFolder) -> str:
        return "\n".join(_text(section(folder)) for section in sections)

    own = prose(RunFolder(run))  # the samples folder beside it is found, but nothing says the runs read it
    assert [c for c in claims if c in own] == [] and "what the data are is not recorded here" in own
    assert "the images of its datalist" in own and "Chest X-ray classification" in own
    # the chain it names is the stages this folder holds outputs of, and only those
    import shutil

    shutil.rmtree(run / "unimiss_ct_classification")
    shutil.rmtree(run / "unimiss_drr_generation")
    (chain,) = [b.text for b in summary_section(RunFolder(run)).blocks
                if getattr(b, "text", "").startswith("Stages with outputs in this folder")]
    assert (": UniMiSS+ pretraining, CXR segmentation, CT segmentation, CXR classification; evaluation on " in chain
            and "DRR generation" not in chain and "CT classification" not in chain and "->" not in chain)
    for told in (RunFolder(run, samples), _with_steps(run)):
        said = prose(told)
        assert "one real chest CT" in said and "CT slabs, their DRRs and radiographs" in said and "DRRs" in said


def _with_steps(run) -> RunFolder:
    _write(run / "demo_steps.json", {"steps": []})
    return RunFolder(run)


def test_failed_inference_cases_and_cases_not_pictured_are_said(tmp_path):
    """2 of 6 CTs failed in inference and 2 of the 4 segmented were pictured; the report said neither."""
    import shutil

    from .synthetic_run import make_run

    run, samples = make_run(tmp_path)
    inference = run / "unimiss_ct_segmentation" / "inference"
    summary = json.loads((inference / "summary.json").read_text())
    ok = summary["cases"][0]
    for k in range(3):  # three more segmented CTs, the same pictures
        shutil.copy(ok["output"], inference / f"more_{k}_seg.nii.gz")
        summary["cases"].append({**ok, "case": f"more_{k}", "input": ok["case"],
                                 "output": str(inference / f"more_{k}_seg.nii.gz")})
    summary["cases"] += [{"case": "/data/nan.nii.gz", "status": "failed", "reason": "has 3 NaN voxels; replace them"},
                         {"case": "/data/forms.nii.gz", "status": "failed", "reason": "sform and qform disagree"}]
    _write(inference / "summary.json", summary)
    text = _text(ct_segmentation_section(RunFolder(run, samples)))
    assert (f"2 of the 4 segmented CTs are pictured; the others are in {inference}; 2 of the 6 inference case(s) "
            f"failed ({inference / 'summary.json'} gives each reason; e.g. /data/nan.nii.gz: has 3 NaN voxels; replace "
            "them).") in text
    summary["cases"] = summary["cases"][:1]  # one case, pictured, none failed: nothing to say
    _write(inference / "summary.json", summary)
    assert "are pictured" not in _text(ct_segmentation_section(RunFolder(run, samples)))


@pytest.mark.parametrize("content", [{}, [], {"auc": 0.9}], ids=["empty", "a list", "other keys"])
def test_a_missing_or_foreign_output_is_told_with_what_makes_it_in_that_folder(tmp_path, content):
    """In a folder of one's own runs the report told every missing output to "run the ... step of tools/demo.sh",
    which those runs never used; a metrics.json that is not an evaluation's was said to be no evaluation at all."""
    import shutil

    from unimiss_monai.report.sections.classification import classification_section
    from unimiss_monai.report.sections.pretraining import pretraining_section

    from .synthetic_run import make_run

    run, _ = make_run(tmp_path)
    (run / "demo_steps.json").unlink()
    shutil.rmtree(run / "unimiss_pretraining")
    shutil.rmtree(run / "unimiss_ct_segmentation" / "eval")
    _write(run / "unimiss_cxr_classification" / "eval" / "metrics.json", content)
    said = "\n".join(_text(section(RunFolder(run))) for section in (pretraining_section, ct_segmentation_section,
                                                                       classification_section))
    assert "tools/demo.sh" not in said
    assert ("run the pretraining bundle (configs/train.json) with its outputs there." in said
            and "run unimiss_ct_segmentation's evaluation (configs/train.json with configs/evaluate.json) with its "
                "outputs there." in said)
    metrics = run / "unimiss_cxr_classification" / "eval" / "metrics.json"
    assert (f"{metrics} is not a metrics file of this project (neither per_class nor num_cases); move it away, then "
            "run unimiss_cxr_classification's evaluation (configs/train.json with configs/evaluate.json)") in said
    said = _text(pretraining_section(_with_steps(run)))  # a folder the demo wrote: its step
    assert "run the pretraining step of tools/demo.sh." in said
