"""The training loop: stages of named phases, checkpoints, logs, sample grids.

Usage from Python::

    from facegan_kit.train import train
    result = train("recipes/exprgan-quick.toml", out="runs/quick", overrides=["train.seed=1"])
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from facegan_kit.checkpoint import checkpoint_name, load_checkpoint, prune_checkpoints
from facegan_kit.errors import CheckpointError, FaceganError
from facegan_kit.pm import default_registry
from facegan_kit.recipe import build_dataset, build_losses, build_model, load_recipe, validate
from facegan_kit.recipe.schema import Recipe
from facegan_kit.train.batches import batch_indices, make_batch, stage_steps
from facegan_kit.train.phases import StagePlan, d_step, forward_phase, g_step, plan_stage
from facegan_kit.train.report import JsonlLog, plot_losses, sample_grid
from facegan_kit.train.state import TrainState


@dataclass
class TrainResult:
    out: Path
    checkpoint: Path
    global_step: int
    finished: bool
    seconds: float
    images_per_second: dict[str, float]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FaceganError(f"device '{name}' requested but CUDA is not available (use --device cpu)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise FaceganError(f"device '{name}': not a torch device (expected cpu, cuda or cuda:N)") from None


def prepare_recipe(recipe: str | Path | dict | Recipe, overrides=()) -> Recipe:
    if isinstance(recipe, Recipe):
        return recipe
    raw = recipe if isinstance(recipe, dict) else load_recipe(recipe, overrides)
    return validate(raw, default_registry())


def train(recipe: str | Path | dict | Recipe, out: str | Path, *, overrides=(), device: str | None = None,
          max_steps: int | None = None, resume: str | Path | None = None, progress: bool = True) -> TrainResult:
    """Run (or resume) every stage of a recipe; returns where the final checkpoint is."""
    registry = default_registry()
    recipe_obj = prepare_recipe(recipe, overrides)
    r_tensors, r_meta = (None, None) if resume is None else load_checkpoint(resume)
    if r_meta is not None and validate(r_meta["recipe"], registry).model != recipe_obj.model:
        raise CheckpointError(f"{resume}: checkpoint was trained with a different [model] than this recipe")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    spec = recipe_obj.train
    if spec.num_threads:
        torch.set_num_threads(spec.num_threads)
    dev = resolve_device(device or spec.device)
    torch.manual_seed(spec.seed)
    models = build_model(recipe_obj, registry).to(dev)
    losses = build_losses(recipe_obj, registry)
    for term in losses.values():
        if isinstance(term, torch.nn.Module):
            term.to(dev)
    data = build_dataset(recipe_obj, registry)
    split = data.train
    gen = torch.Generator(device=dev).manual_seed(spec.seed)
    state = TrainState(models=models, generator=gen)
    plans = [plan_stage(i, s, stage_steps(len(split), s.batch_size, s.epochs, s.steps), losses)
             for i, s in enumerate(recipe_obj.stages)]
    (out / "recipe.json").write_text(json.dumps(recipe_obj.raw, indent=2))
    if r_meta is not None:
        state.load_weights(r_tensors, str(resume))
        state.stage, state.step_in_stage, state.global_step = r_meta["stage"], r_meta["step_in_stage"], r_meta["global_step"]
        if state.stage < len(plans):
            state.make_optimizers(plans[state.stage])
            state.load_optimizers(r_tensors, r_meta)
    log = JsonlLog(out / "log.jsonl", resume_step=state.global_step if r_meta is not None else None)
    ckpt_dir = out / "checkpoints"
    preview = _preview_batch(data, dev)
    total_steps = sum(p.total_steps for p in plans)
    budget = max_steps if max_steps is not None else None
    done_now = 0
    t_start = time.perf_counter()
    speeds: dict[str, float] = {}
    last_ckpt = None
    stopped_early = False
    while state.stage < len(plans):
        plan = plans[state.stage]
        if state.opt_g is None and state.opt_d is None:
            state.make_optimizers(plan)
        models.train()
        bar = tqdm(total=plan.total_steps, initial=state.step_in_stage, disable=not progress, file=sys.stderr,
                   desc=f"stage {plan.index + 1}/{len(plans)} {plan.spec.name}", unit="step", dynamic_ncols=True)
        t0, n0 = time.perf_counter(), 0
        while state.step_in_stage < plan.total_steps:
            if budget is not None and done_now >= budget:
                stopped_early = True
                break
            parts = _one_step(state, plan, split, data.num_classes, spec, dev)
            state.step_in_stage += 1
            state.global_step += 1
            done_now += 1
            n0 += plan.spec.batch_size
            bar.update(1)
            if state.global_step % spec.log_every == 0 or state.step_in_stage == plan.total_steps:
                record = {"step": state.global_step, "stage": plan.spec.name, **{k: float(v) for k, v in parts.items()}}
                log.write(record)
                bar.set_postfix({k.split("/", 1)[1] if k.startswith("g/") else k: f"{v:.3g}"
                                 for k, v in record.items() if "/" in k}, refresh=False)
            if spec.sample_every and state.global_step % spec.sample_every == 0:
                sample_grid(models, *preview, plan.spec.identity, out / "samples" / f"step-{state.global_step:08d}.png")
            if spec.checkpoint_every and state.global_step % spec.checkpoint_every == 0:
                last_ckpt = _checkpoint(state, recipe_obj, ckpt_dir, spec.keep_checkpoints)
        bar.close()
        elapsed = time.perf_counter() - t0
        if n0:
            speeds[plan.spec.name] = n0 / max(elapsed, 1e-9)
        if stopped_early:
            break
        sample_grid(models, *preview, plan.spec.identity, out / "samples" / f"stage-{plan.index + 1}-{plan.spec.name}.png")
        state.stage += 1
        state.step_in_stage = 0
        state.opt_g = state.opt_d = None
        last_ckpt = _checkpoint(state, recipe_obj, ckpt_dir, spec.keep_checkpoints)
    finished = state.stage >= len(plans)
    if last_ckpt is None or (not finished and last_ckpt.name != checkpoint_name(state.global_step)):
        last_ckpt = _checkpoint(state, recipe_obj, ckpt_dir, spec.keep_checkpoints)
    final = out / "final.safetensors"
    if finished:
        state.save(final, recipe_obj.raw, finished=True)
    plot_losses(out / "log.jsonl", out / "losses.png")
    return TrainResult(out=out, checkpoint=final if finished else last_ckpt, global_step=state.global_step,
                       finished=finished, seconds=time.perf_counter() - t_start, images_per_second=speeds)


def _one_step(state: TrainState, plan: StagePlan, split, num_classes: int, spec, dev) -> dict[str, Any]:
    idx = batch_indices(len(split), plan.spec.batch_size, spec.seed, plan.index, state.step_in_stage)
    x, y, _ = make_batch(split, idx, dev, num_classes, spec.flip, state.generator)
    ctx = forward_phase(state.models, plan, x, y, state.generator)
    parts = d_step(ctx, plan, state.opt_d, state.global_step, spec.on_nonfinite)
    if state.opt_g is not None:
        parts.update(g_step(ctx, plan, state.opt_g, state.global_step, spec.on_nonfinite))
    return parts


def _checkpoint(state: TrainState, recipe: Recipe, folder: Path, keep: int) -> Path:
    path = state.save(folder / checkpoint_name(state.global_step), recipe.raw, finished=False)
    prune_checkpoints(folder, keep)
    return path


def _preview_batch(data, dev) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to 6 test faces (one per class where possible) shown in every sample grid."""
    split = data.test if len(data.test) else data.train
    picks = []
    for k in range(data.num_classes):
        hit = (split.expression == k).nonzero().flatten()
        if len(hit):
            picks.append(int(hit[0]))
    idx = torch.tensor(picks[:6] or [0])
    x, y, _ = make_batch(split, idx, dev, data.num_classes, False, None)
    return x, y
