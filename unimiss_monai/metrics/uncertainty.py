"""How unsure a segmentation network is about each image, from test-time-augmentation disagreement: the score that
ranks unlabelled images for annotation (the most uncertain first).

The network segments the image and altered copies of it: its mirror images (one flip per listed axis, as
:class:`~unimiss_monai.inferers.MirrorTTAInferer`) and any ``(alter, undo)`` pair, such as the small shifts of
:func:`shift_augmentations`; each prediction is brought back onto the image, and the score measures how much the
``K`` predictions disagree. A network that has learnt an image's anatomy gives the same answer for the altered copy;
where it guesses, the guesses move with the change. Use alterations the network was trained to be indifferent to: a
left-right flip of a chest radiograph swaps the left and right structures, so for the CXR bundle use shifts.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Sequence

import torch
from monai.bundle import ConfigParser
from monai.metrics import compute_dice
from monai.networks.utils import one_hot

from unimiss_monai.utils.errors import failure_reason
from unimiss_monai.utils.finite import refuse_non_finite_weights
from unimiss_monai.utils.serialization import load_torch_file

__all__ = ["UNCERTAINTY_MODES", "bundle_uncertainty", "shift_augmentations", "tta_predictions", "tta_uncertainty"]

logger = logging.getLogger(__name__)

Augmentation = tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]

UNCERTAINTY_MODES = ("dice", "variance")


def shift_augmentations(offsets: Sequence[Sequence[int]]) -> list[Augmentation]:
    """``(alter, undo)`` pairs that shift an image by whole pixels (circularly, ``torch.roll``) and shift its
    prediction back: ``offsets`` holds one shift per spatial axis for each pair, e.g. ``[[8, 0], [0, -8]]``."""
    pairs = []
    for offset in offsets:
        shift = [int(o) for o in offset]
        dims = [2 + a for a in range(len(shift))]
        pairs.append((lambda x, s=shift, d=dims: torch.roll(x, s, d), lambda y, s=shift, d=dims: torch.roll(y, [-o for o in s], d)))
    return pairs


def tta_predictions(
    image: torch.Tensor, network: Callable[[torch.Tensor], torch.Tensor], spatial_axes: Sequence[int] = (0,),
    activation: str = "sigmoid", inferer: Callable[..., torch.Tensor] | None = None,
    augmentations: Sequence[Augmentation] = (),
) -> torch.Tensor:
    """Probabilities of ``network`` on ``image``, on its flip along each of ``spatial_axes`` and on each
    ``augmentations`` copy, each brought back onto the image.

    Args:
        image: ``(B, C_in, *spatial)``.
        network: the segmentation network (put it in eval mode first; this runs under ``torch.no_grad``).
        spatial_axes: axes to mirror, 0 being the first spatial axis. Defaults to ``(0,)``.
        activation: ``"sigmoid"`` (one channel per structure, overlaps allowed) or ``"softmax"`` (classes).
        inferer: called as ``inferer(inputs, network)`` (e.g. a ``SlidingWindowInferer``); ``None`` calls the network.
        augmentations: ``(alter, undo)`` pairs: ``alter`` changes the input batch, ``undo`` brings the output logits
            back (e.g. :func:`shift_augmentations`; for an intensity change ``undo`` is the identity).

    Returns:
        ``(K, B, C_out, *spatial)`` probabilities, ``K = 1 + len(spatial_axes) + len(augmentations)``.
    """
    if activation not in ("sigmoid", "softmax"):
        raise ValueError(f"tta_predictions: activation must be 'sigmoid' or 'softmax', got {activation!r}")
    axes = [int(a) for a in spatial_axes]
    if any(a < 0 or a >= image.ndim - 2 for a in axes) or len(set(axes)) != len(axes):
        raise ValueError(f"tta_predictions: spatial_axes {list(spatial_axes)} must be distinct axes of the {image.ndim - 2} spatial dims")
    run = (lambda x: inferer(x, network)) if inferer is not None else network
    with torch.no_grad():
        logits = [run(image)] + [torch.flip(run(torch.flip(image, [2 + a])), [2 + a]) for a in axes]
        logits += [undo(run(alter(image))) for alter, undo in augmentations]
    stacked = torch.stack([torch.as_tensor(x).float() for x in logits])
    return torch.sigmoid(stacked) if activation == "sigmoid" else torch.softmax(stacked, dim=2)


def tta_uncertainty(
    image: torch.Tensor, network: Callable[[torch.Tensor], torch.Tensor], spatial_axes: Sequence[int] = (0,),
    mode: str = "dice", activation: str = "sigmoid", threshold: float = 0.5, inferer: Callable[..., torch.Tensor] | None = None,
    augmentations: Sequence[Augmentation] = (),
) -> torch.Tensor:
    """One uncertainty score per image: how much the test-time-augmented predictions of :func:`tta_predictions` disagree.

    Modes:
        ``"dice"``: ``1 - `` the mean Dice between every pair of the ``K`` binary predictions, over pairs and channels
        (sigmoid: probability > ``threshold``; softmax: the arg-max class, background included). A structure that
        neither prediction of a pair marks counts as agreement (Dice 1). In ``[0, 1]``; independent of image size and
        of how large the structures are.
        ``"variance"``: the voxel-wise variance of the probabilities over the ``K`` predictions, averaged over voxels
        and channels. In ``[0, 0.25]``; dominated by background in images where the structures are small.

    Args:
        image, network, spatial_axes, activation, inferer, augmentations: as :func:`tta_predictions` (at least one
            flip or augmentation).
        mode: ``"dice"`` or ``"variance"``. Defaults to ``"dice"``.
        threshold: sigmoid probability above which a pixel belongs to a structure. Defaults to 0.5.

    Returns:
        ``(B,)`` float scores, higher = more uncertain.

    Examples::

        network.eval()
        score = tta_uncertainty(image[None], network, spatial_axes=[0])  # image: (C, X, Y) preprocessed
        score = tta_uncertainty(image[None], network, (), augmentations=shift_augmentations([[8, 0], [0, 8]]))
    """
    if mode not in UNCERTAINTY_MODES:
        raise ValueError(f"tta_uncertainty: mode must be one of {UNCERTAINTY_MODES}, got {mode!r}")
    if not spatial_axes and not augmentations:
        raise ValueError("tta_uncertainty: give at least one spatial axis to flip or one augmentation; one prediction cannot disagree with itself")
    probs = tta_predictions(image, network, spatial_axes, activation, inferer, augmentations)  # (K, B, C, *spatial)
    if mode == "variance":
        return probs.var(dim=0, unbiased=False).flatten(1).mean(1)
    if activation == "sigmoid":
        masks = (probs > threshold).float()
    else:
        masks = torch.stack([one_hot(p.argmax(1, keepdim=True), p.shape[1], dim=1) for p in probs])
    dices = [compute_dice(masks[i], masks[j], include_background=True, ignore_empty=False)  # (B, C)
             for i, j in itertools.combinations(range(len(masks)), 2)]
    return 1.0 - torch.stack(dices).mean(dim=(0, 2))


def bundle_uncertainty(
    bundle_root: str | os.PathLike, images: Sequence[str], activation: str = "sigmoid", mode: str = "dice",
    shift_fraction: float = 1 / 28, spatial_axes: Sequence[int] = (), device: str = "cpu",
) -> dict[str, float]:
    """Score unlabelled images with a trained segmentation bundle, for ranking which to label next.

    The bundle's ``configs/inference.json`` gives the network (``network_def``, weights from ``models/model.pt``,
    loaded weights-only), the ``preprocessing`` and the ``inferer``; each image is scored by :func:`tta_uncertainty`
    over shifts of ``shift_fraction`` of the network's input size along each axis, both ways (8 pixels at 224), and
    flips along ``spatial_axes``.

    Args:
        bundle_root: the bundle folder.
        images: image files.
        activation: ``"sigmoid"`` (CXR: a channel per structure) or ``"softmax"`` (CT: classes).
        mode: see :func:`tta_uncertainty`.
        shift_fraction: shift of each augmented copy, as a fraction of the input's size along the axis.
        spatial_axes: axes to flip as well (none for a radiograph: a flip swaps left and right).
        device: where the network runs.

    Returns:
        ``{image: score}`` for the images that could be scored; an image that fails its preprocessing is left out,
        with one warning naming it and the reason.
    """
    parser = ConfigParser()
    parser.read_config(os.path.join(bundle_root, "configs", "inference.json"))
    parser.config.update({"bundle_root": os.fspath(bundle_root), "device": device})
    network = parser.get_parsed_content("network_def", instantiate=True).to(device)
    weights = os.path.join(bundle_root, "models", "model.pt")
    state = load_torch_file(weights, "segmentation weights")
    state = state["model"] if isinstance(state, dict) and "model" in state else state
    refuse_non_finite_weights(state, f"segmentation weights {weights}")
    network.load_state_dict(state)
    network.eval()
    preprocessing = parser.get_parsed_content("preprocessing", instantiate=True)
    inferer = parser.get_parsed_content("inferer", instantiate=True) if "inferer" in parser else None
    scores: dict[str, float] = {}
    for path in images:
        try:
            image = torch.as_tensor(preprocessing({"image": path})["image"])[None].to(device)
        except Exception as err:  # a bad file is one failed image, not a failed ranking
            logger.warning("uncertainty: %s not scored: %s", path, failure_reason(err))
            continue
        size = image.shape[2:]
        offsets = []
        for axis, n in enumerate(size):
            step = max(1, round(n * shift_fraction))
            for sign in (1, -1):
                offsets.append([sign * step if a == axis else 0 for a in range(len(size))])
        augmentations = shift_augmentations(offsets)
        score = tta_uncertainty(image, network, spatial_axes, mode, activation, inferer=inferer, augmentations=augmentations)
        scores[path] = float(score[0])
    return scores
