"""What each component kind must do: Protocols with tensor shapes.

Shapes use ``N`` batch, ``K`` expression classes, ``d`` code elements per class,
``C = K*d`` expression-code size, ``Z`` identity-code size, ``S`` image side.
Images are float tensors in ``[-1, 1]``, channels first ``(N, 3, S, S)``.
Every component is an ``nn.Module`` built by its registered factory from a recipe table.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, runtime_checkable

import torch
from torch import Tensor, nn


@runtime_checkable
class Encoder(Protocol):
    """``forward(x: (N,3,S,S)) -> g: (N,Z)`` with ``g`` in ``[-1, 1]`` (the identity code)."""

    z_dim: int
    image_size: int

    def forward(self, x: Tensor) -> Tensor: ...


@runtime_checkable
class Decoder(Protocol):
    """``forward(g: (N,Z), c: (N,C)) -> x_hat: (N,3,S,S)`` in ``[-1, 1]``.

    A decoder that also reads the photo being edited sets ``uses_source = True`` and takes
    ``forward(g, c, source=None)``: ``source`` ``(N,3,S,S)`` is the face the encoder read, or None
    where there is none (identities from the prior). Call decoders through :func:`decode`,
    which passes ``source`` only to those that take it.
    """

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


@runtime_checkable
class StepContext(Protocol):
    """What a loss term may read during one training step (the trainer builds it).

    Attributes:
        models: slot name -> module (``encoder``, ``decoder``, ``controller``, ``d_img``, ``q``,
            ``d_z``; absent slots are missing keys).
        x: real images ``(N,3,S,S)`` in ``[-1,1]``.
        y: one-hot labels ``(N,K)``.
        g: identity code ``(N,Z)`` fed to the decoder (encoder output or prior noise).
        g_from_encoder: whether ``g`` came from the encoder (a stage may decode prior noise).
        c: expression code ``(N,C)`` fed to the decoder.
        x_hat: decoded images ``(N,3,S,S)``.
        z_prior: a sample of the identity prior ``(N,Z)`` for D_z.
        stage: the stage name.
        step_cache: kept across the D and G phases of one step (an extra decoder pass both reuse).
        sample_index, sample_flip, sample_source: dataset indices ``(N,)``, horizontal-flip mask
            ``(N,)`` and the unflipped image source of the batch, or ``None``; they let features
            of real images be cached per (image, flip).
        x_in: the faces the encoder read (``x`` unless the stage pairs photos of one person),
            or None when ``g`` came from the prior; pass it to :func:`decode`.
    """

    models: dict[str, nn.Module]
    x: Tensor
    y: Tensor
    g: Tensor
    g_from_encoder: bool
    c: Tensor
    x_hat: Tensor
    z_prior: Tensor
    stage: str
    step_cache: dict[str, Any]
    sample_index: Tensor | None
    sample_flip: Tensor | None
    sample_source: Any
    x_in: Tensor | None

    def memo(self, key: str, fn: Callable[[], Any]) -> Any:
        """``fn()`` computed once per phase under ``key`` (one forward shared by several terms)."""
        ...

    def d_img_fake(self, detach: bool) -> tuple[Tensor, Tensor]:
        """``d_img(x_hat, y)`` -> (logit, features), memoised; ``detach`` cuts the graph into G."""
        ...

    def d_img_real(self) -> tuple[Tensor, Tensor]:
        """``d_img(x, y)`` -> (logit, features), memoised."""
        ...


class Loss(Protocol):
    """A training term. ``g_loss(ctx) -> scalar`` for the generator side; adversarial terms also
    have ``d_loss(ctx) -> scalar`` for the discriminator side (detach ``x_hat``/``g`` there).
    ``ctx`` is a :class:`StepContext`."""

    def g_loss(self, ctx: StepContext) -> Tensor: ...


@runtime_checkable
class Metric(Protocol):
    """A measurement ``facegan eval`` adds to its report (registry kind ``metric``).

    ``__call__(ctx: MetricContext) -> dict[str, float | None]``: named values, stored in
    ``metrics.json`` under ``metrics.<registered name>`` and listed in ``report.md``.
    """

    def __call__(self, ctx: "MetricContext") -> dict[str, float | None]: ...


@dataclass(frozen=True)
class MetricContext:
    """What a :class:`Metric` may read: the evaluated faces and the model's edits of them.

    A concrete (frozen) record rather than a Protocol: ``facegan eval`` builds exactly this
    object, so plugins and the suite share one definition.

    Attributes:
        editor: the loaded model (``encode``, ``decode``, ``controller``, ``image_size``, ``device``).
        x: the evaluated real faces ``(N,3,S,S)`` in ``[-1,1]``.
        labels: their expression labels ``(N,)`` (int64, ``0..K-1``).
        subject: their subject ids ``(N,)``.
        recon: each face decoded with its own label's code ``(N,3,S,S)``.
        edits: each face re-rendered with every expression at full intensity ``(K,N,3,S,S)``.
        neutral: each face decoded with the neutral code ``(N,3,S,S)``.
        results: the suite's own results so far (read-only by convention).
    """

    editor: Any
    x: Tensor
    labels: Tensor
    subject: Tensor
    recon: Tensor
    edits: Tensor
    neutral: Tensor
    results: dict[str, Any]


def decode(decoder: nn.Module, g: Tensor, c: Tensor, source: Tensor | None = None) -> Tensor:
    """``decoder(g, c)``, with ``source`` (the faces ``g`` was encoded from) for decoders whose
    ``uses_source`` is true; others never see it."""
    if source is not None and getattr(decoder, "uses_source", False):
        if source.shape[0] != g.shape[0]:
            source = source.expand(g.shape[0], -1, -1, -1)
        return decoder(g, c, source=source)
    return decoder(g, c)


def check_shape(name: str, t: Tensor, shape: tuple[int | None, ...]) -> Tensor:
    """Raise :class:`facegan_kit.errors.ShapeError` naming ``name`` unless ``t`` has ``shape``
    (``None`` matches any size)."""
    from facegan_kit.errors import ShapeError

    if t.dim() != len(shape) or any(s is not None and s != a for s, a in zip(shape, t.shape)):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ShapeError(f"{name} returned shape {tuple(t.shape)}, expected {want}")
    return t


def bce_logits(logit: Tensor, target: float) -> Tensor:
    """Sigmoid cross-entropy of ``logit`` against a constant ``target`` (the official ExprGAN
    code's adversarial loss): ``bce_logits(d_real, 1.0) + bce_logits(d_fake, 0.0)``.

    Shape:
        - Input: any ``logit`` shape; Output: scalar (the mean).
    """
    return nn.functional.binary_cross_entropy_with_logits(logit, torch.full_like(logit, target))
