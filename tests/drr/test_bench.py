"""``bench-drr`` and ``bench-drr-cases`` on a small phantom: the header names machine, threads and load, every row is
timed, the nanodrr ratios carry both medians, and nothing is left behind but the JSON."""

from __future__ import annotations

import json
import re

import pytest

from unimiss_monai.benchmarks.drr import ONE_SHOT, PREPARED, _ratios, bench_drr
from unimiss_monai.benchmarks.drr_cases import MODES, bench_drr_cases
from unimiss_monai.data import make_ct_phantom, phantom_affine, save_nifti
from unimiss_monai.data.sample_sets.drr_generation import write_phantom_case


def test_bench_ours_only_on_a_phantom(tmp_path, capsys):
    shape = (40, 36, 24)
    phantom = make_ct_phantom(shape, affine=phantom_affine((8.0, 8.0, 10.0), shape, "RAS"))
    ct = save_nifti(phantom.hu, phantom.affine, tmp_path / "ct.nii.gz")
    bench_drr(sizes=32, repeats=2, ct=str(ct), out=str(tmp_path / "bench.json"), ours_only=True)
    text = capsys.readouterr().out
    assert "load average" in text and re.search(r"threads \d+/\d+", text) and "CPUs" in text
    result = json.loads((tmp_path / "bench.json").read_text())
    rows = {r["renderer"]: r for r in result["results"]}
    assert rows[PREPARED]["repeats"] == 2 and rows[ONE_SHOT]["repeats"] == 2
    # the one-shot call renders the very same image, from the HU array
    assert rows[ONE_SHOT]["rel_l2"] < 1e-6 and rows[ONE_SHOT]["rel_l2_vs"] == PREPARED


def test_bench_refuses_an_existing_output_before_any_work_and_writes_atomically(tmp_path):
    """An existing ``--out`` is kept unless ``overwrite``; the JSON goes through a temporary of its own, never a
    fixed ``<out>.tmp`` (which may be someone's file)."""
    shape = (24, 20, 12)
    ct = save_nifti(make_ct_phantom(shape).hu, phantom_affine((8.0, 8.0, 10.0), shape), tmp_path / "ct.nii.gz")
    out, theirs = tmp_path / "bench.json", tmp_path / "bench.json.tmp"
    out.write_text("mine")
    theirs.write_text("theirs")
    for run in (lambda **kw: bench_drr(sizes=16, repeats=1, ct=str(ct), out=str(out), ours_only=True, **kw),
                lambda **kw: bench_drr_cases(modes="read", ct=str(ct), out=str(out), **kw)):
        with pytest.raises(FileExistsError, match="--out .*bench.json exists and is not replaced: pass --overwrite true"):
            run()
        assert out.read_text() == "mine"
    with pytest.raises(FileExistsError, match="is a folder, not a file"):
        bench_drr_cases(modes="read", ct=str(ct), out=str(tmp_path))
    bench_drr(sizes=16, repeats=1, ct=str(ct), out=str(out), ours_only=True, overwrite=True)
    assert json.loads(out.read_text())["results"] and theirs.read_text() == "theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json", "bench.json.tmp", "ct.nii.gz"]


@pytest.mark.parametrize("prepared, one_shot, nanodrr, expected", [
    (0.05, 0.1, 1.5, ["0.050 s vs nanodrr 1.500 s per view (medians): 30.0x",
                      "0.100 s vs nanodrr 1.500 s per view (medians): 15.0x"]),
    # on a GPU nanodrr's fused kernel takes about a millisecond: no "0.0x", both sides with their digits
    (0.036, 0.0009, 0.0012, ["0.036 s vs nanodrr 0.0012 s per view (medians): 0.033x (nanodrr 30.0x faster)",
                             "0.0009 s vs nanodrr 0.0012 s per view (medians): 1.3x"]),
])
def test_ratios_state_both_sides(prepared, one_shot, nanodrr, expected):
    rows = [{"renderer": PREPARED, "size": 256, "median_s": prepared}, {"renderer": ONE_SHOT, "size": 256, "median_s": one_shot},
            {"renderer": "nanodrr", "size": 256, "median_s": nanodrr}]
    lines = _ratios(rows)
    assert len(lines) == 2 and all(line.endswith(e) for line, e in zip(lines, expected)), lines
    assert _ratios(rows[:2]) == []


def test_bench_cases_times_every_mode_of_the_engine_and_leaves_nothing(tmp_path, capsys):
    case = write_phantom_case(tmp_path / "ct", "chest", (40, 36, 24), (8.0, 8.0, 10.0))
    before = set(tmp_path.rglob("*"))
    bench_drr_cases(copies=2, repeats=2, ct=str(case.image), labels=str(case.labels), label_names=str(case.label_names),
                    out=str(tmp_path / "cases.json"))
    text = capsys.readouterr().out
    assert "load average" in text and re.search(r"threads \d+/\d+", text) and "2 linked copies" in text
    rows = {r["mode"]: r for r in json.loads((tmp_path / "cases.json").read_text())["results"]}
    assert rows.keys() == MODES.keys() and all(f"| {mode} | " in text for mode in MODES)
    for row in rows.values():
        assert row["runs"] == 2 and 0 < row["min_s"] <= row["median_s"] <= row["max_s"]
    assert set(tmp_path.rglob("*")) - before == {tmp_path / "cases.json"}


def test_bench_cases_refuses_what_it_cannot_time(tmp_path):
    shape = (24, 20, 12)
    ct = save_nifti(make_ct_phantom(shape).hu, phantom_affine((8.0, 8.0, 10.0), shape), tmp_path / "ct.nii.gz")
    with pytest.raises(ValueError, match="unknown mode"):
        bench_drr_cases(modes="whole,fast", ct=str(ct), out=None)
    with pytest.raises(ValueError, match="needs a label map"):
        bench_drr_cases(modes="labels", ct=str(ct), out=None)


def test_bench_cases_names_the_users_files_and_times_a_plain_nii(tmp_path):
    """A missing ``--labels`` was linked, left out with a warning and its mode timed as if it had projected labels;
    a folder as ``--ct`` gave a message about the benchmark's own links; a CT the engine refuses was named by its
    temporary link; a ``.nii`` CT was linked as ``.nii.gz`` and read as broken gzip."""
    import numpy as np

    shape = (24, 20, 12)
    phantom = make_ct_phantom(shape)
    ct = save_nifti(phantom.hu, phantom_affine((8.0, 8.0, 10.0), shape), tmp_path / "ct.nii.gz")
    absent = re.escape(str(tmp_path / "absent.nii.gz"))
    with pytest.raises(FileNotFoundError, match=rf"^bench-drr-cases: --labels {absent} does not"):
        bench_drr_cases(modes="labels", ct=str(ct), labels=str(tmp_path / "absent.nii.gz"), out=None)
    folder = re.escape(str(tmp_path))
    with pytest.raises(FileNotFoundError, match=rf"^bench-drr-cases: --ct {folder} is a folder; pass a file"):
        bench_drr_cases(modes="read", ct=str(tmp_path), out=None)
    hu = phantom.hu.astype(np.float32)
    hu[0, 0, 0] = np.nan
    bad = save_nifti(hu, phantom_affine((8.0, 8.0, 10.0), shape), tmp_path / "bad.nii.gz")
    with pytest.raises(RuntimeError, match="nothing is timed") as err:
        bench_drr_cases(modes="whole", ct=str(bad), out=None, repeats=1, copies=1)
    assert f"{bad}: has 1 NaN voxels" in str(err.value) and "ct0" not in str(err.value)
    assert "\n" not in str(err.value)  # the one case's reason, not the engine's list of failed CTs
    lab = tmp_path / "lab.npy"
    np.save(lab, np.zeros(shape, np.uint8))  # no format the engine looks for beside a CT: its mode would time nothing
    with pytest.raises(ValueError, match=r"--labels .*lab.npy is not of a format the DRR bundle reads there"):
        bench_drr_cases(modes="labels", ct=str(ct), labels=str(lab), out=None)
    plain = save_nifti(phantom.hu, phantom_affine((8.0, 8.0, 10.0), shape), tmp_path / "plain.nii")
    bench_drr_cases(modes="whole,read", ct=str(plain), out=str(tmp_path / "plain.json"), repeats=1, copies=1)
    assert [r["runs"] for r in json.loads((tmp_path / "plain.json").read_text())["results"]] == [1, 1]


def test_bench_drr_refuses_what_the_drr_bundle_refuses_in_its_words(tmp_path):
    """bench-drr read the CT with nibabel alone: a 2D file and a degenerate grid ended in tracebacks, an all-air CT
    was timed (its accuracy NaN) and ``--sizes 0`` divided by zero."""
    import nibabel as nib
    import numpy as np

    from unimiss_monai.data.ct_io import CTInputError

    affine = np.diag([8.0, 8.0, 10.0, 1.0])
    flat = save_nifti(np.zeros((24, 20, 1), np.float32), affine, tmp_path / "flat.nii.gz")
    air = save_nifti(np.full((24, 20, 12), -1024.0, np.float32), affine, tmp_path / "air.nii.gz")
    image = nib.Nifti1Image(make_ct_phantom((24, 20, 12)).hu, None)
    image.header.set_sform(np.diag([8.0, 0.0, 10.0, 1.0]), code=1)  # as a broken exporter writes it
    degenerate = tmp_path / "zero.nii.gz"
    nib.save(image, degenerate)
    for ct, words in ((flat, "is a 2D image"), (air, "air"), (degenerate, "")):
        with pytest.raises(CTInputError, match=rf"^{re.escape(str(ct))}: .*{words}"):
            bench_drr(sizes=16, repeats=1, ct=str(ct), ours_only=True)
    with pytest.raises(ValueError, match=r"^bench-drr: each --sizes value must be a whole number of at least 1, got 0"):
        bench_drr(sizes=(16, 0), repeats=1, ct=str(air), ours_only=True)


def test_a_missing_ct_is_named_with_this_commands_option(tmp_path):
    """The reader's own line told bench-drr users to check --dataset_dir, an option of the bundles, not of this."""
    with pytest.raises(FileNotFoundError, match=r"^bench-drr: --ct .*nothere.nii.gz does not exist; pass a CT file"):
        bench_drr(sizes=16, repeats=1, ct=str(tmp_path / "nothere.nii.gz"), out=str(tmp_path / "b.json"),
                  ours_only=True)
    assert not (tmp_path / "b.json").exists()

