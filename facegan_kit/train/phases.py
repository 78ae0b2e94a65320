"""The named phases of one training step: forward, D step, G step.

A stage (see :class:`facegan_kit.recipe.StageSpec`) decides which modules train and which loss
terms count with which weights; the phases below only follow that plan.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from facegan_kit.errors import NonFiniteLossError
from facegan_kit.recipe.schema import D_SLOTS, StageSpec
from facegan_kit.train.context import StepContext


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


def prior(n: int, z_dim: int, device: torch.device, generator: torch.Generator) -> Tensor:
    """The identity prior U(-1,1)^Z (paper: "the random noise z is uniformly distributed")."""
    return torch.rand(n, z_dim, device=device, generator=generator) * 2 - 1


def forward_phase(models: nn.ModuleDict, plan: StagePlan, x: Tensor, y: Tensor,
                  generator: torch.Generator) -> StepContext:
    """Draw the expression code, get the identity code (encoder or noise), decode."""
    dec = models["decoder"]
    c = models["controller"](y, generator=generator)
    z_prior = prior(x.shape[0], dec.z_dim, x.device, generator)
    from_encoder = plan.spec.identity == "encoder"
    g = models["encoder"](x) if from_encoder else prior(x.shape[0], dec.z_dim, x.device, generator)
    x_hat = dec(g, c)
    return StepContext(models=dict(models.items()), x=x, y=y, g=g, g_from_encoder=from_encoder,
                       c=c, x_hat=x_hat, z_prior=z_prior, stage=plan.spec.name)


def _weighted(ctx: StepContext, plan: StagePlan, side: str, step: int) -> tuple[Tensor, dict[str, Tensor]]:
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


def check_finite(parts: dict[str, Tensor], step: int) -> str | None:
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
           on_nonfinite: str = "stop") -> dict[str, Tensor]:
    """Update the discriminator-side modules (D_img with its Q head, D_z)."""
    if opt is None or not plan.has_d_step:
        return {}
    ctx.new_phase()
    opt.zero_grad(set_to_none=True)
    total, parts = _weighted(ctx, plan, "d", step)
    if total is None:
        return parts
    if _bad(parts, step, on_nonfinite):
        return {**parts, "skipped/d": torch.tensor(1.0)}
    total.backward()
    opt.step()
    return parts


def g_step(ctx: StepContext, plan: StagePlan, opt: torch.optim.Optimizer, step: int,
           on_nonfinite: str = "stop") -> dict[str, Tensor]:
    """Update the generator-side modules (encoder, decoder, controller if it learns)."""
    ctx.new_phase()
    opt.zero_grad(set_to_none=True)
    total, parts = _weighted(ctx, plan, "g", step)
    if total is None:
        return parts
    if _bad(parts, step, on_nonfinite):
        return {**parts, "skipped/g": torch.tensor(1.0)}
    total.backward()
    opt.step()
    return parts


def _bad(parts: dict[str, Tensor], step: int, on_nonfinite: str) -> bool:
    name = check_finite(parts, step)
    if name is None:
        return False
    if on_nonfinite == "skip":
        return True
    raise NonFiniteLossError(
        f"loss '{name}' became non-finite at step {step}; the last checkpoint is intact "
        "(lower the learning rate, or set train.on_nonfinite = \"skip\")"
    )
