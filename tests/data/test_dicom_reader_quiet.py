"""A DICOM series with a missing slice is refused in the input checks' one line; ITK's own multi-line warning about
it ("Non uniform sampling or missing slices detected") came first on stderr, and no longer does."""

from __future__ import annotations

import pytest

from unimiss_monai.data.dicom_series import write_dicom_series
from unimiss_monai.data.phantom import make_ct_phantom
from unimiss_monai.transforms import LoadCTImaged
from unimiss_monai.transforms.utility.array import CheckImage


def test_a_series_with_a_missing_slice_is_refused_without_itks_warning(tmp_path, capfd):
    import itk

    p = make_ct_phantom((24, 24, 12))
    folder = write_dicom_series(p.hu, p.affine, tmp_path / "series")
    sorted(folder.glob("*.dcm"))[6].unlink()
    capfd.readouterr()
    shown = itk.Object.GetGlobalWarningDisplay()
    image = LoadCTImaged("image", image_only=True, ensure_channel_first=True)({"image": str(folder)})["image"]
    assert "WARNING" not in capfd.readouterr().err
    assert itk.Object.GetGlobalWarningDisplay() == shown  # ITK's own setting is given back
    with pytest.raises(ValueError, match=r"its slices are not evenly spaced .* a slice is missing or doubled\): export "
                                         r"the whole series again"):
        CheckImage()(image)
