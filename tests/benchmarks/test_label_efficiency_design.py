"""The label-efficiency study without bundle runs: the paired interval against scipy, the paired design, resuming
(interrupted + resumed == uninterrupted, byte for byte), the figure and the docs table."""

from __future__ import annotations

import json

import numpy as np
import pytest
from label_efficiency_fakes import DESIGN, META, SETTINGS, FakeRunner, study_json
from scipy import stats

from unimiss_monai.benchmarks.label_efficiency.command import write_results
from unimiss_monai.benchmarks.label_efficiency.design import StudyDesign, subset_indices, subset_order
from unimiss_monai.benchmarks.label_efficiency.statistics import mean_interval, paired_difference
from unimiss_monai.benchmarks.label_efficiency.study import build_results, run_study

PRE = [0.61, 0.58, 0.66, 0.59, 0.63, 0.60]
SCRATCH = [0.55, 0.57, 0.60, 0.52, 0.61, 0.58]


def test_t_interval_is_scipys_paired_t_test_interval():
    d = paired_difference(PRE, SCRATCH, confidence=0.95)
    ci = stats.ttest_rel(PRE, SCRATCH).confidence_interval(0.95)
    assert d["mean"] == pytest.approx(np.mean(np.subtract(PRE, SCRATCH)))
    assert (d["ci_low"], d["ci_high"]) == pytest.approx((ci.low, ci.high), rel=1e-10)
    assert d["n"] == 6 and d["differences"] == pytest.approx(np.subtract(PRE, SCRATCH).tolist())
    # these numbers: every seed but one favours the first arm, and the interval excludes 0
    assert d["ci_low"] > 0 and d["includes_zero"] is False
    d90 = paired_difference(PRE, SCRATCH, confidence=0.90)
    ci90 = stats.ttest_rel(PRE, SCRATCH).confidence_interval(0.90)
    assert (d90["ci_low"], d90["ci_high"]) == pytest.approx((ci90.low, ci90.high), rel=1e-10)
    assert d90["ci_high"] - d90["ci_low"] < d["ci_high"] - d["ci_low"]


def test_paired_interval_is_narrower_than_separate_intervals_when_seeds_share_their_spread():
    base = np.array([0.40, 0.55, 0.70, 0.48, 0.62])  # seed-to-seed spread shared by both arms
    pre, scratch = base + 0.05 + np.array([0.01, -0.01, 0.0, 0.005, -0.005]), base
    d = paired_difference(pre, scratch)
    a, b = mean_interval(pre), mean_interval(scratch)
    assert a["ci_low"] < b["ci_high"]  # the separate intervals overlap...
    assert not d["includes_zero"] and d["ci_low"] > 0.03  # ...the paired one shows the 0.05 gain


def test_interval_that_includes_zero_says_so():
    d = paired_difference([0.5, 0.6, 0.55], [0.52, 0.57, 0.56])
    assert d["ci_low"] < 0 < d["ci_high"] and d["includes_zero"] is True


def test_bootstrap_interval_is_scipys_percentile_bootstrap_with_the_fixed_seed():
    d = paired_difference(PRE, SCRATCH, method="bootstrap", n_resamples=2000, random_state=3)
    ref = stats.bootstrap((np.subtract(PRE, SCRATCH),), np.mean, n_resamples=2000, method="percentile",
                          random_state=np.random.default_rng(3)).confidence_interval
    assert (d["ci_low"], d["ci_high"]) == pytest.approx((ref.low, ref.high), rel=1e-12)
    assert paired_difference(PRE, SCRATCH, method="bootstrap") == paired_difference(PRE, SCRATCH, method="bootstrap")
    assert d["ci_low"] <= d["mean"] <= d["ci_high"]


def test_identical_differences_give_a_point_interval_and_bad_input_is_refused():
    d = paired_difference([0.6, 0.7], [0.5, 0.6])
    assert d["ci_low"] == pytest.approx(0.1) and d["ci_high"] == pytest.approx(0.1) and not d["includes_zero"]
    with pytest.raises(ValueError, match="at least 2"):
        paired_difference([0.6], [0.5])
    with pytest.raises(ValueError, match="paired one to one"):
        paired_difference([0.6, 0.7], [0.5])
    with pytest.raises(ValueError, match="non-finite"):
        paired_difference([0.6, float("nan")], [0.5, 0.4])
    with pytest.raises(ValueError, match="method"):
        paired_difference(PRE, SCRATCH, method="z")


def test_subsets_are_seeded_nested_and_independent_of_the_arm():
    a = subset_indices(32, 0.1, seed=3)
    assert len(a) == 4 and a == subset_indices(32, 0.1, seed=3) and a != subset_indices(32, 0.1, seed=4)
    for seed in range(5):  # nested: a larger fraction adds items, it does not redraw
        sizes = [set(subset_indices(32, f, seed)) for f in (0.05, 0.1, 0.25, 1.0)]
        assert all(small <= large for small, large in zip(sizes, sizes[1:])) and sizes[-1] == set(range(32))
    assert len(subset_indices(3, 0.05, 0)) == 1  # never empty
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        subset_indices(10, 0.0, 0)


def test_stratified_order_takes_every_class_first():
    strata = ["normal"] * 30 + ["nodule"] * 10 + ["mass"] * 8
    for seed in range(5):
        order = subset_order(len(strata), seed, strata)
        assert sorted(order) == list(range(48))
        assert {strata[i] for i in order[:3]} == {"normal", "nodule", "mass"}


def test_every_arm_gets_the_same_subsets_and_seeds():
    design = StudyDesign((0.05, 0.1, 0.25, 1.0), (0, 1, 2, 3, 4), ("scratch", "pretrained", "unimiss"))
    runs = design.runs(32)
    assert len(runs) == 4 * 5 * 3
    by_pair: dict = {}
    for r in runs:
        by_pair.setdefault((r.fraction, r.seed), {})[r.arm] = r.indices
    for (f, s), arms in by_pair.items():
        assert set(arms) == {"scratch", "pretrained", "unimiss"}
        assert arms["scratch"] == arms["pretrained"] == arms["unimiss"] == subset_indices(32, f, s)
    # different seeds of one fraction train on different subsets
    assert len({by_pair[(0.1, s)]["scratch"] for s in range(5)}) > 1


def test_bad_designs():
    with pytest.raises(ValueError, match="start with scratch"):
        StudyDesign((0.1,), (0, 1), ("pretrained", "scratch"))
    with pytest.raises(ValueError, match="unknown arm"):
        StudyDesign((0.1,), (0, 1), ("scratch", "imagenet"))
    with pytest.raises(ValueError, match="must not repeat"):
        StudyDesign((0.1, 0.1), (0, 1), ("scratch", "pretrained"))


def test_resumed_study_writes_the_same_json_as_an_uninterrupted_one(tmp_path):
    whole = study_json(tmp_path / "a", FakeRunner())
    first = FakeRunner(stop_after=7)
    with pytest.raises(KeyboardInterrupt):
        study_json(tmp_path / "b", first)
    assert len(list((tmp_path / "b" / "runs").glob("*/record.json"))) == 7
    second = FakeRunner()
    resumed = study_json(tmp_path / "b", second)
    assert resumed == whole
    # the finished runs were read back, only the rest were trained
    assert len(second.calls) == 20 - 7 and not set(second.calls) & set(first.calls)
    assert (tmp_path / "b" / "label_efficiency.md").read_text() == (tmp_path / "a" / "label_efficiency.md").read_text()
    # a third call trains nothing
    third = FakeRunner()
    assert study_json(tmp_path / "b", third) == whole and third.calls == []


def test_results_schema_per_seed_values_and_paired_difference(tmp_path):
    study_json(tmp_path, FakeRunner())
    res = json.loads((tmp_path / "label_efficiency.json").read_text())
    assert res["fractions"] == [0.1, 1.0] and res["seeds"] == [0, 1, 2, 3, 4] and res["arms"] == ["scratch", "pretrained"]
    assert res["complete"] and not res["failures"] and res["command"] == META["command"]
    for f in ("0.1", "1"):
        pre, scr = res["results"]["pretrained"][f]["per_seed"], res["results"]["scratch"][f]["per_seed"]
        assert list(pre) == list(scr) == ["0", "1", "2", "3", "4"]
        d = res["paired_difference"][f]
        ref = stats.ttest_rel(list(pre.values()), list(scr.values())).confidence_interval(0.95)
        assert d["mean"] == pytest.approx(np.mean(np.subtract(list(pre.values()), list(scr.values()))))
        assert (d["ci_low"], d["ci_high"]) == pytest.approx((ref.low, ref.high))
        assert d["arm"] == "pretrained" and d["reference"] == "scratch" and d["seeds"] == [0, 1, 2, 3, 4]
        assert d == res["paired_differences"]["pretrained"][f]
    # the fake gain of 0.05 is ten times the noise that the arms do not share: the paired interval finds it
    d = res["paired_difference"]["0.1"]
    assert d["mean"] == pytest.approx(0.05, abs=0.01) and 0 < d["ci_low"] < 0.05 < d["ci_high"]
    assert not d["includes_zero"] and d["conclusion"].endswith("pretrained is better at this confidence")
    assert (tmp_path / "label_efficiency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (tmp_path / "label_efficiency.md").read_text()
    assert "| 0.1 (4) |" in md and "pretrained - scratch" in md


def test_a_failed_run_is_recorded_left_out_of_its_pair_and_retried(tmp_path):
    runner = FakeRunner(fail="pretrained_f0.1_s2")
    study_json(tmp_path, runner)
    res = json.loads((tmp_path / "label_efficiency.json").read_text())
    (failure,) = res["failures"]
    assert failure["run_id"] == "pretrained_f0.1_s2" and failure["error"] == "RuntimeError: out of memory"
    assert not res["complete"] and res["paired_difference"]["0.1"]["seeds"] == [0, 1, 3, 4]
    assert res["paired_difference"]["1"]["n"] == 5
    retry = FakeRunner()
    study_json(tmp_path, retry)
    assert retry.calls == ["pretrained_f0.1_s2"]
    assert json.loads((tmp_path / "label_efficiency.json").read_text())["complete"]


def test_changed_settings_rerun_and_a_foreign_folder_is_refused(tmp_path):
    study_json(tmp_path, FakeRunner())
    runner = FakeRunner()
    records = run_study(DESIGN.runs(32), runner, tmp_path, {**SETTINGS, "pretrained": {"lr": 1e-3, "weights_sha256": "cd"}})
    assert sorted(runner.calls) == sorted(r.run_id for r in DESIGN.runs(32) if r.arm == "pretrained")
    assert all(r["status"] == "ok" for r in records)
    foreign = tmp_path / "other" / "runs" / "scratch_f0.1_s0"
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not written by this study"):
        run_study(DESIGN.runs(32), FakeRunner(), tmp_path / "other", SETTINGS)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_single_seed_has_no_interval_and_says_so(tmp_path):
    design = StudyDesign((0.5,), (0,), ("scratch", "pretrained"))
    res = build_results(run_study(design.runs(8), FakeRunner(), tmp_path, SETTINGS), design, META)
    d = res["paired_difference"]["0.5"]
    assert d["n"] == 1 and d["ci_low"] is None and d["includes_zero"] is None and "too few" in d["conclusion"]
    assert res["results"]["scratch"]["0.5"]["ci_low"] is None


def test_fractions_that_draw_the_same_subset_are_trained_once_and_resume_alike(tmp_path):
    # 3 training items: 0.05, 0.1 and 0.25 are each one item, the same item for a seed
    design = StudyDesign((0.05, 0.1, 0.25, 1.0), (0, 1, 2), ("scratch", "pretrained"))
    runs = design.runs(3)
    runner = FakeRunner()
    records = run_study(runs, runner, tmp_path / "a", SETTINGS)
    trained = {(r.arm, r.seed, r.indices) for r in runs}
    assert len(runner.calls) == len(trained) == 2 * 3 * 2
    by_id = {r["run_id"]: r for r in records}
    for seed in (0, 1, 2):
        for arm in ("scratch", "pretrained"):
            first = by_id[f"{arm}_f0.05_s{seed}"]
            assert "same_run_as" not in first
            for f in ("0.1", "0.25"):
                copy = by_id[f"{arm}_f{f}_s{seed}"]
                assert copy["same_run_as"] == first["run_id"] and copy["score"] == first["score"]
                assert copy["fraction"] == float(f) and copy["indices"] == first["indices"]
                assert copy["fingerprint"] != first["fingerprint"]
    whole = build_results(records, design, META)
    write_results(whole, tmp_path / "a")
    assert "trained once" in (tmp_path / "a" / "label_efficiency.md").read_text()
    # killed after the first training: the resumed study trains the rest and writes the same JSON
    with pytest.raises(KeyboardInterrupt):
        run_study(runs, FakeRunner(stop_after=1), tmp_path / "b", SETTINGS)
    resumed = FakeRunner()
    again = build_results(run_study(runs, resumed, tmp_path / "b", SETTINGS), design, META)
    assert len(resumed.calls) == len(trained) - 1
    write_results(again, tmp_path / "b")
    assert (tmp_path / "b" / "label_efficiency.json").read_bytes() == (tmp_path / "a" / "label_efficiency.json").read_bytes()
    # a copy is never the source of another copy, and reading everything back trains nothing
    idle = FakeRunner()
    run_study(runs, idle, tmp_path / "b", SETTINGS)
    assert idle.calls == []


def test_results_replace_only_the_files_the_study_wrote(tmp_path):
    """A label_efficiency.md of the user's in --out is refused in one line and nothing is written; the study's own
    results are replaced by a rerun."""
    from unimiss_monai.benchmarks.label_efficiency.command import RESULT_NAMES

    out = tmp_path / "study"
    out.mkdir()
    (out / "label_efficiency.md").write_text("my notes")
    results = build_results(run_study(DESIGN.runs(32), FakeRunner(), out, SETTINGS), DESIGN, META)
    with pytest.raises(FileExistsError, match=r"label_efficiency.md exists and was not written by unimiss_monai.* --out$"):
        write_results(results, out)
    assert (out / "label_efficiency.md").read_text() == "my notes"
    assert not (out / "label_efficiency.json").exists() and not (out / "label_efficiency.png").exists()
    (out / "label_efficiency.md").unlink()
    write_results(results, out)
    first = {n: (out / n).read_bytes() for n in RESULT_NAMES}
    write_results(results, out)  # its own files: replaced
    assert {n: (out / n).read_bytes() for n in RESULT_NAMES} == first
    (out / "label_efficiency.json").write_text("edited")  # ... unless changed since: then they are the user's
    with pytest.raises(FileExistsError, match=r"label_efficiency.json was changed after unimiss_monai wrote it.* --out$"):
        write_results(results, out)
    assert (out / "label_efficiency.json").read_text() == "edited"
    (out / "label_efficiency.json").unlink()
    # the results of a version before the record of written files: each recognised by its content, replaced
    (out / ".unimiss_monai_files").unlink()
    (out / "label_efficiency.md").write_text(first["label_efficiency.md"].decode().replace("0.", "9."))
    (out / "label_efficiency.png").write_bytes(first["label_efficiency.png"][:-100])
    write_results(results, out)
    assert {n: (out / n).read_bytes() for n in RESULT_NAMES} == first
    # ... but not a file of the user's beside them, though the JSON and picture are the study's
    for name, users in (("label_efficiency.md", b"my notes"), ("label_efficiency.png", b"\x89PNG\r\n\x1a\nmine")):
        (out / ".unimiss_monai_files").unlink()
        (out / name).write_bytes(users)
        with pytest.raises(FileExistsError, match=rf"{name} exists and was not written by unimiss_monai.* --out$"):
            write_results(results, out)
        assert (out / name).read_bytes() == users
        (out / name).write_bytes(first[name])


def test_the_study_command_refuses_a_users_result_file_before_any_run(tmp_path):
    from unimiss_monai.benchmarks.label_efficiency.command import label_efficiency

    (tmp_path / "label_efficiency.json").write_text("{}")
    with pytest.raises(FileExistsError, match="label_efficiency.json exists and was not written by unimiss_monai"):
        label_efficiency(bundle="unimiss_cxr_segmentation", out=str(tmp_path), dataset_dir=str(tmp_path / "missing"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["label_efficiency.json"]


def test_pretraining_probe_summary_reports_the_stage_maps_against_the_pixel_baseline(tmp_path):
    from unimiss_monai.benchmarks.label_efficiency.pretrain import knn_summary

    history = tmp_path / "knn_probe.json"
    maps0 = {"stage1": 0.30, "stage2": 0.25, "stage3": 0.10, "stage4": 0.12}
    maps1 = {"stage1": 0.35, "stage2": 0.20, "stage3": 0.34, "stage4": 0.22}
    history.write_text(json.dumps([
        {"epoch": 0, "knn_accuracy": 0.15, "pixel_baseline": 0.22, "feature_maps": maps0},
        {"epoch": 40, "knn_accuracy": 0.07, "pixel_baseline": 0.22, "feature_maps": maps1}]))
    s = knn_summary(history)
    assert (s["knn_first"], s["knn_last"], s["epochs"], s["beats_pixel_baseline"]) == (0.15, 0.07, 40, False)
    assert s["feature_maps_first"] == maps0 and s["feature_maps_last"] == maps1
    # strictly above the baseline: stage4 equals it and does not count
    assert s["feature_maps_beating_pixel_baseline"] == ["stage1", "stage3"]
    # a history written without stage maps (an older run, or a backbone without forward_intermediates)
    history.write_text(json.dumps([{"epoch": 1, "knn_accuracy": 0.3, "pixel_baseline": 0.2}]))
    assert "feature_maps_last" not in knn_summary(history) and knn_summary(history)["beats_pixel_baseline"]
    assert knn_summary(tmp_path / "missing.json") is None


@pytest.mark.parametrize("bundle, recorded", [("unimiss_ct_segmentation", "validation+test"),
                                              ("unimiss_cxr_segmentation", None)])
def test_a_study_run_records_the_items_it_scores_as_its_split(tmp_path, bundle, recorded):
    """The CT task scores the validation and test slabs through an override of the evaluated data: its evaluation
    must not record the bundle's default split (validation) as what it scored; the others score their own split."""
    import json

    from unimiss_monai.benchmarks.label_efficiency.design import RunSpec
    from unimiss_monai.benchmarks.label_efficiency.runner import BundleRunner
    from unimiss_monai.benchmarks.label_efficiency.tasks import TASKS

    calls = []

    def workflow(names, kind, run_dir, **ids):
        calls.append((kind, ids))
        report = run_dir / "report" / TASKS[bundle].report
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps({"mean": {"a": {"dice": 0.5}}}))

    runner = BundleRunner(TASKS[bundle], None, {}, ["item"], {"scratch": None}, tmp_path)
    runner._workflow = workflow
    runner(RunSpec("scratch", 1.0, 0, (0,)), tmp_path / "run")
    (_, train), (_, evaluation) = calls
    assert "eval_split" not in train and evaluation.get("eval_split") == recorded
