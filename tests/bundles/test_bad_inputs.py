"""Bad-input catalogue: every inference bundle and the DRR bundle, run once over a folder of broken files beside one
good file, and once over broken files only.

For each broken file: the case fails with one line that names the file, no output is written for it, the good case
still is, the input folder is byte-for-byte unchanged and a file of the user's in the output folder is untouched. A run
where any case failed raises once the others are written (``python -m monai.bundle run`` exits non-zero). An output folder that is, holds or lies
inside the input folder is refused before anything is written.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_runner import BUNDLES, configs, run_workflow
from dicom_slopes import write_series
from PIL import Image

from unimiss_monai.data.phantom import make_ct_phantom
from unimiss_monai.utils.errors import root_cause


def _nifti(array, path: Path, affine=None) -> None:
    nib.save(nib.Nifti1Image(np.asarray(array), np.diag([8.0, 8.0, 8.0, 1.0]) if affine is None else affine), path)


def _ct(seed=0) -> np.ndarray:
    return make_ct_phantom((24, 24, 16), (8.0, 8.0, 8.0), seed=seed, noise_hu=0).hu.astype(np.float32)


def _with(value):
    def make(path: Path) -> None:
        hu = _ct()
        hu[3, 4, 5] = value
        _nifti(hu, path)
    return make


def _slice_in_another_unit(path: Path) -> None:
    """One axial slice 1000 times its HU (exported with another rescale slope): the volume's median is untouched."""
    hu = make_ct_phantom((40, 36, 12), (4.0, 4.0, 8.0), seed=0, noise_hu=0).hu.astype(np.float32)
    hu[:, :, 5] *= 1000.0
    _nifti(hu, path, np.diag([4.0, 4.0, 8.0, 1.0]))


def _singular_sform(path: Path) -> None:
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((24, 24, 16))
    hdr.set_data_dtype(np.float32)
    hdr["sform_code"], hdr["qform_code"] = 1, 0
    hdr["srow_x"], hdr["srow_y"], hdr["srow_z"] = [8, 0, 0, 0], [0, 0, 0, 0], [0, 0, 8, 0]
    nib.save(nib.Nifti1Image(_ct(), None, header=hdr), path)


def _truncated(path: Path) -> None:
    _nifti(_ct(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _series_with(damage: Callable[[Path], None]) -> Callable[[Path], None]:
    """A series (one rescale slope) whose last slice ``damage`` spoils: ITK leaves such a file out unsaid, and a slice
    missing at either end leaves the others evenly spaced."""
    def make(folder: Path) -> None:
        write_series(folder, slope=1.0)
        damage(sorted(folder.glob("*.dcm"))[-1])
    return make


def _gzip_of(payload: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(gzip.compress(payload))


# file name -> (writer, a pattern the one-line reason must hold, or "" where only the file name is asserted);
# "intact": a file no reader takes, whose fix is an intact copy
BAD_CT: dict[str, tuple[Callable[[Path], None], str]] = {
    "nan_voxel.nii.gz": (_with(np.nan), "non-finite|nan"),
    "posinf_voxel.nii.gz": (_with(np.inf), "non-finite|inf"),
    "neginf_voxel.nii.gz": (_with(-np.inf), "non-finite|inf"),
    "singular_sform.nii.gz": (_singular_sform, "degenerate"),
    "flat_2d.nii.gz": (lambda p: _nifti(np.zeros((20, 20), np.float32), p), ""),
    # one value throughout, neither air nor a body: rendered to a blank DRR and trained on
    "all_zero.nii.gz": (lambda p: _nifti(np.zeros((24, 24, 16), np.float32), p), "same value"),
    "two_channels.nii.gz": (lambda p: _nifti(np.stack([_ct(), _ct(1)], -1), p), ""),
    "truncated.nii.gz": (_truncated, "intact"),
    "empty.nii.gz": (lambda p: p.write_bytes(b""), ""),
    "not_nifti.nii.gz": (lambda p: p.write_bytes(b"this is a text file, not an image"), "intact"),
    "gzip_of_text.nii.gz": (_gzip_of(b"plain text inside a gzip stream"), "intact"),
    "slice_unit.nii.gz": (_slice_in_another_unit, r"slices \(along the last axis .* rescale slope"),
    "slice_slope_series": (write_series, r"slices \(along the last axis .* index 5\) .* slope"),
    "slice_cut_short_series": (_series_with(lambda f: f.write_bytes(f.read_bytes()[:-100])),
                               r"\.dcm holds .* cut short"),
    "slice_unreadable_series": (_series_with(lambda f: f.write_bytes(b"garbage")), r"\.dcm is no readable DICOM"),
}


# a constant volume renders to a valid (if dull) DRR, but gives a network nothing to segment or classify
BAD_CT_INFERENCE = {**BAD_CT, "constant.nii.gz": (lambda p: _nifti(np.full((24, 24, 16), -1000.0, np.float32), p), "same value")}


def _png(array: np.ndarray, path: Path) -> None:
    Image.fromarray(array).save(path)


def _radiograph(seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = (np.linspace(40, 200, 48)[:, None] + rng.normal(0, 5, (48, 40))).clip(0, 255)
    return img.astype(np.uint8)


def _nifti_2d_with(value):
    def make(path: Path) -> None:
        img = _radiograph().astype(np.float32).T
        img[5, 6] = value
        _nifti(img, path, np.eye(4))
    return make


BAD_XRAY: dict[str, tuple[Callable[[Path], None], str]] = {
    "nan_pixel.nii.gz": (_nifti_2d_with(np.nan), "non-finite|nan"),
    "posinf_pixel.nii.gz": (_nifti_2d_with(np.inf), "non-finite|inf"),
    "neginf_pixel.nii.gz": (_nifti_2d_with(-np.inf), "non-finite|inf"),
    "ct_volume.nii.gz": (lambda p: _nifti(_ct(), p), "3D"),
    "colour.png": (lambda p: _png(np.stack([_radiograph(0), _radiograph(1), _radiograph(2)], -1), p), "channels"),
    "truncated.png": (lambda p: (_png(_radiograph(), p), p.write_bytes(p.read_bytes()[:60])), "intact"),
    "empty.png": (lambda p: p.write_bytes(b""), ""),
    "not_png.png": (lambda p: p.write_bytes(b"this is a text file, not an image"), "intact"),
    "empty.dcm": (lambda p: p.write_bytes(b""), ""),
    "blank.png": (lambda p: _png(np.zeros((48, 40), np.uint8), p), "same value"),
    # a mask, a label map or a CT slice in HU loads like a radiograph: each was segmented and classified as one
    "mask.png": (lambda p: _png(((_radiograph() > 120) * 255).astype(np.uint8), p), "2 distinct values .* mask"),
    "label_map.png": (lambda p: _png((_radiograph() // 90).astype(np.uint8), p), "3 distinct values .* label map"),
    "ct_slice_hu.nii.gz": (lambda p: _nifti(_ct()[:, :, 8], p), "looks like a CT slice in HU"),
    "metre_pixels.nii.gz": (lambda p: _nifti(_radiograph().astype(np.float32).T, p, np.diag([1.5e-4] * 3 + [1])),
                            r"pixel size .* rewrite it with the spacing in mm"),
}


def _dicom_radiograph(frames: int = 1, photometric: str = "MONOCHROME2", modality: str = "DX"
                      ) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        from unimiss_monai.data.dicom_series import new_dicom_dataset

        sop_class = {"DX": "1.2.840.10008.5.1.4.1.1.1.1", "CT": "1.2.840.10008.5.1.4.1.1.2"}[modality]
        ds = new_dicom_dataset(sop_class, modality, 48, 40, signed=False)
        ds.PhotometricInterpretation = photometric
        if frames > 1:
            ds.NumberOfFrames = frames
        ds.PixelData = np.concatenate([_radiograph(k).astype(np.uint16).ravel() for k in range(frames)]).tobytes()
        ds.save_as(path, enforce_file_format=True)
    return make


BAD_XRAY.update({
    "grey_as_ybr.dcm": (_dicom_radiograph(photometric="YBR_FULL"), "PhotometricInterpretation YBR_FULL .* MONOCHROME2"),
    "two_frames.dcm": (_dicom_radiograph(frames=2), "2 frames; save each frame"),
    # one slice of a CT loads as a 2D image like any radiograph: it was segmented and classified as a chest X-ray
    "ct_slice.dcm": (_dicom_radiograph(modality="CT"), "slice of a CT volume .*Modality CT.* not a projection"),
})


def _tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def _random_weights(bundle: str, folder: Path) -> Path:
    """``model.pt`` of the smoke-size network at its initialisation: inference needs weights, not good ones."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(configs(bundle, "inference.json", "smoke.yaml"))
    net = parser.get_parsed_content("network_def")
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"model": net.state_dict()}, folder / "model.pt")
    return folder


def _root_message(err: BaseException) -> str:
    return str(root_cause(err))  # monai.bundle wraps errors in "Failed to evaluate ..."


def _one_line_naming(reason: str, name: str, word: str) -> None:
    assert "\n" not in reason.strip(), reason
    assert name in reason, f"{name!r} not named in {reason!r}"
    assert re.search(word, reason, re.IGNORECASE), f"{word!r} not in {reason!r}"


# bundle -> (bad cases, good-case writer, output name of a written case); every bundle reports its failures in the
# one summary.json format of unimiss_monai.handlers.InferenceSummary
def _failures(out: Path) -> dict[str, str]:
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_failed"] == sum(c["status"] == "failed" for c in summary["cases"])
    return {Path(c["case"]).name: c["reason"] for c in summary["cases"] if c["status"] == "failed"}


INFERENCE = {
    "unimiss_ct_segmentation": (BAD_CT_INFERENCE, lambda p: _nifti(_ct(), p / "good.nii.gz"), "good_seg.nii.gz"),
    "unimiss_ct_classification": (BAD_CT_INFERENCE, lambda p: _nifti(_ct(), p / "good.nii.gz"), "predictions.csv"),
    "unimiss_cxr_segmentation": (BAD_XRAY, lambda p: _png(_radiograph(), p / "good.png"), "good_overlay.png"),
    "unimiss_cxr_classification": (BAD_XRAY, lambda p: _png(_radiograph(), p / "good.png"), "predictions.csv"),
}
# a good input whose output name is taken by a file of the user's in the output folder: that case fails, naming the
# file, and the file is left as it was
CLASH = {
    "unimiss_ct_segmentation": (lambda p: _nifti(_ct(1), p / "mine.nii.gz"), "mine.nii.gz", "mine_seg.nii.gz"),
    "unimiss_cxr_segmentation": (lambda p: _png(_radiograph(1), p / "mine.png"), "mine.png", "mine_seg.nii.gz"),
}


def _run_inference(bundle: str, data: Path, out: Path, ckpt: Path):
    return run_workflow(bundle, ["inference.json", "smoke.yaml"], "infer", check=False, dataset_dir=str(data),
                        output_dir=str(out), ckpt_dir=str(ckpt), bundle_root=str(ckpt.parent), num_workers=0)


@pytest.fixture(scope="module")
def inference_runs(tmp_path_factory):
    """``get(bundle)``: the bundle run once over its broken files, one good file and a file of the user's."""
    done: dict[str, dict] = {}

    def get(bundle: str) -> dict:
        if bundle not in done:
            bad, write_good, good_output = INFERENCE[bundle]
            root = tmp_path_factory.mktemp(bundle)
            data, out = root / "data", root / "out"
            data.mkdir()
            out.mkdir()
            write_good(data)
            for name, (write, _) in bad.items():
                write(data / name)
            (out / "my_notes.txt").write_text("the user's own file")
            if bundle in CLASH:
                CLASH[bundle][0](data)
                (out / CLASH[bundle][2]).write_text("the user's own file of an output's name")
            before = _tree_digest(data)
            ckpt = _random_weights(bundle, root / "bundle" / "models")
            with pytest.raises(Exception) as err:  # the good case is written, and the run still fails
                _run_inference(bundle, data, out, ckpt)
            done[bundle] = {"bundle": bundle, "bad": bad, "data": data, "out": out, "before": before, "ckpt": ckpt,
                            "failures": _failures(out), "good_output": good_output, "error": _root_message(err.value)}
        return done[bundle]

    return get


@pytest.mark.integration
@pytest.mark.parametrize("bundle, name", [(b, n) for b, spec in INFERENCE.items() for n in spec[0]])
def test_inference_catalogue(inference_runs, bundle, name):
    run = inference_runs(bundle)
    out = run["out"]
    assert name in run["failures"], f"{name} was not reported as failed: {sorted(run['failures'])}"
    _one_line_naming(run["failures"][name], name, run["bad"][name][1])
    stem = name.split(".")[0]
    assert not [p for p in out.rglob(f"{stem}*") if p.is_file()], f"output written for {name}"
    clash = CLASH.get(bundle)
    assert set(run["failures"]) == set(run["bad"]) | ({clash[1]} if clash else set()), "every broken file, and only those, failed"
    assert (out / run["good_output"]).is_file(), "the good case was lost with the bad ones"
    if clash:
        _one_line_naming(run["failures"][clash[1]], clash[2], "not written by unimiss_monai")
        assert (out / clash[2]).read_text() == "the user's own file of an output's name"
    n_bad = len(run["bad"]) + bool(clash)
    assert re.match(rf"inference: {n_bad} of {n_bad + 1} cases failed, listed .* in .*summary.json", run["error"])
    assert _tree_digest(run["data"]) == run["before"], "the input folder changed"
    assert (out / "my_notes.txt").read_text() == "the user's own file"
    if run["good_output"] == "predictions.csv":  # no probability of a failed case is written down as a result
        rows = json.loads((out / "predictions.json").read_text())["cases"]
        assert all(r["probabilities"] is None for r in rows if r["status"] != "ok")
        assert all(np.isfinite(list(r["probabilities"].values())).all() for r in rows if r["status"] == "ok")


@pytest.mark.integration
@pytest.mark.parametrize("bundle", list(INFERENCE))
def test_inference_with_every_case_broken_fails_the_run(inference_runs, bundle, tmp_path):
    inference_run = inference_runs(bundle)
    bad = inference_run["bad"]
    data = tmp_path / "data"
    data.mkdir()
    for name in list(bad)[:2]:
        bad[name][0](data / name)
    with pytest.raises(Exception) as err:
        _run_inference(inference_run["bundle"], data, tmp_path / "out", inference_run["ckpt"])
    assert re.match(r"inference: no case worked \(2 failed", _root_message(err.value))


@pytest.mark.parametrize("bundle", list(INFERENCE))
@pytest.mark.parametrize("where", ["same", "inside", "around"])
def test_inference_output_overlapping_its_input_is_refused(inference_runs, bundle, tmp_path, where):
    inference_run = inference_runs(bundle)
    data = tmp_path / "data"
    data.mkdir()
    (data / "keep.txt").write_text("mine")
    out = {"same": data, "inside": data / "out", "around": tmp_path}[where]
    with pytest.raises(Exception) as err:
        _run_inference(inference_run["bundle"], data, out, inference_run["ckpt"])
    assert "overlaps the input folder" in _root_message(err.value)
    assert sorted(p.name for p in data.iterdir()) == ["keep.txt"]


@pytest.fixture(scope="module")
def drr_run(tmp_path_factory):
    from monai.bundle import ConfigWorkflow

    root = tmp_path_factory.mktemp("drr")
    data, out = root / "data", root / "out"
    data.mkdir()
    _nifti(_ct(), data / "good.nii.gz")
    for name, (write, _) in BAD_CT.items():
        write(data / name)
    before = _tree_digest(data)
    wf = ConfigWorkflow(config_file=configs("unimiss_drr_generation", "inference.json"), logging_file=False,
                        meta_file=str(BUNDLES / "unimiss_drr_generation" / "configs" / "metadata.json"), workflow_type=None,
                        dataset_dir=str(data), output_dir=str(out), progress=False, views=["AP"],
                        detector_shape=[16, 16], pixel_spacing=16.0)
    wf.initialize()
    with pytest.raises(Exception) as err:
        wf.run()
    run = json.loads((out / "datalist.json").read_text())
    return {"data": data, "out": out, "before": before, "run": run, "error": _root_message(err.value)}


@pytest.mark.parametrize("name", list(BAD_CT))
def test_drr_bundle_catalogue(drr_run, name):
    failures = {Path(f["image"]).name if isinstance(f, dict) and "image" in f else "": f for f in drr_run["run"]["failures"]}
    reasons = [f["error"] if isinstance(f, dict) else str(f) for f in drr_run["run"]["failures"]]
    mine = [r for r in reasons if name in r]
    assert len(mine) == 1, (name, reasons, failures)
    _one_line_naming(mine[0], name, BAD_CT[name][1])
    assert not (drr_run["out"] / name.split(".")[0]).exists()
    assert f"{len(BAD_CT)} of {len(BAD_CT) + 1} CT(s) failed" in drr_run["error"]
    assert (drr_run["out"] / "good" / "good_AP.nii.gz").is_file()
    assert _tree_digest(drr_run["data"]) == drr_run["before"]


@pytest.mark.integration
@pytest.mark.parametrize("bundle", list(CLASH))
def test_a_segmentation_corrected_in_place_is_kept_by_a_rerun(inference_runs, bundle, tmp_path):
    """Inference, then a voxel of its segmentation corrected and saved in place (as a viewer does), then the same
    run again: the correction stays, and that case fails naming the file."""
    ckpt = inference_runs(bundle)["ckpt"]
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    INFERENCE[bundle][1](data)
    _run_inference(bundle, data, out, ckpt)
    seg = out / "good_seg.nii.gz"
    written = nib.load(seg)
    corrected = np.asarray(written.dataobj).copy()
    corrected.flat[0] = 1 - corrected.flat[0]
    nib.save(nib.Nifti1Image(corrected, written.affine, written.header), seg)
    edited = seg.read_bytes()
    with pytest.raises(Exception) as err:
        _run_inference(bundle, data, out, ckpt)
    assert re.match(r"inference: no case worked \(1 failed", _root_message(err.value)), _root_message(err.value)
    failures = _failures(out)
    assert list(failures) == [next(data.iterdir()).name]
    _one_line_naming(next(iter(failures.values())), "good_seg.nii.gz", "changed after")
    assert seg.read_bytes() == edited
