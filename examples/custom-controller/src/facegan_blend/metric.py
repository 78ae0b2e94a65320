"""``blend-edit-change``: a metric ``facegan eval`` runs, written against the public API alone.

How much an edit changes a face beyond reconstructing it: the mean absolute pixel difference
between each face's reconstruction (its own label's code) and its edits to the other
expressions, on the ``[0, 1]`` scale. Near 0 means the expression code is ignored; the value
shows up in ``metrics.json`` (``plugin_metrics["blend-edit-change"]``) and in ``report.md``.
"""
from __future__ import annotations

import torch

from facegan_kit import MetricContext

__all__ = ["EditChange"]


class EditChange:
    """Metric ``blend-edit-change``: ``{"edit_change_l1": float}``."""

    def __call__(self, ctx: MetricContext) -> dict[str, float | None]:
        k = ctx.edits.shape[0]
        other = ctx.labels[None, :] != torch.arange(k)[:, None]  # (K, N): not the own label
        if not bool(other.any()):
            return {"edit_change_l1": None}
        diff = (ctx.edits - ctx.recon[None]).abs().mean(dim=(2, 3, 4)) / 2  # [-1,1] -> [0,1] scale
        return {"edit_change_l1": float(diff[other].mean())}
