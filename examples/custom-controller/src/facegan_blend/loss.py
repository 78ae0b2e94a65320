"""``blend-feature-match``: a loss term written against facegan_kit's public API alone.

Feature matching (Salimans et al., 2016): the generator matches the batch mean of the image
discriminator's features on real faces, ``|| mean f(x) - mean f(x_hat) ||_1 / F``, a steadier
signal than the realness logit alone. It reads only :class:`facegan_kit.StepContext` and reuses
the discriminator forwards other terms already ran (``ctx.d_img_real()``/``ctx.d_img_fake``).
"""
from __future__ import annotations

from torch import Tensor, nn

from facegan_kit import StepContext

__all__ = ["FeatureMatchLoss", "feature_match_loss"]


def feature_match_loss(real_features: Tensor, fake_features: Tensor) -> Tensor:
    """Mean absolute difference of the batch-mean features.

    Shape:
        - Input: ``(N, F)`` and ``(M, F)``; Output: scalar.

    Example:
        >>> import torch
        >>> feature_match_loss(torch.zeros(2, 4), torch.ones(3, 4))
        tensor(1.)
    """
    return (real_features.mean(0) - fake_features.mean(0)).abs().mean()


class FeatureMatchLoss(nn.Module):
    """Loss ``blend-feature-match`` (generator side only): weight it in a stage's ``losses``."""

    needs = ("d_img",)
    requires_encoder = False

    def g_loss(self, ctx: StepContext) -> Tensor:
        real = ctx.d_img_real()[1].detach()  # a target for G, not a path into D
        fake = ctx.d_img_fake(detach=False)[1]
        return feature_match_loss(real, fake)
