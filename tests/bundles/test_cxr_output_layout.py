"""The chest X-ray segmentation bundle writes every mask in the 2D convention whatever else is in the input folder.

A DICOM radiograph (or a 2D NIfTI stored ``(X, Y, 1)``) is read with a trailing singleton axis. Its masks must still
be written ``(X, Y, 1, C)``, and the PNG radiographs run with it must get the same masks, array and affine, as when
they are run alone, with the DICOM sorted before, between or after them.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import LoadImage
from PIL import Image
from test_bad_inputs import _radiograph, _run_inference, _random_weights

pytestmark = pytest.mark.integration

BUNDLE = "unimiss_cxr_segmentation"
NUM_STRUCTURES = 5  # inference.json "structures"
# rows x columns of the PNG radiographs, all different so that a transposed or channel-less mask cannot pass
PNGS = {"c.png": (48, 40), "p.png": (44, 36)}
DICOM_ROWS, DICOM_COLUMNS = 40, 32
DICOM_SPACING = (0.5, 0.25)  # PixelSpacing: (between rows, between columns) in mm


def _write_dicom(path: Path, storage: str = "1.2.840.10008.5.1.4.1.1.7") -> None:
    """A ``DICOM_ROWS`` x ``DICOM_COLUMNS`` uint16 MONOCHROME2 radiograph with a gradient down the rows, of the SOP
    class ``storage`` (secondary capture by default), whose header gives its pixel size in ``PixelSpacing`` alone."""
    from unimiss_monai.data.dicom_series import new_dicom_dataset

    ds = new_dicom_dataset(storage, "CR", rows=DICOM_ROWS, columns=DICOM_COLUMNS, signed=False)
    ds.PixelSpacing = list(DICOM_SPACING)
    rows = np.linspace(200, 3800, DICOM_ROWS)[:, None] + 7 * np.arange(DICOM_COLUMNS)[None]
    ds.PixelData = rows.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def _write_nifti_xy1(path: Path) -> None:
    """A 2D radiograph stored as a ``(X, Y, 1)`` NIfTI volume, as many exporters write one."""
    img = _radiograph(3)[:DICOM_ROWS, :DICOM_COLUMNS].T.astype(np.float32)[..., None]
    nib.save(nib.Nifti1Image(img, np.diag([DICOM_SPACING[1], DICOM_SPACING[0], 1.0, 1.0])), path)


EXTRA = {"dicom": (".dcm", _write_dicom), "nifti_xy1": (".nii.gz", _write_nifti_xy1)}


def test_grey_radiograph_drops_the_slice_axis_from_spatial_shape():
    from unimiss_monai.transforms import AsGreyRadiograph

    # how ITK hands over a DICOM frame: (C, X, Y, 1) with a three-entry spatial_shape
    frame = MetaTensor(torch.rand(1, 32, 40, 1), meta={"spatial_shape": np.array([32, 40, 1]), "filename_or_obj": "f.dcm"})
    grey = AsGreyRadiograph()(frame)
    assert tuple(grey.shape) == (1, 32, 40)
    assert np.asarray(grey.meta["spatial_shape"]).tolist() == [32, 40]
    assert np.asarray(frame.meta["spatial_shape"]).tolist() == [32, 40, 1]  # the input is left as it was
    torch.testing.assert_close(grey.as_tensor(), frame.as_tensor()[..., 0])


def _masks(out: Path) -> dict[str, nib.Nifti1Image]:
    return {p.name: nib.load(p) for p in sorted(out.glob("*_seg.nii.gz"))}


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    """``run(extra)``: the bundle over the PNG radiographs plus the file ``extra`` (name, writer) or nothing."""
    root = tmp_path_factory.mktemp("cxr_layout")
    ckpt = _random_weights(BUNDLE, root / "bundle" / "models")

    def run(tag: str, extra: tuple[str, object] | None = None) -> Path:
        data, out = root / tag / "data", root / tag / "out"
        data.mkdir(parents=True)
        out.mkdir(parents=True)
        for seed, (name, (rows, columns)) in enumerate(PNGS.items()):
            Image.fromarray(_radiograph(seed)[:rows, :columns]).save(data / name)
        if extra is not None:
            name, write = extra
            write(data / name)
        _run_inference(BUNDLE, data, out, ckpt)
        return out

    return run


@pytest.fixture(scope="module")
def alone(runner) -> dict[str, nib.Nifti1Image]:
    masks = _masks(runner("alone"))
    assert sorted(masks) == sorted(n.replace(".png", "_seg.nii.gz") for n in PNGS)
    return masks


def test_png_masks_alone_follow_the_convention(alone):
    for name, (rows, columns) in PNGS.items():
        assert alone[name.replace(".png", "_seg.nii.gz")].shape == (columns, rows, 1, NUM_STRUCTURES)


@pytest.mark.parametrize("kind", sorted(EXTRA))
@pytest.mark.parametrize("stem", ["a", "m", "z"], ids=["first", "between", "last"])
def test_masks_do_not_depend_on_the_other_files(runner, alone, kind, stem):
    suffix, write = EXTRA[kind]
    extra = f"{stem}{suffix}"
    out = runner(f"{kind}_{stem}", (extra, write))
    masks = _masks(out)

    for name, reference in alone.items():
        got = masks[name]
        assert got.shape == reference.shape, f"{name}: {got.shape} beside {extra}, {reference.shape} alone"
        np.testing.assert_array_equal(np.asarray(got.dataobj), np.asarray(reference.dataobj), err_msg=name)
        np.testing.assert_allclose(got.affine, reference.affine, atol=1e-6, err_msg=name)

    # the extra radiograph's own mask: (X, Y, 1, C) on disk, so LoadImage gives (C, X, Y, 1) on the radiograph's grid
    mask_path = out / f"{stem}_seg.nii.gz"
    assert nib.load(mask_path).shape == (DICOM_COLUMNS, DICOM_ROWS, 1, NUM_STRUCTURES)
    loader = LoadImage(image_only=True, ensure_channel_first=True)
    mask, radiograph = loader(str(mask_path)), loader(str(out.parent / "data" / extra))
    assert tuple(radiograph.shape) == (1, DICOM_COLUMNS, DICOM_ROWS, 1)
    assert tuple(mask.shape) == (NUM_STRUCTURES, DICOM_COLUMNS, DICOM_ROWS, 1)
    np.testing.assert_allclose(np.diag(np.asarray(mask.affine))[:2], np.diag(np.asarray(radiograph.affine))[:2], atol=1e-6)
    assert np.abs(np.diag(np.asarray(mask.affine))[:2]).tolist() == pytest.approx([DICOM_SPACING[1], DICOM_SPACING[0]])
    np.testing.assert_allclose(np.asarray(mask.affine)[:2, 3], np.asarray(radiograph.affine)[:2, 3], atol=1e-6)
    assert set(np.unique(np.asarray(mask)).tolist()) <= {0.0, 1.0}
    # the overlay is a picture of the radiograph: rows x columns
    assert Image.open(out / f"{stem}_overlay.png").size == (DICOM_COLUMNS, DICOM_ROWS)


def test_overlay_is_drawn_on_the_radiograph_at_its_own_resolution(tmp_path):
    # a fine pattern (1-pixel stripes) that the network's 64x64 input averages away: the overlay must show it, i.e. be
    # drawn on the radiograph as read, not on the network input resized back to the radiograph's grid
    ckpt = _random_weights(BUNDLE, tmp_path / "bundle" / "models")
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    out.mkdir()
    stripes = np.where(np.arange(256) % 2 == 0, 60, 200).astype(np.uint8)
    # a gentle ramp down the rows gives it grey levels: two levels alone are refused as a mask, not a radiograph
    image = np.tile(stripes[None, :], (240, 1)) + (np.arange(240) // 16).astype(np.uint8)[:, None]
    image[:, :40] = 0  # something not uniform at the network's size too, so the image is not refused as blank
    Image.fromarray(image).save(data / "s.png")
    _run_inference(BUNDLE, data, out, ckpt)
    overlay = np.asarray(Image.open(out / "s_overlay.png").convert("L")).astype(float)
    assert overlay.shape == image.shape
    # neighbouring columns alternate by about the stripes' contrast wherever no outline is drawn over them
    steps = np.abs(np.diff(overlay[:, 60:], axis=1))
    assert np.median(steps) > 50, np.median(steps)


def test_a_computed_radiograph_with_only_pixel_spacing_keeps_its_pixel_size(runner):
    # ITK takes a CR's pixel size from ImagerPixelSpacing alone: this film's PixelSpacing was read as 1 mm, and its
    # mask written 1 mm per pixel, areas 8 times too large. The mask is written at the header's size
    out = runner("cr", ("cr.dcm", lambda path: _write_dicom(path, "1.2.840.10008.5.1.4.1.1.1")))
    mask = nib.load(out / "cr_seg.nii.gz")
    assert mask.shape == (DICOM_COLUMNS, DICOM_ROWS, 1, NUM_STRUCTURES)
    assert np.abs(np.diag(mask.affine))[:2].tolist() == pytest.approx([DICOM_SPACING[1], DICOM_SPACING[0]])
