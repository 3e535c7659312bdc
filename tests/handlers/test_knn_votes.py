"""knn_accuracy, knn_predict and probe_exclusion: the weighted k-NN vote against hand computations, the voters an
exclusion mask removes, and which crops each exclusion mode keeps apart."""

from __future__ import annotations

import math

import pytest
import torch

from unimiss_monai.handlers import knn_accuracy
from unimiss_monai.handlers.knn_probe import knn_predict, probe_exclusion


def _angles(degrees):
    rad = torch.tensor(degrees, dtype=torch.float64) * math.pi / 180
    return torch.stack([rad.cos(), rad.sin()], dim=1)


def test_separable_clusters_score_one():
    g = torch.Generator().manual_seed(0)
    centres = torch.eye(3, 8) * 5
    labels = torch.arange(3).repeat_interleave(4)
    emb = centres[labels] + 0.1 * torch.randn(12, 8, generator=g)
    assert knn_accuracy(emb, labels, k=3) == 1.0
    # k larger than N - 1 is capped, and votes stay dominated by the own cluster at a low temperature
    assert knn_accuracy(emb, labels, k=50, temperature=0.01) == 1.0


# unit vectors at 0, 10, 25, 90 degrees with labels A, A, B, B; cosines: 0-10 .985, 0-25 .906, 0-90 0,
# 10-25 .966, 10-90 .174, 25-90 .423
CRAFTED = _angles([0.0, 10.0, 25.0, 90.0]), torch.tensor([0, 0, 1, 1])


def test_crafted_case_nearest_neighbour():
    # k=1: 0->10 (A, right), 10->0 (A, right), 25->10 (A, wrong), 90->25 (B, right)
    assert knn_accuracy(*CRAFTED, k=1) == pytest.approx(0.75)


def test_crafted_case_temperature_weighting():
    # k=3 (all others). T=1: 0 gets A e^.985=2.68 < B e^.906+e^0=3.47 (wrong); 10 gets A 2.68 < B e^.966+e^.174=3.88
    # (wrong); 25 gets A from both A neighbours (wrong); 90 gets B e^.423=1.53 < A e^.174+e^0=2.19 (wrong) -> 0.
    assert knn_accuracy(*CRAFTED, k=3, temperature=1.0) == pytest.approx(0.0)
    # T=0.07 the most similar neighbour dominates each vote: the k=1 answers again -> 0.75
    assert knn_accuracy(*CRAFTED, k=3, temperature=0.07) == pytest.approx(0.75)


def test_scale_invariance_and_bad_input():
    emb, labels = CRAFTED
    assert knn_accuracy(emb * torch.tensor([[3.0], [0.5], [7.0], [2.0]], dtype=torch.float64), labels, k=1) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="at least 2 samples"):
        knn_accuracy(emb[:1], labels[:1])
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        knn_accuracy(emb, labels[:3])


def test_exclude_mask_removes_voters():
    # k=1 on CRAFTED: 25 degrees is closest to 10 (A, wrong); without 10 among its neighbours its next nearest is
    # 0 (A, still wrong), without both it is 90 (B, right)
    emb, labels = CRAFTED
    exclude = torch.zeros(4, 4, dtype=torch.bool)
    exclude[2, 1] = True
    assert knn_predict(emb, labels, k=1, exclude=exclude).tolist() == [0, 0, 0, 1]
    exclude[2, 0] = True
    assert knn_predict(emb, labels, k=1, exclude=exclude).tolist() == [0, 0, 1, 1]
    assert knn_accuracy(emb, labels, k=1, exclude=exclude) == 1.0
    # a sample with no allowed neighbour is not scored (-1), and is left out of the accuracy
    exclude[3] = True
    assert knn_predict(emb, labels, k=3, exclude=exclude)[3] == -1
    assert knn_accuracy(emb, labels, k=1, exclude=exclude) == 1.0
    with pytest.raises(ValueError, match="no sample has an allowed neighbour"):
        knn_accuracy(emb, labels, exclude=torch.ones(4, 4, dtype=torch.bool))


def _item(case, box, group="real", label="a"):
    return {"image": f"{case}.npy", "label": label, "case": case, "group": group, "box": box}


def test_probe_exclusion_modes():
    items = [
        _item("ct0", [[0, 0, 0], [4, 4, 4]]),
        _item("ct0", [[3, 3, 3], [7, 7, 7]]),   # shares voxel (3, 3, 3) with item 0
        _item("ct0", [[4, 0, 0], [8, 4, 4]]),   # touches item 0 (x = 4 is past its stop), overlaps item 1
        _item("ct1", [[0, 0, 0], [4, 4, 4]]),   # the same box in another case: different voxels
        _item("ph0", [[0, 0, 0], [4, 4, 4]], group="phantom"),
    ]
    overlap = probe_exclusion(items, "overlap")
    assert overlap.tolist() == [
        [False, True, False, False, True],
        [True, False, True, False, True],
        [False, True, False, False, True],
        [False, False, False, False, True],
        [True, True, True, True, False],
    ]
    case = probe_exclusion(items, "case")
    assert case[0].tolist() == [False, True, True, False, True] and case[3].tolist() == [False, False, False, False, True]
    assert probe_exclusion(items, "self").tolist() == [[g != h for h in "rrrrp"] for g in "rrrrp"]
    with pytest.raises(ValueError, match="'overlap', 'case' or 'self'"):
        probe_exclusion(items, "nearby")
