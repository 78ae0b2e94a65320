"""``lr_end_factor``: learning rates fall linearly over a stage, and a resumed run keeps the schedule."""
from __future__ import annotations

from itertools import pairwise

import pytest
import torch
from torch import nn

from facegan_kit.recipe.schema import StageSpec
from facegan_kit.train.phases import plan_stage
from facegan_kit.train.state import TrainState


def _state_and_plan(factor: float, steps: int = 11):
    models = nn.ModuleDict({"decoder": nn.Linear(2, 2), "d_img": nn.Linear(2, 1)})
    spec = StageSpec(name="s", train=["decoder", "d_img"], losses={}, steps=steps, lr=1e-3, d_lr=4e-4,
                     lr_end_factor=factor)
    state = TrainState(models=models, generator=torch.Generator())
    plan = plan_stage(0, spec, steps, {})
    state.make_optimizers(plan)
    return state, plan


def _lrs(state):
    return state.opt_g.param_groups[0]["lr"], state.opt_d.param_groups[0]["lr"]


def test_rates_fall_linearly_to_the_end_factor_on_the_last_step():
    state, plan = _state_and_plan(0.1)
    seen = []
    for step in range(plan.total_steps):
        state.step_in_stage = step
        state.set_learning_rates(plan)
        seen.append(_lrs(state))
    assert seen[0] == pytest.approx((1e-3, 4e-4))
    assert seen[5] == pytest.approx((5.5e-4, 2.2e-4))  # halfway: 1 - 0.9 / 2
    assert seen[-1] == pytest.approx((1e-4, 4e-5))
    g = [a for a, _ in seen]
    assert all(b < a for a, b in pairwise(g))


def test_default_factor_leaves_the_rates_alone():
    state, plan = _state_and_plan(1.0)
    state.step_in_stage = 7
    state.set_learning_rates(plan)
    assert _lrs(state) == pytest.approx((1e-3, 4e-4))


def test_a_decaying_stage_ends_elsewhere_than_a_constant_one(tmp_path):
    from pathlib import Path

    from facegan_kit.checkpoint import load_checkpoint
    from facegan_kit.train import train

    tiny = Path(__file__).resolve().parents[1] / "fixtures" / "tiny.toml"
    const = train(tiny, tmp_path / "const", progress=False)
    decay = train(tiny, tmp_path / "decay", overrides=["stages.2.lr_end_factor=0.0"], progress=False)
    a, meta = load_checkpoint(const.checkpoint)
    b, meta_b = load_checkpoint(decay.checkpoint)
    assert meta_b["recipe"]["stages"][2]["lr_end_factor"] == 0.0
    assert "lr_end_factor" not in meta["recipe"]["stages"][2]
    k = next(k for k in a if k.startswith("model/decoder"))
    assert not torch.equal(a[k], b[k])
