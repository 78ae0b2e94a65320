"""The run folder: a fresh run into a folder that holds an earlier run moves that run aside.

Without this, a fresh run's checkpoint pruning (keep the newest N by step number) would count the
earlier run's higher-numbered checkpoints as newer and delete the checkpoint it had just written,
``--resume DIR/checkpoints`` would pick up the other run's latest step, and ``final``/``best``/
``log.jsonl``/``samples`` would be overwritten. The earlier run is moved, whole, into
``previous/<UTC time>/`` of the same folder: nothing already written is lost.
"""
from __future__ import annotations

import time
from pathlib import Path

#: What a run writes into its folder (everything that :func:`archive_previous_run` moves).
RUN_OUTPUTS = ("checkpoints", "samples", "final.safetensors", "best.safetensors", "log.jsonl", "losses.png",
               "recipe.json", "run.json")


def archive_previous_run(out: Path) -> Path | None:
    """Move an earlier run's outputs in ``out`` to ``out/previous/<stamp>/``; returns that folder
    (``None`` when there was nothing but an empty ``checkpoints/`` or nothing at all)."""
    found = [out / name for name in RUN_OUTPUTS if (out / name).exists()]
    ckpts = out / "checkpoints"
    has_run = any(p.name != "checkpoints" for p in found) or (ckpts.is_dir() and any(ckpts.iterdir()))
    if not has_run:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    dest = out / "previous" / stamp
    n = 1
    while dest.exists():
        n += 1
        dest = out / "previous" / f"{stamp}-{n}"
    dest.mkdir(parents=True)
    for path in found:
        path.rename(dest / path.name)
    return dest
