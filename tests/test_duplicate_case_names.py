"""Two inputs of the same case name never overwrite each other's outputs: the CT finder (DRR generation, segmentation
inputs) refuses them up front with one line naming both files; the inference writers fail the second case instead."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import DataLoader
from monai.engines import SupervisedEvaluator
from monai.inferers import SimpleInferer
from monai.transforms import Compose, EnsureTyped, LoadImaged
from torch import nn

from unimiss_monai.data.case_names import CaseNames, OutputNames
from unimiss_monai.data.ct_inputs import find_ct_cases
from unimiss_monai.data.ct_io import CTInputError
from unimiss_monai.data.tolerant import TolerantDataset
from unimiss_monai.handlers import ClassProbabilityWriter, InferenceSummary, SegmentationWriter

LOAD = Compose([LoadImaged("image", ensure_channel_first=True, image_only=True), EnsureTyped("image", dtype=torch.float32)])


def _nifti(path, value: float, shape=(4, 4, 4)):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.full(shape, value, dtype=np.float32), np.eye(4)), str(path))
    return path


def _one_line_naming(err, *paths) -> None:
    message = str(err.value)
    assert "\n" not in message and all(str(p) in message for p in paths), message
    assert "rename one of them" in message and "separate runs" in message


# ---------------------------------------------------------------------------------------------- the shared record
def test_case_names_refuse_a_second_input_of_a_name_in_any_letter_case():
    names = CaseNames()
    assert names.clash("Scan", "/a/Scan.nii.gz", "x") == ""
    names.take("Scan", "/a/Scan.nii.gz")
    reason = names.clash("scan", "/b/scan.nii.gz", "it would overwrite out/scan_seg.nii.gz", "or rename the folder")
    assert reason == ("/a/Scan.nii.gz and /b/scan.nii.gz have the same case name 'scan', so it would overwrite "
                      "out/scan_seg.nii.gz; rename one of them, or rename the folder, or put them in separate runs")
    names.take("scan", "/b/scan.nii.gz")  # the first input keeps the name
    assert names.clash("SCAN", "/c/SCAN.nii.gz", "x").startswith("/a/Scan.nii.gz and /c/SCAN.nii.gz ")
    names.clear()  # a new run of the same writer
    assert names.clash("scan", "/b/scan.nii.gz", "x") == ""


# ---------------------------------------------------------------------------------------------- CT finder / DRR
def test_finder_refuses_nii_and_nii_gz_of_the_same_name(tmp_path):
    a, b = _nifti(tmp_path / "ct01.nii", 0.0), _nifti(tmp_path / "ct01.nii.gz", 1.0)
    _nifti(tmp_path / "ct02.nii.gz", 2.0)
    with pytest.raises(CTInputError, match="same case name 'ct01'") as err:
        find_ct_cases(tmp_path)
    _one_line_naming(err, a, b)


def test_finder_names_alike_files_of_a_datalist_by_their_folders_and_refuses_two_of_one_folder(tmp_path):
    # TotalSegmentator's layout: one ct.nii.gz per case folder
    for case in ("s0001", "s0002"):
        _nifti(tmp_path / case / "ct.nii.gz", 0.0)
    _nifti(tmp_path / "p1" / "scan.nii.gz", 0.0)
    listed = [{"image": "s0001/ct.nii.gz"}, {"image": "s0002/ct.nii.gz"}, {"image": "p1/scan.nii.gz"}]
    (tmp_path / "datalist.json").write_text(json.dumps({"testing": listed}))
    # a name no other file shares stays the file's own, as an earlier run wrote its outputs
    assert [c.name for c in find_ct_cases(tmp_path)] == ["s0001_ct", "s0002_ct", "scan"]
    # files of another shared name, listed too, leave these names as they were (each group is named on its own)
    _nifti(tmp_path / "other" / "p2" / "scan.nii.gz", 0.0)
    (tmp_path / "datalist.json").write_text(json.dumps({"testing": [*listed, {"image": "other/p2/scan.nii.gz"}]}))
    assert [c.name for c in find_ct_cases(tmp_path)] == ["s0001_ct", "s0002_ct", "p1_scan", "other_p2_scan"]
    listed[1]["name"] = "second"  # a given name is kept, and the other ct is then the only one of its name
    (tmp_path / "datalist.json").write_text(json.dumps({"testing": listed}))
    assert [c.name for c in find_ct_cases(tmp_path)] == ["ct", "second", "scan"]
    # two files of one name in one folder: no path tells them apart
    a, b = _nifti(tmp_path / "p2" / "scan.nii", 0.0), _nifti(tmp_path / "p2" / "scan.nii.gz", 1.0)
    (tmp_path / "datalist.json").write_text(json.dumps({"testing": [{"image": "p2/scan.nii"},
                                                                    {"image": "p2/scan.nii.gz"}]}))
    with pytest.raises(CTInputError, match="same case name 'scan'") as err:
        find_ct_cases(tmp_path)
    _one_line_naming(err, a, b)
    assert "'name' entries" in str(err.value)
    # a given name that another case's takes is refused too
    (tmp_path / "datalist.json").write_text(json.dumps({"testing": [{"image": "p1/scan.nii.gz", "name": "ct"},
                                                                    {"image": "s0001/ct.nii.gz"}]}))
    with pytest.raises(CTInputError, match="same case name 'ct'"):
        find_ct_cases(tmp_path)


def test_drr_generation_refuses_before_writing_anything(tmp_path):
    from unimiss_monai.engines import DRRGenerator

    data, out = tmp_path / "data", tmp_path / "out"
    a, b = _nifti(data / "ct01.nii", 0.0), _nifti(data / "ct01.nii.gz", 1.0)
    with pytest.raises(CTInputError) as err:
        DRRGenerator(data, out, views=["AP"], detector_shape=(8, 8), pixel_spacing=8.0, progress=False).run()
    _one_line_naming(err, a, b)
    assert not out.exists()


# ---------------------------------------------------------------------------------------------- writers
def _run(data, network, handler, placeholder, summary_dir, failed=0):
    loader = DataLoader(TolerantDataset(data, LOAD, placeholder), batch_size=1, num_workers=0)
    evaluator = SupervisedEvaluator(device=torch.device("cpu"), val_data_loader=loader, network=network.eval(),
                                    inferer=SimpleInferer(), val_handlers=[handler, InferenceSummary(summary_dir)])
    if failed:  # the summary fails the run once every other case is written
        with pytest.raises(RuntimeError, match=rf"^inference: {failed} of {len(data)} cases failed"):
            evaluator.run()
    else:
        evaluator.run()
    return {c["case"]: c for c in json.loads((summary_dir / "summary.json").read_text())["cases"]}


class _SignNet(nn.Module):
    """Scores (x, -x) per voxel: label 0 where the input is positive, 1 where negative."""

    def forward(self, x):
        return torch.cat([x, -x], 1)


def test_segmentation_writer_fails_the_second_case_of_the_same_name(tmp_path):
    a, b = _nifti(tmp_path / "p1" / "scan.nii.gz", 1.0), _nifti(tmp_path / "p2" / "scan.nii.gz", -1.0)
    out = tmp_path / "out"
    writer = SegmentationWriter(out, LOAD)
    cases = _run([{"image": str(a)}, {"image": str(b)}], _SignNet(), writer, (1, 4, 4, 4), out, failed=1)
    assert sorted(p.name for p in out.glob("*.nii.gz")) == ["scan_seg.nii.gz"]
    assert np.all(nib.load(out / "scan_seg.nii.gz").get_fdata() == 0)  # still the first case's labels
    assert cases[str(a)]["status"] == "ok" and cases[str(a)]["output"] == str(out / "scan_seg.nii.gz")
    assert cases[str(b)]["status"] == "failed" and "output" not in cases[str(b)]
    reason = cases[str(b)]["reason"]
    assert str(a) in reason and str(b) in reason and "rename one of them" in reason and "\n" not in reason
    assert [w["case"] for w in writer.written] == ["scan"]


class _MapNet(nn.Module):
    """Features (x, -x) through ``encoder.blocks[-1][-1]`` (the Grad-CAM layer); class c scores their mean."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.encoder = nn.Module()
        self.encoder.blocks = nn.ModuleList([nn.ModuleList([nn.Identity()])])

    def forward(self, x):
        return self.encoder.blocks[-1][-1](torch.cat([x, -x], 1) * self.scale).flatten(2).mean(-1)


def _npy(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array.astype(np.float32))
    return path


def test_class_probability_writer_names_each_saliency_of_the_same_name(tmp_path):
    """Two inputs of one file name get two saliency maps, named before the run (the format, then a number in sorted
    path order), instead of the second failing or overwriting the first's map."""
    rng = np.random.default_rng(0)
    a, b = _npy(tmp_path / "p1" / "scan.npy", rng.random((8, 8)) + 0.1), _npy(tmp_path / "p2" / "scan.npy", -rng.random((8, 8)))
    c = _npy(tmp_path / "p1" / "other.npy", rng.random((8, 8)))
    net = _MapNet()
    out = tmp_path / "out"
    data = [{"image": str(a)}, {"image": str(b)}, {"image": str(c)}]
    cases = _run(data, net, ClassProbabilityWriter(out, ["x", "y"], saliency=True, network=net, output_names=OutputNames(data)),
                 (1, 8, 8), out)
    assert sorted(p.name for p in (out / "saliency").iterdir()) == ["other.png", "scan_npy.png", "scan_npy_2.png"]
    assert all(case["status"] == "ok" for case in cases.values())
    rows = {r["case"]: r for r in json.loads((out / "predictions.json").read_text())["cases"]}
    assert rows[str(a)]["saliency"] == str(out / "saliency" / "scan_npy.png")
    assert rows[str(b)]["saliency"] == str(out / "saliency" / "scan_npy_2.png")
    assert rows[str(c)]["saliency"] == str(out / "saliency" / "other.png")  # no clash: today's name
