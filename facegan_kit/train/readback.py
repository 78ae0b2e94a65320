"""What the loop does with each step's losses once they reach the host.

The step leaves its losses on the device; :class:`LossReadback` reads the steps since the last
host sync (``train.sync_every``) back in one transfer. Each read-back step then goes, in order,
to four independent watchers:

- :class:`BestScore`: the running mean of ``train.best_metric`` (``best.safetensors``);
- :class:`DeferredFiniteCheck`: the non-finite check of ``on_nonfinite = "stop"`` when the step
  itself does not check (it would wait for the device);
- :class:`CollapseWarning`: one warning when the identity codes collapse;
- :class:`LogWriter`: ``log.jsonl`` records of the logging steps and the progress bar's losses.
"""
from __future__ import annotations

import math
import sys
from typing import NamedTuple

import torch
from tqdm.auto import tqdm

from facegan_kit.errors import NonFiniteLossError
from facegan_kit.train.distributed import DistContext
from facegan_kit.train.phases import SPREAD_KEY
from facegan_kit.train.report import JsonlLog

#: Below this spread (``SPREAD_KEY``) the identity codes have collapsed (every image gets the same
#: code): warned about once.
COLLAPSED_SPREAD = 1e-3


class StepLosses(NamedTuple):
    """One step's losses on the host (averaged over the processes when distributed)."""

    step: int
    stage: str
    values: dict[str, float]
    is_log: bool


class LossReadback:
    """Loss tensors of the steps since the last host sync, read back together: one transfer (and,
    distributed, one all-reduce that averages them over the processes) instead of one per step."""

    def __init__(self, dctx: DistContext) -> None:
        self.dctx = dctx
        self.steps: list[tuple[int, str, dict[str, torch.Tensor], bool]] = []

    def __len__(self) -> int:
        return len(self.steps)

    def add(self, step: int, stage: str, parts: dict[str, torch.Tensor], is_log: bool) -> None:
        self.steps.append((step, stage, parts, is_log))

    def take(self) -> list[StepLosses]:
        """The pending steps' losses as host floats, in step order; nothing stays pending."""
        steps, self.steps = self.steps, []
        values = [v.detach().float().reshape(()) for _, _, parts, _ in steps for v in parts.values()]
        host: list[float] = []
        if values:
            dev = values[0].device
            flat, _ = self.dctx.reduce_flat(torch.stack([v.to(dev) for v in values]))
            host = flat.cpu().tolist()
        out, pos = [], 0
        for step, stage, parts, is_log in steps:
            out.append(StepLosses(step, stage, dict(zip(parts.keys(), host[pos:pos + len(parts)])), is_log))
            pos += len(parts)
        return out


class BestScore:
    """Mean of one logged loss (``train.best_metric``) since the last checkpoint: what decides
    whether that checkpoint is the best so far. Non-finite values are left out."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.total, self.n = 0.0, 0

    def __call__(self, rec: StepLosses) -> None:
        v = rec.values.get(self.key) if self.key else None
        if v is not None and math.isfinite(v):
            self.total += v
            self.n += 1

    def take(self) -> float | None:
        """The mean since the last call (None if no step logged the key), and start over."""
        mean = self.total / self.n if self.n else None
        self.total, self.n = 0.0, 0
        return mean


class DeferredFiniteCheck:
    """``on_nonfinite = "stop"`` when the step does not check its own losses: the first
    non-finite loss stops the run here, a few steps late but before the next checkpoint."""

    def __call__(self, rec: StepLosses) -> None:
        bad = next((k for k, v in rec.values.items() if not math.isfinite(v)), None)
        if bad is not None:
            raise NonFiniteLossError(
                f"loss '{bad}' became non-finite at step {rec.step - 1}; the last checkpoint is intact "
                "(lower the learning rate, or set train.on_nonfinite = \"skip\")")


class CollapseWarning:
    """Warns once when the identity codes' spread over a batch falls below
    :data:`COLLAPSED_SPREAD`: every face then gets the same code."""

    def __init__(self) -> None:
        self.warned = False

    def __call__(self, rec: StepLosses) -> None:
        spread = rec.values.get(SPREAD_KEY)
        if spread is not None and spread < COLLAPSED_SPREAD and not self.warned:
            self.warned = True
            warn(f"step {rec.step}: the identity codes have collapsed (spread over the batch {spread:.1e}): "
                 "every face gets the same code, so every reconstruction will look alike. For conv-encoder "
                 "set model.encoder.code_norm = true (docs/paper-fidelity.md), or lower the learning rate")


class LogWriter:
    """``log.jsonl`` records of the logging steps (``log`` is None off the main process) and the
    last one's losses on the progress bar."""

    def __init__(self, log: JsonlLog | None) -> None:
        self.log = log
        self.last: dict | None = None

    def __call__(self, rec: StepLosses) -> None:
        if rec.is_log:
            record = {"step": rec.step, "stage": rec.stage, **rec.values}
            if self.log is not None:
                self.log.write(record)
            self.last = record

    def show(self, bar) -> None:
        """Put the last record written since the previous call on ``bar`` (if any)."""
        last, self.last = self.last, None
        if last is not None and bar is not None:
            bar.set_postfix({k.split("/", 1)[1] if k.startswith("g/") else k: f"{v:.3g}"
                             for k, v in last.items() if "/" in k}, refresh=False)


def warn(message: str) -> None:
    """One line on stderr that does not tear the progress bar."""
    tqdm.write(f"facegan: warning: {message}", file=sys.stderr)
