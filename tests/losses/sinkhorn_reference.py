"""Independent plain-loop statement of the Sinkhorn-Knopp codes and the swapped-prediction cross-entropy, in float64."""

import math

import torch


def reference_sinkhorn(scores, epsilon, n_iters):
    """SwAV Algorithm 1 in plain Python: Q = exp(scores / eps) as a (K, B) table, normalised to total mass 1, then
    ``n_iters`` times: every prototype row to 1/K, every sample column to 1/B; finally times B, returned (B, K)."""
    b, k = scores.shape
    q = [[math.exp(float(scores[i, j]) / epsilon) for i in range(b)] for j in range(k)]
    total = sum(sum(row) for row in q)
    q = [[v / total for v in row] for row in q]
    for _ in range(n_iters):
        for j in range(k):
            s = sum(q[j])
            q[j] = [v / s / k for v in q[j]]
        for i in range(b):
            s = sum(q[j][i] for j in range(k))
            for j in range(k):
                q[j][i] = q[j][i] / s / b
    return torch.tensor([[q[j][i] * b for j in range(k)] for i in range(b)], dtype=torch.float64)


def reference_cross_entropy(codes, scores, temperature):
    """Mean over samples of -sum_k codes[i, k] * log softmax(scores[i] / temperature)[k]."""
    per_sample = []
    for i in range(scores.shape[0]):
        z = [float(s) / temperature for s in scores[i]]
        top = max(z)
        log_norm = top + math.log(sum(math.exp(v - top) for v in z))
        per_sample.append(-sum(float(codes[i, j]) * (z[j] - log_norm) for j in range(len(z))))
    return sum(per_sample) / len(per_sample)
