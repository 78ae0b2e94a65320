"""Speed options of ``[train]`` resolved for a device, and applied to models, batches and backends.

Every ``"auto"`` choice is the fast one on CUDA and a no-op on the CPU, so CPU runs (and the exact
resume guarantee) are unchanged unless an option is set explicitly. See
:class:`facegan_kit.recipe.schema.TrainSpec` for what each option means.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import ContextManager

import torch
from torch import nn

from facegan_kit.errors import FaceganError

#: ``sync_every = 0`` (auto) on CUDA: losses are read back / checked every this many steps.
AUTO_SYNC_EVERY_CUDA = 20
#: ``resident = "auto"``: the training images may take at most this share of free device memory.
RESIDENT_SHARE = 0.25


@dataclass(frozen=True)
class SpeedPlan:
    """The resolved speed options for one device (no ``"auto"`` left)."""

    device: torch.device
    amp_dtype: torch.dtype | None = None  # autocast dtype; None = plain fp32
    channels_last: bool = False
    fused_adam: bool = False
    cudnn_benchmark: bool = False
    compile: bool = False
    sync_every: int = 1
    resident: bool = False
    #: the capture-ready step (:mod:`facegan_kit.train.graphs`); captured only on CUDA
    cuda_graphs: bool = False

    @property
    def capture(self) -> bool:
        """Whether each stage's step is captured as a CUDA graph and replayed."""
        return self.cuda_graphs and self.device.type == "cuda"

    @property
    def precision(self) -> str:
        return "fp32" if self.amp_dtype is None else "bf16"

    def autocast(self) -> ContextManager:
        """Autocast context for forward passes and losses (a null context in fp32)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def describe(self) -> dict:
        return {"device": str(self.device), "precision": self.precision, "channels_last": self.channels_last,
                "fused_adam": self.fused_adam, "cudnn_benchmark": self.cudnn_benchmark, "compile": self.compile,
                "sync_every": self.sync_every, "resident": self.resident,
                "cuda_graphs": self.cuda_graphs}


def eager_fp32(device: torch.device) -> SpeedPlan:
    """The plain baseline: fp32, eager, NCHW, for-loop Adam, a host sync every step."""
    return SpeedPlan(device=torch.device(device))


def resolve_speed(spec, device: torch.device, data_bytes: int = 0, distributed: bool = False) -> SpeedPlan:
    """Turn a :class:`TrainSpec`'s speed options into a :class:`SpeedPlan` for ``device``.

    ``data_bytes``: size of the training images, for ``resident = "auto"``; ``distributed``:
    whether several processes train together (no CUDA graphs then).
    """
    device = torch.device(device)
    cuda = device.type == "cuda"

    def tri(value: str, auto: bool) -> bool:
        return auto if value == "auto" else value == "on"

    if spec.precision == "bf16" or (spec.precision == "auto" and cuda):
        amp = torch.bfloat16
    else:
        amp = None
    sync_every = spec.sync_every or (AUTO_SYNC_EVERY_CUDA if cuda else 1)
    resident = tri(spec.resident, cuda and _fits_on_device(device, data_bytes))
    return SpeedPlan(
        device=device,
        amp_dtype=amp,
        channels_last=tri(spec.channels_last, cuda),
        fused_adam=tri(spec.fused_adam, cuda),
        cudnn_benchmark=bool(spec.cudnn_benchmark) and cuda,
        compile=bool(spec.compile),
        sync_every=int(sync_every),
        resident=resident,
        cuda_graphs=_graphs_choice(spec, cuda, resident or not cuda, distributed),
    )


def _graphs_choice(spec, cuda: bool, data_on_device: bool, distributed: bool) -> bool:
    """``cuda_graphs`` resolved: ``"auto"`` only where a captured step can work and pays off
    (CUDA); ``"on"`` where it cannot is an error naming what stands in the way."""
    value = getattr(spec, "cuda_graphs", "off")
    if value == "off" or (value == "auto" and not cuda):
        return False
    blockers = [why for bad, why in (
        (distributed, "more than one process"),
        (not data_on_device, "the dataset is not resident on the device (train.resident, or too big for auto)"),
        (bool(spec.compile), "train.compile = true"),
        (spec.on_nonfinite == "skip", 'train.on_nonfinite = "skip" (it decides on the host before each update)'),
    ) if bad]
    if not blockers:
        return True
    if value == "on":
        raise FaceganError(f'train.cuda_graphs = "on" cannot work with {"; ".join(blockers)} (use "auto" or "off")')
    return False


def _fits_on_device(device: torch.device, nbytes: int) -> bool:
    if device.type != "cuda" or not torch.cuda.is_available():
        return False
    try:
        free, _ = torch.cuda.mem_get_info(device)
    except RuntimeError:
        return False
    return nbytes <= RESIDENT_SHARE * free


def apply_backends(plan: SpeedPlan) -> None:
    """Process-wide switches (cuDNN autotuning)."""
    if plan.device.type == "cuda" and torch.cuda.is_available():
        torch.backends.cudnn.benchmark = plan.cudnn_benchmark


def apply_to_models(models: nn.ModuleDict, plan: SpeedPlan) -> nn.ModuleDict:
    """Memory format and ``torch.compile`` of every slot, in place (state_dict keys unchanged)."""
    if plan.channels_last:
        models.to(memory_format=torch.channels_last)
    if plan.compile:
        for module in models.values():
            if any(True for _ in module.parameters()):  # parameter-free slots gain nothing
                module.compile()
    return models


def prepare_images(x: torch.Tensor, plan: SpeedPlan | None) -> torch.Tensor:
    """An image batch in the memory format the models expect."""
    if plan is not None and plan.channels_last and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def with_overrides(plan: SpeedPlan, **changes) -> SpeedPlan:
    return replace(plan, **changes)
