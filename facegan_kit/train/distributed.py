"""Data-parallel training over several processes (``torchrun``): NCCL on GPUs, gloo on CPUs.

``torchrun --nproc_per_node N --no-python facegan train RECIPE`` starts N processes; each one
calls :func:`init_distributed`, which joins the process group when ``WORLD_SIZE`` > 1. The
training loop then:

- computes the same global batch indices (``batch_indices``) on every process and gathers only
  this process's contiguous slice (``stages.batch_size`` is the GLOBAL batch; it must be a
  multiple of the number of processes);
- draws the training noise (flip mask, expression code, identity prior) for the whole global
  batch from one generator seeded identically everywhere and keeps its slice, so every process
  gets different noise and the run is the same function of (recipe, seed) for any number of
  processes, up to float summation order and, without ``sync_batchnorm``, BatchNorm statistics
  taken over each slice; the default torch RNG (used by plugins, e.g. dropout) is seeded per rank;
- averages each optimiser's gradients over the processes before its step
  (:meth:`DistContext.reduce_grads`; see there why not ``DistributedDataParallel``'s hooks);
- logs, samples and writes checkpoints on rank 0 only (logged losses are global-batch means).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterable

import torch
import torch.distributed as dist
from torch import Tensor, nn

from facegan_kit.errors import FaceganError

#: Gradients are all-reduced in flat buckets of about this many bytes.
BUCKET_BYTES = 32 * 2**20


def env_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


@dataclass
class DistContext:
    """Where this process stands in a (possibly one-process) data-parallel run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    owns_group: bool = False
    _closed: bool = field(default=False, repr=False)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def shard(self) -> tuple[int, int] | None:
        """``(rank, world_size)`` for :func:`~facegan_kit.train.batches.make_batch`; None alone."""
        return (self.rank, self.world_size) if self.enabled else None

    # -- collectives (all no-ops in a single process) -------------------------------------------
    def reduce_grads(self, params: Iterable[nn.Parameter]) -> None:
        """Average the gradients of ``params`` over all processes, in place.

        Why not ``DistributedDataParallel``: a GAN step has two optimisers over overlapping
        graphs. The D modules run inside the G step (``adv_img``, ``q`` read ``D_img(x_hat)``),
        ``D_img`` runs twice per D step (real and fake), loss terms call module methods other
        than ``forward`` (``q.loss``, ``controller.target``), and a stage may forward modules it
        does not train (D_img in stage 2). DDP's autograd hooks would all-reduce whatever a
        backward produces for a wrapped module (D gradients of the G loss: wasted traffic),
        need ``no_sync`` around every cross use and ``find_unused_parameters`` for plugins with
        unused weights, and miss parameters used outside ``forward``. Reducing exactly the
        parameters an optimiser is about to update, right after its backward, is
        gradient-correct for any composition of modules and loss terms, whatever plugins do.
        The price is no overlap of communication with the backward pass (a few tens of MB of
        gradients per step for ExprGAN, in flat buckets).

        Every process has the same graph, so the same parameters have gradients everywhere.
        """
        if not self.enabled:
            return
        grads = [p.grad for p in params if p.grad is not None]
        for bucket in _buckets(grads, BUCKET_BYTES):
            self._average_in_place(bucket)

    def any(self, flag: bool | Tensor) -> bool:
        """True when ``flag`` holds on any process (one all-reduce)."""
        if not self.enabled:
            return bool(flag)
        t = torch.as_tensor(flag, dtype=torch.float32, device=self.collective_device).reshape(1).clone()
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def reduce_flat(self, values: Tensor, flags: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Mean of ``values`` and max of ``flags`` over the processes (one all-reduce)."""
        if not self.enabled:
            return values, flags
        v = values.float().reshape(-1).to(self.collective_device)
        f = None if flags is None else flags.float().reshape(-1).to(self.collective_device)
        # max(flag) = any(flag): send flags as 0/1 and compare the sum with 0
        packed = torch.cat([v / self.world_size] + ([] if f is None else [f]))
        dist.all_reduce(packed)
        out_v = packed[: v.numel()].view_as(values).to(values.device)
        out_f = None if f is None else (packed[v.numel():] > 0).view_as(flags).to(flags.device)
        return out_v, out_f

    def broadcast_models(self, models: nn.Module) -> None:
        """Make every process start from rank 0's weights and buffers."""
        if not self.enabled:
            return
        with torch.no_grad():
            for t in list(models.parameters()) + list(models.buffers()):
                tmp = t.detach().contiguous().to(self.collective_device)
                dist.broadcast(tmp, src=0)
                if tmp.data_ptr() != t.data_ptr():
                    t.copy_(tmp)

    def average_buffers(self, models: nn.Module) -> None:
        """Average the running statistics of (unsynchronised) BatchNorm layers over the processes,
        so that what rank 0 saves reflects every slice; training-mode forwards do not read them.
        Synchronised layers already agree everywhere."""
        if not self.enabled:
            return
        bufs = [b for m in models.modules()
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, (nn.SyncBatchNorm, GlooSyncBatchNorm))
                for b in (m.running_mean, m.running_var) if b is not None]
        if not bufs:
            return
        with torch.no_grad():
            self._average_in_place(bufs, device=self.collective_device)

    def _average_in_place(self, tensors: list[Tensor], device: torch.device | None = None) -> None:
        """Replace each tensor by its mean over the processes (one all-reduce of a flat copy,
        made in float32 on ``device`` when given)."""
        parts = [t.reshape(-1) if device is None else t.reshape(-1).float().to(device) for t in tensors]
        flat = torch.cat(parts).div_(self.world_size)
        dist.all_reduce(flat)
        offset = 0
        for t in tensors:
            n = t.numel()
            t.copy_(flat[offset:offset + n].view_as(t))
            offset += n

    def barrier(self) -> None:
        if self.enabled and dist.is_initialized():
            if self.backend == "nccl":
                dist.barrier(device_ids=[self.local_rank])
            else:
                dist.barrier()

    @property
    def collective_device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")

    def close(self, barrier: bool = True) -> None:
        """Leave the process group (clean shutdown); only a group this module created.
        ``barrier``: wait for the other processes first (skipped after an error, which would
        otherwise wait for processes that may be gone)."""
        if self.owns_group and not self._closed and dist.is_initialized():
            try:
                if barrier:
                    self.barrier()
            finally:
                dist.destroy_process_group()
        self._closed = True


def _buckets(tensors: list[Tensor], limit: int) -> list[list[Tensor]]:
    """Group by (device, dtype), then in order into buckets of about ``limit`` bytes."""
    groups: dict[tuple, list[Tensor]] = {}
    for t in tensors:
        groups.setdefault((t.device, t.dtype), []).append(t)
    out: list[list[Tensor]] = []
    for group in groups.values():
        cur: list[Tensor] = []
        size = 0
        for t in group:
            cur.append(t)
            size += t.numel() * t.element_size()
            if size >= limit:
                out.append(cur)
                cur, size = [], 0
        if cur:
            out.append(cur)
    return out


def init_distributed(device: torch.device) -> tuple[DistContext, torch.device]:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE`` > 1), else a no-op.

    ``device`` is the resolved training device: CUDA uses NCCL and ``cuda:LOCAL_RANK``, the CPU
    uses gloo. Returns the context and the device this process trains on.
    """
    world = env_world_size()
    if world <= 1:
        return DistContext(), device
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise FaceganError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPUs are visible "
                               "(use --nproc_per_node <= the number of GPUs)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    owns = False
    if not dist.is_initialized():
        kwargs = {"device_id": device} if backend == "nccl" else {}
        dist.init_process_group(backend=backend, **kwargs)
        owns = True
    else:
        backend = dist.get_backend()
        world, rank = dist.get_world_size(), dist.get_rank()
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, backend=backend, owns_group=owns), device


# -- synchronised BatchNorm ---------------------------------------------------------------------
class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over processes: the gradient of a sum is the sum of the gradients."""

    @staticmethod
    def forward(ctx, t: Tensor) -> Tensor:
        t = t.clone()
        dist.all_reduce(t)
        return t

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlooSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are taken over every process's slice, for the CPU
    (``torch.nn.SyncBatchNorm`` only runs on GPUs). Sums and sums of squares are all-reduced with
    a differentiable all-reduce, so the backward pass is the global-batch one. Same parameters and buffers (and state_dict keys) as BatchNorm."""

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input, got {x.dim()}D")

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        c = x.shape[1]
        dims = [0] + list(range(2, x.dim()))
        xf = x.float()
        local_n = x.numel() // c
        packed = torch.cat([xf.sum(dims), (xf * xf).sum(dims),
                            torch.full((1,), float(local_n), device=x.device)])
        packed = _AllReduceSum.apply(packed)
        total = packed[-1]
        mean = packed[:c] / total
        var = (packed[c:2 * c] / total - mean * mean).clamp_min(0)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                n = float(total)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * (n / max(n - 1, 1)), alpha=m)
        shape = [1, c] + [1] * (x.dim() - 2)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Replace every BatchNorm layer by a synchronised one (torch's on GPUs, ours on the CPU)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert_gloo(module)


def _convert_gloo(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(
            module, (GlooSyncBatchNorm, nn.SyncBatchNorm)):
        out = GlooSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                module.track_running_stats)
        if module.affine:
            with torch.no_grad():
                out.weight = module.weight
                out.bias = module.bias
        out.running_mean = module.running_mean
        out.running_var = module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
    for name, child in module.named_children():
        new = _convert_gloo(child)
        if new is not child:
            out.add_module(name, new)
    return out
