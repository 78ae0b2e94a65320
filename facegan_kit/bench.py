"""``facegan bench``: train (or take) several recipes on the same data, judge them the same way,
and measure their speed.

    from facegan_kit.bench import bench
    report = bench(["exprgan", "caae"], "runs/bench", quick=True, max_steps=60)

For each recipe: training images/s per stage (:attr:`TrainResult.images_per_second`), the
:func:`~facegan_kit.eval.suite.evaluate` metrics, the median latency of one
:meth:`Editor.edit` on a batch of one, and the peak memory (the process's ``ru_maxrss`` on a CPU,
``torch.cuda.max_memory_allocated`` on a GPU). Each recipe runs in its own process by default
(``isolate=True``) so that the peak memory is its own.

Writes ``OUT/report.json``, ``OUT/report.md`` (side-by-side tables), ``OUT/metrics.png``,
``OUT/losses.png``, ``OUT/edits.png`` and, per recipe, ``OUT/<name>/`` (the training run and its
``eval/`` report).
"""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import torch

from facegan_kit.errors import InputError

ROOT = Path(__file__).resolve().parent.parent


def recipe_path(name: str, quick: bool = False) -> Path:
    """``"caae"`` -> ``recipes/caae.toml`` (``recipes/caae-quick.toml`` with ``quick``), looked up
    in ``./recipes`` and then in the source tree's ``recipes/``; a path to a ``.toml`` is kept."""
    if name.endswith(".toml"):
        path = Path(name)
        if not path.is_file():
            raise InputError(f"recipe {name}: file not found")
        return path
    stem = f"{name}-quick" if quick and not name.endswith("-quick") else name
    for folder in (Path.cwd() / "recipes", ROOT / "recipes"):
        path = folder / f"{stem}.toml"
        if path.is_file():
            return path
    raise InputError(f"recipe '{name}': no {stem}.toml in ./recipes or {ROOT / 'recipes'}")


def data_overrides(data: str | Path | None) -> list[str]:
    """``--set`` overrides that point a recipe at ``data`` (``None``: the recipe's own)."""
    if data is None:
        return []
    if str(data) == "synthetic":
        return ["data.type=synthetic"]
    if not Path(data).is_dir():
        raise InputError(f"--data {data}: not 'synthetic' and not a folder of prepared faces")
    return ["data.type=prepared", f"data.root={Path(data).resolve()}"]


def budget_stages(raw: dict, max_steps: int) -> dict:
    """Spread a total step budget over a recipe's stages in proportion to their full lengths
    (at least one step per stage). Returns a new raw recipe whose stages give ``steps``."""
    import copy

    from facegan_kit.pm import default_registry
    from facegan_kit.recipe import build_dataset, validate
    from facegan_kit.train.batches import stage_steps

    if max_steps < 1:
        raise InputError(f"max_steps must be >= 1, got {max_steps}")
    rec = validate(raw, default_registry())
    n = len(build_dataset(rec, default_registry()).train)
    full = [stage_steps(n, s.batch_size, s.epochs, s.steps) for s in rec.stages]
    total = sum(full)
    out = copy.deepcopy(raw)
    if max_steps >= total:
        given = full
    else:  # one step each, the rest split by largest remainder so the total is exactly max_steps
        spare = max(0, max_steps - len(full))
        shares = [spare * s / total for s in full]
        given = [1 + int(x) for x in shares]
        order = sorted(range(len(full)), key=lambda i: shares[i] - int(shares[i]), reverse=True)
        for i in order[: max(0, max_steps - sum(given))]:
            given[i] += 1
    for table, steps in zip(out["stages"], given):
        table.pop("epochs", None)
        table["steps"] = steps
    return out


def device_info(device: str | None = None) -> dict[str, Any]:
    from facegan_kit.devices import resolve_device

    dev = resolve_device(device)
    info = {"type": dev.type, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version(), "platform": platform.platform(terse=True)}
    if dev.type == "cuda":
        info["name"] = torch.cuda.get_device_name(dev)
    else:
        info["name"] = platform.processor() or platform.machine()
        info["cpu_count"] = os.cpu_count()
    return info


def edit_latency_ms(editor, x1: torch.Tensor, repeats: int = 20, warmup: int = 3) -> float:
    """Median wall time (ms) of ``editor.edit`` on one face (``x1``: ``(1,3,S,S)``)."""
    sync = torch.cuda.synchronize if editor.device.type == "cuda" else (lambda: None)
    times = []
    for i in range(warmup + repeats):
        sync()
        t0 = time.perf_counter()
        editor.edit(x1, "happy", intensity=1.0)
        sync()
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1000.0)
    return float(statistics.median(times))


def peak_memory_mib(device_type: str) -> float:
    if device_type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return kib / 2**20 if sys.platform == "darwin" else kib / 1024


def run_one(spec: dict[str, Any]) -> dict[str, Any]:
    """Train (unless ``spec["checkpoint"]``) and evaluate one recipe; picklable in and out, so it
    also runs in a worker process. Keys of ``spec``: see :func:`_recipe_specs`."""
    from facegan_kit.apps import load_editor
    from facegan_kit.devices import resolve_device
    from facegan_kit.eval.suite import evaluate
    from facegan_kit.recipe import load_recipe
    from facegan_kit.train import train

    if spec.get("num_threads") and spec["num_threads"] != torch.get_num_threads():
        torch.set_num_threads(spec["num_threads"])
    out = Path(spec["out"])
    dev = resolve_device(spec.get("device"))
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    speed: dict[str, Any] = {"device": dev.type, "train_images_per_second": None, "train_seconds": None,
                             "train_steps": None}
    if spec.get("checkpoint"):
        ckpt = Path(spec["checkpoint"])
        log = _find_log(ckpt)
        data = spec.get("data")
    else:
        raw = load_recipe(spec["recipe_path"], [*data_overrides(spec.get("data")), *spec.get("overrides", ())])
        if spec.get("batch_size"):
            for table in raw["stages"]:
                table["batch_size"] = int(spec["batch_size"])
        if spec.get("max_steps"):
            raw = budget_stages(raw, int(spec["max_steps"]))
        result = train(raw, out, device=str(dev), progress=bool(spec.get("progress")))
        ckpt, log = result.checkpoint, out / "log.jsonl"
        speed.update(train_images_per_second={k: round(v, 2) for k, v in result.images_per_second.items()},
                     train_seconds=round(result.seconds, 2), train_steps=result.global_step)
        data = None  # the checkpoint's recipe already points at the bench data
    editor = load_editor(ckpt, device=str(dev))
    quality = evaluate(editor, data=data, split=spec.get("split", "test"), max_faces=spec.get("max_faces"),
                       out=out / "eval", device=str(dev), identity_faces=spec.get("identity_faces"),
                       oracles=spec.get("oracles", "auto"))
    quality["checkpoint"] = str(ckpt)
    from facegan_kit.eval.suite import build_data, data_table

    x1 = _faces(build_data(data_table(editor.recipe, data)), spec.get("split", "test"), 1)
    speed["edit_latency_ms"] = round(edit_latency_ms(editor, x1, repeats=int(spec.get("latency_repeats", 20))), 3)
    speed["peak_memory_mib"] = round(peak_memory_mib(dev.type), 1)
    speed["peak_memory_source"] = ("torch.cuda.max_memory_allocated" if dev.type == "cuda"
                                   else "ru_maxrss of the " + ("worker process" if spec.get("isolated") else
                                                               "whole bench process (all recipes so far)"))
    return {"quality": quality, "speed": speed, "checkpoint": str(ckpt), "log": str(log) if log else None,
            "data_table": quality.get("data_table")}


def warm_oracles(oracles: Any) -> str | None:
    """Load (training and caching on first use) the synthetic-data oracles, so that no recipe's
    measured time or peak memory includes their one-time training. Returns a note on failure."""
    from facegan_kit.eval import oracles as oracle_mod

    try:
        with torch.enable_grad():
            if isinstance(oracles, oracle_mod.OracleConfig):
                oracle_mod.load_oracles(config=oracles)
            elif oracles == "auto":
                oracle_mod.load_oracles()
    except Exception as exc:  # evaluate() notes the failure again per recipe
        return f"the oracles could not be prepared: {exc}"
    return None


def _uses_synthetic(specs, data) -> bool:
    """Whether any recipe trains on the synthetic faces (the oracles' only data)."""
    if data is not None:
        return str(data) == "synthetic"
    from facegan_kit.recipe import load_recipe

    for spec in specs:
        if "recipe_path" in spec:
            raw = load_recipe(spec["recipe_path"], spec.get("overrides", ()))
            if (raw.get("data") or {"type": "synthetic"}).get("type") == "synthetic":
                return True
    return False


def _find_log(ckpt: Path) -> Path | None:
    for folder in (ckpt.parent, ckpt.parent.parent):
        if (folder / "log.jsonl").is_file():
            return folder / "log.jsonl"
    return None


def _faces(fdata, split: str, n: int) -> torch.Tensor:
    """``n`` faces of different expressions where possible, as floats in [-1, 1]."""
    from facegan_kit.data.base import to_float

    part = getattr(fdata, split)
    picks: list[int] = []
    for k in range(fdata.num_classes):
        hit = (part.expression == k).nonzero().flatten()
        if len(hit):
            picks.append(int(hit[len(hit) // 2]))
    picks = (picks * n)[:n] or [0]
    return to_float(part.images[torch.tensor(picks)])


def parse_checkpoints(text: str | None) -> dict[str, str]:
    """``"exprgan=runs/a.safetensors,caae=runs/b"`` -> ``{"exprgan": ..., "caae": ...}``."""
    out: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in (text or "").split(","))):
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise InputError(f"--checkpoints: expected NAME=PATH[,NAME=PATH...], got {item!r}")
        out[name.strip()] = path.strip()
    return out


@dataclass
class BenchOptions:
    """How :func:`bench` trains, evaluates and measures every recipe (``facegan bench``'s options).

    Attributes:
        data: ``None`` (each recipe's own), ``"synthetic"`` or a prepared-faces folder: the same for all.
        quick: use ``recipes/<name>-quick.toml`` (32x32 synthetic faces on a CPU).
        checkpoints: ``{name: checkpoint}`` to evaluate instead of training (names not in
            ``recipes`` are added).
        max_steps: training steps per recipe, spread over its stages by length (``None``: all).
        overrides: ``--set`` overrides applied to every trained recipe.
        split, max_faces, identity_faces, oracles: passed to :func:`~facegan_kit.eval.suite.evaluate`.
        device: ``cpu``/``cuda``; default: CUDA when available.
        isolate: run each recipe in a fresh process (its own peak memory).
        latency_repeats, grid_faces: timed ``Editor.edit`` calls per recipe; faces in ``edits.png``.
        batch_size: batch size of every stage of every trained recipe (``None``: the recipes').
        num_threads: CPU threads for training, evaluation and latency (``None``: torch's default).
        progress: show training progress bars.
    """

    data: str | Path | None = None
    quick: bool = False
    checkpoints: dict[str, str] | None = None
    max_steps: int | None = None
    overrides: Sequence[str] = ()
    split: str = "test"
    max_faces: int | None = None
    identity_faces: int | None = 16
    device: str | None = None
    isolate: bool = True
    oracles: Any = "auto"
    latency_repeats: int = 20
    grid_faces: int = 3
    batch_size: int | None = None
    num_threads: int | None = None
    progress: bool = False


def bench(recipes: Sequence[str], out: str | Path, options: BenchOptions | None = None, *, log=None,
          **kwargs) -> dict[str, Any]:
    """Compare recipes on the same data, judges and measurements (see the module docstring).

    Args:
        recipes: recipe names (``"exprgan"``, ``"caae"``) or ``.toml`` paths.
        out: output folder.
        options: a :class:`BenchOptions`; keyword arguments named like its fields set (or
            override) them, e.g. ``bench(["caae"], out, quick=True, max_steps=60)``.
        log: ``print``-like callable for one-line progress messages.

    Returns:
        The report: ``{"recipes": {name: {"quality": {...}, "speed": {...}, "checkpoint": ...}},
        "device": {...}, "data": ..., "split": ..., "quick": ..., "max_steps": ..., "notes": [...]}``.
    """
    opts = replace(options or BenchOptions(), **kwargs)
    log = log or (lambda msg: None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    specs = _recipe_specs(recipes, out, opts)
    t0 = time.perf_counter()
    notes = []
    if opts.oracles is not None and _uses_synthetic(specs.values(), opts.data):
        log("[bench] preparing the synthetic-data oracles (trained once, then cached) ...")
        failed = _call(opts.isolate, warm_oracles, opts.oracles)
        if failed:
            notes.append(failed)
    results = {key: _run_logged(key, spec, opts.isolate, log) for key, spec in specs.items()}
    report = _report(results, specs, opts, notes, seconds=time.perf_counter() - t0)
    _write_report(report, results, out, opts)
    return report


def _recipe_specs(recipes: Sequence[str], out: Path, opts: BenchOptions) -> dict[str, dict[str, Any]]:
    """One :func:`run_one` spec per recipe (to train) or checkpoint (to evaluate), by name."""
    checkpoints = dict(opts.checkpoints or {})
    names = list(dict.fromkeys([*recipes, *checkpoints]))
    if not names:
        raise InputError("bench: no recipes given")
    specs = {}
    for name in names:
        key = Path(name).stem if name.endswith(".toml") else name
        spec = {"name": key, "out": str(out / key), "data": None if opts.data is None else str(opts.data),
                "split": opts.split, "max_faces": opts.max_faces, "identity_faces": opts.identity_faces,
                "device": opts.device, "oracles": opts.oracles, "latency_repeats": opts.latency_repeats,
                "progress": opts.progress, "isolated": opts.isolate,
                "num_threads": opts.num_threads or torch.get_num_threads(), "batch_size": opts.batch_size}
        if name in checkpoints:
            spec["checkpoint"] = str(Path(checkpoints[name]).resolve())
        else:
            spec.update(recipe_path=str(recipe_path(name, opts.quick)), overrides=list(opts.overrides),
                        max_steps=opts.max_steps)
        specs[key] = spec
    return specs


def _call(isolate: bool, fn, *args):
    """``fn(*args)`` here, or in a fresh process (``isolate``: its own peak memory)."""
    if not isolate:
        return fn(*args)
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(fn, *args).result()


def _run_logged(key: str, spec: dict[str, Any], isolate: bool, log) -> dict[str, Any]:
    """:func:`run_one` with a line before and after; the thread count is restored after each."""
    what = "evaluating" if spec.get("checkpoint") else f"training {Path(spec['recipe_path']).name} and evaluating"
    log(f"[bench] {key}: {what} ...")
    threads_before = torch.get_num_threads()
    try:
        result = _call(isolate, run_one, spec)
    finally:
        torch.set_num_threads(threads_before)
    q, s = result["quality"], result["speed"]
    log(f"[bench] {key}: expression accuracy {q.get('expression_accuracy')}, "
        f"edit latency {s['edit_latency_ms']:.1f} ms, peak memory {s['peak_memory_mib']:.0f} MiB")
    return result


def _report(results: dict[str, dict], specs: dict[str, dict], opts: BenchOptions, notes: list[str],
            seconds: float) -> dict[str, Any]:
    """The report of :func:`bench` (each result's ``data_table`` moves to ``data_tables``)."""
    tables = {k: r.pop("data_table") for k, r in results.items()}
    if len({repr(sorted(t.items())) for t in tables.values() if t}) > 1:
        notes.append("The recipes were evaluated on different data tables: "
                     + "; ".join(f"{k}: {t}" for k, t in tables.items()) + " (pass --data to use the same).")
    if not opts.isolate:
        notes.append("Recipes ran in one process: each peak memory is the process's peak so far.")
    return {
        "recipes": results,
        "device": {**device_info(opts.device), "threads": opts.num_threads or torch.get_num_threads()},
        "data": str(opts.data) if opts.data is not None else "each recipe's own",
        "data_tables": tables,
        "split": opts.split,
        "quick": opts.quick,
        "max_steps": opts.max_steps,
        "checkpoints": {k: sp["checkpoint"] for k, sp in specs.items() if sp.get("checkpoint")},
        "max_faces": opts.max_faces,
        "batch_size": opts.batch_size,
        "seconds": round(seconds, 1),
        "notes": notes,
    }


def _write_report(report: dict[str, Any], results: dict[str, dict], out: Path, opts: BenchOptions) -> None:
    """``report.json``, the metric and loss plots, the edit grid and ``report.md``."""
    from facegan_kit.apps import load_editor
    from facegan_kit.eval.report import (
        bench_edit_grid, bench_markdown, plot_bench_losses, plot_bench_metrics, save_json)
    from facegan_kit.eval.suite import build_data

    save_json(report, out / "report.json")
    plot_bench_metrics(report, out / "metrics.png")
    plot_bench_losses({k: (Path(r["log"]) if r["log"] else None) for k, r in results.items()}, out / "losses.png")
    editors = {k: load_editor(r["checkpoint"]) for k, r in results.items()}
    first = next(iter(report["data_tables"].values()))
    faces = _faces(build_data(first), opts.split, opts.grid_faces)
    bench_edit_grid(editors, faces, out / "edits.png")
    (out / "report.md").write_text(bench_markdown(report))
