"""Two small networks for the loaders' tests: a UniMiSS segmentation network (read by the networks' own loader) and
another kind of network with an ``encoder`` (matched by parameter name in the handler itself)."""

from __future__ import annotations

import torch

from unimiss_monai.networks import UniMissSegmentation, tiny_overrides


def tiny_segmentation() -> UniMissSegmentation:
    return UniMissSegmentation(3, 1, 3, variant="mit_small", img_size=(16, 64, 64), **tiny_overrides("mit_small"))


class EncoderHead(torch.nn.Module):
    """Another network than UniMiSS's: an ``encoder`` and a ``head``."""

    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.Linear(4, 4)
        self.head = torch.nn.Linear(4, 2)
