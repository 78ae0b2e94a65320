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


class Batch(tuple):
    """``(x, y, labels)`` (unpacks like a 3-tuple) that also says which images its rows are.

    Attributes:
        index: ``(n,)`` int64 dataset indices of the rows (CPU), e.g. for feature caches.
        flip: ``(n,)`` bool on the device, whether each row was mirrored (None: no flipping).
        y_all: one-hot labels of the whole global batch when this is one process's slice of it
            (distributed training), else ``y``.
        x_source: what the encoder reads instead of ``x`` (another photo of each row's person,
            see :class:`SamePerson`), or None: the encoder reads ``x``, as in the paper.
    """

    index: Tensor
    flip: Tensor | None
    y_all: Tensor
    x_source: Tensor | None

    def __new__(cls, x: Tensor, y: Tensor, labels: Tensor, index: Tensor, flip: Tensor | None,
                y_all: Tensor | None = None, x_source: Tensor | None = None) -> "Batch":
        obj = super().__new__(cls, (x, y, labels))
        obj.index, obj.flip, obj.y_all = index, flip, (y if y_all is None else y_all)
        obj.x_source = x_source
        return obj

    @property
    def x(self) -> Tensor:
        return self[0]

    @property
    def y(self) -> Tensor:
        return self[1]


def shard_slice(n: int, shard: tuple[int, int] | None) -> slice:
    """This process's rows of a global batch of ``n``: ``shard = (rank, world_size)``; contiguous
    equal slices (the caller checks that ``world_size`` divides ``n``)."""
    if shard is None:
        return slice(0, n)
    rank, world = shard
    b = n // world
    return slice(rank * b, (rank + 1) * b)


def images_at(split: FaceSplit, index: Tensor, device: torch.device) -> Tensor:
    """Unflipped float images ``[-1,1]`` of ``index`` on ``device`` (as :func:`make_batch` makes them)."""
    return to_float(split.images[index.to(split.images.device)].to(device, non_blocking=True))


class ImageSource:
    """``source(index) -> unflipped float images`` of a split on a device, as :func:`make_batch`
    makes them (``len(source)`` = number of images). Loss terms use it to compute per-image
    results in a fixed grouping (see the identity loss's feature cache)."""

    def __init__(self, split: FaceSplit, device: torch.device, channels_last: bool = False) -> None:
        self.split, self.device, self.channels_last = split, torch.device(device), channels_last

    def __len__(self) -> int:
        return len(self.split)

    def __call__(self, index: Tensor) -> Tensor:
        x = images_at(self.split, index, self.device)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


class SamePerson:
    """Draws, for each row of a batch, a photo of the same person (any of that person's photos,
    the row's own included, uniformly): the encoder reads it while the row stays the target of
    every loss (``pairs = "same-person"`` in a stage).

    Built once per run from a split's ``subject`` ids; the draw runs where ``device`` is, from
    the caller's generator, so it is resumable and can be captured in a CUDA graph.
    """

    def __init__(self, subject: Tensor, device: torch.device | str = "cpu") -> None:
        subject = subject.to(device)
        _, group = torch.unique(subject, return_inverse=True)
        counts = torch.bincount(group)
        starts = torch.cumsum(counts, 0) - counts
        self.order = torch.argsort(group, stable=True)  # indices grouped by person
        self.start, self.count = starts[group], counts[group]  # per dataset index

    def __call__(self, index: Tensor, generator: torch.Generator | None) -> Tensor:
        """Dataset indices of a same-person photo for each of ``index``."""
        index = index.to(self.order.device)
        u = torch.rand(index.shape[0], generator=generator, device=self.order.device)
        count = self.count[index]
        k = torch.minimum((u * count).long(), count - 1)
        return self.order[self.start[index] + k]


def one_hot_or_neutral(labels: Tensor, num_classes: int) -> Tensor:
    """``(N,)`` labels ``0..num_classes`` -> ``(N, num_classes)`` float; ``num_classes`` (neutral)
    gives an all-zero row."""
    return torch.nn.functional.one_hot(labels, num_classes + 1)[:, :num_classes].float()


def make_batch(split: FaceSplit, index: Tensor, device: torch.device, num_classes: int,
               flip: bool, generator: torch.Generator | None, *, shard: tuple[int, int] | None = None,
               channels_last: bool = False, partners: SamePerson | None = None) -> Batch:
    """(x float [-1,1] on device, one-hot y, labels) with optional random horizontal flip.

    A label equal to ``num_classes`` is the neutral face (``NEUTRAL_LABEL`` = 6 for the paper's
    six classes): its ``y`` row is all zeros, which ``fctrl`` turns into the all-negative code
    (the paper's test-time neutral, here trained when the data has neutral frames).

    ``index`` is the global batch; with ``shard = (rank, world_size)`` only this process's slice
    is gathered, while the flip mask is drawn for the whole global batch (so every process's
    generator stays in step, and the run does not depend on the number of processes). The
    images are gathered, scaled and flipped where ``split.images`` lives and on ``device``
    (both the device when the dataset is resident there). With ``partners``, the batch also
    carries ``x_source``: for each row, another photo of its person (drawn for the global batch
    after the flip mask, and mirrored with its row). Returns a :class:`Batch`.
    """
    n_all = index.shape[0]
    rows = shard_slice(n_all, shard)
    local = index[rows]
    x = images_at(split, local, device)
    labels_all = split.expression[index.to(split.expression.device)].to(device)
    labels = labels_all[rows]
    mask = None
    if flip:
        mask_all = torch.rand(n_all, generator=generator, device=generator.device if generator else "cpu") < 0.5
        mask = mask_all[rows].to(device)
        x = torch.where(mask[:, None, None, None], x.flip(-1), x)
    x_source = None
    if partners is not None:
        x_source = images_at(split, partners(index, generator)[rows], device)
        if mask is not None:
            x_source = torch.where(mask[:, None, None, None], x_source.flip(-1), x_source)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        if x_source is not None:
            x_source = x_source.contiguous(memory_format=torch.channels_last)
    y_all = one_hot_or_neutral(labels_all, num_classes)
    y = y_all[rows] if shard is not None else y_all
    return Batch(x, y, labels, local, mask, y_all, x_source)
