"""The ExprGAN image discriminator D_img (``exprgan-dimg``) and the regularizer Q (``exprgan-q``)."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from facegan_plugins.common.blocks import (
    as_int_list,
    check_divisible,
    concat_maps,
    conv,
    init_normal_,
    mlp_block,
)

LIKELIHOODS = ("mse", "gaussian")


class ExprDImg(nn.Module):
    """Conditional image discriminator whose trunk is shared with Q (the paper's D_img).

    The one-hot label ``y`` is concatenated as constant maps to the image and again after every
    block. Blocks: ``len(channels)`` x [conv 5x5 stride 2, BatchNorm, ReLU]. Then FC ``fc_dim``,
    BatchNorm, LeakyReLU(0.2): these activations are the ``features`` fed to Q. Finally ``y`` is
    concatenated and an FC gives the realness logit. Weights start from N(0, 0.02).

    Args:
        image_size: side of the input image.
        num_classes: number of expression classes ``K`` (size of ``y``).
        channels: widths of the stride-2 blocks.
        fc_dim: width of the feature layer (``feature_dim``).

    Shape:
        - Input: ``x (N, 3, image_size, image_size)``, ``y (N, K)`` one-hot.
        - Output: ``(logit (N,), features (N, fc_dim))``.
    """

    def __init__(
        self,
        image_size: int = 128,
        num_classes: int = 6,
        channels: Sequence[int] = (16, 32, 64, 128),
        fc_dim: int = 1024,
    ) -> None:
        super().__init__()
        chans = as_int_list(channels, "channels")
        side = check_divisible(image_size, len(chans), "exprgan-dimg")
        self.image_size, self.num_classes, self.feature_dim = image_size, num_classes, fc_dim
        self.blocks = nn.ModuleList()
        in_ch = 3
        for out_ch in chans:
            block = nn.Sequential(conv(in_ch + num_classes, out_ch, 5, 2), nn.BatchNorm2d(out_ch), nn.ReLU())
            self.blocks.append(block)
            in_ch = out_ch
        self.fc = mlp_block((in_ch + num_classes) * side * side, fc_dim, nn.LeakyReLU(0.2))
        self.head = nn.Linear(fc_dim + num_classes, 1)
        init_normal_(self)

    def forward(self, x: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor]:
        s = self.image_size
        if x.dim() != 4 or tuple(x.shape[1:]) != (3, s, s):
            raise ValueError(f"exprgan-dimg expects x (N, 3, {s}, {s}), got {tuple(x.shape)}")
        if y is None or y.shape != (x.shape[0], self.num_classes):
            got = None if y is None else tuple(y.shape)
            raise ValueError(
                f"exprgan-dimg is conditional: expects y ({x.shape[0]}, {self.num_classes}), got {got}"
            )
        y = y.to(x.dtype)
        h = x
        for block in self.blocks:
            h = block(concat_maps(h, y))
        features = self.fc(concat_maps(h, y).flatten(1))
        logit = self.head(torch.cat([features, y], dim=1)).squeeze(1)
        return logit, features


class ExprQ(nn.Module):
    """The regularizer Q: predicts the expression code from D_img's features (Eq. 4-5).

    Shared layer [FC ``hidden``, BatchNorm, LeakyReLU(0.2)]; then one branch per class
    [FC ``branch_hidden``, BatchNorm, LeakyReLU(0.2), FC ``d``, tanh]; the branch outputs are
    concatenated in class order.

    ``loss(pred, target)`` depends on ``likelihood``:

    - ``"mse"`` (the **official code**): ``sum_k mean((pred_k - target_k)**2)``, the mean taken over
      the batch and the ``d`` elements of class block ``k``, summed over the ``K`` blocks.
    - ``"gaussian"`` (the **paper's** Eq. 5): the negative log-likelihood of ``target`` under a
      factored Gaussian with mean ``pred`` and a learned per-dimension log standard deviation
      ``log_std`` (a parameter of shape ``(K*d,)``, initialised to 0, clamped to [-5, 5]), summed over
      the ``K*d`` dimensions and averaged over the batch. The constant ``(K*d)/2 * log(2*pi)`` is
      dropped, so an exact prediction with ``log_std = 0`` gives 0.

    Args:
        feature_dim: width of the discriminator features.
        num_classes: number of classes ``K``.
        code_dim_per_class: elements per class block ``d``.
        hidden: width of the shared layer.
        branch_hidden: width of each per-class branch.
        likelihood: ``"mse"`` or ``"gaussian"``.

    Shape:
        - Input: ``features (N, feature_dim)``.
        - Output: ``pred (N, K * d)`` in ``[-1, 1]``.
    """

    LOG_STD_RANGE = (-5.0, 5.0)

    def __init__(
        self,
        feature_dim: int = 1024,
        num_classes: int = 6,
        code_dim_per_class: int = 5,
        hidden: int = 128,
        branch_hidden: int = 64,
        likelihood: str = "mse",
    ) -> None:
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(
                f"exprgan-q: likelihood must be one of {', '.join(LIKELIHOODS)}, got {likelihood!r}"
            )
        self.feature_dim = feature_dim
        self.num_classes, self.code_dim_per_class = num_classes, code_dim_per_class
        self.code_dim = num_classes * code_dim_per_class
        self.likelihood = likelihood
        self.shared = mlp_block(feature_dim, hidden, nn.LeakyReLU(0.2))
        self.branches = nn.ModuleList(
            nn.Sequential(
                mlp_block(hidden, branch_hidden, nn.LeakyReLU(0.2)),
                nn.Linear(branch_hidden, code_dim_per_class),
                nn.Tanh(),
            )
            for _ in range(num_classes)
        )
        if likelihood == "gaussian":
            self.log_std = nn.Parameter(torch.zeros(self.code_dim))
        init_normal_(self)

    def forward(self, features: Tensor) -> Tensor:
        if features.dim() != 2 or features.shape[1] != self.feature_dim:
            raise ValueError(
                f"exprgan-q expects features (N, {self.feature_dim}), got {tuple(features.shape)}"
            )
        h = self.shared(features)
        return torch.cat([branch(h) for branch in self.branches], dim=1)

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """Scalar Q loss of ``pred (N, K*d)`` against ``target (N, K*d)`` (see the class docstring)."""
        if pred.shape != target.shape or pred.dim() != 2 or pred.shape[1] != self.code_dim:
            raise ValueError(
                f"exprgan-q loss expects pred and target (N, {self.code_dim}), "
                f"got {tuple(pred.shape)} and {tuple(target.shape)}"
            )
        target = target.to(pred.dtype)
        if self.likelihood == "mse":
            sq = (pred - target).pow(2).view(pred.shape[0], self.num_classes, self.code_dim_per_class)
            return sq.mean(dim=(0, 2)).sum()
        log_std = self.log_std.clamp(*self.LOG_STD_RANGE).to(pred.dtype)
        nll = 0.5 * ((target - pred) * torch.exp(-log_std)).pow(2) + log_std
        return nll.sum(dim=1).mean()

    @staticmethod
    def gaussian_constant(code_dim: int) -> float:
        """The dropped constant of the Gaussian NLL, ``code_dim/2 * log(2*pi)``."""
        return 0.5 * code_dim * math.log(2 * math.pi)
