"""Ranking and t-SNE."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from facegan_kit.apps.retrieve import rank, tsne
from facegan_kit.errors import InputError


def test_rank_orders_by_distance_and_label_is_stable():
    q = torch.tensor([0.0, 0.0])
    g = torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, 0.0]])
    order, dist = rank(q, g, "pixel")
    assert order.tolist() == [2, 1, 0] and np.allclose(dist, [0, 1, 5])
    lab = torch.nn.functional.one_hot(torch.tensor([1, 0, 1, 2, 0]), 6).float()
    order, dist = rank(lab[1], lab, "label")
    assert order.tolist() == [1, 4, 0, 2, 3] and dist.tolist() == [0, 0, 1, 1, 1]


def test_tsne_separates_clusters():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 6, (4, 12))
    x = np.concatenate([c + rng.normal(0, 1, (15, 12)) for c in centres])
    lab = np.repeat(np.arange(4), 15)
    y = tsne(x, perplexity=10, seed=0)
    assert y.shape == (60, 2) and np.isfinite(y).all()
    d = ((y[:, None] - y[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (lab[d.argmin(1)] == lab).mean() > 0.95
    with pytest.raises(InputError):
        tsne(x[:2])
