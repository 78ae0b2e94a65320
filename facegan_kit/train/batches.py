"""Batches from a resident uint8 dataset: a seeded permutation per (stage, epoch), so that the
batch at any step is a pure function of (seed, stage, step) and resuming needs no iterator state."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from facegan_kit.data.base import FaceSplit, to_float


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Full batches per epoch (the last partial batch is dropped; at least one batch)."""
    return max(1, n // batch_size)


def stage_steps(n: int, batch_size: int, epochs: float | None, steps: int | None) -> int:
    if steps is not None:
        return int(steps)
    return max(1, math.ceil(float(epochs) * steps_per_epoch(n, batch_size)))


def batch_indices(n: int, batch_size: int, seed: int, stage: int, step: int) -> Tensor:
    """Indices of the batch at ``step`` of ``stage`` (deterministic, resumable)."""
    bs = min(batch_size, n)
    spe = steps_per_epoch(n, bs)
    epoch, k = divmod(step, spe)
    gen = torch.Generator().manual_seed(hash_seed(seed, stage, epoch))
    perm = torch.randperm(n, generator=gen)
    return perm[k * bs:(k + 1) * bs]


def hash_seed(*parts: int) -> int:
    h = 1469598103934665603
    for p in parts:
        h = ((h ^ (int(p) & 0xFFFFFFFF)) * 1099511628211) & 0x7FFFFFFFFFFFFFFF
    return h


def make_batch(split: FaceSplit, index: Tensor, device: torch.device, num_classes: int,
               flip: bool, generator: torch.Generator | None) -> tuple[Tensor, Tensor, Tensor]:
    """(x float [-1,1] on device, one-hot y, labels) with optional random horizontal flip."""
    x = to_float(split.images[index].to(device, non_blocking=True))
    labels = split.expression[index].to(device)
    if flip:
        mask = torch.rand(x.shape[0], generator=generator, device=generator.device if generator else "cpu") < 0.5
        x = torch.where(mask.to(device)[:, None, None, None], x.flip(-1), x)
    y = torch.nn.functional.one_hot(labels, num_classes).float()
    return x, y, labels
