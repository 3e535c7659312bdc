"""A damaged image file (empty, cut short, another kind of file under an image's name) fails through the CT reader, the
radiograph reader and the pretraining loader with one line naming the file, what is wrong with it and the fix, not a
reader's own words (``Compressed file ended before the end-of-stream marker was reached``, an ITK source line); the
pretraining loader skips that case and goes on with the others."""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable
from pathlib import Path

import itk
import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from unimiss_monai.data.ct_io import CTInputError, load_ct
from unimiss_monai.data.dicom_series import new_dicom_dataset
from unimiss_monai.data.image_formats import DAMAGED_FILE_FIX, unreadable_image_problem
from unimiss_monai.data.loaders import SKIPPED_KEY, SeededDataset, collate_skipping_corrupt
from unimiss_monai.data.phantom import make_ct_phantom
from unimiss_monai.data.xray import load_radiograph
from unimiss_monai.transforms import LoadCTImaged

# what readers say of such files, which names no fix: none of it may reach the user
READER_WORDS = ("Compressed file ended", "end-of-stream", "IO object", "ITK", ".cxx", "truncated", "Binary block",
                "buffer is smaller", "gzip file", "Not a gzipped", "cannot identify", "Expected")


def _ct() -> np.ndarray:
    return make_ct_phantom((24, 24, 16), (8.0, 8.0, 8.0), seed=0, noise_hu=0).hu.astype(np.float32)


def _radiograph() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (np.linspace(40, 200, 48)[:, None] + rng.normal(0, 5, (48, 40))).clip(0, 255).astype(np.uint8)


def _nifti(path: Path, array: np.ndarray) -> None:
    nib.save(nib.Nifti1Image(array, np.diag([8.0, 8.0, 8.0, 1.0])), path)


def _itk(path: Path, array: np.ndarray) -> None:
    itk.imwrite(itk.image_from_array(np.ascontiguousarray(array)), str(path))


def _dicom(path: Path, _array: np.ndarray) -> None:
    ds = new_dicom_dataset("1.2.840.10008.5.1.4.1.1.1.1", "DX", 48, 40, signed=False)
    ds.PixelData = _radiograph().astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def _png(path: Path, _array: np.ndarray) -> None:
    Image.fromarray(_radiograph()).save(path)


def _half(write: Callable[[Path, np.ndarray], None]) -> Callable[[Path, np.ndarray], None]:
    def make(path: Path, array: np.ndarray) -> None:
        write(path, array)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    return make


# file name -> (writer of the damaged file from an intact image, what the line must say is wrong)
DAMAGED: dict[str, tuple[Callable[[Path, np.ndarray], None], str]] = {
    "half.nii.gz": (_half(_nifti), r"is not a readable NIfTI file: it is cut short \(its compressed data ends early\)"),
    "half.nii": (_half(_nifti), r"is not a readable NIfTI file: it is cut short \(it holds \d+ bytes where its header "
                                r"declares \d+\)"),
    "half.dcm": (_half(_dicom), r"holds \d+ bytes of pixel data where its header \(48 x 40, 16 bits, 1 frame\(s\)\) "
                                r"needs 3840: the file is cut short"),
    "header_cut.dcm": (lambda p, a: (_dicom(p, a), p.write_bytes(p.read_bytes()[:300])),
                       r"is an image \(Digital X-Ray Image Storage - For Presentation\) whose header is cut short"),
    "head.dcm": (lambda p, a: (_dicom(p, a), p.write_bytes(p.read_bytes()[:140])),
                 r"holds no pixel data: it is cut short, or is a DICOM object without an image"),
    "half.png": (_half(_png), r"is not a readable PNG file: it is cut short"),
    "text.png": (lambda p, _: p.write_bytes(b"this is a text file, not an image"),
                 r"is not a readable PNG file: it is no image of a known format"),
    "empty.nii.gz": (lambda p, _: p.write_bytes(b""), r"is not a readable NIfTI file: it is empty \(0 bytes\)"),
    "empty.dcm": (lambda p, _: p.write_bytes(b""), r"is not a readable DICOM file: it is empty \(0 bytes\)"),
    "text.nii.gz": (lambda p, _: p.write_bytes(b"this is a text file, not an image"),
                    r"is not a readable NIfTI file: it is not gzip-compressed, as a \.nii\.gz is"),
    "gzip_of_text.nii.gz": (lambda p, _: p.write_bytes(gzip.compress(b"plain text in a gzip stream")),
                            r"is not a readable NIfTI file: it holds no NIfTI header"),
    "text.dcm": (lambda p, _: p.write_bytes(b"this is a text file, not an image"),
                 r"is no readable DICOM file \(it has no DICOM header\)"),
}


def _assert_one_line(message: str, path: Path, what: str) -> None:
    assert "\n" not in message, message
    assert message.startswith(f"{path}: ") and message.count(str(path)) == 1, message
    assert message.endswith(f"; {DAMAGED_FILE_FIX}"), message
    assert re.search(what, message), (what, message)
    said = message[len(str(path)):]  # the file's own name may hold any of the words
    assert not [w for w in READER_WORDS if w in said], message


@pytest.mark.parametrize("name", DAMAGED)
def test_the_ct_reader_says_a_damaged_file_is_damaged_and_the_fix(tmp_path, name):
    write, what = DAMAGED[name]
    path = tmp_path / name
    write(path, _ct())
    with pytest.raises(CTInputError) as caught:
        load_ct(path)
    _assert_one_line(str(caught.value), path, what)


@pytest.mark.parametrize("name", DAMAGED)
def test_the_radiograph_reader_says_a_damaged_file_is_damaged_and_the_fix(tmp_path, name):
    write, what = DAMAGED[name]
    path = tmp_path / name
    write(path, _radiograph().T.astype(np.float32))
    with pytest.raises(ValueError) as caught:
        load_radiograph(path)
    _assert_one_line(str(caught.value), path, what)


def _float_rgb_tiff(path: Path, _array: np.ndarray) -> None:
    rgb = np.random.default_rng(0).random((16, 12, 3)).astype(np.float32)
    itk.imwrite(itk.image_from_array(rgb, is_vector=True), str(path))  # float colour: Pillow does not read it


@pytest.mark.parametrize("write, name", [(_nifti, "ct.nii.gz"), (_nifti, "ct.nii"), (_dicom, "dx.dcm"),
                                         (_png, "chest.png"), (_itk, "ct.mha"), (_itk, "ct.nrrd"),
                                         (_float_rgb_tiff, "colour.tif")])
def test_an_intact_file_is_not_called_damaged(tmp_path, write, name):
    # a reader that fails on a whole file (a data type it does not take) keeps its own reason: no made-up damage.
    # MetaImage and NRRD are not looked into, so not even a cut one is called damaged
    write(tmp_path / name, _ct())
    assert unreadable_image_problem(tmp_path / name) is None


def test_a_file_that_cannot_be_opened_or_looked_into_keeps_the_readers_reason(tmp_path, monkeypatch):
    from unimiss_monai.data import image_formats

    path = tmp_path / "half.nii.gz"
    _half(_nifti)(path, _ct())
    assert unreadable_image_problem(path) is not None
    # no read permission: a permission to give, not a copy to replace (its reader says so)
    monkeypatch.setattr(image_formats.os, "access", lambda p, mode: False)
    assert unreadable_image_problem(path) is None
    monkeypatch.undo()

    def out_of_memory(*args):
        raise MemoryError

    # a diagnosis that fails (a huge file decompressed once more) never replaces the reader's own error
    monkeypatch.setattr(image_formats, "_nifti_damage", out_of_memory)
    assert unreadable_image_problem(path) is None


def test_a_whole_nifti_under_a_compressed_name_is_told_to_be_renamed(tmp_path):
    _nifti(tmp_path / "ct.nii", _ct())
    named = tmp_path / "ct.nii.gz"
    named.write_bytes((tmp_path / "ct.nii").read_bytes())
    assert unreadable_image_problem(named) == (f"{named}: is a whole NIfTI file, not gzip-compressed as its name "
                                               "says: rename it to .nii")


def test_the_pretraining_loader_skips_a_cut_short_ct_in_one_line_and_goes_on(tmp_path):
    good = [tmp_path / f"ct{k}.nii.gz" for k in range(2)]
    for path in good:
        _nifti(path, _ct())
    cut = tmp_path / "cut.nii.gz"
    _half(_nifti)(cut, _ct())
    data = [{"image": str(good[0])}, {"image": str(cut)}, {"image": str(good[1])}]
    # the pretraining bundle's CT loading (configs/train.json: train#ct_transforms)
    dataset = SeededDataset(data, LoadCTImaged(keys="image", image_only=True, ensure_channel_first=True), name="ct")
    batch = collate_skipping_corrupt([dataset[(k, k)] for k in range(3)])
    assert batch["num_samples"] == 2 and tuple(batch["image"].shape) == (2, 1, 24, 24, 16)
    [skipped] = batch[SKIPPED_KEY]
    _assert_one_line(skipped, cut, r"it is cut short \(its compressed data ends early\)")
