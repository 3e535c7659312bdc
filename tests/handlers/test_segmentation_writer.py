"""SegmentationWriter's label maps: what a network's output becomes on disk."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd

from unimiss_monai.handlers import SegmentationWriter


def test_a_single_channel_is_a_probability_thresholded_at_one_half(tmp_path):
    """Values outside [0, 1] give label 0 or 1, not 3 (2.7 rounded) or 254 (-2 wrapped in uint8)."""
    writer = SegmentationWriter(tmp_path, Compose([EnsureChannelFirstd("image", channel_dim="no_channel")]))
    meta = {"filename_or_obj": "case.nii.gz"}
    pred = MetaTensor(torch.tensor([[[0.2, 0.6, 2.7], [-2.0, 0.5, 1.0]]]), meta=meta)
    path = writer.write_item({"pred": pred, "image": MetaTensor(torch.zeros(1, 2, 3), meta=meta)})
    assert np.asarray(nib.load(path).dataobj).tolist() == [[0, 1, 1], [0, 0, 1]]


def test_several_channels_give_their_argmax(tmp_path):
    writer = SegmentationWriter(tmp_path, Compose([EnsureChannelFirstd("image", channel_dim="no_channel")]))
    meta = {"filename_or_obj": "two.nii.gz"}
    pred = MetaTensor(torch.tensor([[[0.9, 0.1]], [[0.05, 0.2]], [[0.05, 0.7]]]), meta=meta)
    path = writer.write_item({"pred": pred, "image": MetaTensor(torch.zeros(1, 1, 2), meta=meta)})
    assert np.asarray(nib.load(path).dataobj).tolist() == [[0, 2]]
