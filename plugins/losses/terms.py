"""Loss terms of ExprGAN's Eq. 10 (and CAAE's): pixel L1, total variation, the two adversarial
terms and the Q term. Each is a pure function where that makes sense plus a thin module with
``g_loss(ctx)`` (and ``d_loss(ctx)`` for terms that train a discriminator side).

Every module declares ``needs``: the model slots of :class:`~facegan_kit.interfaces.StepContext`
it reads, and ``requires_encoder``: whether it only makes sense when ``ctx.g_from_encoder``.
"""
from __future__ import annotations

import kornia
from torch import Tensor, nn

from facegan_kit import StepContext, bce_logits


# -- pure functions ---------------------------------------------------------------------------
def l1_loss(x_hat: Tensor, x: Tensor) -> Tensor:
    """Mean absolute difference (Eq. 6).

    Shape:
        - Input: ``x_hat``, ``x`` of the same shape; Output: scalar.
    """
    if x_hat.shape != x.shape:
        raise ValueError(f"l1: shapes differ: {tuple(x_hat.shape)} vs {tuple(x.shape)}")
    return (x_hat - x).abs().mean()


def tv_loss(img: Tensor) -> Tensor:
    """Anisotropic total variation per pixel, averaged over the batch.

    Normalisation: for each image, :func:`kornia.losses.total_variation` (``reduction="sum"``)
    sums the absolute vertical and horizontal neighbour differences; these are summed over the
    channels and divided by the number of pixels ``H * W``; the result is averaged over ``N``.
    So it does not depend on image size or batch size, and a constant image gives 0.

    Shape:
        - Input: ``(N, C, H, W)``; Output: scalar.

    Example:
        >>> tv_loss(torch.ones(2, 3, 8, 8))
        tensor(0.)
    """
    if img.dim() != 4:
        raise ValueError(f"tv expects (N, C, H, W), got {tuple(img.shape)}")
    per_image = kornia.losses.total_variation(img, reduction="sum").sum(dim=1)
    return (per_image / (img.shape[-2] * img.shape[-1])).mean()


def edge_l1_loss(x_hat: Tensor, x: Tensor) -> Tensor:
    """Mean absolute difference of the images' Sobel gradients (x and y, per channel), from
    :func:`kornia.filters.spatial_gradient` (normalised kernels, replicate padding).

    Pixel L1 barely notices a missing thin line (glasses' rims are about one pixel wide at
    32 px); the gradients of such a line are as large as the line is dark.

    Shape:
        - Input: ``x_hat``, ``x`` ``(N, C, H, W)`` of the same shape; Output: scalar.
    """
    if x_hat.shape != x.shape or x_hat.dim() != 4:
        raise ValueError(f"edge-l1: expects two (N, C, H, W) of one shape, got {tuple(x_hat.shape)} vs {tuple(x.shape)}")
    return (kornia.filters.spatial_gradient(x_hat) - kornia.filters.spatial_gradient(x)).abs().mean()


# -- modules ----------------------------------------------------------------------------------
class L1Loss(nn.Module):
    """``l1``: pixel reconstruction ``mean |x_hat - x|`` (Eq. 6)."""

    needs: tuple[str, ...] = ()
    requires_encoder: bool = True
    #: the reconstruction distance; subclasses swap it and keep the rest
    distance = staticmethod(l1_loss)

    def forward(self, x_hat: Tensor, x: Tensor) -> Tensor:
        return self.distance(x_hat, x)

    def g_loss(self, ctx: StepContext) -> Tensor:
        return self.distance(ctx.x_hat, ctx.x)


class EdgeL1Loss(L1Loss):
    """``edge-l1``: reconstruction L1 on image gradients (see :func:`edge_l1_loss`); not in the
    paper, an option for thin features the pixel L1 lets blur away."""

    distance = staticmethod(edge_l1_loss)


class TVLoss(nn.Module):
    """``tv``: total variation of ``x_hat`` (see :func:`tv_loss` for the normalisation)."""

    needs: tuple[str, ...] = ()
    requires_encoder: bool = False

    def forward(self, img: Tensor) -> Tensor:
        return tv_loss(img)

    def g_loss(self, ctx: StepContext) -> Tensor:
        return tv_loss(ctx.x_hat)


class AdvImgLoss(nn.Module):
    """``adv-img``: conditional image GAN loss (Eq. 9) with sigmoid cross-entropy.

    - G side: ``bce(D_img(x_hat, y), 1)``.
    - D side: ``bce(D_img(x, y), 1) + bce(D_img(x_hat.detach(), y), 0)``.
    """

    needs: tuple[str, ...] = ("d_img",)
    requires_encoder: bool = False

    def g_loss(self, ctx: StepContext) -> Tensor:
        return bce_logits(ctx.d_img_fake(detach=False)[0], 1.0)

    def d_loss(self, ctx: StepContext) -> Tensor:
        return bce_logits(ctx.d_img_real()[0], 1.0) + bce_logits(ctx.d_img_fake(detach=True)[0], 0.0)


class AdvZLoss(nn.Module):
    """``adv-z``: adversarial prior matching on the identity code (Eq. 8).

    - G side (encoder): ``bce(D_z(g), 1)``.
    - D side: ``bce(D_z(z_prior), 1) + bce(D_z(g.detach()), 0)``.
    """

    needs: tuple[str, ...] = ("d_z",)
    requires_encoder: bool = True

    def g_loss(self, ctx: StepContext) -> Tensor:
        logit = ctx.memo("d_z_fake/False", lambda: ctx.models["d_z"](ctx.g))[0]
        return bce_logits(logit, 1.0)

    def d_loss(self, ctx: StepContext) -> Tensor:
        d_z = ctx.models["d_z"]
        real = ctx.memo("d_z_real", lambda: d_z(ctx.z_prior))[0]
        fake = ctx.memo("d_z_fake/True", lambda: d_z(ctx.g.detach()))[0]
        return bce_logits(real, 1.0) + bce_logits(fake, 0.0)


class QLoss(nn.Module):
    """``q``: the code regulariser (Eq. 5), on generated images only.

    Q reads D_img's features of ``(x_hat, y)`` and is scored by ``models["q"].loss`` against
    ``controller.target(c, y)`` (``c`` itself when no controller slot is filled). As in the
    official code the term is added to both sides: the G side sees ``x_hat`` with its graph, the
    D side sees ``x_hat.detach()`` (training the D_img trunk and Q).
    """

    needs: tuple[str, ...] = ("d_img", "q")
    requires_encoder: bool = False

    def g_loss(self, ctx: StepContext) -> Tensor:
        return self._loss(ctx, detach=False)

    def d_loss(self, ctx: StepContext) -> Tensor:
        return self._loss(ctx, detach=True)

    @staticmethod
    def _loss(ctx: StepContext, detach: bool) -> Tensor:
        q = ctx.models["q"]
        features = ctx.d_img_fake(detach=detach)[1]
        controller = ctx.models.get("controller")
        target = controller.target(ctx.c, ctx.y) if controller is not None else ctx.c
        return q.loss(q(features), target.detach())


class SourceKeepLoss(nn.Module):
    """``source-keep``: ``mean(1 - a)`` of the mask ``a`` of a decoder with ``source_blend``
    (its ``last_keep``, the latest pass's: the step's ``x_hat``): a prior for keeping the
    photo's pixels, not in the paper.

    Why: on the training people the decoder learns to draw each face from its identity code,
    so reconstruction alone never asks the mask to keep the photo, and on new people the drawn
    face is a generic one. With this prior the mask keeps a pixel unless drawing it lowers the
    reconstruction loss by more than the term's weight (both are means over pixels).
    """

    needs: tuple[str, ...] = ()
    requires_encoder: bool = True

    def g_loss(self, ctx: StepContext) -> Tensor:
        keep = getattr(ctx.models["decoder"], "last_keep", None)
        if keep is None:
            raise ValueError("source-keep: the decoder drew no mask (it needs source_blend = true, "
                             "and the stage identity = 'encoder')")
        return (1 - keep).mean()
