"""One geometry for every bundle (``unimiss_monai.conventions``): an asymmetric marker must land at the same place
in every network tensor and in the same quadrant of every 2D image and picture.

The CT has a dense block anterior, on the patient's left and superior, and is stored in two voxel orders (RAS and an
axis-permuted, flipped one) so that only the affine says where the patient is. In network order ``(C, Z, X, Y)`` the
block must sit at high Z (superior), high X (patient's left) and low Y (anterior); in every 2D image ``(C, X, Y)``
and PNG it must sit top (head) right (patient's left). Each pipeline is the bundle's own, parsed from its configs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from bundle_runner import BUNDLES, configs
from PIL import Image

from unimiss_monai.data.writers import save_nifti

SPACING = 5.0
SHAPE = (40, 36, 32)  # (X, Y, Z) voxels of the RAS volume


def _marker_ct() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RAS volume (HU), its label map (1 = marker) and affine: soft body, a dense block anterior-left-superior."""
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, s) for s in SHAPE), indexing="ij")
    hu = np.where(x**2 + y**2 < 0.8, -500.0, -1000.0).astype(np.float32)
    labels = np.zeros(SHAPE, np.uint8)
    # RAS: +x is the patient's right, so the left is low x; anterior is high y; superior is high z
    block = (slice(6, 14), slice(24, 32), slice(21, 29))
    hu[block], labels[block] = 3000.0, 1
    affine = np.diag([SPACING, SPACING, SPACING, 1.0])
    affine[:3, 3] = -SPACING * (np.array(SHAPE) - 1) / 2
    return hu, labels, affine


def _reordered(hu, labels, affine):
    """The same patient stored as (Z, X, Y) voxels with X flipped: another file layout, another affine."""
    perm = (2, 0, 1)
    hu2, lab2 = (np.ascontiguousarray(np.flip(np.transpose(a, perm), 1)) for a in (hu, labels))
    index = np.zeros((4, 4))  # new voxel (k, i', j) -> old voxel (i, j, k) with i = n_x - 1 - i'
    index[2, 0], index[0, 1], index[1, 2], index[3, 3] = 1, -1, 1, 1
    index[0, 3] = SHAPE[0] - 1
    return hu2, lab2, affine @ index


@pytest.fixture(scope="module", params=["ras", "reordered"])
def ct_case(request, tmp_path_factory):
    hu, labels, affine = _marker_ct()
    if request.param == "reordered":
        hu, labels, affine = _reordered(hu, labels, affine)
    root = tmp_path_factory.mktemp(f"ct_{request.param}")
    image = save_nifti(hu, affine, root / "marker.nii.gz")
    label = save_nifti(labels, affine, root / "marker_labels.nii.gz")
    return {"image": str(image), "label": str(label), "root": root}


def _centre(t) -> np.ndarray:
    """Normalised centroid (0..1 per spatial axis) of the brightest region of a channel-first array."""
    a = np.asarray(torch.as_tensor(t).detach().cpu(), dtype=np.float64)[0]
    lo, hi = a.min(), a.max()
    mask = a >= lo + 0.8 * (hi - lo)
    idx = np.argwhere(mask) + 0.5
    return idx.mean(0) / np.array(a.shape)


def _assert_ct(t, where: str) -> None:
    z, x, y = _centre(t)
    assert z > 0.6 and x > 0.6 and y < 0.4, f"{where}: marker at (z, x, y) = {np.round((z, x, y), 2)}"


def _assert_2d(t, where: str) -> None:
    x, y = _centre(t)
    assert x > 0.55 and y < 0.45, f"{where}: marker at (x, y) = {np.round((x, y), 2)}; expected top right"


def _assert_png(path, where: str) -> None:
    rows_cols = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
    r, c = _centre(rows_cols.T[None])  # (X=cols, Y=rows)
    assert r > 0.55 and c < 0.45, f"{where}: marker at (col, row) = {np.round((r, c), 2)}; expected top right"


def _parse(bundle: str, *files: str, **overrides):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(configs(bundle, *files))
    parser.update(overrides)
    return parser


def _steps(compose, stop_at: str | None = None):
    """The transforms of a parsed Compose (or list), up to (excluding) the first of type ``stop_at``."""
    from monai.transforms import Compose

    out = []
    for t in (compose.transforms if isinstance(compose, Compose) else compose):
        if stop_at and type(t).__name__ == stop_at:
            break
        out += list(t.transforms) if isinstance(t, Compose) else [t]
    return Compose(out)


@pytest.mark.parametrize("bundle", ["unimiss_ct_segmentation", "unimiss_ct_classification"])
def test_ct_fine_tune_pipelines(ct_case, bundle, tmp_path):
    parser = _parse(bundle, "train.json", "smoke.yaml", dataset_dir=str(tmp_path))
    case = {"image": ct_case["image"], "label": ct_case["label"]} if "segmentation" in bundle else {"image": ct_case["image"], "label": 0}
    _assert_ct(parser.get_parsed_content("validate#preprocessing")(dict(case))["image"], f"{bundle} validation")
    inference = _parse(bundle, "inference.json", "smoke.yaml", dataset_dir=str(tmp_path))
    _assert_ct(inference.get_parsed_content("preprocessing")({"image": ct_case["image"]})["image"], f"{bundle} inference")


def test_monai_label_ct_pre_transforms_and_written_label(ct_case, tmp_path):
    from unimiss_monai.handlers import SegmentationWriter

    parser = _parse("unimiss_ct_segmentation", "inference.json", "smoke.yaml", dataset_dir=str(tmp_path))
    data = parser.get_parsed_content("pre_transforms")({"image": ct_case["image"], "image_path": ct_case["image"]})
    _assert_ct(data["image"], "MONAI Label pre_transforms")
    # a prediction that is the marker itself must be written back onto the input grid where the marker is
    pre = parser.get_parsed_content("preprocessing")
    item = pre({"image": ct_case["image"]})
    pred = torch.cat([1 - (item["image"] > 0.9).float(), (item["image"] > 0.9).float()])
    writer = SegmentationWriter(tmp_path / "seg", pre)
    written = writer.write_item({"pred": pred, "image": item["image"], "case": "marker"})
    import nibabel as nib

    truth = nib.load(ct_case["label"]).get_fdata() > 0
    out = nib.load(written).get_fdata() > 0
    assert out.shape == truth.shape
    assert (out & truth).sum() / truth.sum() > 0.8  # the written label lies on the marker of the input file


def test_pretraining_ct_branch(ct_case, tmp_path):
    from monai.transforms import LoadImaged

    parser = _parse("unimiss_pretraining", "train.json", dataset_dir=str(tmp_path))
    loaded = LoadImaged("image", image_only=True, ensure_channel_first=True)({"image": ct_case["image"]})
    # the views pipeline up to the random views: orientation, layout, intensity, region crop (padded, not cut here)
    geometry = _steps(parser.get_parsed_content("train#ct_views"), stop_at="CopyItemsd")
    _assert_ct(geometry(dict(loaded))["image"], "pretraining CT views")
    _assert_ct(_steps(parser.get_parsed_content("train#probe_transform"))({"image": ct_case["image"]})["image"], "k-NN probe")


def test_drr_bundle_to_pretraining_drr_branches(ct_case, tmp_path):
    """The DRR bundle's images (NIfTI and PNG) of the marker CT, read by the pretraining DRR branch, and the
    pretraining's on-the-fly DRRs: the marker is top right in every one, for AP and PA."""
    from monai.bundle import ConfigWorkflow

    data = tmp_path / "data"
    data.mkdir()
    (data / "marker.nii.gz").write_bytes(open(ct_case["image"], "rb").read())
    out = tmp_path / "drr"
    wf = ConfigWorkflow(config_file=configs("unimiss_drr_generation", "inference.json"), logging_file=False,
                        meta_file=str(BUNDLES / "unimiss_drr_generation" / "configs" / "metadata.json"), workflow_type=None,
                        dataset_dir=str(data), output_dir=str(out), progress=False, views=["AP", "PA"],
                        detector_shape=[48, 40], pixel_spacing=6.0, project_labels=False)
    wf.initialize()
    wf.run()
    parser = _parse("unimiss_pretraining", "train.json", dataset_dir=str(tmp_path))
    files = _steps(parser.get_parsed_content("train#ct_files"))
    for view in ("AP", "PA"):
        _assert_png(out / "marker" / f"marker_{view}.png", f"DRR bundle {view} PNG")
        pair = files({"image": ct_case["image"], "drr": str(out / "marker" / f"marker_{view}.nii.gz")})
        _assert_2d(pair["drr"], f"pretraining pre-rendered {view} DRR")
    rendered = _steps(parser.get_parsed_content("train#ct_render"))({"image": ct_case["image"]})
    _assert_2d(rendered["drr"], "pretraining on-the-fly DRR")


def _marker_radiograph(path) -> str:
    # rows x columns, as on screen; a ramp down the rows gives it grey levels (two alone are refused as a mask)
    img = np.repeat((60 + np.arange(72) // 5).astype(np.uint8)[:, None], 64, axis=1)
    img[4:16, 46:60] = 255  # top right
    Image.fromarray(img).save(path)
    return str(path)


@pytest.mark.parametrize("bundle", ["unimiss_cxr_segmentation", "unimiss_cxr_classification"])
def test_radiograph_pipelines_and_pictures(bundle, tmp_path):
    png = _marker_radiograph(tmp_path / "marker.png")
    parser = _parse(bundle, "inference.json", "smoke.yaml", dataset_dir=str(tmp_path))
    image = parser.get_parsed_content("preprocessing")({"image": png})["image"]
    _assert_2d(image, f"{bundle} inference")
    if bundle == "unimiss_cxr_segmentation":
        from unimiss_monai.data.xray import write_overlay_png

        _assert_png(write_overlay_png(tmp_path / "overlay.png", image[0], torch.zeros(1, *image.shape[1:])), "CXR overlay")
    else:
        from unimiss_monai.visualize import saliency_png

        out = saliency_png(image[0], (image[0] > image[0].max() * 0.9).float(), tmp_path / "saliency.png")
        rgb = np.asarray(Image.open(out).convert("RGB"), dtype=np.float32)
        panel = np.argwhere(rgb.sum(-1) < 3 * 250)  # the image panel: everything that is not the white page
        (r0, c0), (r1, c1) = panel.min(0), panel.max(0)
        redness = rgb[..., 0] - rgb[..., 2]  # jet runs from blue (0) to red (1)
        hot = np.argwhere(redness > 0.8 * redness.max())
        row, col = (hot.mean(0) - (r0, c0)) / (r1 - r0, c1 - c0)
        assert col > 0.55 and row < 0.45, f"saliency PNG: marker at (col, row) = {np.round((col, row), 2)}"
