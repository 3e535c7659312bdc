"""Tiny 2D/3D networks and data for the pretraining-engine tests (fast on 2 CPU cores)."""

from __future__ import annotations

import torch
from monai.transforms import RandGaussianNoised
from torch import nn

from unimiss_monai.engines.pretraining import PretrainingTrainer
from unimiss_monai.data.loaders import PhaseLoader, SeededDataset, make_loader
from unimiss_monai.networks.nets.student_teacher import StudentTeacher
from unimiss_monai.losses import UniMissPlusLoss

OUT_DIM = 16


class ToyBackbone(nn.Module):
    """2D and 3D stems (3D names contain ``3d``) into a shared trunk; returns (embedding, reconstruction)."""

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.stem_3d = nn.Conv3d(1, dim, 4, stride=4)
        self.stem_2d = nn.Conv2d(1, dim, 4, stride=4)
        self.trunk = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Dropout(0.1), nn.Linear(dim, dim))
        self.recon_3d = nn.ConvTranspose3d(dim, 1, 4, stride=4)
        self.recon_2d = nn.ConvTranspose2d(dim, 1, 4, stride=4)

    def forward(self, x: torch.Tensor):
        three_d = x.ndim == 5
        f = (self.stem_3d if three_d else self.stem_2d)(x)
        tokens = self.trunk(f.flatten(2).transpose(1, 2))
        f = tokens.transpose(1, 2).reshape(f.shape)
        return tokens.mean(1), (self.recon_3d if three_d else self.recon_2d)(f)


class ToyHead(nn.Module):
    def __init__(self, dim: int = 8, out_dim: int = OUT_DIM) -> None:
        super().__init__()
        self.mlp = nn.Linear(dim, dim)
        self.last_layer = nn.Linear(dim, out_dim, bias=False)

    def forward(self, x):
        return self.last_layer(nn.functional.normalize(self.mlp(x), dim=-1))


def _blob(size, g) -> torch.Tensor:
    """A smooth Gaussian blob in [0, 1] at a random place: learnable structure, unlike white noise."""
    grids = torch.meshgrid(*[torch.linspace(-1, 1, s) for s in size], indexing="ij")
    centre = torch.rand(len(size), generator=g) - 0.5
    r2 = sum((x - c) ** 2 for x, c in zip(grids, centre))
    return torch.exp(-r2 / 0.2)[None]


def toy_items(n: int, size3d=(8, 16, 16), size2d=(16, 16)) -> list[dict]:
    g = torch.Generator().manual_seed(n)
    return [
        {"ct_view0": _blob(size3d, g), "ct_view1": _blob(size3d, g), "drr_view0": _blob(size2d, g), "drr_view1": _blob(size2d, g)}
        for _ in range(n)
    ]


def toy_xray_items(n: int, size2d=(16, 16)) -> list[dict]:
    g = torch.Generator().manual_seed(100 + n)
    return [{"xray_view0": _blob(size2d, g), "xray_view1": _blob(size2d, g)} for _ in range(n)]


def rand_noise(keys) -> RandGaussianNoised:
    """A seedable augmentation (MONAI Randomizable), so the resume test sees real randomness."""
    return RandGaussianNoised(keys=keys, prob=1.0, std=0.05)


def build_trainer(max_epochs=2, n_ct=4, n_xray=4, batch_size=2, mode="epoch", handlers=(), seed=0, ct_data=None, xray_data=None, **kw):
    torch.manual_seed(seed)
    net = StudentTeacher(ToyBackbone(), ToyHead())
    ct_data = toy_items(n_ct) if ct_data is None else ct_data
    xray_data = toy_xray_items(n_xray) if xray_data is None else xray_data
    epoch_length = max(1, len(ct_data) // batch_size) if ct_data else max(1, len(xray_data) // batch_size)
    ct_set = SeededDataset(ct_data, kw.pop("ct_transform", [rand_noise(["ct_view0", "ct_view1", "drr_view0", "drr_view1"])]), name="ct")
    xray_set = SeededDataset(xray_data, [rand_noise(["xray_view0", "xray_view1"])], name="xray")
    ct = make_loader(ct_set, batch_size, epoch_length * batch_size, seed) if ct_data else None
    xr = make_loader(xray_set, batch_size, epoch_length * batch_size, seed + 1) if xray_data else None
    loader = PhaseLoader(ct, xr, mode=mode, epoch_length=epoch_length)
    opt = torch.optim.AdamW(net.student.parameters(), lr=kw.pop("lr", 1e-3), weight_decay=0.04)
    loss = UniMissPlusLoss(out_dim=OUT_DIM)
    trainer = PretrainingTrainer(
        "cpu", max_epochs, loader, net, opt, loss, momentum_schedule=lambda s: 0.9, slice_channels=1, train_handlers=list(handlers), **kw
    )
    return trainer, net, opt, loss
