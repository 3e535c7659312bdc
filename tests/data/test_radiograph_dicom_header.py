"""A DICOM radiograph's header: a negative (or partly zero) PixelSpacing or ImagerPixelSpacing fails that case in one
line naming the file and the fix, where ITK read it as 1 mm pixels; a missing or all-zero one (an uncalibrated
detector) keeps the reader's 1 mm. One with only PixelSpacing (most CR exports), which ITK read as 1 mm, takes its
header's size. The checks of one radiograph read its header once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from monai.transforms import Compose, LoadImage, LoadImaged

from unimiss_monai.data.dicom_series import new_dicom_dataset
from unimiss_monai.data.radiograph_checks import check_label_on_radiograph
from unimiss_monai.data.tolerant import FAILED_KEY, TolerantDataset
from unimiss_monai.transforms import AsGreyRadiograph, AsGreyRadiographd

FIX = "set PixelSpacing or ImagerPixelSpacing in the header to the detector's pixel size, or export it again"


def _radiograph(path: Path, photometric: str = "MONOCHROME2", **spacing) -> str:
    ds = new_dicom_dataset("1.2.840.10008.5.1.4.1.1.1.1", "DX", 48, 40, signed=False)
    for tag in ("PixelSpacing", "ImagerPixelSpacing"):
        if tag in ds:
            del ds[tag]
    for tag, value in spacing.items():
        setattr(ds, tag, value)
    ds.PhotometricInterpretation = photometric
    rng = np.random.default_rng(0)
    pixels = (np.linspace(40, 200, 48)[:, None] + rng.normal(0, 5, (48, 40))).clip(0, 255).astype(np.uint16)
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return str(path)


# the chest segmentation bundle's loading (configs/inference.json: preprocessing), which the others share
LOADING = Compose([LoadImaged("image", image_only=True, ensure_channel_first=True, dtype=np.float32),
                   AsGreyRadiographd("image")])

BAD = {
    "negative.dcm": ({"PixelSpacing": [-0.2, -0.2]}, "PixelSpacing is [-0.2, -0.2]"),
    "negative_imager.dcm": ({"ImagerPixelSpacing": [0.15, -0.15]}, "ImagerPixelSpacing is [0.15, -0.15]"),
    "one_zero.dcm": ({"ImagerPixelSpacing": [0.15, 0.0]}, "ImagerPixelSpacing is [0.15, 0]"),
}
# (header, the pixel size read): none or all zeros is the reader's 1 mm, as before
GOOD = {
    "no_spacing.dcm": ({}, 1.0),
    "uncalibrated.dcm": ({"PixelSpacing": [0, 0]}, 1.0),
    "imager.dcm": ({"ImagerPixelSpacing": [0.15, 0.15]}, 0.15),
    # a broken PixelSpacing beside a valid ImagerPixelSpacing, which the reader takes for a DX: nothing to refuse
    "imager_beside_negative.dcm": ({"PixelSpacing": [-0.2, 0.2], "ImagerPixelSpacing": [0.2, 0.2]}, 0.2),
    "imager_beside_one_zero.dcm": ({"PixelSpacing": [0.2, 0.0], "ImagerPixelSpacing": [0.2, 0.2]}, 0.2),
    # ITK takes a DX's size from ImagerPixelSpacing alone, and read this one at 1 mm
    "pixel_spacing_only.dcm": ({"PixelSpacing": [0.2, 0.2]}, 0.2),
    "pixel_spacing_beside_zeros.dcm": ({"PixelSpacing": [0.2, 0.2], "ImagerPixelSpacing": [0, 0]}, 0.2),
}


def test_a_negative_pixel_size_fails_its_case_and_the_others_go_on(tmp_path):
    files = {name: _radiograph(tmp_path / name, **header) for name, (header, _) in {**BAD, **GOOD}.items()}
    items = list(TolerantDataset([{"image": f} for f in files.values()], LOADING, placeholder_shape=(1, 48, 40)))
    for (name, path), item in zip(files.items(), items):
        if name in BAD:
            reason = item[FAILED_KEY]
            assert reason == (f"{path}: its header's {BAD[name][1]}, no pixel size (each must be positive, in mm); "
                              f"{FIX}"), reason
        else:
            assert item[FAILED_KEY] == "", item[FAILED_KEY]
            spacing = np.linalg.norm(np.asarray(item["image"].affine)[:3, :2], axis=0)
            np.testing.assert_allclose(spacing, GOOD[name][1])


def test_each_pixel_size_element_is_taken_in_its_order_and_one_that_is_no_number_is_the_readers(tmp_path):
    # the check names the first bad element of PixelSpacing, ImagerPixelSpacing; the size read takes ITK's order,
    # ImagerPixelSpacing first; a value that does not parse (pydicom gives its text) is neither refused nor read
    from unimiss_monai.data.dicom_checks import dicom_spacing_problem
    from unimiss_monai.data.dicom_pixel_size import dicom_pixel_size

    both_bad = _radiograph(tmp_path / "both_bad.dcm", PixelSpacing=[-0.2, 0.2], ImagerPixelSpacing=[0.15, -0.15])
    assert dicom_spacing_problem(both_bad).startswith("its header's PixelSpacing is [-0.2, 0.2], no pixel size")
    both = _radiograph(tmp_path / "both.dcm", PixelSpacing=[0.2, 0.3], ImagerPixelSpacing=[0.15, 0.25])
    assert dicom_spacing_problem(both) is None and dicom_pixel_size(both) == (0.15, 0.25)
    for name, header, size in [("alone.dcm", {}, None), ("beside.dcm", {"ImagerPixelSpacing": [0.15, 0.25]},
                                                          (0.15, 0.25))]:
        path = Path(_radiograph(tmp_path / name, PixelSpacing=[0.2, 0.2], **header))
        text = path.read_bytes()
        assert text.count(b"0.2\\0.2 ") == 1
        path.write_bytes(text.replace(b"0.2\\0.2 ", b"abc\\0.2 "))  # pydicom writes no such value itself
        assert dicom_spacing_problem(str(path)) is None and dicom_pixel_size(str(path)) == size, name


@pytest.mark.parametrize("reader", ["ITKReader", "PydicomReader"])
def test_the_checks_of_a_dicom_radiograph_read_its_header_once(tmp_path, monkeypatch, reader):
    # PydicomReader leaves tags out of its metadata that the checks then read from the file: each its own read, as
    # were the pixel data's check and the pixel size's
    path = _radiograph(tmp_path / "chest.dcm", photometric="MONOCHROME1", ImagerPixelSpacing=[0.15, 0.15])
    img = LoadImage(image_only=True, ensure_channel_first=True, dtype=np.float32, reader=reader)(path)
    reads, read = [], pydicom.dcmread
    monkeypatch.setattr(pydicom, "dcmread", lambda *a, **k: reads.append(a[0]) or read(*a, **k))
    grey = AsGreyRadiograph()(img)
    assert grey.shape == (1, 40, 48) and [str(p) for p in reads] == [path]


def _pixel_size(img) -> list[float]:
    """The lengths of an image's X and Y axes, mm."""
    return np.linalg.norm(np.asarray(img.affine, dtype=np.float64)[:-1, :2], axis=0).tolist()


@pytest.mark.parametrize("reader", ["ITKReader", "PydicomReader"])
@pytest.mark.parametrize("tag", ["PixelSpacing", "ImagerPixelSpacing"])
def test_a_radiograph_takes_its_header_pixel_size_where_its_reader_left_1_mm(tmp_path, reader, tag):
    # rows 0.1 mm apart, columns 0.4 mm: X (across the columns) is 0.4 mm a pixel, Y 0.1 mm. ITK leaves PixelSpacing
    # of a DX at 1 mm and PydicomReader both; the mask written from the image takes its affine and original_affine
    path = _radiograph(tmp_path / "chest.dcm", **{tag: [0.1, 0.4]})
    img = LoadImage(image_only=True, ensure_channel_first=True, dtype=np.float32, reader=reader)(path)
    grey = AsGreyRadiograph()(img)
    assert _pixel_size(grey) == pytest.approx([0.4, 0.1])
    original = np.asarray(grey.meta["original_affine"], dtype=np.float64)
    assert np.linalg.norm(original[:-1, :2], axis=0).tolist() == pytest.approx([0.4, 0.1])
    # directions and origin as the reader gave them, and the image read left as it was
    before, after = np.asarray(img.affine, dtype=np.float64), np.asarray(grey.affine, dtype=np.float64)
    assert before.shape == after.shape
    np.testing.assert_allclose(after[:-1, :2] / [0.4, 0.1], before[:-1, :2] / _pixel_size(img))
    np.testing.assert_allclose(after[:, 2:], before[:, 2:])
    read = [0.4, 0.1] if (reader, tag) == ("ITKReader", "ImagerPixelSpacing") else [1.0, 1.0]
    assert _pixel_size(img) == pytest.approx(read)
    torch.testing.assert_close(grey.as_tensor(), img.as_tensor()[..., 0] if img.ndim == 4 else img.as_tensor())


def test_a_label_of_a_radiograph_is_compared_at_the_header_pixel_size(tmp_path):
    # a DICOM label of a DICOM film: both read at 1 mm, any two grids matched. At the header's size, a label of
    # another pixel size is told apart, and one of the same size passes
    image_path = _radiograph(tmp_path / "chest.dcm", PixelSpacing=[0.2, 0.2])
    image = LOADING({"image": image_path})["image"]
    assert _pixel_size(image) == pytest.approx([0.2, 0.2])
    load = LoadImage(image_only=True, ensure_channel_first=True, dtype=np.float32)
    same = load(_radiograph(tmp_path / "same.dcm", PixelSpacing=[0.2, 0.2]))[..., 0]
    check_label_on_radiograph(same, image, str(tmp_path / "same.dcm"), image_path)
    other_path = _radiograph(tmp_path / "other.dcm", PixelSpacing=[0.4, 0.4])
    with pytest.raises(ValueError, match="other.dcm"):
        check_label_on_radiograph(load(other_path)[..., 0], image, other_path, image_path)


def _label(path: Path, **spacing) -> str:
    """A DICOM label map of the chest radiograph's grid (48 rows, 40 columns): value 1 in the top half."""
    ds = new_dicom_dataset("1.2.840.10008.5.1.4.1.1.1.1", "DX", 48, 40, signed=False)
    for tag, value in spacing.items():
        setattr(ds, tag, value)
    labels = np.zeros((48, 40), np.uint16)
    labels[:24] = 1
    ds.PixelData = labels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return str(path)


def test_a_dicom_label_takes_its_header_pixel_size_too(tmp_path):
    # the segmentation report measures distances on the label's grid: at 1 mm, HD95 came out 5 times too large
    from unimiss_monai.transforms import LabelMapToMasksd

    image = _radiograph(tmp_path / "chest.dcm", PixelSpacing=[0.2, 0.2])
    loading = Compose([LoadImaged(["image", "label"], image_only=True, ensure_channel_first=True, dtype=np.float32),
                       AsGreyRadiographd("image"), LabelMapToMasksd("label", structures=["lung_left"])])
    item = loading({"image": image, "label": _label(tmp_path / "label.dcm", PixelSpacing=[0.2, 0.2])})
    assert item["label"].shape == (1, 40, 48) and _pixel_size(item["label"]) == pytest.approx([0.2, 0.2])
    # a label that gives no pixel size lies on its image's pixels, as a PNG label does: not refused as elsewhere,
    # and measured in the image's mm (it was 1 mm, HD95 5 times too large)
    item = loading({"image": image, "label": _label(tmp_path / "bare.dcm")})
    assert item["label"].shape == (1, 40, 48) and _pixel_size(item["label"]) == pytest.approx([0.2, 0.2])
    np.testing.assert_allclose(np.asarray(item["label"].affine), np.asarray(item["image"].affine))
    with pytest.raises(RuntimeError) as err:  # Compose names the transform, the cause says why
        loading({"image": image, "label": _label(tmp_path / "other.dcm", PixelSpacing=[0.4, 0.4])})
    assert str(err.value.__cause__).startswith(f"{tmp_path / 'other.dcm'}: label affine differs"), err.value.__cause__
