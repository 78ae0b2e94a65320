"""What one training step spends its device time on, by component (torch.profiler).

Profiles a stage's optimised eager step (the kernels a CUDA-graph replay runs, with their
launches visible to the profiler) and attributes every kernel to a component:

- ``G fwd`` / ``D fwd``: the forward of the generator-side slots (encoder, decoder, controller)
  and of the discriminator-side ones (D_img, Q, D_z);
- ``identity fwd``: the frozen identity network (both the generated and, when not cached, the
  real images);
- ``G bwd`` / ``D bwd`` / ``identity bwd``: the backward of those forwards (each backward node
  is matched to the forward op that made it by its autograd sequence number);
- ``optimiser``: ``Adam.step`` and ``zero_grad``;
- ``batch & copies``: gathering, flipping and scaling the batch, and every other copy;
- ``other``: losses, gradient accumulation, autograd glue.

On CUDA the time is the kernels' GPU time; on the CPU (a dry run) it is the ops' CPU self time.
Writes a Markdown table (stdout, or appended to ``--md``) and JSON (``--json``).

    python benchmarks/step_profile.py --recipe recipes/exprgan.toml --stage refining --batch 48 256
    python benchmarks/step_profile.py --recipe tests/fixtures/tiny.toml --device cpu --batch 8 --steps 2
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.autograd import DeviceType
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_step import ROOT, Runner, _identity_terms  # noqa: E402

import facegan_kit.train.loop as loop  # noqa: E402
from facegan_kit.recipe import load_recipe  # noqa: E402
from facegan_kit.recipe.schema import D_SLOTS  # noqa: E402
from facegan_kit.devices import resolve_device  # noqa: E402

COMPONENTS = ("G fwd", "G bwd", "D fwd", "D bwd", "identity fwd", "identity bwd", "optimiser",
              "batch & copies", "other")
LABELS = ("G", "D", "identity", "batch")
BACKWARD = "autograd::engine::evaluate_function"


def _labelled(fn, label: str):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with record_function(label):
            return fn(*args, **kwargs)
    return wrapper


def label_step(runner: Runner) -> None:
    """Name the parts of the runner's step for the profiler (instance attributes; weights untouched)."""
    for slot, module in runner.state.models.items():
        module.forward = _labelled(module.forward, "D" if slot in D_SLOTS else "G")
    for term in _identity_terms(runner.plan):
        term._features = _labelled(term._features, "identity")
    loop.make_batch = _labelled(loop.make_batch, "batch")


def _own_time(e, cuda: bool) -> float:
    """Kernels are attached to the host op that launched them (their own device-side events,
    also listed, would count them twice)."""
    if e.device_type != DeviceType.CPU:
        return 0.0
    return float(e.self_device_time_total if cuda else e.self_cpu_time_total)


def _label(e, names: set[str]) -> str | None:
    while e is not None:
        if e.name in names:
            return e.name
        e = e.cpu_parent
    return None


def attribute(events, cuda: bool) -> dict[str, float]:
    """Microseconds per component over all ``events`` (FunctionEvents with parents)."""
    names = set(LABELS)
    made_by: dict[tuple[int, int], str] = {}  # (thread, sequence_nr) of a forward op -> label
    for e in events:
        if e.sequence_nr >= 0 and not e.name.startswith(BACKWARD):
            label = _label(e, names)
            if label is not None:
                made_by[(e.thread, e.sequence_nr)] = label
    out: dict[str, float] = defaultdict(float)
    for e in events:
        t = _own_time(e, cuda)
        if t <= 0:
            continue
        out[_component(e, made_by)] += t
    return out


def _component(e, made_by: dict[tuple[int, int], str]) -> str:
    name = e.name
    node = e
    while node is not None:  # the innermost part that names it
        if node.name.startswith(("Optimizer.step", "Optimizer.zero_grad")):
            return "optimiser"
        if node.name.startswith(BACKWARD):
            label = made_by.get((node.fwd_thread, node.sequence_nr))
            return f"{label} bwd" if label in ("G", "D", "identity") else "other"
        if node.name in LABELS:
            return "batch & copies" if node.name == "batch" else f"{node.name} fwd"
        node = node.cpu_parent
    lowered = name.lower()
    return "batch & copies" if ("copy" in lowered or "memcpy" in lowered or "memset" in lowered) else "other"


def profile_step(raw: dict, stage_index: int, batch: int, dev: torch.device, steps: int, warmup: int) -> dict:
    runner = Runner(raw, stage_index, batch, "optimised", dev)
    runner.run(warmup)
    wall = min(runner.run(steps) for _ in range(2)) / steps
    label_step(runner)
    cuda = dev.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    # one profiled-but-discarded step first: the profiler's own first-call costs land there
    with profile(activities=activities, schedule=torch.profiler.schedule(wait=0, warmup=1, active=steps, repeat=1)) as prof:
        for _ in range(1 + steps):
            runner.run(1)
            prof.step()
    per = {k: v / steps / 1000 for k, v in attribute(prof.events(), cuda).items()}  # ms per step
    busy = sum(per.values())
    return {"stage": runner.stage.name, "batch": batch, "device_time": "GPU" if cuda else "CPU self",
            "step_ms": 1000 * wall, "busy_ms": busy, "components_ms": {c: per.get(c, 0.0) for c in COMPONENTS}}


def markdown(rows: list[dict], device: str, recipe: str) -> str:
    kind = rows[0]["device_time"] if rows else "GPU"
    head = " | ".join(f"batch {r['batch']} ms/step | share" for r in rows)
    lines = [f"Step profile ({kind} time by component, torch.profiler): {device}; recipe {recipe}; "
             f"stage {rows[0]['stage'] if rows else '-'}; optimised eager step (what a CUDA graph replays).", "",
             f"| component | {head} |", "|---|" + "---|---|" * len(rows)]
    for c in COMPONENTS:
        cells = " | ".join(f"{r['components_ms'][c]:.2f} | {100 * r['components_ms'][c] / max(r['busy_ms'], 1e-9):.0f}%"
                           for r in rows)
        lines.append(f"| {c} | {cells} |")
    lines.append("| **busy (sum)** | " + " | ".join(f"{r['busy_ms']:.2f} | {100 * r['busy_ms'] / r['step_ms']:.0f}% "
                                                   "of the step" for r in rows) + " |")
    lines.append("| step (wall, unprofiled) | " + " | ".join(f"{r['step_ms']:.2f} | " for r in rows) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default=str(ROOT / "recipes" / "exprgan.toml"))
    ap.add_argument("--stage", default="refining")
    ap.add_argument("--batch", type=int, nargs="+", default=[48, 256])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=int, default=5, help="Profiled steps per batch size.")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--md", type=Path, default=None, help="Append the table to this Markdown file.")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    raw = load_recipe(args.recipe, args.overrides)
    names = [s["name"] for s in raw["stages"]]
    if args.stage not in names:
        raise SystemExit(f"step_profile: no stage {args.stage!r} in {args.recipe} (have: {', '.join(names)})")
    dev = resolve_device(args.device)
    t0 = time.perf_counter()
    rows = [profile_step(raw, names.index(args.stage), b, dev, args.steps, args.warmup) for b in args.batch]
    device = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    md = markdown(rows, device, Path(args.recipe).name)
    print(md)
    print(f"step_profile: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    if args.md:
        with open(args.md, "a") as fh:
            fh.write("\n" + md)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
