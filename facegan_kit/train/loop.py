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

from facegan_kit.checkpoint import atomic_write_bytes, checkpoint_name, load_checkpoint, prune_checkpoints
from facegan_kit.data.base import FaceSplit
from facegan_kit.devices import resolve_device
from facegan_kit.errors import CheckpointError, FaceganError
from facegan_kit.pm import default_registry
from facegan_kit.recipe import build_dataset, build_losses, build_model, load_recipe, validate
from facegan_kit.recipe.schema import Recipe
from facegan_kit.train.batches import ImageSource, SamePerson, batch_indices, hash_seed, make_batch, stage_steps
from facegan_kit.train.distributed import DistContext, convert_sync_batchnorm, init_distributed
from facegan_kit.train.graphs import GraphStep
from facegan_kit.train.phases import (  # noqa: F401 (SPREAD_KEY: read from here by tests)
    SPREAD_KEY, StagePlan, StepHooks, plan_stage, prepare_terms, train_on_batch)
from facegan_kit.train.readback import BestScore, CollapseWarning, DeferredFiniteCheck, LogWriter, LossReadback
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
    resumed = _read_resume(resume, recipe_obj)
    if dctx.is_main:
        _claim_out(out, fresh=resume is None)
    run = _Run(recipe_obj, out, dev, dctx, progress=progress)
    if resumed is not None:
        run.resume(*resumed, source=str(resume))
    run.start()
    budget = _Budget(max_steps)
    while run.state.stage < len(run.plans):
        if not run.run_stage(budget):
            break
    return run.finish()


def _read_resume(resume: str | Path | None, recipe_obj: Recipe) -> tuple[dict, dict] | None:
    """The checkpoint to continue from (tensors, metadata), if any; it must hold this recipe's model."""
    if resume is None:
        return None
    tensors, meta = load_checkpoint(resume)
    if validate(meta["recipe"], default_registry()).model != recipe_obj.model:
        raise CheckpointError(f"{resume}: checkpoint was trained with a different [model] than this recipe")
    return tensors, meta


def _claim_out(out: Path, fresh: bool) -> None:
    """Make the run folder; a fresh run first moves an earlier run's files aside."""
    out.mkdir(parents=True, exist_ok=True)
    moved = archive_previous_run(out) if fresh else None
    if moved is not None:
        print(f"note: {out} held an earlier run; moved it to {moved} (to continue that run instead: "
              f"--resume {moved}/checkpoints --out {moved})", file=sys.stderr)


class _Budget:
    """``max_steps``: how many more steps this call may run (None: no limit)."""

    def __init__(self, max_steps: int | None) -> None:
        self.max_steps, self.done = max_steps, 0

    def spent(self) -> bool:
        return self.max_steps is not None and self.done >= self.max_steps


class _Run:
    """One call of :func:`train`: set up (the constructor, then :meth:`resume` and :meth:`start`),
    :meth:`run_stage` until the stages or the budget run out, :meth:`finish`. Rank 0 (``main``)
    writes every file; every rank trains."""

    def __init__(self, recipe_obj: Recipe, out: Path, dev: torch.device, dctx: DistContext, *,
                 progress: bool) -> None:
        self.recipe, self.out, self.dev, self.dctx = recipe_obj, out, dev, dctx
        self.main, self.progress = dctx.is_main, progress
        self.cfg = cfg = recipe_obj.train
        self.t_start = time.perf_counter()
        self.speeds: dict[str, float] = {}
        self.last_ckpt: Path | None = None
        self.resumed = False
        self._build_components()
        self.source = ImageSource(self.split, dev, self.speed.channels_last)  # real images for per-image caches
        self.partners = SamePerson(self.split.subject, dev) \
            if any(s.pairs == "same-person" for s in recipe_obj.stages) else None
        self.state = TrainState(models=self.models, generator=torch.Generator(device=dev).manual_seed(cfg.seed))
        if dctx.enabled:
            self.state.extra_meta["world_size"] = dctx.world_size
        self.plans = [plan_stage(i, s, stage_steps(len(self.split), s.batch_size, s.epochs, s.steps), self.losses)
                      for i, s in enumerate(recipe_obj.stages)]
        self.run_info = {
            "device": str(dev), "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
            "torch": torch.__version__, "world_size": dctx.world_size if dctx.enabled else 1,
            "speed": self.speed.describe()}
        if self.main:
            (out / "recipe.json").write_text(json.dumps(recipe_obj.raw, indent=2))
            _write_json(out / "run.json", self.run_info)

    def _build_components(self) -> None:
        """Models, losses and data from the recipe, made ready for the device and the speed options."""
        registry, cfg, dev = default_registry(), self.cfg, self.dev
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        torch.manual_seed(cfg.seed)
        self.models = build_model(self.recipe, registry).to(dev)
        self.losses = build_losses(self.recipe, registry, dev)
        self.data = build_dataset(self.recipe, registry)
        self.split = self.data.train
        if self.dctx.enabled:
            _check_distributed(self.recipe, len(self.split), self.dctx)
            if cfg.sync_batchnorm:
                for slot in list(self.models.keys()):
                    self.models[slot] = convert_sync_batchnorm(self.models[slot], dev)
        split = self.split
        self.speed = resolve_speed(cfg, dev, split.images.numel() * split.images.element_size(),
                                   distributed=self.dctx.enabled)
        apply_backends(self.speed)
        apply_to_models(self.models, self.speed)
        if self.speed.resident:
            self.split = FaceSplit(split.images.to(dev), split.expression.to(dev), split.subject, split.extra)

    def resume(self, tensors: dict, meta: dict, source: str) -> None:
        """Continue from a checkpoint: weights, counters, the stage's optimisers, the best score."""
        state = self.state
        state.load_weights(tensors, source)
        state.stage, state.step_in_stage, state.global_step = meta["stage"], meta["step_in_stage"], meta["global_step"]
        if state.stage < len(self.plans):
            state.make_optimizers(self.plans[state.stage], fused=self.speed.fused_adam, capturable=self.speed.capture)
            state.load_optimizers(tensors, meta)
        if "best" in meta:
            state.extra_meta["best"] = meta["best"]
        self.resumed = True

    def start(self) -> None:
        """After a resume (if any): line up the processes, then the step hooks and the loss watchers."""
        cfg, speed, dctx = self.cfg, self.speed, self.dctx
        if dctx.enabled:
            dctx.broadcast_models(self.models)
            torch.manual_seed(hash_seed(cfg.seed, dctx.rank, self.state.global_step))  # per-rank default RNG
        self.hooks = StepHooks(
            autocast=speed.autocast,
            check_finite=not speed.cuda_graphs and (speed.sync_every == 1 or cfg.on_nonfinite == "skip"),
            reduce_grads=dctx.reduce_grads if dctx.enabled else None,
            any_rank=dctx.any if dctx.enabled else None,
        )
        log = JsonlLog(self.out / "log.jsonl", resume_step=self.state.global_step if self.resumed else None) \
            if self.main else None
        self.preview = _preview_batch(self.data, self.dev) if self.main else None
        self.pending = LossReadback(dctx)
        self.best = BestScore(cfg.best_metric)
        self.log_writer = LogWriter(log)
        self.watchers = [self.best]
        if not self.hooks.check_finite and cfg.on_nonfinite == "stop":
            self.watchers.append(DeferredFiniteCheck())
        if self.main:
            self.watchers.append(CollapseWarning())
        self.watchers.append(self.log_writer)
        self.bar = None

    def flush(self) -> None:
        """Read the pending steps' losses back and hand each step to every watcher."""
        if not len(self.pending):
            return
        for rec in self.pending.take():
            for watch in self.watchers:
                watch(rec)
        self.log_writer.show(self.bar)

    def run_stage(self, budget: _Budget) -> bool:
        """Train the current stage to its end (then sample, advance and checkpoint) or until the
        budget is spent; returns whether the stage ended."""
        state, cfg, plan = self.state, self.cfg, self.plans[self.state.stage]
        if state.opt_g is None and state.opt_d is None:
            state.make_optimizers(plan, fused=self.speed.fused_adam, capturable=self.speed.capture)
        self.models.train()
        prepare_terms(plan)  # e.g. build the identity backbone now, not inside the bar's first step
        self.bar = tqdm(total=plan.total_steps, initial=state.step_in_stage, disable=not (self.progress and self.main),
                        file=sys.stderr, desc=f"stage {plan.index + 1}/{len(self.plans)} {plan.spec.name}",
                        unit="step", dynamic_ncols=True)
        step = self._stepper(plan)
        t0, images = time.perf_counter(), 0
        stopped_early = False
        while state.step_in_stage < plan.total_steps:
            if budget.spent():
                stopped_early = True
                break
            state.set_learning_rates(plan)
            parts = step()
            state.step_in_stage += 1
            state.global_step += 1
            budget.done += 1
            images += plan.spec.batch_size
            self.bar.update(1)
            self._after_step(plan, parts)
        self.flush()
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)
        self.bar.close()
        if images:
            self.speeds[plan.spec.name] = images / max(time.perf_counter() - t0, 1e-9)
        if stopped_early:
            return False
        del step  # frees the stage's CUDA graph and its memory pool
        if self.main:
            sample_grid(self.models, *self.preview, plan.spec.identity,
                        self.out / "samples" / f"stage-{plan.index + 1}-{plan.spec.name}.png")
        state.stage += 1
        state.step_in_stage = 0
        state.opt_g = state.opt_d = None
        self.last_ckpt = self.checkpoint()
        return True

    def _stepper(self, plan: StagePlan):
        """The stage's step: a :class:`GraphStep` (``train.cuda_graphs``) or :func:`one_step`."""
        partners = self.partners if plan.spec.pairs == "same-person" else None
        if self.speed.cuda_graphs:
            return GraphStep(self.state, plan, self.split, self.data.num_classes, self.cfg, self.speed, self.hooks,
                             self.source, partners=partners)
        return lambda: one_step(self.state, plan, self.split, self.data.num_classes, self.cfg, self.dev,
                                hooks=self.hooks, shard=self.dctx.shard, channels_last=self.speed.channels_last,
                                source=self.source, partners=partners)

    def _after_step(self, plan: StagePlan, parts: dict) -> None:
        """Queue the step's losses (read back every ``sync_every`` steps), then the periodic sample
        grid and checkpoint."""
        state, cfg = self.state, self.cfg
        is_log = state.global_step % cfg.log_every == 0 or state.step_in_stage == plan.total_steps
        self.pending.add(state.global_step, plan.spec.name, parts, is_log)
        if len(self.pending) >= self.speed.sync_every:
            self.flush()
        if self.main and cfg.sample_every and state.global_step % cfg.sample_every == 0:
            sample_grid(self.models, *self.preview, plan.spec.identity,
                        self.out / "samples" / f"step-{state.global_step:08d}.png")
        if cfg.checkpoint_every and state.global_step % cfg.checkpoint_every == 0:
            self.last_ckpt = self.checkpoint()

    def checkpoint(self) -> Path:
        """Write a checkpoint (rank 0) after the pending losses; it is also ``best.safetensors``
        when ``train.best_metric`` improved since the last one."""
        self.flush()
        self.dctx.average_buffers(self.models)
        state = self.state
        path = self.out / "checkpoints" / checkpoint_name(state.global_step)
        if not self.main:
            return path
        score = self.best.take()
        best = state.extra_meta.get("best")
        improved = score is not None and (best is None or score < best["value"])
        if improved:
            state.extra_meta["best"] = {"metric": self.cfg.best_metric, "value": score, "step": state.global_step}
        path = _checkpoint(state, self.recipe, self.out / "checkpoints", self.cfg.keep_checkpoints)
        if improved:  # the best checkpoint survives pruning; written atomically like any other
            atomic_write_bytes(self.out / "best.safetensors", path.read_bytes())
        return path

    def finish(self) -> TrainResult:
        """The last checkpoint (if the budget stopped mid-stage), ``final.safetensors`` when every
        stage ran, the loss plot and the run's timings."""
        state, out = self.state, self.out
        finished = state.stage >= len(self.plans)
        if self.last_ckpt is None or (not finished and self.last_ckpt.name != checkpoint_name(state.global_step)):
            self.last_ckpt = self.checkpoint()
        final = out / "final.safetensors"
        if finished and self.main:
            state.save(final, self.recipe.raw, finished=True)
        seconds = time.perf_counter() - self.t_start
        if self.main:
            plot_losses(out / "log.jsonl", out / "losses.png")
            _write_json(out / "run.json", {**self.run_info, "finished": finished, "global_step": state.global_step,
                                           "seconds": round(seconds, 2),
                                           "images_per_second": {k: round(v, 1) for k, v in self.speeds.items()}})
        return TrainResult(out=out, checkpoint=final if finished else self.last_ckpt, global_step=state.global_step,
                           finished=finished, seconds=time.perf_counter() - self.t_start,
                           images_per_second=self.speeds)


def _check_distributed(recipe_obj: Recipe, n_train: int, dctx: DistContext) -> None:
    """Every stage's global batch must split evenly over the processes."""
    for i, s in enumerate(recipe_obj.stages):
        global_batch = min(s.batch_size, n_train)
        if global_batch % dctx.world_size:
            raise FaceganError(f"stages[{i}].batch_size: the global batch {global_batch} is not a multiple of "
                               f"the {dctx.world_size} processes (batch_size is the global batch)")


def _write_json(path: Path, obj: dict) -> None:
    """What the run ran on and how fast (``run.json``); replaced whole, never half-written."""
    atomic_write_bytes(path, json.dumps(obj, indent=2).encode())


def one_step(state: TrainState, plan: StagePlan, split, num_classes: int, spec, dev, *,
             hooks: StepHooks | None = None, shard: tuple[int, int] | None = None, channels_last: bool = False,
             source=None, partners: SamePerson | None = None) -> dict[str, Any]:
    """One training step: the batch at (seed, stage, step), forward, D update, G update.
    ``partners``: the stage's same-person pairs (the encoder reads another photo of each row's person)."""
    idx = batch_indices(len(split), plan.spec.batch_size, spec.seed, plan.index, state.step_in_stage)
    batch = make_batch(split, idx, dev, num_classes, spec.flip, state.generator, shard=shard,
                       channels_last=channels_last, partners=partners)
    return train_on_batch(state, plan, batch, spec.on_nonfinite, hooks, shard=shard, source=source)



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
