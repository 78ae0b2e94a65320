"""Shared pieces of the contract checks: inputs, shape/range asserts, the kinds they feed."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from facegan_kit import interfaces

#: Kinds :func:`check_component` knows how to feed.
MODEL_KINDS = ("encoder", "decoder", "controller", "discriminator", "regularizer", "backbone")
_PROTOCOLS = {
    "encoder": interfaces.Encoder, "decoder": interfaces.Decoder, "controller": interfaces.Controller,
    "regularizer": interfaces.Regularizer, "backbone": interfaces.Backbone,
}


# -- inputs -----------------------------------------------------------------------------------
def one_hot_labels(n: int, num_classes: int) -> Tensor:
    """``(n, num_classes)`` float one-hot labels cycling through the classes."""
    return nn.functional.one_hot(torch.arange(n) % num_classes, num_classes).float()


def _uniform(gen: torch.Generator, *shape: int) -> Tensor:
    return torch.rand(*shape, generator=gen) * 2 - 1


def _attr(model: Any, name: str, kind: str) -> int:
    value = getattr(model, name, None)
    assert isinstance(value, int) and not isinstance(value, bool) and value > 0, (
        f"{kind} {type(model).__name__}: attribute '{name}' must be a positive int "
        f"(see facegan_kit.interfaces), got {value!r}")
    return value


def _shape(who: str, t: Any, shape: tuple) -> None:
    assert isinstance(t, Tensor), f"{who}: expected a tensor, got {type(t).__name__}"
    ok = t.dim() == len(shape) and all(s is None or s == a for s, a in zip(shape, t.shape, strict=True))
    want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
    assert ok, f"{who}: shape {tuple(t.shape)}, expected {want}"


def _in_range(who: str, t: Tensor) -> None:
    assert torch.isfinite(t).all(), f"{who}: non-finite values"
    assert t.detach().abs().max() <= 1 + 1e-6, (
        f"{who}: values must lie in [-1, 1], got range [{t.min().item():.4g}, {t.max().item():.4g}]")
