"""``bench-drr`` on a small phantom: the header names machine, threads and load, both our rows are timed, and the
nanodrr ratios carry both medians."""

from __future__ import annotations

import json
import re

import pytest

from unimiss_monai.benchmarks.drr import ONE_SHOT, PREPARED, _ratios, bench_drr
from unimiss_monai.data import make_ct_phantom, phantom_affine, save_nifti


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
