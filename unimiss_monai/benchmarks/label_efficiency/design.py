"""The design of a label-efficiency study: arms, fractions, seeds, and the training subset of every run.

Runs are paired: for a (fraction, seed), every arm trains on the same subset of the training split, with the same
training seed, and is scored on the same test split. The subset is a function of ``(number of training items,
fraction, seed, strata)`` only: the arm never enters the draw, so pairing holds by construction. For one seed the
subsets are nested (the 0.05 subset lies inside the 0.1 subset, and so on), so the fractions differ in the amount of
data only, not in which items happened to be drawn.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["ARMS", "Arm", "RunSpec", "StudyDesign", "parse_list", "subset_indices", "subset_order"]


@dataclass(frozen=True)
class Arm:
    """One initialisation of the fine-tuned network.

    Attributes:
        name: its key in the results.
        description: what the weights are, for the results and the docs.
        pretraining_configs: overlays of the ``unimiss_pretraining`` bundle (after ``train.json``, before
            ``smoke.yaml``) that produce its weights when they are not given by path; ``None``: no pretraining
            (training from scratch).
        pretraining_overrides: further ids of that pretraining run. They keep the exported encoder the same MiT+
            network that every arm fine-tunes, so the arms differ by their initial weights only.
    """

    name: str
    description: str
    pretraining_configs: tuple[str, ...] | None
    pretraining_overrides: dict = field(default_factory=dict)


ARMS: dict[str, Arm] = {
    "scratch": Arm("scratch", "random initialisation (the bundle's own)", None),
    "pretrained": Arm("pretrained", "UniMiSS+ pretraining (unimiss_pretraining train.json)", ()),
    "unimiss": Arm("unimiss", "UniMiSS (ECCV 2022) recipe (unimiss_pretraining unimiss.yaml), on the MiT+ backbone",
                   ("unimiss.yaml",), {"variant": "mitplus"}),
    "intra_inter": Arm("intra_inter", "intra-inter contrastive clustering (unimiss_pretraining recipe_intra_inter.yaml)"
                       ", MiT+ slice encoder", ("recipe_intra_inter.yaml",),
                       {"slice_backbone": "mitplus", "slice_backbone_kwargs": {"preset": "smoke"}}),
}


def parse_list(value, kind: type, what: str) -> tuple:
    """``"0.05,0.1"``, ``(0.05, 0.1)`` or a single value as a tuple of ``kind``; one-line ``ValueError`` naming
    ``what`` when an item does not convert."""
    items = value.split(",") if isinstance(value, str) else list(np.atleast_1d(value))
    try:
        return tuple(kind(str(v).strip()) for v in items if str(v).strip())
    except ValueError as err:
        raise ValueError(f"label-efficiency: --{what} must be a comma-separated list of {kind.__name__}s, got "
                         f"{value!r}") from err


def subset_order(num_items: int, seed: int, strata: Sequence[Hashable] | None = None) -> list[int]:
    """A seeded order of ``range(num_items)``; the first ``k`` items are the subset of size ``k``.

    With ``strata`` (e.g. the class labels of a classification split), the order takes one item of every stratum in
    turn (strata and members shuffled by the seed), so a small subset holds every class it has room for.
    """
    rng = np.random.default_rng(int(seed))
    if strata is None:
        return [int(i) for i in rng.permutation(num_items)]
    if len(strata) != num_items:
        raise ValueError(f"subset_order: {len(strata)} strata for {num_items} items")
    groups: dict[Hashable, list[int]] = {}
    for i, s in enumerate(strata):
        groups.setdefault(s, []).append(i)
    # sorted keys first: the draw must not depend on dict order of the input
    keys = sorted(groups, key=repr)
    members = [[groups[k][j] for j in rng.permutation(len(groups[k]))] for k in keys]
    members = [members[j] for j in rng.permutation(len(members))]
    return [m[r] for r in range(max(map(len, members), default=0)) for m in members if r < len(m)]


def subset_indices(num_items: int, fraction: float, seed: int, strata: Sequence[Hashable] | None = None) -> tuple[int, ...]:
    """Sorted indices of the training subset for ``(fraction, seed)``: the first ``max(1, ceil(fraction * n))``
    items of :func:`subset_order`."""
    if not 0 < fraction <= 1:
        raise ValueError(f"label-efficiency: fractions must be in (0, 1], got {fraction}")
    k = max(1, math.ceil(fraction * num_items - 1e-9))
    return tuple(sorted(subset_order(num_items, seed, strata)[:k]))


@dataclass(frozen=True)
class RunSpec:
    """One fine-tuning run: ``arm`` trained on the training items ``indices`` with seed ``seed``."""

    arm: str
    fraction: float
    seed: int
    indices: tuple[int, ...]

    @property
    def run_id(self) -> str:
        return f"{self.arm}_f{self.fraction:g}_s{self.seed}"


@dataclass(frozen=True)
class StudyDesign:
    """Fractions x seeds x arms, all paired. ``arms`` starts with the reference arm (``scratch``)."""

    fractions: tuple[float, ...]
    seeds: tuple[int, ...]
    arms: tuple[str, ...]

    def __post_init__(self):
        if not self.fractions or any(not 0 < f <= 1 for f in self.fractions):
            raise ValueError(f"label-efficiency: fractions must be in (0, 1], got {list(self.fractions)}")
        if len(set(self.fractions)) != len(self.fractions) or len(set(self.seeds)) != len(self.seeds):
            raise ValueError("label-efficiency: fractions and seeds must not repeat")
        if not self.seeds:
            raise ValueError("label-efficiency: at least one seed is needed (5 or more to detect small effects)")
        unknown = [a for a in self.arms if a not in ARMS]
        if unknown:
            raise ValueError(f"label-efficiency: unknown arm(s) {unknown}; choose from {sorted(ARMS)}")
        if not self.arms or self.arms[0] != "scratch" or len(set(self.arms)) != len(self.arms):
            raise ValueError(f"label-efficiency: --arms must start with scratch (the reference of every paired "
                             f"difference) and not repeat, got {list(self.arms)}")

    def runs(self, num_items: int, strata: Sequence[Hashable] | None = None) -> list[RunSpec]:
        """Every run, seed by seed (so an interrupted study has complete pairs for the first seeds)."""
        return [RunSpec(arm, f, s, subset_indices(num_items, f, s, strata))
                for s in self.seeds for f in self.fractions for arm in self.arms]
