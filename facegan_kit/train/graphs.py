"""The capture-ready training step (``train.cuda_graphs``), captured as a CUDA graph on CUDA.

At batch 48 an eager step is bound by the host launching several hundred small kernels, not
by the GPU. :class:`GraphStep` makes one stage's whole step (gather and flip the batch, forward,
D update, G update, both optimiser steps) a fixed sequence of kernels on fixed buffers:

- the only input is a static index buffer, refilled on the device each step from a permutation
  of the resident dataset drawn on the device once per epoch (a generator seeded with
  ``hash_seed(seed, stage, epoch)``, as :func:`~facegan_kit.train.batches.batch_indices` seeds
  its CPU one, so a resumed run continues the same batches and, on the CPU, the permutation is
  the eager step's own);
- the images, labels and flip mask are gathered into static buffers inside the step, the flip
  mask and the noise drawn with the run's device generator;
- nothing in the step waits for the device: losses come back as one device vector, read back
  and checked every ``sync_every`` steps by the loop, and the learning rate lives on the device;
- optimisers are ``capturable`` (step counts on the device).

On CUDA the first :data:`WARMUP_STEPS` steps of a stage run eagerly on a side stream (cuDNN
autotuning, lazy optimiser state, cuBLAS workspaces happen outside the capture, as PyTorch's
CUDA-graph notes ask), then the step is captured once on that stream and replayed every step.
The run's generator is registered with the graph, so each replay advances its Philox offset and
draws fresh noise and flips, exactly as the eager step would. Each stage captures its own graph
(different modules train, different optimisers), dropped when the stage ends.

On the CPU there is nothing to capture: the same step runs eagerly and its losses are
bit-identical to :func:`facegan_kit.train.loop.one_step`'s.
"""
from __future__ import annotations

import contextlib
from dataclasses import replace

import torch
from torch import Tensor

from facegan_kit.errors import FaceganError
from facegan_kit.train.batches import hash_seed, make_batch, steps_per_epoch
from facegan_kit.train.phases import StagePlan, StepHooks, train_on_batch

#: Eager steps on a side stream before the capture (PyTorch's whole-network example uses 3).
WARMUP_STEPS = 3


class GraphStep:
    """One stage's capture-ready step; call it once per step, after the loop has set
    ``state.step_in_stage`` (and the learning rates), for the step's losses (on the device).

    Args:
        state: the :class:`~facegan_kit.train.state.TrainState`, its optimisers already made
            (``capturable`` on CUDA) and loaded.
        plan: the stage.
        split: the training split, its images on ``speed.device``.
        num_classes: expression classes (one-hot width).
        spec: the recipe's ``[train]`` (seed, flip).
        speed: the resolved :class:`~facegan_kit.train.speed.SpeedPlan`.
        hooks: the loop's step hooks (autocast); finite checks are always deferred here.
        source: unflipped-image source for the identity feature cache (or None).
        partners: the stage's same-person pairs (:class:`~facegan_kit.train.batches.SamePerson`),
            drawn on the device like the batch, or None.
    """

    def __init__(self, state, plan: StagePlan, split, num_classes: int, spec, speed, hooks: StepHooks,
                 source=None, warmup: int = WARMUP_STEPS, partners=None) -> None:
        self.state, self.plan, self.split, self.num_classes = state, plan, split, num_classes
        self.partners = partners
        self.seed, self.do_flip, self.source, self.warmup = spec.seed, bool(spec.flip), source, warmup
        self.device = torch.device(speed.device)
        self.channels_last = speed.channels_last
        self.capture = speed.capture
        self.hooks = replace(hooks, check_finite=False, reduce_grads=None, any_rank=None,
                             autocast=_uncached(hooks.autocast) if self.capture else hooks.autocast)
        self.n = len(split)
        self.batch = min(plan.spec.batch_size, self.n)
        self.index = torch.zeros(self.batch, dtype=torch.long, device=self.device)
        self.x = self.y = self.flip = self.x_source = None  # static batch buffers, made by the first step
        self._epoch, self._perm = None, None
        self.keys: list[str] = []
        self.graph: torch.cuda.CUDAGraph | None = None
        self.out: Tensor | None = None
        self.calls = 0
        if self.capture:
            self.stream = torch.cuda.Stream(self.device)
            for opt in (state.opt_g, state.opt_d):
                _device_lr(opt, self.device)

    # -- one step ------------------------------------------------------------------------------
    def __call__(self) -> dict[str, Tensor]:
        self._fill_index(self.state.step_in_stage)
        if not self.capture:
            flat = self._body()
        elif self.graph is None and self.calls < self.warmup:
            flat = self._on_side_stream()
        else:
            if self.graph is None:
                self._capture()
            self.graph.replay()
            flat = self.out.clone()  # the next replay overwrites the static output
        self.calls += 1
        return dict(zip(self.keys, flat.unbind(0)))

    def _fill_index(self, step: int) -> None:
        """The step's dataset indices into the static buffer, without leaving the device."""
        epoch, k = divmod(step, steps_per_epoch(self.n, self.batch))
        if epoch != self._epoch:
            gen = torch.Generator(device=self.device).manual_seed(hash_seed(self.seed, self.plan.index, epoch))
            self._perm = torch.randperm(self.n, generator=gen, device=self.device)
            self._epoch = epoch
        self.index.copy_(self._perm[k * self.batch:(k + 1) * self.batch])

    def _body(self) -> Tensor:
        """The whole step on the static buffers; the losses as one device vector."""
        batch = make_batch(self.split, self.index, self.device, self.num_classes, self.do_flip,
                           self.state.generator, channels_last=self.channels_last, partners=self.partners)
        if self.x is None:
            self.x, self.y = torch.empty_like(batch.x), torch.empty_like(batch.y)
            self.flip = None if batch.flip is None else torch.empty_like(batch.flip)
            self.x_source = None if batch.x_source is None else torch.empty_like(batch.x_source)
        self.x.copy_(batch.x)
        self.y.copy_(batch.y)
        if self.flip is not None:
            self.flip.copy_(batch.flip)
        if self.x_source is not None:
            self.x_source.copy_(batch.x_source)
        static = type(batch)(self.x, self.y, batch[2], self.index, self.flip, x_source=self.x_source)
        parts = train_on_batch(self.state, self.plan, static, "stop", self.hooks, source=self.source)
        self.keys = list(parts)
        return torch.stack([v.detach().float().reshape(()) for v in parts.values()])

    # -- CUDA ----------------------------------------------------------------------------------
    def _on_side_stream(self) -> Tensor:
        current = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(current)
        with torch.cuda.stream(self.stream):
            flat = self._body()
        current.wait_stream(self.stream)
        return flat.clone()  # made on the current stream: safe to hand to the loop

    def _capture(self) -> None:
        """Capture the step (nothing runs yet). A failed capture is an error, not a quiet
        fallback: it can leave the generators in capture mode, and eager steps after it would
        repeat their noise."""
        for _, term in self.plan.terms.values():  # the cache lookup must not wait for the host
            if callable(getattr(term, "fill_cache", None)) and self.source is not None:
                term.fill_cache(self.source, self.index.device)
        torch.cuda.synchronize(self.device)
        graph = torch.cuda.CUDAGraph()
        graph.register_generator_state(self.state.generator)
        try:
            with torch.cuda.graph(graph, stream=self.stream):
                self.out = self._body()
        except RuntimeError as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise FaceganError(f"stage {self.plan.spec.name}: capturing the training step as a CUDA graph failed "
                               f'({first}); train.cuda_graphs = "off" trains without graphs') from exc
        self.graph = graph


def _device_lr(opt: torch.optim.Optimizer | None, device: torch.device) -> None:
    """A captured ``step()`` bakes a Python-number learning rate into the graph; a 0-d device
    tensor (updated in place by ``TrainState.set_learning_rates``) keeps the schedule live."""
    if opt is None:
        return
    for group in opt.param_groups:
        if not torch.is_tensor(group["lr"]):
            group["lr"] = torch.tensor(float(group["lr"]), dtype=torch.float32, device=device)


def _uncached(autocast):
    """Autocast without its weight-cast cache: cached casts made during a capture would outlive
    it (PyTorch requires ``cache_enabled=False`` for graphed callables)."""

    def factory():
        ctx = autocast()
        if isinstance(ctx, torch.autocast):
            return torch.autocast(device_type=ctx.device, dtype=ctx.fast_dtype, cache_enabled=False)
        return ctx if ctx is not None else contextlib.nullcontext()

    return factory
