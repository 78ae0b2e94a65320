"""Registered ``metric`` components: run by the suite, checked, failures become notes."""
from __future__ import annotations

import math

import torch

from facegan_kit import Metric, MetricContext, Registry
from facegan_kit.eval.plugin_metrics import MetricInputs, metrics_markdown, run_metrics


def _inputs() -> MetricInputs:
    x = torch.zeros(2, 3, 4, 4)
    return MetricInputs(editor=None, x=x, labels=torch.tensor([0, 1]), subject=torch.tensor([5, 6]), recon=x,
                        edits=torch.stack([x, x + 1]), neutral=x, results={"faces": 2})


class Mean:
    def __call__(self, ctx):
        return {"edit_mean": float(ctx.edits.mean()), "undefined": None}


def test_inputs_satisfy_the_public_protocol():
    assert isinstance(_inputs(), MetricContext)
    assert isinstance(Mean(), Metric)


def test_registered_metrics_run_and_broken_ones_become_notes():
    reg = Registry()
    reg.current_provider = "mypkg:mine"
    reg.add("metric", "mean", Mean)
    reg.add("metric", "raises", lambda: (lambda ctx: 1 / 0))
    reg.add("metric", "nan", lambda: (lambda ctx: {"v": math.nan}))
    reg.add("metric", "not-a-dict", lambda: (lambda ctx: 0.5))
    notes: list[str] = []
    out = run_metrics(_inputs(), notes, registry=reg)
    assert out == {"mean": {"edit_mean": 0.5, "undefined": None}}
    assert len(notes) == 3
    assert any("'raises' (mypkg:mine) failed" in n and "ZeroDivisionError" in n for n in notes), notes
    assert any("'nan'" in n and "not a finite number" in n for n in notes), notes
    assert any("'not-a-dict'" in n and "dict of named values" in n for n in notes), notes


def test_markdown_lists_values_and_nothing_without_metrics():
    assert metrics_markdown({}) == []
    text = "\n".join(metrics_markdown({"mean": {"edit_mean": 0.5, "undefined": None}}))
    assert "| mean: edit_mean | 0.5 |" in text and "| mean: undefined | n/a |" in text
