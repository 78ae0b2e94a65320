"""Training-step throughput (images/s) of each stage: eager fp32, the optimised settings, CUDA graphs.

All modes train the same networks in the same run, through the training loop's own steps
(:func:`facegan_kit.train.loop.one_step`, :class:`facegan_kit.train.graphs.GraphStep`):

- ``eager-fp32``: fp32, eager, NCHW, for-loop Adam, losses read back and checked every step,
  images copied from host memory, identity features of the real images recomputed every step;
- ``optimised``: the recipe's ``[train]`` speed options resolved for the device (on CUDA by
  default: bf16 autocast, channels_last, fused Adam, cuDNN autotuning, losses read back every
  ``sync_every`` steps, dataset resident on the GPU) plus the identity feature cache (warm);
- ``graphs``: the optimised settings with ``train.cuda_graphs = "on"``: on CUDA each step is
  one replayed CUDA graph (its warm-up and capture happen before the timed rounds); on the CPU
  the same capture-ready step runs eagerly (nothing to capture), which must not be slower;
- ``optimised-nocache`` (stages with an identity loss only): the optimised mode without the
  cache, to measure what the cache saves.

On the CPU every ``"auto"`` option is off, so the modes differ only by the identity cache (and
the capture-ready step) unless options are forced with ``--opt`` (e.g. ``--opt train.precision=bf16``).

    python benchmarks/train_step.py                                   # exprgan.toml, 128 px, batch 48 and 256
    python benchmarks/train_step.py --recipe recipes/exprgan-quick.toml --image-size 32 --batch 16 48
    python benchmarks/train_step.py --image-size 32 --batch 8 16 --set data.subjects=12 --steps 3 \\
        --json bench.json --md bench.md

Writes a Markdown table (stdout or ``--md``) and JSON rows (``--json``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from facegan_kit.data.base import FaceSplit
from facegan_kit.pm import default_registry
from facegan_kit.recipe import build_dataset, build_losses, build_model, load_recipe, validate
from facegan_kit.train.batches import ImageSource, stage_steps
from facegan_kit.train.graphs import WARMUP_STEPS, GraphStep
from facegan_kit.train.loop import one_step, resolve_device
from facegan_kit.train.phases import StepHooks, plan_stage
from facegan_kit.train.speed import (
    SpeedPlan, apply_backends, apply_to_models, eager_fp32, resolve_speed, with_overrides)
from facegan_kit.train.state import TrainState

ROOT = Path(__file__).resolve().parent.parent
MODES = ("eager-fp32", "optimised", "graphs", "optimised-nocache")


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _identity_terms(plan) -> list:
    return [t for _, t in plan.terms.values() if hasattr(t, "cache_real")]


class Runner:
    """One stage in one mode, built once; ``run(n)`` times ``n`` steps (seconds)."""

    def __init__(self, raw: dict, stage_index: int, batch: int, mode: str, dev: torch.device) -> None:
        registry = default_registry()
        raw = json.loads(json.dumps(raw))
        raw["stages"][stage_index]["batch_size"] = batch
        recipe = validate(raw, registry)
        spec = self.spec = recipe.train
        self.dev, self.mode, self.batch = dev, mode, batch
        torch.manual_seed(spec.seed)
        models = build_model(recipe, registry).to(dev)
        losses = build_losses(recipe, registry, dev)
        data = build_dataset(recipe, registry)
        split = data.train
        self.num_classes = data.num_classes
        if mode == "eager-fp32":
            speed: SpeedPlan = eager_fp32(dev)
        else:
            speed = resolve_speed(spec, dev, split.images.numel())
            if mode != "graphs":  # the optimised eager step, whatever cuda_graphs resolves to
                speed = with_overrides(speed, cuda_graphs=False)
        self.speed = speed
        apply_backends(speed)
        apply_to_models(models, speed)
        if speed.resident:
            split = FaceSplit(split.images.to(dev), split.expression.to(dev), split.subject, split.extra)
        self.split = split
        s = self.stage = recipe.stages[stage_index]
        self.plan = plan_stage(stage_index, s, stage_steps(len(split), s.batch_size, s.epochs, s.steps), losses)
        cached = mode in ("optimised", "graphs")
        for term in _identity_terms(self.plan):
            term.cache_real = cached
        self.source = ImageSource(split, dev, speed.channels_last) if mode != "eager-fp32" else None
        self.cache_note = None
        if cached:
            for term in _identity_terms(self.plan):  # warm the cache: the steady state after one epoch
                every = torch.arange(len(split))
                with speed.autocast():
                    for part in every.split(256):
                        term.real_features(self.source(part[:1]), key=(part, None), source=self.source)
                cache = term._cache
                self.cache_note = "off (over cache_mb)" if cache is None or cache.disabled else "warm"
        gen = torch.Generator(device=dev).manual_seed(spec.seed)
        self.state = TrainState(models=models, generator=gen)
        self.state.make_optimizers(self.plan, fused=speed.fused_adam, capturable=speed.capture)
        models.train()
        self.hooks = StepHooks(autocast=speed.autocast, check_finite=speed.sync_every == 1 and not speed.cuda_graphs)
        self.stepper = GraphStep(self.state, self.plan, split, self.num_classes, spec, speed, self.hooks,
                                 self.source) if speed.cuda_graphs else None
        self.k = 0

    def warm(self, n: int) -> float:
        """``n`` steps, plus the graph's eager warm-up and its capture; seconds."""
        return self.run(n + (WARMUP_STEPS + 1 if self.stepper is not None and self.stepper.capture else 0))

    def run(self, n: int) -> float:
        _sync(self.dev)
        t0 = time.perf_counter()
        pending: list = []
        for _ in range(n):
            self.state.step_in_stage = self.k
            if self.stepper is not None:
                parts = self.stepper()
            else:
                parts = one_step(self.state, self.plan, self.split, self.num_classes, self.spec, self.dev,
                                 hooks=self.hooks, channels_last=self.speed.channels_last, source=self.source)
            self.state.global_step += 1
            self.k += 1
            pending.append(parts)
            if len(pending) >= self.speed.sync_every:  # what the loop reads back (log / finite check)
                vals = [v.float() for p in pending for v in p.values()]
                if vals:
                    torch.stack(vals).cpu()
                pending.clear()
        _sync(self.dev)
        return time.perf_counter() - t0

    def row(self, seconds: float, steps: int) -> dict:
        global_batch = min(self.batch, len(self.split))
        return {"stage": self.stage.name, "batch": self.batch, "global_batch": global_batch, "mode": self.mode,
                "images_per_s": global_batch * steps / seconds, "ms_per_step": 1000 * seconds / steps,
                "settings": self.speed.describe(), "identity_cache": self.cache_note}


def measure(raws: dict[str, dict], stage_index: int, batch: int, modes: list[str], dev: torch.device,
            steps: int, warmup: int, repeats: int) -> list[dict]:
    """Build every mode, warm up, then time ``repeats`` rounds of ``steps`` steps, the modes
    alternating within each round (fair on a shared machine); each mode's best round counts."""
    runners = [Runner(raws[m], stage_index, batch, m, dev) for m in modes]
    warm = {r.mode: r.warm(warmup) for r in runners}
    best = {r.mode: float("inf") for r in runners}
    for _ in range(repeats):
        for r in runners:
            best[r.mode] = min(best[r.mode], r.run(steps))
    out = [{**r.row(best[r.mode], steps), "warmup_s": warm[r.mode]} for r in runners]
    del runners
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return out


def markdown(rows: list[dict], meta: dict) -> str:
    by = {}
    for r in rows:
        by.setdefault((r["stage"], r["batch"]), {})[r["mode"]] = r
    lines = [f"Device: {meta['device']}; torch {meta['torch']}; recipe {meta['recipe']}; image {meta['image_size']} px; "
             f"best of {meta['repeats']} rounds of {meta['steps']} steps (modes alternating) after {meta['warmup']} warm-up; "
             f"load average {meta['loadavg']}.",
             "",
             "| stage | batch | eager fp32 img/s | optimised img/s | ratio | CUDA graphs img/s | graphs / eager "
             "| graphs / optimised | optimised w/o id cache img/s | id cache gain |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for (stage, batch), m in by.items():
        e, o, g, n = (m.get(k) for k in ("eager-fp32", "optimised", "graphs", "optimised-nocache"))
        lines.append(f"| {stage} | {batch} | {_ips(e)} | {_ips(o)} | {_ratio(o, e)} | {_ips(g)} | {_ratio(g, e)} "
                     f"| {_ratio(g, o)} | {_ips(n)} | {_ratio(o, n)} |")
    return "\n".join(lines) + "\n"


def _ips(row: dict | None) -> str:
    return f"{row['images_per_s']:.1f}" if row else "-"


def _ratio(a: dict | None, b: dict | None) -> str:
    return f"{a['images_per_s'] / b['images_per_s']:.2f}x" if a and b else "-"


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default=str(ROOT / "recipes" / "exprgan.toml"))
    ap.add_argument("--image-size", type=int, default=None, help="Override model.image_size (default: the recipe's).")
    ap.add_argument("--batch", type=int, nargs="+", default=[48, 256], help="Global batch sizes.")
    ap.add_argument("--stages", nargs="+", default=None, help="Stage names (default: all).")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=int, default=10, help="Timed steps per measurement.")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3, help="Timed rounds per mode (best counts).")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default).")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="Recipe override for both modes (e.g. data.subjects=12).")
    ap.add_argument("--opt", dest="opt_overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="Recipe override for the optimised modes only (e.g. train.precision=bf16).")
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES,
                    help="Modes to measure (default: all; optimised-nocache only where there is an identity loss).")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--md", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    base = list(args.overrides) + ([f"model.image_size={args.image_size}"] if args.image_size else [])
    raw_plain = load_recipe(args.recipe, base)
    raw_opt = load_recipe(args.recipe, base + list(args.opt_overrides))
    raw_graphs = load_recipe(args.recipe, base + list(args.opt_overrides) + ['train.cuda_graphs="on"'])
    recipe = validate(raw_plain, default_registry())
    dev = resolve_device(args.device)
    rows: list[dict] = []
    for i, s in enumerate(recipe.stages):
        if args.stages and s.name not in args.stages:
            continue
        has_identity = any(hasattr(t, "cache_real") for _, t in
                           plan_stage(i, s, 1, build_losses(recipe, default_registry())).terms.values())
        modes = [m for m in args.modes if m != "optimised-nocache" or has_identity]
        raws = {m: {"eager-fp32": raw_plain, "graphs": raw_graphs}.get(m, raw_opt) for m in modes}
        for batch in args.batch:
            for row in measure(raws, i, batch, modes, dev, args.steps, args.warmup, args.repeats):
                rows.append(row)
                print(f"{row['stage']:>15} batch {batch:4d} {row['mode']:>18}: {row['images_per_s']:8.1f} img/s "
                      f"({row['ms_per_step']:.1f} ms/step)", file=sys.stderr, flush=True)
    meta = {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({platform.processor() or platform.machine()}, "
                  f"{torch.get_num_threads()} threads)",
        "torch": torch.__version__, "recipe": Path(args.recipe).name,
        "image_size": recipe.model.get("decoder", {}).get("image_size", args.image_size),
        "steps": args.steps, "warmup": args.warmup, "repeats": args.repeats, "overrides": base, "opt_overrides": args.opt_overrides,
        "loadavg": " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a",
    }
    md = markdown(rows, meta)
    print(md)
    if args.md:
        args.md.write_text(md)
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
