"""What each component kind must do: Protocols with tensor shapes.

Shapes use ``N`` batch, ``K`` expression classes, ``d`` code elements per class,
``C = K*d`` expression-code size, ``Z`` identity-code size, ``S`` image side.
Images are float tensors in ``[-1, 1]``, channels first ``(N, 3, S, S)``.
Every component is an ``nn.Module`` built by its registered factory from a recipe table.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class Encoder(Protocol):
    """``forward(x: (N,3,S,S)) -> g: (N,Z)`` with ``g`` in ``[-1, 1]`` (the identity code)."""

    z_dim: int
    image_size: int

    def forward(self, x: Tensor) -> Tensor: ...


@runtime_checkable
class Decoder(Protocol):
    """``forward(g: (N,Z), c: (N,C)) -> x_hat: (N,3,S,S)`` in ``[-1, 1]``."""

    z_dim: int
    code_dim: int
    image_size: int

    def forward(self, g: Tensor, c: Tensor) -> Tensor: ...


@runtime_checkable
class Controller(Protocol):
    """Turns labels into expression codes (the paper's F_ctrl).

    - ``forward(y: (N,K) one-hot float, generator=None) -> c: (N,C)`` draws the training code
      (its own noise from ``generator``);
    - ``target(c: (N,C), y: (N,K)) -> (N,C)``: what the regularizer Q should predict for ``c``
      (usually ``c`` itself);
    - ``level_code(k: int, level: int) -> (C,)``: the paper's discrete intensity level
      ``1..levels`` of class ``k``;
    - ``intensity_code(k: int, t: float) -> (C,)``: a continuous path, ``t=0`` neutral,
      ``t=1`` the strongest expression of class ``k``;
    - ``neutral_code() -> (C,)``: the code of no expression.
    """

    num_classes: int
    code_dim: int
    levels: int

    def forward(self, y: Tensor, generator: torch.Generator | None = None) -> Tensor: ...

    def level_code(self, k: int, level: int) -> Tensor: ...

    def intensity_code(self, k: int, t: float) -> Tensor: ...

    def neutral_code(self) -> Tensor: ...


@runtime_checkable
class ImageDiscriminator(Protocol):
    """``forward(x: (N,3,S,S), y: (N,K) or None) -> (logit: (N,), features: (N,F))``.

    ``features`` feed the regularizer (Q shares the discriminator trunk, as in the paper).
    """

    feature_dim: int

    def forward(self, x: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor]: ...


@runtime_checkable
class CodeDiscriminator(Protocol):
    """D_z: ``forward(g: (N,Z)) -> (logit: (N,), features: (N,F))``."""

    def forward(self, g: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]: ...


@runtime_checkable
class Regularizer(Protocol):
    """Q: ``forward(features: (N,F)) -> predicted code (N,C)``; ``loss(pred, target) -> scalar``."""

    def forward(self, features: Tensor) -> Tensor: ...

    def loss(self, pred: Tensor, target: Tensor) -> Tensor: ...


@runtime_checkable
class Backbone(Protocol):
    """Frozen identity network. ``features(x: (N,3,S,S) in [-1,1]) -> list of (N,Ci,Hi,Wi)``;
    ``embed(x) -> (N,E)`` L2-normalised embedding (or the network's native embedding)."""

    def features(self, x: Tensor) -> list[Tensor]: ...

    def embed(self, x: Tensor) -> Tensor: ...


class Loss(Protocol):
    """A training term. ``g_loss(ctx) -> scalar`` for the generator side; adversarial terms also
    have ``d_loss(ctx) -> scalar`` for the discriminator side. ``ctx`` is a
    :class:`facegan_kit.train.context.StepContext` (images, labels, codes, outputs, models)."""

    def g_loss(self, ctx: Any) -> Tensor: ...


def check_shape(name: str, t: Tensor, shape: tuple[int | None, ...]) -> Tensor:
    """Raise :class:`facegan_kit.errors.ShapeError` naming ``name`` unless ``t`` has ``shape``
    (``None`` matches any size)."""
    from facegan_kit.errors import ShapeError

    if t.dim() != len(shape) or any(s is not None and s != a for s, a in zip(shape, t.shape)):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ShapeError(f"{name} returned shape {tuple(t.shape)}, expected {want}")
    return t
