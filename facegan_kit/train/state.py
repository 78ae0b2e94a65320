"""Everything that a checkpoint must hold to continue a run exactly."""
from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from facegan_kit import __version__
from facegan_kit.checkpoint import load_optimizer, optimizer_tensors, save_checkpoint
from facegan_kit.errors import CheckpointError
from facegan_kit.train.phases import StagePlan


@dataclass
class TrainState:
    """Models, the current stage's optimisers, counters and the noise generator."""

    models: nn.ModuleDict
    generator: torch.Generator
    stage: int = 0
    step_in_stage: int = 0
    global_step: int = 0
    opt_g: torch.optim.Optimizer | None = None
    opt_d: torch.optim.Optimizer | None = None
    extra_meta: dict[str, Any] = field(default_factory=dict)

    def make_optimizers(self, plan: StagePlan, fused: bool = False, capturable: bool = False) -> None:
        """Fresh Adam optimisers for a stage (as the official code starts each stage);
        ``capturable``: step counts on the device, so ``step()`` can be captured in a CUDA graph."""
        spec = plan.spec
        kw: dict[str, Any] = {"betas": tuple(spec.betas)}
        if fused:
            kw["fused"] = True
        if capturable:
            kw["capturable"] = True
        g_params = [p for s in plan.g_slots for p in self.models[s].parameters() if p.requires_grad]
        d_params = [p for s in plan.d_slots for p in self.models[s].parameters() if p.requires_grad]
        self.opt_g = torch.optim.Adam(g_params, lr=spec.lr, **kw) if g_params else None
        self.opt_d = torch.optim.Adam(d_params, lr=spec.d_lr or spec.lr, **kw) if d_params else None

    def set_learning_rates(self, plan: StagePlan) -> None:
        """Learning rates for the next step: ``lr`` falling linearly to ``lr * lr_end_factor`` at
        the stage's last step (a function of ``step_in_stage`` alone, so a resumed run continues
        the same schedule without a scheduler state in the checkpoint)."""
        spec = plan.spec
        if spec.lr_end_factor == 1.0:
            return
        frac = self.step_in_stage / max(plan.total_steps - 1, 1)
        scale = 1.0 - (1.0 - spec.lr_end_factor) * min(frac, 1.0)
        for opt, base in ((self.opt_g, spec.lr), (self.opt_d, spec.d_lr or spec.lr)):
            if opt is not None:
                for group in opt.param_groups:
                    if torch.is_tensor(group["lr"]):  # a captured step reads it from the device
                        group["lr"].fill_(base * scale)
                    else:
                        group["lr"] = base * scale

    def save(self, path: Path, recipe_raw: dict, **meta: Any) -> Path:
        tensors: dict[str, torch.Tensor] = {}
        for slot, module in self.models.items():
            for key, value in module.state_dict().items():
                tensors[f"model/{slot}/{key}"] = value
        optim_meta = {}
        for name, opt in (("g", self.opt_g), ("d", self.opt_d)):
            if opt is not None:
                t, m = optimizer_tensors(f"optim/{name}", opt)
                for group in m["param_groups"]:  # a device lr (captured steps) is stored as a number
                    if torch.is_tensor(group.get("lr")):
                        group["lr"] = float(group["lr"])
                tensors.update(t)
                optim_meta[name] = m
        tensors["rng/generator"] = self.generator.get_state()
        tensors["rng/torch_cpu"] = torch.get_rng_state()
        info = {
            "recipe": recipe_raw,
            "stage": self.stage,
            "step_in_stage": self.step_in_stage,
            "global_step": self.global_step,
            "optim": optim_meta,
            "slots": list(self.models.keys()),
            "versions": {"facegan_kit": __version__, "torch": torch.__version__,
                         "python": platform.python_version()},
            **self.extra_meta,
            **meta,
        }
        return save_checkpoint(path, tensors, info)

    def load_weights(self, tensors: dict[str, torch.Tensor], source: str) -> None:
        load_model_weights(self.models, tensors, source)

    def load_optimizers(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        for name, opt in (("g", self.opt_g), ("d", self.opt_d)):
            m = meta.get("optim", {}).get(name)
            if opt is not None and m is not None:
                load_optimizer(f"optim/{name}", opt, tensors, _as_built(opt, m))
        if "rng/generator" in tensors:
            self.generator.set_state(tensors["rng/generator"])
        if "rng/torch_cpu" in tensors:
            torch.set_rng_state(tensors["rng/torch_cpu"])


def _as_built(opt: torch.optim.Optimizer, meta: dict) -> dict:
    """Saved optimiser hyper-parameters with this run's ``capturable`` flag: a checkpoint of a
    CUDA-graph run resumes in an eager (or CPU) run and the other way round, the step counts
    landing where this run's optimiser keeps them."""
    saved = meta.get("param_groups", [])
    if len(saved) != len(opt.param_groups):
        return meta  # load_optimizer reports the mismatch
    groups = [{**g, "capturable": now.get("capturable", False)} for g, now in zip(saved, opt.param_groups)]
    return {**meta, "param_groups": groups}


def load_model_weights(models: nn.ModuleDict, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Load ``model/<slot>/<key>`` tensors strictly; a mismatch names the checkpoint and slot."""
    for slot, module in models.items():
        prefix = f"model/{slot}/"
        sd = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        if not sd and module.state_dict():
            raise CheckpointError(f"{source}: has no weights for model.{slot} (a checkpoint of another recipe?)")
        try:
            module.load_state_dict(sd, strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0][:200]
            raise CheckpointError(f"{source}: weights for model.{slot} do not fit this recipe ({first})") from None
