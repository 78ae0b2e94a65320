"""What every identity backbone shares: frozen weights, always in eval mode, one input check."""
from __future__ import annotations

from torch import Tensor, nn

from facegan_kit import InputError


class FrozenBackbone(nn.Module):
    """Base of the built-in backbones. ``freeze()`` turns gradients off and puts the network in
    eval mode for good: ``train()`` is a no-op, so a trainer calling ``.train()`` on everything
    never switches its BatchNorm/dropout to training behaviour. Subclasses set ``name`` (used in
    error messages) and call :meth:`check_images` on their inputs."""

    name = "backbone"

    def freeze(self) -> "FrozenBackbone":
        self.requires_grad_(False)
        return super().train(False)

    def train(self, mode: bool = True) -> "FrozenBackbone":  # always frozen
        return super().train(False)

    def check_images(self, x: Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != 3:
            raise InputError(f"{self.name}: expected images (N,3,S,S), got {tuple(x.shape)}")
