"""Boolean options of the handlers read as booleans: from the command line they arrive as strings, and Python counts
``"false"`` as true."""

from __future__ import annotations

import pytest
import torch
from monai.transforms import Compose, EnsureChannelFirstd

from unimiss_monai.handlers import ClassProbabilityWriter, KNNProbe, SegmentationWriter


def test_segmentation_writer_invert_probabilities(tmp_path):
    writer = SegmentationWriter(tmp_path, Compose([EnsureChannelFirstd("image", channel_dim="no_channel")]),
                                invert_probabilities="false")
    assert writer.invert_probabilities is False
    assert writer.invert.nearest_interp == (True,)  # the argmax is inverted with nearest neighbour
    with pytest.raises(ValueError, match="'invert_probabilities' is 'maybe'"):
        SegmentationWriter(tmp_path, Compose([]), invert_probabilities="maybe")


def test_class_probability_writer_multi_label_and_saliency(tmp_path):
    writer = ClassProbabilityWriter(tmp_path, ["a", "b"], multi_label="false", saliency="false")  # no network needed
    assert writer.multi_label is False and writer.saliency is False
    assert writer._decide([0.7, 0.3]) == "a"


def test_knn_probe_probe_at_start_and_feature_maps():
    probe = KNNProbe(torch.nn.Linear(2, 2), [], probe_at_start="false", feature_maps="no")
    assert probe.probe_at_start is False and probe.feature_maps is False
