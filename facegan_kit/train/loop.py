"""The training loop: stages of named phases, checkpoints, logs, sample grids.

Usage from Python::

    from facegan_kit.train import train
    result = train("recipes/exprgan-quick.toml", out="runs/quick", overrides=["train.seed=1"])
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from facegan_kit.checkpoint import atomic_write_bytes, checkpoint_name, load_checkpoint, prune_checkpoints
from facegan_kit.data.base import FaceSplit
from facegan_kit.errors import CheckpointError, FaceganError, NonFiniteLossError
from facegan_kit.pm import default_registry
from facegan_kit.recipe import build_dataset, build_losses, build_model, load_recipe, validate
from facegan_kit.recipe.schema import Recipe
from facegan_kit.train.batches import ImageSource, batch_indices, hash_seed, make_batch, stage_steps
from facegan_kit.train.distributed import DistContext, convert_sync_batchnorm, init_distributed
from facegan_kit.train.graphs import GraphStep
from facegan_kit.train.phases import SPREAD_KEY, StagePlan, StepHooks, plan_stage, prepare_terms, train_on_batch
from facegan_kit.train.rundir import archive_previous_run
from facegan_kit.train.speed import apply_backends, apply_to_models, resolve_speed
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
    """Run (or resume) every stage of a recipe; returns where the final checkpoint is.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) every process calls this; they train one model
    data-parallel (see :mod:`facegan_kit.train.distributed`) and rank 0 writes the outputs.
    """
    recipe_obj = prepare_recipe(recipe, overrides)
    dev = resolve_device(device or recipe_obj.train.device)
    dctx, dev = init_distributed(dev)
    ok = False
    try:
        result = _train(recipe_obj, Path(out), dev, dctx, max_steps=max_steps, resume=resume, progress=progress)
        ok = True
        return result
    finally:
        dctx.close(barrier=ok)


def _train(recipe_obj: Recipe, out: Path, dev: torch.device, dctx: DistContext, *, max_steps: int | None,
           resume: str | Path | None, progress: bool) -> TrainResult:
    registry = default_registry()
    main = dctx.is_main
    r_tensors, r_meta = (None, None) if resume is None else load_checkpoint(resume)
    if r_meta is not None and validate(r_meta["recipe"], registry).model != recipe_obj.model:
        raise CheckpointError(f"{resume}: checkpoint was trained with a different [model] than this recipe")
    if main:
        out.mkdir(parents=True, exist_ok=True)
        moved = archive_previous_run(out) if resume is None else None
        if moved is not None:
            print(f"note: {out} held an earlier run; moved it to {moved} (to continue that run instead: "
                  f"--resume {moved}/checkpoints --out {moved})", file=sys.stderr)
    spec = recipe_obj.train
    if spec.num_threads:
        torch.set_num_threads(spec.num_threads)
    torch.manual_seed(spec.seed)
    models = build_model(recipe_obj, registry).to(dev)
    losses = build_losses(recipe_obj, registry, dev)
    data = build_dataset(recipe_obj, registry)
    split = data.train
    if dctx.enabled:
        for i, s in enumerate(recipe_obj.stages):
            global_batch = min(s.batch_size, len(split))
            if global_batch % dctx.world_size:
                raise FaceganError(f"stages[{i}].batch_size: the global batch {global_batch} is not a multiple of "
                                   f"the {dctx.world_size} processes (batch_size is the global batch)")
        if spec.sync_batchnorm:
            for slot in list(models.keys()):
                models[slot] = convert_sync_batchnorm(models[slot], dev)
    speed = resolve_speed(spec, dev, split.images.numel() * split.images.element_size(), distributed=dctx.enabled)
    apply_backends(speed)
    apply_to_models(models, speed)
    if speed.resident:
        split = FaceSplit(split.images.to(dev), split.expression.to(dev), split.subject, split.extra)

    source = ImageSource(split, dev, speed.channels_last)  # real images for per-image caches
    gen = torch.Generator(device=dev).manual_seed(spec.seed)
    state = TrainState(models=models, generator=gen)
    if dctx.enabled:
        state.extra_meta["world_size"] = dctx.world_size
    plans = [plan_stage(i, s, stage_steps(len(split), s.batch_size, s.epochs, s.steps), losses)
             for i, s in enumerate(recipe_obj.stages)]
    run_info = {"device": str(dev), "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
                "torch": torch.__version__, "world_size": dctx.world_size if dctx.enabled else 1,
                "speed": speed.describe()}
    if main:
        (out / "recipe.json").write_text(json.dumps(recipe_obj.raw, indent=2))
        _write_json(out / "run.json", run_info)
    if r_meta is not None:
        state.load_weights(r_tensors, str(resume))
        state.stage, state.step_in_stage, state.global_step = r_meta["stage"], r_meta["step_in_stage"], r_meta["global_step"]
        if state.stage < len(plans):
            state.make_optimizers(plans[state.stage], fused=speed.fused_adam, capturable=speed.capture)
            state.load_optimizers(r_tensors, r_meta)
    if dctx.enabled:
        dctx.broadcast_models(models)
        torch.manual_seed(hash_seed(spec.seed, dctx.rank, state.global_step))  # per-rank default RNG
    hooks = StepHooks(
        autocast=speed.autocast,
        check_finite=not speed.cuda_graphs and (speed.sync_every == 1 or spec.on_nonfinite == "skip"),
        reduce_grads=dctx.reduce_grads if dctx.enabled else None,
        any_rank=dctx.any if dctx.enabled else None,
    )
    log = JsonlLog(out / "log.jsonl", resume_step=state.global_step if r_meta is not None else None) if main else None
    ckpt_dir = out / "checkpoints"
    preview = _preview_batch(data, dev) if main else None
    budget = max_steps if max_steps is not None else None
    done_now = 0
    t_start = time.perf_counter()
    speeds: dict[str, float] = {}
    last_ckpt = None
    stopped_early = False
    pending = _Pending(dctx, log, deferred_check=not hooks.check_finite and spec.on_nonfinite == "stop",
                       score_key=spec.best_metric)

    if r_meta is not None and "best" in r_meta:
        state.extra_meta["best"] = r_meta["best"]

    def checkpoint() -> Path:
        pending.flush()
        dctx.average_buffers(models)
        path = ckpt_dir / checkpoint_name(state.global_step)
        if main:
            score = pending.take_score()
            best = state.extra_meta.get("best")
            improved = score is not None and (best is None or score < best["value"])
            if improved:
                state.extra_meta["best"] = {"metric": spec.best_metric, "value": score, "step": state.global_step}
            path = _checkpoint(state, recipe_obj, ckpt_dir, spec.keep_checkpoints)
            if improved:  # the best checkpoint survives pruning; written atomically like any other
                atomic_write_bytes(out / "best.safetensors", path.read_bytes())
        return path

    while state.stage < len(plans):
        plan = plans[state.stage]
        if state.opt_g is None and state.opt_d is None:
            state.make_optimizers(plan, fused=speed.fused_adam, capturable=speed.capture)
        models.train()
        prepare_terms(plan)  # e.g. build the identity backbone now, not inside the bar's first step
        bar = tqdm(total=plan.total_steps, initial=state.step_in_stage, disable=not (progress and main),
                   file=sys.stderr, desc=f"stage {plan.index + 1}/{len(plans)} {plan.spec.name}", unit="step",
                   dynamic_ncols=True)
        pending.bar = bar
        stepper = GraphStep(state, plan, split, data.num_classes, spec, speed, hooks, source) \
            if speed.cuda_graphs else None
        t0, n0 = time.perf_counter(), 0
        while state.step_in_stage < plan.total_steps:
            if budget is not None and done_now >= budget:
                stopped_early = True
                break
            state.set_learning_rates(plan)
            parts = stepper() if stepper is not None else one_step(
                state, plan, split, data.num_classes, spec, dev, hooks=hooks, shard=dctx.shard,
                channels_last=speed.channels_last, source=source)
            state.step_in_stage += 1
            state.global_step += 1
            done_now += 1
            n0 += plan.spec.batch_size
            bar.update(1)
            is_log = state.global_step % spec.log_every == 0 or state.step_in_stage == plan.total_steps
            pending.add(state.global_step, plan.spec.name, parts, is_log)
            if len(pending) >= speed.sync_every:
                pending.flush()
            if main and spec.sample_every and state.global_step % spec.sample_every == 0:
                sample_grid(models, *preview, plan.spec.identity, out / "samples" / f"step-{state.global_step:08d}.png")
            if spec.checkpoint_every and state.global_step % spec.checkpoint_every == 0:
                last_ckpt = checkpoint()
        pending.flush()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        bar.close()
        elapsed = time.perf_counter() - t0
        if n0:
            speeds[plan.spec.name] = n0 / max(elapsed, 1e-9)
        if stopped_early:
            break
        if main:
            sample_grid(models, *preview, plan.spec.identity,
                        out / "samples" / f"stage-{plan.index + 1}-{plan.spec.name}.png")
        state.stage += 1
        state.step_in_stage = 0
        state.opt_g = state.opt_d = None
        stepper = None  # frees the stage's graph and its memory pool
        last_ckpt = checkpoint()
    finished = state.stage >= len(plans)
    if last_ckpt is None or (not finished and last_ckpt.name != checkpoint_name(state.global_step)):
        last_ckpt = checkpoint()
    final = out / "final.safetensors"
    if finished and main:
        state.save(final, recipe_obj.raw, finished=True)
    if main:
        plot_losses(out / "log.jsonl", out / "losses.png")
        _write_json(out / "run.json", {**run_info, "finished": finished, "global_step": state.global_step,
                                       "seconds": round(time.perf_counter() - t_start, 2),
                                       "images_per_second": {k: round(v, 1) for k, v in speeds.items()}})
    return TrainResult(out=out, checkpoint=final if finished else last_ckpt, global_step=state.global_step,
                       finished=finished, seconds=time.perf_counter() - t_start, images_per_second=speeds)


#: Below this spread (``SPREAD_KEY``) the identity codes have collapsed (every image gets the same
#: code): warned about once.
COLLAPSED_SPREAD = 1e-3


def _warn(message: str) -> None:
    """One line on stderr that does not tear the progress bar."""
    tqdm.write(f"facegan: warning: {message}", file=sys.stderr)


def _write_json(path: Path, obj: dict) -> None:
    """What the run ran on and how fast (``run.json``); replaced whole, never half-written."""
    atomic_write_bytes(path, json.dumps(obj, indent=2).encode())


class _Pending:
    """Loss values of the steps since the last host sync (``train.sync_every``).

    ``flush`` reads them back in one transfer (and, distributed, one all-reduce that averages
    them over the processes), writes the log records of the logging steps and, when the finite
    check is deferred, raises :class:`NonFiniteLossError` for the first bad step.
    """

    def __init__(self, dctx: DistContext, log: JsonlLog | None, deferred_check: bool, score_key: str = "") -> None:
        self.dctx, self.log, self.deferred_check = dctx, log, deferred_check
        self.steps: list[tuple[int, str, dict[str, torch.Tensor], bool]] = []
        self.bar = None
        self.score_key = score_key
        self.warned_collapse = False
        self.score_sum, self.score_n = 0.0, 0

    def take_score(self) -> float | None:
        """Mean of ``train.best_metric`` over the steps since the last call (None if unlogged)."""
        mean = self.score_sum / self.score_n if self.score_n else None
        self.score_sum, self.score_n = 0.0, 0
        return mean

    def __len__(self) -> int:
        return len(self.steps)

    def add(self, step: int, stage: str, parts: dict[str, torch.Tensor], is_log: bool) -> None:
        self.steps.append((step, stage, parts, is_log))

    def flush(self) -> None:
        if not self.steps:
            return
        steps, self.steps = self.steps, []
        values = [v.detach().float().reshape(()) for _, _, parts, _ in steps for v in parts.values()]
        if values:
            dev = values[0].device
            flat = torch.stack([v.to(dev) for v in values])
            flat, _ = self.dctx.reduce_flat(flat)
            host = flat.cpu().tolist()
        else:
            host = []
        pos = 0
        last = None
        for step, stage, parts, is_log in steps:
            vals = dict(zip(parts.keys(), host[pos:pos + len(parts)]))
            pos += len(parts)
            if self.score_key in vals and math.isfinite(vals[self.score_key]):
                self.score_sum += vals[self.score_key]
                self.score_n += 1
            if self.deferred_check:
                bad = next((k for k, v in vals.items() if not math.isfinite(v)), None)
                if bad is not None:
                    raise NonFiniteLossError(
                        f"loss '{bad}' became non-finite at step {step - 1}; the last checkpoint is intact "
                        "(lower the learning rate, or set train.on_nonfinite = \"skip\")")
            spread = vals.get(SPREAD_KEY)
            if spread is not None and spread < COLLAPSED_SPREAD and not self.warned_collapse and self.log is not None:
                self.warned_collapse = True
                _warn(f"step {step}: the identity codes have collapsed (spread over the batch {spread:.1e}): "
                      "every face gets the same code, so every reconstruction will look alike. For conv-encoder "
                      "set model.encoder.code_norm = true (README: Paper fidelity), or lower the learning rate")
            if is_log:
                record = {"step": step, "stage": stage, **vals}
                if self.log is not None:
                    self.log.write(record)
                last = record
        if last is not None and self.bar is not None:
            self.bar.set_postfix({k.split("/", 1)[1] if k.startswith("g/") else k: f"{v:.3g}"
                                  for k, v in last.items() if "/" in k}, refresh=False)


def one_step(state: TrainState, plan: StagePlan, split, num_classes: int, spec, dev, *,
             hooks: StepHooks | None = None, shard: tuple[int, int] | None = None, channels_last: bool = False,
             source=None) -> dict[str, Any]:
    """One training step: the batch at (seed, stage, step), forward, D update, G update."""
    idx = batch_indices(len(split), plan.spec.batch_size, spec.seed, plan.index, state.step_in_stage)
    batch = make_batch(split, idx, dev, num_classes, spec.flip, state.generator, shard=shard,
                       channels_last=channels_last)
    return train_on_batch(state, plan, batch, spec.on_nonfinite, hooks, shard=shard, source=source)


_one_step = one_step


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
