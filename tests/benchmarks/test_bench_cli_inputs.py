"""Options of ``bench-infer`` and ``bench-pretrain`` that a user can get wrong are refused in one line naming the
option and a fix, before any work; ``--help`` of ``bench-pretrain`` and ``bench-drr-cases`` documents each option."""

from __future__ import annotations

import inspect

import fire.docstrings
import nibabel as nib
import numpy as np
import pytest

from unimiss_monai.benchmarks import inference
from unimiss_monai.benchmarks.drr_cases import bench_drr_cases
from unimiss_monai.benchmarks.inference import bench_infer
from unimiss_monai.benchmarks.pretrain import bench_pretrain

FAST = {"swinunetr": False, "shape": (16, 64, 64),
        "overrides": {"network_def#preset": "smoke", "roi_size": [16, 64, 64]}}


@pytest.fixture
def no_timing(monkeypatch):
    """Fails a test whose command got as far as timing anything."""
    def timed(*args, **kwargs):
        raise AssertionError("the benchmark ran")

    monkeypatch.setattr(inference, "_timed_rows", timed)


def _refused(run, error=ValueError) -> str:
    with pytest.raises(error) as err:
        run()
    message = str(err.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("options, message", [
    ({"overrides": "notadict"}, "bench-infer: --overrides takes a dict of bundle config ids and values, e.g. "
     "--overrides '{\"network_def#preset\": \"smoke\"}', got 'notadict'"),
    ({"overrides": {"nope#x": 1}}, "bench-infer: --overrides names config id 'nope#x', not in the bundle's "
     "inference.json; pass ids the bundle's configs hold"),
    ({"overrides": {"network_def#variant#x": 1}}, "bench-infer: --overrides names config id 'network_def#variant#x', "
     "not in the bundle's inference.json; did you mean 'network_def#variant'?"),
    ({"overrides": {"sw_batch_size#x": 1}}, "bench-infer: --overrides names config id 'sw_batch_size#x', not in the "
     "bundle's inference.json; did you mean 'sw_inferer#sw_batch_size'?"),
    ({"overrides": {"roi_sze": [16, 64, 64]}}, "bench-infer: --overrides names config id 'roi_sze', not in the "
     "bundle's inference.json; did you mean 'roi_size'?"),  # set unused, it timed the default window instead
    ({"seed": "abc"}, "bench-infer: --seed must be a whole number of at least 0, got 'abc'"),
])
def test_bench_infer_refuses_option(tmp_path, no_timing, options, message):
    out = tmp_path / "bench.json"
    assert _refused(lambda: bench_infer(**{**FAST, **options}, out=str(out))) == message
    assert not out.exists()


def _nifti(path):
    nib.Nifti1Image(np.random.default_rng(0).normal(-500, 400, (24, 24, 24)).astype(np.float32), np.eye(4)).to_filename(
        path)
    return path


@pytest.mark.parametrize("make, reason", [
    (lambda path: path.write_bytes(b""), "it is empty (0 bytes)"),
    (lambda path: path.write_bytes(_nifti(path).read_bytes()[:300]),
     "it is cut short (its compressed data ends early)"),
])
def test_bench_infer_refuses_unreadable_ct(tmp_path, no_timing, make, reason):
    ct = tmp_path / "trunc ct.nii.gz"
    make(ct)
    out = tmp_path / "bench.json"
    message = _refused(lambda: bench_infer(ct=str(ct), swinunetr=False, overrides=FAST["overrides"], out=str(out)))
    assert message == (f"bench-infer: --ct {ct}: is not a readable NIfTI file: {reason}; replace it with an intact "
                       "copy: copy it again from its source (check that the copy is complete) or export it again")
    assert not out.exists()


@pytest.mark.parametrize("options, message", [
    ({"image_size_2d": 5}, "bench-pretrain: --image_size_2d 5 is not a size the mitplus (tiny) backbone takes (a "
     "multiple of 32, at least 64); pass e.g. --image_size_2d 64"),
    ({"image_size_2d": 32}, "bench-pretrain: --image_size_2d 32 is not a size the mitplus (tiny) backbone takes (a "
     "multiple of 32, at least 64); pass e.g. --image_size_2d 64"),
    ({"ct_roi": "1,1,1"}, "bench-pretrain: --ct_roi 1,1,1 is not a size the mitplus (tiny) backbone takes (each a "
     "multiple of 4,32,32, at least 16,32,32; height,width also a 2D size: multiples of 32,32, more than one patch); "
     "pass e.g. --ct_roi 16,32,64"),
    # the crop's axial slices go through the 2D network: a 32x32 slice is one patch there
    ({"ct_roi": (16, 32, 32), "image_size_2d": 64}, "bench-pretrain: --ct_roi 16,32,32 is not a size the mitplus "
     "(tiny) backbone takes (each a multiple of 4,32,32, at least 16,32,32; height,width also a 2D size: multiples "
     "of 32,32, more than one patch); pass e.g. --ct_roi 16,32,64"),
])
def test_bench_pretrain_refuses_size(monkeypatch, options, message):
    import unimiss_monai.networks

    def built(*args, **kwargs):
        raise AssertionError("the backbone was built")

    monkeypatch.setattr(unimiss_monai.networks, "build_backbone", built)
    assert _refused(lambda: bench_pretrain(tiny=True, device="cpu", steps=1, warmup=0, **options)) == message


@pytest.mark.parametrize("command, texts", [
    (bench_pretrain, {"warmup": "untimed", "variant": "mit_small", "tiny": "smoke", "ct_roi": "CT crop",
                      "image_size_2d": "DRR views"}),
    (bench_drr_cases, {"threads": "threads", "ct": "NIfTI CT", "labels": "label map", "label_names": "CSV"}),
])
def test_help_documents_each_option(command, texts):
    described = {arg.name: arg.description or "" for arg in fire.docstrings.parse(command.__doc__).args}
    assert set(described) == set(inspect.signature(command).parameters)
    assert all(described.values()), [name for name, text in described.items() if not text]
    for name, text in texts.items():
        assert text in described[name], (name, described[name])
    assert "smoke" not in described.get("variant", "") and "NIfTI" not in described.get("threads", "")
