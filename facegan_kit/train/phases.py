"""The named phases of one training step: forward, D step, G step.

A stage (see :class:`facegan_kit.recipe.StageSpec`) decides which modules train and which loss
terms count with which weights; the phases below only follow that plan.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, ContextManager, Iterable

import torch
from torch import Tensor, nn

from facegan_kit.errors import NonFiniteLossError
from facegan_kit.interfaces import check_shape, decode
from facegan_kit.recipe.schema import D_SLOTS, StageSpec
from facegan_kit.train.batches import shard_slice
from facegan_kit.train.context import StepContext


@dataclass
class StepHooks:
    """How the phases run on this device / in this process group (defaults: plain, one process).

    Attributes:
        autocast: context factory wrapped around forwards and losses (mixed precision).
        check_finite: check the losses before each update; False when the caller checks them
            later in bulk (``train.sync_every``), so the step never waits for the device.
        reduce_grads: called with an optimiser's parameters after its backward (distributed
            gradient averaging).
        any_rank: combines a per-process flag over all processes (skip/stop decisions must agree).
    """

    autocast: Callable[[], ContextManager] = field(default=contextlib.nullcontext)
    check_finite: bool = True
    reduce_grads: Callable[[Iterable[nn.Parameter]], None] | None = None
    any_rank: Callable[[bool], bool] | None = None


PLAIN = StepHooks()

#: Logged every step that encodes images: the identity codes' spread over the batch (mean over
#: code dimensions of the standard deviation over the batch; with several processes, over each
#: process's rows, averaged).
SPREAD_KEY = "diag/g_spread"


@dataclass
class StagePlan:
    """A stage resolved against the built modules and loss terms."""

    index: int
    spec: StageSpec
    total_steps: int
    g_slots: list[str]
    d_slots: list[str]
    terms: dict[str, tuple[float, object]]  # name -> (weight, term) with weight > 0

    @property
    def has_d_step(self) -> bool:
        return bool(self.d_slots) and any(hasattr(t, "d_loss") for _, t in self.terms.values())


def plan_stage(index: int, spec: StageSpec, total_steps: int, losses: dict) -> StagePlan:
    terms = {n: (float(w), losses[n]) for n, w in spec.losses.items() if w > 0}
    return StagePlan(
        index=index, spec=spec, total_steps=total_steps,
        g_slots=[s for s in spec.train if s not in D_SLOTS],
        d_slots=[s for s in spec.train if s in D_SLOTS],
        terms=terms,
    )


def prepare_terms(plan: StagePlan) -> list[str]:
    """Call ``prepare()`` on the stage's loss terms that have one (e.g. the identity loss builds
    its backbone), before the stage's first step; returns the names of the terms prepared."""
    done = []
    for name, (_, term) in plan.terms.items():
        prepare = getattr(term, "prepare", None)
        if callable(prepare):
            prepare()
            done.append(name)
    return done


def prior(n: int, z_dim: int, device: torch.device, generator: torch.Generator) -> Tensor:
    """The identity prior U(-1,1)^Z (paper: "the random noise z is uniformly distributed")."""
    return torch.rand(n, z_dim, device=device, generator=generator) * 2 - 1


def forward_phase(models: nn.ModuleDict, plan: StagePlan, x: Tensor, y: Tensor,
                  generator: torch.Generator, *, shard: tuple[int, int] | None = None,
                  y_all: Tensor | None = None, batch=None, source=None,
                  hooks: StepHooks | None = None) -> StepContext:
    """Draw the expression code, get the identity code (encoder or noise), decode.

    With ``shard = (rank, world_size)``, ``x``/``y`` are this process's slice of a global batch
    whose labels are ``y_all``: the noise is drawn for the global batch and sliced, so every
    process consumes the same generator stream. ``batch`` (a :class:`~facegan_kit.train.batches.Batch`)
    and ``source`` (``index -> unflipped images``) let loss terms cache per-image results: they
    become ``ctx.sample_index``, ``ctx.sample_flip`` and ``ctx.sample_source``. When ``batch``
    carries ``x_source`` (another photo of each row's person), the encoder reads it and ``x``
    stays the target every loss term compares with.
    """
    hooks = hooks or PLAIN
    dec = models["decoder"]
    n_all = x.shape[0] if shard is None else int(y_all.shape[0])
    rows = shard_slice(n_all, shard)
    n = x.shape[0]
    with hooks.autocast():
        if shard is None:
            c = models["controller"](y, generator=generator)
        else:
            c = models["controller"](y_all, generator=generator)[rows]
        check_shape("model.controller", c, (n, getattr(dec, "code_dim", None)))
        z_prior = prior(n_all, dec.z_dim, x.device, generator)[rows]
        from_encoder = plan.spec.identity == "encoder"
        x_in = None
        if from_encoder:
            x_in = x if getattr(batch, "x_source", None) is None else batch.x_source
            g = check_shape("model.encoder", models["encoder"](x_in), (n, dec.z_dim))
        else:
            g = prior(n_all, dec.z_dim, x.device, generator)[rows]
        x_hat = check_shape("model.decoder", decode(dec, g, c, x_in), tuple(x.shape))
    ctx = StepContext(models=dict(models.items()), x=x, y=y, g=g, g_from_encoder=from_encoder, x_in=x_in,
                      c=c, x_hat=x_hat, z_prior=z_prior, stage=plan.spec.name,
                      sample_index=getattr(batch, "index", None), sample_flip=getattr(batch, "flip", None),
                      sample_source=source)
    return ctx


def _weighted(ctx: StepContext, plan: StagePlan, side: str) -> tuple[Tensor, dict[str, Tensor]]:
    parts: dict[str, Tensor] = {}
    total = None
    for name, (weight, term) in plan.terms.items():
        fn = getattr(term, f"{side}_loss", None)
        if fn is None:
            continue
        value = fn(ctx)
        parts[f"{side}/{name}"] = value.detach()
        total = value * weight if total is None else total + value * weight
    return total, parts


def check_finite(parts: dict[str, Tensor]) -> str | None:
    """Name of the first non-finite loss term, or None (one host sync for all terms)."""
    if not parts:
        return None
    stacked = torch.stack([v.float() for v in parts.values()])
    if bool(torch.isfinite(stacked).all()):
        return None
    for name, v in parts.items():
        if not bool(torch.isfinite(v)):
            return name
    return None


def d_step(ctx: StepContext, plan: StagePlan, opt: torch.optim.Optimizer | None, step: int,
           on_nonfinite: str = "stop", hooks: StepHooks | None = None) -> dict[str, Tensor]:
    """Update the discriminator-side modules (D_img with its Q head, D_z)."""
    if opt is None or not plan.has_d_step:
        return {}
    return _update(ctx, plan, opt, step, on_nonfinite, hooks or PLAIN, "d")


def g_step(ctx: StepContext, plan: StagePlan, opt: torch.optim.Optimizer, step: int,
           on_nonfinite: str = "stop", hooks: StepHooks | None = None) -> dict[str, Tensor]:
    """Update the generator-side modules (encoder, decoder, controller if it learns)."""
    return _update(ctx, plan, opt, step, on_nonfinite, hooks or PLAIN, "g")


def _update(ctx: StepContext, plan: StagePlan, opt: torch.optim.Optimizer, step: int, on_nonfinite: str,
            hooks: StepHooks, side: str) -> dict[str, Tensor]:
    ctx.new_phase()
    opt.zero_grad(set_to_none=True)
    with hooks.autocast():
        total, parts = _weighted(ctx, plan, side)
    if total is None:
        return parts
    if hooks.check_finite and _bad(parts, step, on_nonfinite, hooks.any_rank):
        return {**parts, f"skipped/{side}": torch.ones((), device=total.device)}
    total.backward()
    if hooks.reduce_grads is not None:
        hooks.reduce_grads([p for group in opt.param_groups for p in group["params"]])
    opt.step()
    return parts


def _bad(parts: dict[str, Tensor], step: int, on_nonfinite: str,
         any_rank: Callable[[bool], bool] | None = None) -> bool:
    name = check_finite(parts)
    if any_rank is not None and any_rank(name is not None) and name is None:
        name = "(in another process)"
    if name is None:
        return False
    if on_nonfinite == "skip":
        return True
    raise NonFiniteLossError(
        f"loss '{name}' became non-finite at step {step}; the last checkpoint is intact "
        "(lower the learning rate, or set train.on_nonfinite = \"skip\")"
    )


def train_on_batch(state, plan: StagePlan, batch, on_nonfinite: str = "stop", hooks: StepHooks | None = None, *,
                   shard: tuple[int, int] | None = None, source=None) -> dict[str, Tensor]:
    """Forward, D update, G update of ``state`` (a :class:`~facegan_kit.train.state.TrainState`)
    on one :class:`~facegan_kit.train.batches.Batch`; returns the losses, still on the device."""
    ctx = forward_phase(state.models, plan, batch.x, batch.y, state.generator, shard=shard, y_all=batch.y_all,
                        batch=batch, source=source, hooks=hooks)
    parts = d_step(ctx, plan, state.opt_d, state.global_step, on_nonfinite, hooks)
    if state.opt_g is not None:
        parts.update(g_step(ctx, plan, state.opt_g, state.global_step, on_nonfinite, hooks))
    if ctx.g_from_encoder and ctx.g.shape[0] > 1:  # read back with the losses (collapse warning)
        parts[SPREAD_KEY] = ctx.g.detach().float().std(0).mean()
    return parts
