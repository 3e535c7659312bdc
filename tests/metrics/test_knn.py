"""Weighted k-NN of embeddings: argument checks and the device the votes are counted on."""

from __future__ import annotations

import pytest
import torch

from unimiss_monai.metrics import knn_accuracy, knn_predict


def _clusters():
    emb = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [-1.0, 0.0], [-0.9, -0.1]])
    return emb, torch.tensor([0, 0, 1, 1, 2, 2])


def test_k_below_one_is_refused():
    emb, labels = _clusters()
    with pytest.raises(ValueError, match="k must be at least 1"):  # was an IndexError from an empty top-k
        knn_predict(emb, labels, k=0)
    assert torch.equal(knn_predict(emb, labels, k=1), labels)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_embeddings_on_a_gpu_are_voted_there():
    # the vote table was made on the CPU whatever the device of the embeddings: scatter_add_ failed on CUDA inputs
    emb, labels = _clusters()
    exclude = torch.zeros(6, 6, dtype=torch.bool)
    exclude[0, 1] = exclude[1, 0] = True
    want = knn_predict(emb, labels, k=3, exclude=exclude)
    got = knn_predict(emb.cuda(), labels, k=3, exclude=exclude)  # labels and mask left on the CPU
    assert got.device.type == "cuda" and torch.equal(got.cpu(), want)
    assert knn_accuracy(emb.cuda(), labels.cuda(), k=3, exclude=exclude.cuda()) == knn_accuracy(emb, labels, k=3, exclude=exclude)
