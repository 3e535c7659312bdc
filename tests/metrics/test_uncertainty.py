"""Test-time-augmentation uncertainty: analytic values on a toy network whose answer moves with a flip, the uncertain
image ranked first, per-image scores in a batch, and the refusals."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from unimiss_monai.metrics.uncertainty import shift_augmentations, tta_predictions, tta_uncertainty


def shifted(x: torch.Tensor) -> torch.Tensor:
    """A toy segmenter with a directional bias: it sees each pixel one column to the left (circularly), so its
    flipped-back answer on the mirror image sees the pixel one column to the right instead. Logits +-5."""
    return 10.0 * (torch.roll(x, 1, dims=-1) - 0.5)


def stripes(width: int = 16) -> torch.Tensor:
    """(1, 1, 8, width): columns 1, 1, 0, 0, ... — every boundary is one pixel off between the two answers."""
    cols = torch.tensor([1.0, 1.0, 0.0, 0.0]).repeat(width // 4)
    return cols.expand(8, width)[None, None].clone()


def test_flat_image_is_certain_and_stripes_are_maximally_uncertain():
    flat = torch.ones(1, 1, 8, 16)
    assert tta_uncertainty(flat, shifted, spatial_axes=[1]).item() == 0.0
    assert tta_uncertainty(flat, shifted, spatial_axes=[1], mode="variance").item() == 0.0
    # stripes: the two answers are [0,1,1,0,...] and [1,0,0,1,...], disjoint -> Dice 0
    assert tta_uncertainty(stripes(), shifted, spatial_axes=[1]).item() == pytest.approx(1.0)
    # two probabilities p = sigmoid(5) and 1 - p at every pixel: variance ((p - (1 - p)) / 2) ** 2
    p = 1 / (1 + math.exp(-5))
    assert tta_uncertainty(stripes(), shifted, spatial_axes=[1], mode="variance").item() == pytest.approx((p - 0.5) ** 2, rel=1e-5)


def test_a_flip_along_an_axis_the_network_is_unbiased_on_changes_nothing():
    # the bias is along columns: flipping rows gives the same answer back
    assert tta_uncertainty(stripes(), shifted, spatial_axes=[0]).item() == 0.0
    # with both axes: three answers, two of them equal; pairs (0,1) agree, (0,2) and (1,2) disjoint -> 1 - 1/3
    assert tta_uncertainty(stripes(), shifted, spatial_axes=[0, 1]).item() == pytest.approx(2 / 3)


def test_batch_scores_are_per_image_and_rank_the_uncertain_image_first():
    torch.manual_seed(0)
    net = nn.Conv2d(1, 3, kernel_size=(1, 3), padding=(0, 1), bias=False)
    with torch.no_grad():  # three channels, each a copy of the directional toy (weight on the left neighbour)
        net.weight.zero_()
        net.weight[:, 0, 0, 0] = 10.0
    blob = torch.zeros(1, 1, 16, 16)
    blob[..., 4:12, 4:12] = 1.0
    batch = torch.cat([blob, stripes(16).repeat(1, 1, 2, 1), torch.zeros(1, 1, 16, 16)])
    for mode in ("dice", "variance"):
        scores = tta_uncertainty(batch - 0.5, net, spatial_axes=[1], mode=mode)
        assert scores.shape == (3,)
        alone = torch.cat([tta_uncertainty(image[None] - 0.5, net, spatial_axes=[1], mode=mode) for image in batch])
        torch.testing.assert_close(scores, alone)
        assert scores[1] > scores[0] > scores[2], mode  # stripes, then the blob (only its two edges move), then empty


def test_predictions_are_flipped_back_and_softmax_mode_counts_classes():
    x = stripes()
    probs = tta_predictions(x, shifted, spatial_axes=[1])
    assert probs.shape == (2, 1, 1, 8, 16)
    torch.testing.assert_close(probs[0], torch.sigmoid(shifted(x)))
    torch.testing.assert_close(probs[1], torch.sigmoid(10.0 * (torch.roll(x, -1, dims=-1) - 0.5)))

    def two_class(x):  # class 1 where the toy says foreground
        logits = shifted(x)
        return torch.cat([-logits, logits], dim=1)

    # softmax: background and foreground both swap at every pixel -> Dice 0 for both classes
    assert tta_uncertainty(x, two_class, spatial_axes=[1], activation="softmax").item() == pytest.approx(1.0)
    assert tta_uncertainty(torch.ones(1, 1, 8, 16), two_class, spatial_axes=[1], activation="softmax").item() == 0.0


def test_inferer_is_used_when_given():
    calls = []

    def inferer(inputs, network):
        calls.append(inputs.shape)
        return network(inputs)

    tta_uncertainty(stripes(), shifted, spatial_axes=[0, 1], inferer=inferer)
    assert len(calls) == 3


def test_shifts_are_undone_and_measure_the_same_disagreement():
    # shifting the input by one column is what the toy does itself: shifted back, the answer is exact for any image
    x = stripes()
    (alter, undo), = shift_augmentations([[0, 1]])
    torch.testing.assert_close(undo(alter(x)), x)
    probs = tta_predictions(x, shifted, (), augmentations=shift_augmentations([[0, 1], [0, 2]]))
    assert probs.shape == (3, 1, 1, 8, 16)
    torch.testing.assert_close(probs[1], probs[0])  # shift-equivariant toy: a shift changes nothing
    assert tta_uncertainty(x, shifted, (), augmentations=shift_augmentations([[0, 1]])).item() == 0.0
    # an intensity change with nothing to undo: inverting the image inverts the answer -> disjoint masks
    assert tta_uncertainty(x, shifted, (), augmentations=[(lambda t: 1 - t, lambda y: y)]).item() == pytest.approx(1.0)


@pytest.mark.parametrize("kwargs, match", [
    ({"spatial_axes": []}, "at least one spatial axis to flip or one augmentation"),
    ({"spatial_axes": [2]}, r"spatial_axes \[2\] must be distinct axes of the 2 spatial dims"),
    ({"spatial_axes": [0, 0]}, "must be distinct"),
    ({"mode": "entropy"}, "mode must be one of"),
    ({"activation": "relu"}, "activation must be 'sigmoid' or 'softmax'"),
])
def test_refusals(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tta_uncertainty(stripes(), shifted, **kwargs)


def test_bundle_uncertainty_scores_files_with_the_bundle_network_and_skips_a_bad_one(tmp_path, caplog):
    """The CXR bundle's inference config (smoke size) and random weights: each good file gets the score of
    tta_uncertainty over +-2 pixel shifts (1/28 of 64) of its preprocessed image; a bad file is named and left out."""
    import logging

    import nibabel as nib
    import numpy as np

    from unimiss_monai.metrics.uncertainty import bundle_uncertainty

    parser, network = _smoke_cxr_bundle(tmp_path)

    rng = np.random.default_rng(0)
    images = []
    for i in range(2):
        images.append(str(tmp_path / f"cxr_{i}.nii.gz"))
        nib.save(nib.Nifti1Image(rng.normal(100, 20, (80, 72)).astype(np.float32), np.eye(4)), images[-1])
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"not an image")
    with caplog.at_level(logging.WARNING):
        scores = bundle_uncertainty(tmp_path, images + [str(bad)])
    assert set(scores) == set(images)
    assert any("broken.nii.gz not scored" in r.getMessage() for r in caplog.records)
    preprocessing = parser.get_parsed_content("preprocessing", instantiate=True)
    shifts = shift_augmentations([[2, 0], [-2, 0], [0, 2], [0, -2]])
    for path in images:
        image = preprocessing({"image": path})["image"][None]
        expected = tta_uncertainty(image, network, (), augmentations=shifts).item()
        assert 0.0 <= scores[path] <= 1.0 and scores[path] == pytest.approx(expected, abs=1e-6)


def _smoke_cxr_bundle(root):
    """The CXR bundle's inference config at smoke size in ``root/configs`` with random weights in
    ``root/models/model.pt``: ``(parser, network)``."""
    from pathlib import Path

    from monai.bundle import ConfigParser

    source = Path(__file__).resolve().parents[2] / "bundles" / "unimiss_cxr_segmentation" / "configs"
    (root / "configs").mkdir()
    (root / "models").mkdir()
    merged = ConfigParser(ConfigParser.load_config_files([str(source / "inference.json"), str(source / "smoke.yaml")]))
    ConfigParser.export_config_file(merged.get(), str(root / "configs" / "inference.json"))
    parser = ConfigParser()
    parser.read_config(str(root / "configs" / "inference.json"))
    parser.config.update({"bundle_root": str(root), "device": "cpu"})
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def", instantiate=True).eval()
    torch.save({"model": network.state_dict()}, root / "models" / "model.pt")
    return parser, network


def test_bundle_uncertainty_refuses_weights_holding_nan(tmp_path):
    """A diverged network would score every image as certain, so the ranking is refused, naming the file."""
    from unimiss_monai.metrics.uncertainty import bundle_uncertainty
    from unimiss_monai.utils.finite import NonFiniteWeightsError

    _, network = _smoke_cxr_bundle(tmp_path)
    state = network.state_dict()
    name = next(iter(state))
    state[name] = torch.full_like(state[name], float("nan"))
    torch.save({"model": state}, tmp_path / "models" / "model.pt")
    with pytest.raises(NonFiniteWeightsError, match=rf"models/model.pt: tensor {name} holds NaN or Inf"):
        bundle_uncertainty(tmp_path, [])
