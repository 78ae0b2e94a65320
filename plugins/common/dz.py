"""The identity-code discriminator D_z shared by ExprGAN and CAAE (``dz-mlp``)."""
from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from facegan_plugins.common.blocks import as_int_list, init_normal_, mlp_block


class DzMLP(nn.Module):
    """D_z: tells prior samples from encoder outputs (the paper's Eq. 8).

    Each hidden layer is [FC, BatchNorm, ReLU]; a last FC gives one logit. The last hidden
    activation is returned as ``features`` (``feature_dim = hidden[-1]``).

    Args:
        z_dim: size of the identity code.
        hidden: widths of the hidden layers.

    Shape:
        - Input: ``g (N, z_dim)``; ``y`` is accepted for interface symmetry and ignored.
        - Output: ``(logit (N,), features (N, hidden[-1]))``.

    Example:
        >>> d = DzMLP(z_dim=8, hidden=[8, 4])
        >>> [t.shape for t in d(torch.zeros(3, 8))]
        [torch.Size([3]), torch.Size([3, 4])]
    """

    def __init__(self, z_dim: int = 50, hidden: Sequence[int] = (64, 32, 16)) -> None:
        super().__init__()
        widths = as_int_list(hidden, "hidden")
        self.z_dim = z_dim
        self.feature_dim = widths[-1]
        dims = [z_dim, *widths]
        self.trunk = nn.Sequential(*(mlp_block(a, b, nn.ReLU()) for a, b in zip(dims, dims[1:])))
        self.head = nn.Linear(widths[-1], 1)
        init_normal_(self)

    def forward(self, g: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if g.dim() != 2 or g.shape[1] != self.z_dim:
            raise ValueError(f"dz-mlp expects (N, {self.z_dim}), got {tuple(g.shape)}")
        features = self.trunk(g)
        return self.head(features).squeeze(1), features
