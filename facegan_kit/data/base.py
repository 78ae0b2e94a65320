"""What a ``dataset`` component returns: labelled uint8 images, split by subject."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from facegan_kit.errors import InputError


@dataclass
class FaceSplit:
    """Images of one split, resident in memory (1296 faces at 128x128 are 64 MB).

    Attributes:
        images: ``(N,3,S,S)`` uint8 RGB.
        expression: ``(N,)`` int64 labels ``0..K-1`` (``K`` = 6 for the paper's classes).
        subject: ``(N,)`` int64 subject ids (splits are subject-disjoint).
        extra: optional per-image tensors (e.g. ``intensity``, ``attrs`` on synthetic data).
    """

    images: Tensor
    expression: Tensor
    subject: Tensor
    extra: dict[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.images.dtype != torch.uint8 or self.images.dim() != 4 or self.images.shape[1] != 3:
            raise InputError(f"dataset images must be uint8 (N,3,S,S), got {self.images.dtype} {tuple(self.images.shape)}")
        for name, t in (("expression", self.expression), ("subject", self.subject), *self.extra.items()):
            if t.shape[0] != n:
                raise InputError(f"dataset '{name}' has {t.shape[0]} rows for {n} images")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def size(self) -> int:
        return int(self.images.shape[-1])

    def select(self, index: Tensor) -> "FaceSplit":
        return FaceSplit(
            self.images[index], self.expression[index], self.subject[index],
            {k: v[index] for k, v in self.extra.items()},
        )


@dataclass
class FaceData:
    """A dataset component's output: a training and a test split (subject-disjoint)."""

    train: FaceSplit
    test: FaceSplit
    num_classes: int = 6
    name: str = "dataset"


def to_float(images: Tensor) -> Tensor:
    """uint8 ``[0,255]`` -> float ``[-1,1]``."""
    return images.float().div(127.5).sub(1.0)
