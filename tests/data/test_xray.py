"""2D radiograph IO: loading (PNG / DICOM / NIfTI agree) and the PNG overlay writer."""

from __future__ import annotations

import logging

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.transforms import LoadImage
from PIL import Image

from unimiss_monai.data.locators import find_real_radiograph
from unimiss_monai.data.xray import load_radiograph, overlay_rgb, write_overlay_png
from unimiss_monai.transforms import AsGreyRadiograph


@pytest.fixture
def picture() -> np.ndarray:
    """(rows, cols) uint8 picture with a distinct value at each pixel position along both axes."""
    rows, cols = 12, 20
    return (np.arange(rows)[:, None] * 20 + np.arange(cols)[None, :]).astype(np.uint8)


def test_png_grey_and_rgb_and_nifti_load_alike(tmp_path, picture):
    Image.fromarray(picture).save(tmp_path / "grey.png")
    Image.fromarray(np.stack([picture] * 3, -1)).save(tmp_path / "rgb.png")
    # the NIfTI stores x (columns) first, as MONAI's readers return PNG and DICOM
    nib.save(nib.Nifti1Image(picture.T.astype(np.float32), np.eye(4)), str(tmp_path / "grey.nii.gz"))
    nib.save(nib.Nifti1Image(picture.T[..., None].astype(np.float32), np.eye(4)), str(tmp_path / "grey3d1.nii.gz"))
    loaded = [load_radiograph(tmp_path / n) for n in ("grey.png", "rgb.png", "grey.nii.gz", "grey3d1.nii.gz")]
    for img in loaded:
        assert tuple(img.shape) == (1, picture.shape[1], picture.shape[0])
        np.testing.assert_array_equal(img[0].numpy(), picture.T.astype(np.float32))


@pytest.mark.slow
def test_real_dicom_radiograph_loads_as_one_2d_channel():
    path = find_real_radiograph()
    if path is None:
        pytest.skip("pydicom-data is not installed")
    img = load_radiograph(path)
    via_pydicom = AsGreyRadiograph()(LoadImage(image_only=True, ensure_channel_first=True, reader="PydicomReader")(str(path)))
    # both readers give the same picture up to an intensity offset (stored vs inverted values)
    np.testing.assert_allclose((img - img.mean()).numpy(), (via_pydicom - via_pydicom.mean()).numpy(), atol=1e-2)
    assert img.ndim == 3 and img.shape[0] == 1 and min(img.shape[1:]) > 1000
    # MONOCHROME1 inverted: the lung fields (dark on a display) get lower values than the mediastinum
    x, y = img.shape[1:]
    centre = img[0, x // 2 - 50 : x // 2 + 50, y // 2 - 50 : y // 2 + 50].mean()
    side = img[0, x // 4 - 50 : x // 4 + 50, y // 2 - 50 : y // 2 + 50].mean()
    assert centre > side


def test_overlay_colours_and_orientation(tmp_path):
    image = torch.zeros(1, 10, 4)  # x=10 columns, y=4 rows
    masks = torch.zeros(2, 10, 4)
    masks[0, 7, 1] = 1  # column 7, row 1
    masks[1, 7, 1] = 1  # overlap blends both colours
    masks[1, 2, 3] = 1
    rgb = overlay_rgb(image, masks, alpha=0.5, colours=[(200, 0, 0), (0, 100, 0)])
    assert rgb.shape == (4, 10, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[3, 2], [0, 50, 0])
    np.testing.assert_array_equal(rgb[1, 7], [50, 50, 0])
    np.testing.assert_array_equal(rgb[0, 0], [0, 0, 0])
    path = write_overlay_png(tmp_path / "sub" / "o.png", image, masks, names=["a", "b"])
    assert Image.open(path).size == (10, 4)
    assert not list((tmp_path / "sub").glob(".*tmp"))
    with pytest.raises(ValueError, match="do not match"):
        overlay_rgb(image, torch.zeros(1, 9, 4))


def test_overlay_legend_grows_with_the_radiograph(tmp_path):
    # a full-size radiograph (1600 px): the legend's swatches are 4x the size they are on a small image, so they show
    from unimiss_monai.conventions import structure_colour

    big = np.asarray(Image.open(write_overlay_png(tmp_path / "big.png", np.zeros((1600, 1600), np.float32),
                                                  np.zeros((2, 1600, 1600), np.float32), ["heart", "clavicle_right"])))
    k = 4
    assert tuple(big[8 * k, 8 * k]) == structure_colour("heart")  # the middle of the first swatch
    assert tuple(big[12 * k + 8 * k, 8 * k]) == structure_colour("clavicle_right")
    assert tuple(big[12 * k + 4 * k, 4 * k]) == (0, 0, 0)  # the white swatch's outline, on a white swatch
    small = np.asarray(Image.open(write_overlay_png(tmp_path / "small.png", np.zeros((100, 80), np.float32),
                                                    np.zeros((1, 100, 80), np.float32), ["heart"])))
    # below 400 px the legend shrinks with the picture, to its smallest font: the swatch spans pixels 3-8
    assert tuple(small[5, 5]) == structure_colour("heart") and tuple(small[8 * k, 8 * k]) != structure_colour("heart")


def test_overlay_legend_avoids_the_structures(tmp_path):
    from unimiss_monai.conventions import structure_colour

    # the right lung (radiographic convention: on the viewer's left) filling the top-left quarter: the legend goes to the first corner it leaves free, the top-right
    masks = np.zeros((1, 200, 160), np.float32)  # (S, X, Y): 200 columns, 160 rows
    masks[0, :100, :80] = 1
    rgb = np.asarray(Image.open(write_overlay_png(tmp_path / "o.png", np.zeros((200, 160), np.float32), masks, ["lung_right"])))
    lung = np.round(0.4 * np.asarray(structure_colour("lung_right")))
    assert (np.abs(rgb[2:70, 2:90].reshape(-1, 3) - lung).max(1) <= 1).all()  # the lung's corner untouched
    swatch = rgb[5, 200 - 80:].reshape(-1, 3)  # the swatch row, in the top-right corner
    assert (swatch == structure_colour("lung_right")).all(1).any()


CXR_NAMES = ["lung_left", "lung_right", "heart", "clavicle_left", "clavicle_right"]


@pytest.mark.parametrize("size", [(128, 96), (256, 256), (200, 120)])
def test_a_small_radiograph_keeps_its_size_and_its_legend_covers_at_most_a_quarter(tmp_path, size):
    # the CXR bundle's five structures on a small DRR: at the 10 px font the legend hid 43 % of a 128 x 96 picture
    from unimiss_monai.conventions import structure_colour

    image = np.linspace(0, 1, size[0] * size[1], dtype=np.float32).reshape(size)
    masks = np.zeros((5, *size), np.float32)
    masks[:2, size[0] // 4: size[0] // 2, size[1] // 4:] = 1
    written = np.asarray(Image.open(write_overlay_png(tmp_path / "o.png", image, masks, CXR_NAMES)).convert("RGB"))
    assert written.shape[:2] == (size[1], size[0])  # rows x columns: the radiograph's own size
    plain = overlay_rgb(image, masks, 0.4, [structure_colour(n) for n in CXR_NAMES])
    rows, columns = np.nonzero((written != plain).any(-1))  # the legend's pixels
    covered = (rows.max() - rows.min() + 1) * (columns.max() - columns.min() + 1)
    assert covered <= 0.25 * size[0] * size[1], covered / (size[0] * size[1])
    assert all((written.reshape(-1, 3) == structure_colour(n)).all(1).any() for n in CXR_NAMES)  # every swatch


def test_a_legend_that_would_hide_a_tiny_picture_is_left_out_and_said_once(tmp_path, caplog):
    # a 64 x 48 thumbnail: even the smallest legend would cover half of it
    from unimiss_monai.conventions import structure_colour

    image = np.linspace(0, 1, 64 * 48, dtype=np.float32).reshape(64, 48)
    masks = np.zeros((5, 64, 48), np.float32)
    masks[2, 20:40, 20:40] = 1
    with caplog.at_level(logging.WARNING, logger="unimiss_monai.data.xray"):
        paths = [write_overlay_png(tmp_path / f"{i}.png", image, masks, CXR_NAMES) for i in range(3)]
    plain = overlay_rgb(image, masks, 0.4, [structure_colour(n) for n in CXR_NAMES])
    for path in paths:
        np.testing.assert_array_equal(np.asarray(Image.open(path).convert("RGB")), plain)  # all of it, no legend
    said = [r.getMessage() for r in caplog.records if "legend" in r.getMessage()]
    assert len(said) == 1 and "0.png" in said[0], said  # once for the folder, not once per picture
    assert "lung_left #1f64c8" in said[0] and "STRUCTURE_COLOURS" in said[0]  # the key the legend would have given


def test_a_left_out_legend_is_said_once_a_run_over_ranks(tmp_path, caplog, monkeypatch):
    # the folder is recorded where the ranks pool what they said: a rank that took another's record is silent
    from unimiss_monai.data.xray import LEGEND_LEFT_OUT
    from unimiss_monai.utils import once

    image, masks = np.zeros((64, 48), np.float32), np.zeros((5, 64, 48), np.float32)
    monkeypatch.setattr(once, "_SAID", {})
    with caplog.at_level(logging.WARNING, logger="unimiss_monai.data.xray"):
        write_overlay_png(tmp_path / "a" / "0.png", image, masks, CXR_NAMES)
    assert len([r for r in caplog.records if "legend" in r.getMessage()]) == 1
    other_rank = once.said(LEGEND_LEFT_OUT)
    assert other_rank == {LEGEND_LEFT_OUT: [str((tmp_path / "a").resolve())]}
    monkeypatch.setattr(once, "_SAID", {})  # another process, which took it (``split_check.shared_failures``)
    once.take_said(other_rank)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="unimiss_monai.data.xray"):
        write_overlay_png(tmp_path / "a" / "1.png", image, masks, CXR_NAMES)
        write_overlay_png(tmp_path / "b" / "0.png", image, masks, CXR_NAMES)
    said = [r.getMessage() for r in caplog.records if "legend" in r.getMessage()]
    assert len(said) == 1 and str(tmp_path / "b" / "0.png") in said[0], said  # a new folder is said still


def test_background_channel_keeps_the_affine_without_warnings():
    import warnings

    from monai.data import MetaTensor

    from unimiss_monai.data.xray import with_background_channel

    mask = torch.zeros(2, 4, 5)
    mask[0, :2, :2] = 1
    mask[1, 1:3, 1:3] = 1  # overlaps structure 0 at (1, 1)
    affine = torch.diag(torch.tensor([0.5, 2.0, 1.0, 1.0], dtype=torch.float64))
    item = {"pred": MetaTensor(mask, affine=affine), "label": mask.clone()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # MONAI warns when an affine is set beside metadata that holds one
        out = with_background_channel(item)
    assert isinstance(out["pred"], MetaTensor) and torch.equal(out["pred"].affine, affine)
    expected = torch.cat([(mask.sum(0, keepdim=True) == 0).float(), mask])
    assert torch.equal(out["pred"].as_tensor(), expected) and torch.equal(out["label"], expected)


def _dx(path, frames: int = 1, photometric: str = "MONOCHROME2", modality: str = "DX"):
    from unimiss_monai.data.dicom_series import new_dicom_dataset

    ds = new_dicom_dataset("1.2.840.10008.5.1.4.1.1.1.1", modality, 24, 20, signed=False)
    ds.PhotometricInterpretation = photometric
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = (np.arange(frames * 24 * 20, dtype=np.uint16) % 4000).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_dicom_radiographs_no_reader_takes_as_one_image_fail_naming_the_fault_and_fix(tmp_path):
    """ITK's own error for a grey DICOM declared as colour names neither the file nor the fault; the failed case's
    line says both, and a multi-frame DICOM is told as such, not as a CT volume to render DRRs from."""
    from monai.transforms import Compose, LoadImaged

    from unimiss_monai.data.tolerant import FAILED_KEY, TolerantDataset

    with pytest.raises(ValueError, match=r"two\.dcm: it holds 2 frames; save each frame as a file of its own"):
        load_radiograph(_dx(tmp_path / "two.dcm", frames=2))
    with pytest.raises(ValueError, match=r"ct\.dcm: got a 3D volume .* render a DRR from a CT first"):
        load_radiograph(_dx(tmp_path / "ct.dcm", frames=2, modality="CT"))  # an enhanced CT: its frames are slices
    ybr, good = _dx(tmp_path / "ybr.dcm", photometric="YBR_FULL"), _dx(tmp_path / "good.dcm")
    data = TolerantDataset([{"image": str(ybr)}, {"image": str(good)}],
                           Compose([LoadImaged("image", image_only=True)]), (1, 8, 8))
    assert data[1][FAILED_KEY] == ""
    reason = data[0][FAILED_KEY]
    assert reason.startswith(f"{ybr}: ") and "\n" not in reason
    assert reason.endswith("its header declares PhotometricInterpretation YBR_FULL with 1 sample(s) per pixel, which "
                           "do not go together; export it again as MONOCHROME2 (or save it as PNG)")


@pytest.mark.parametrize("reader", ["ITKReader", "PydicomReader"])
def test_one_ct_slice_is_refused_as_a_radiograph_by_either_reader(tmp_path, reader):
    """One slice of a CT loads as a 2D image like any radiograph; its Modality tells it apart (PydicomReader keeps
    no Modality in its metadata: it is read from the file's header)."""
    load = LoadImage(image_only=True, ensure_channel_first=True, reader=reader)
    with pytest.raises(ValueError, match=r"slice\.dcm: is one slice of a CT volume \(DICOM Modality CT\), a "
                                         r"cross-section, not a projection radiograph"):
        AsGreyRadiograph()(load(str(_dx(tmp_path / "slice.dcm", modality="CT"))))
    assert AsGreyRadiograph()(load(str(_dx(tmp_path / "dx.dcm")))).shape == (1, 20, 24)


def test_a_ct_scout_is_a_projection_and_read(tmp_path):
    # a CT's localizer (scout, topogram) is an X-ray projection with Modality CT: read like any radiograph
    path = _dx(tmp_path / "scout.dcm", modality="CT")
    import pydicom

    ds = pydicom.dcmread(path)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.save_as(path)
    for reader in ("ITKReader", "PydicomReader"):
        img = LoadImage(image_only=True, ensure_channel_first=True, reader=reader)(str(path))
        assert AsGreyRadiograph()(img).shape == (1, 20, 24)


def test_a_nifti_of_several_frames_is_not_told_to_convert_colour(tmp_path):
    """Its 4th axis (frames, time points) reads as channels: the refusal told a 3-frame NIfTI to pass --luminance."""
    frames = np.random.default_rng(0).uniform(0, 1000, (32, 32, 1, 3)).astype(np.float32)
    nib.save(nib.Nifti1Image(frames, np.eye(4)), str(tmp_path / "frames.nii.gz"))
    image = LoadImage(image_only=True, ensure_channel_first=True)(str(tmp_path / "frames.nii.gz"))
    with pytest.raises(ValueError) as err:
        AsGreyRadiograph()(image)
    assert "luminance" not in str(err.value) and str(err.value).endswith(
        "a NIfTI's 4th axis (frames, time points) is read as its channels: save the one frame as a 2D image")
