"""Registered ``metric`` components: measurements a package adds to ``facegan eval``.

A plugin registers a factory (``registry.add("metric", "my-metric", MyMetric)``) whose
parameters all have defaults; the suite builds each registered metric once per evaluation and
calls it with a :class:`~facegan_kit.interfaces.MetricContext`: the evaluated faces and the model's renderings of them. It returns named values::

    class Sharpness:
        def __call__(self, ctx):
            return {"edit_sharpness": float(laplacian(ctx.edits.flatten(0, 1)).abs().mean())}

The values land in ``metrics.json`` under ``plugin_metrics["my-metric"]`` and in ``report.md``.
A metric that fails, or returns something other than a dict of finite numbers (or ``None``),
becomes a note naming it, so one broken package cannot cost the suite's own results.
"""
from __future__ import annotations

import math
from typing import Any

from facegan_kit.interfaces import MetricContext

__all__ = ["MetricInputs", "run_metrics", "metrics_markdown"]


#: The record :func:`run_metrics` passes to each metric (one definition, in the public API).
MetricInputs = MetricContext


def run_metrics(inputs: MetricInputs, notes: list[str], registry=None) -> dict[str, dict[str, float | None]]:
    """``{metric name: {value name: value}}`` for every registered metric (sorted by name);
    problems are appended to ``notes``."""
    if registry is None:
        from facegan_kit.pm import default_registry

        registry = default_registry()
    out: dict[str, dict[str, float | None]] = {}
    for name in registry.names("metric"):
        entry = registry.entry("metric", name)
        try:
            values = entry.factory()(inputs)
            out[name] = _checked(values)
        except Exception as exc:  # a third-party metric must not cost the suite's own results
            notes.append(f"The metric '{name}' ({entry.provider}) failed, so its values are missing: "
                         f"{type(exc).__name__}: {exc}")
    return out


def _checked(values: Any) -> dict[str, float | None]:
    if not isinstance(values, dict) or not all(isinstance(k, str) for k in values):
        raise TypeError(f"expected a dict of named values, got {type(values).__name__}")
    checked: dict[str, float | None] = {}
    for key, v in values.items():
        if v is None:
            checked[key] = None
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{key} = {v!r} is not a finite number")
        checked[key] = float(v)
    return checked


def metrics_markdown(plugin_metrics: dict[str, dict[str, float | None]]) -> list[str]:
    """The report's section for registered metrics (no lines when there are none)."""
    if not plugin_metrics:
        return []
    lines = ["## Registered metrics", "", "| metric | value |", "|---|---|"]
    for name, values in plugin_metrics.items():
        lines += [f"| {name}: {key} | {'n/a' if v is None else f'{v:.4g}'} |" for key, v in values.items()]
    return [*lines, ""]
