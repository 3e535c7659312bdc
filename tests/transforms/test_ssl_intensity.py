import numpy as np
import pytest
import torch

from unimiss_monai.transforms import ScaleCTIntensity, ScaleCTIntensityd


def test_hu1024_and_window_values():
    hu = torch.tensor([[[-2000.0, -1024.0, 0.0, 40.0, 1024.0, 3000.0]]])
    assert torch.allclose(ScaleCTIntensity()(hu), hu / 1024)
    win = ScaleCTIntensity("window", a_min=-160, a_max=240)(hu)
    expected = np.clip((hu.numpy() + 160) / 400, 0, 1)
    assert np.allclose(np.asarray(win), expected)
    out = ScaleCTIntensityd("ct", mode="window", a_min=-160, a_max=240, b_min=-1, b_max=1)({"ct": hu.numpy()})
    assert np.allclose(np.asarray(out["ct"]), expected * 2 - 1) and out["ct"].dtype == torch.float32


def test_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        ScaleCTIntensity("hu")
    with pytest.raises(ValueError, match="a_max > a_min"):
        ScaleCTIntensity("window", a_min=100, a_max=0)
