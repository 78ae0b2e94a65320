"""Data-parallel training on the CPU: ``torchrun --nproc_per_node 2 --standalone`` with gloo.

A 2-process run of tests/fixtures/tiny.toml (global batch 8 = 2 x 4) stops after 5 steps, its
checkpoint is resumed to the end in a single process, and the result is compared with the plain
single-process run (the session's ``tiny_run``).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from facegan_kit.checkpoint import load_checkpoint
from facegan_kit.pm import default_registry
from facegan_kit.recipe import build_model, load_recipe, validate
from facegan_kit.train import train
from facegan_kit.train.distributed import DistContext, GlooSyncBatchNorm, convert_sync_batchnorm

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "fixtures" / "tiny.toml"

# Tolerances, and why. With sync_batchnorm the two runs compute the same mathematics: same
# global batches, the same noise (each process slices one global draw), BatchNorm statistics over
# the global batch, gradients averaged over the two halves. What differs is float summation order
# (per-half means, then their average; all-reduced BN sums), about 1e-7 relative per step.
# - Loss curve: relative 1e-5 (seen: <= 2e-7 over the 9 steps).
# - Weights: absolute 1e-5 (seen: <= 5e-7) for every parameter with a real gradient. The biases
#   of layers followed by BatchNorm have a gradient that is exactly 0 mathematically (the norm
#   removes any constant shift); numerically it is rounding noise, which Adam normalises into
#   steps of up to about lr. Those biases and the running means that follow them may therefore
#   drift by up to ~ steps x lr between any two float orderings: bound 9 x 2e-4 x 2 = 3.6e-3
#   (seen: <= 9e-4). Same bound for running variances.
LOSS_RTOL = 1e-5
WEIGHT_ATOL = 1e-5
DEGENERATE_ATOL = 9 * 2e-4 * 2


def _log(run: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run / "log.jsonl").read_text().splitlines()]


def _degenerate_keys() -> set[str]:
    """``model/<slot>/<name>`` of biases that feed a BatchNorm, and of BN running statistics."""
    recipe = validate(load_recipe(TINY), default_registry())
    models = build_model(recipe, default_registry())
    out = set()
    for slot, module in models.items():
        for name, sub in module.named_modules():
            if isinstance(sub, nn.modules.batchnorm._BatchNorm):
                out.update(f"model/{slot}/{name}.{b}" for b in ("running_mean", "running_var"))
            if isinstance(sub, nn.Sequential):
                kids = list(sub.named_children())
                for (n1, m1), (_, m2) in zip(kids, kids[1:]):
                    if isinstance(m2, nn.modules.batchnorm._BatchNorm) and getattr(m1, "bias", None) is not None:
                        out.add(f"model/{slot}/{name}.{n1}.bias".replace("/.", "/"))
    return out


def test_torchrun_two_processes_match_single_process(tiny_run, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
           "-m", "facegan_kit", "train", str(TINY), "--out", str(out), "--device", "cpu", "--quiet",
           "--max-steps", "5", "--set", "train.sync_batchnorm=true"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # rank 0 alone writes: one log line per step, one checkpoint series
    assert [r["step"] for r in _log(out)] == [1, 2, 3, 4, 5]
    ckpt = out / "checkpoints" / "step-00000005.safetensors"
    _, meta = load_checkpoint(ckpt)
    assert meta["world_size"] == 2 and meta["global_step"] == 5 and meta["stage"] == 1

    # ... and its checkpoint resumes in a single process
    resumed = train(TINY, out, resume=ckpt, overrides=["train.sync_batchnorm=true"], progress=False)
    assert resumed.finished and resumed.global_step == tiny_run.global_step

    ref, got = _log(tiny_run.out), _log(out)
    assert [r["step"] for r in got] == [r["step"] for r in ref]
    for a, b in zip(ref, got):
        assert a.keys() == b.keys()
        for k in a:
            if "/" in k and not k.startswith("diag/"):  # diag/g_spread: over each process's rows
                assert b[k] == pytest.approx(a[k], rel=LOSS_RTOL, abs=1e-7), (a["step"], k)

    ta, _ = load_checkpoint(tiny_run.checkpoint)
    tb, _ = load_checkpoint(resumed.checkpoint)
    loose = _degenerate_keys()
    assert loose, "expected BatchNorm-fed biases in the tiny model"
    checked = 0
    for k, v in ta.items():
        if not k.startswith("model/") or not v.is_floating_point():
            continue
        tol = DEGENERATE_ATOL if k in loose else WEIGHT_ATOL
        diff = (v - tb[k]).abs().max().item()
        assert diff <= tol, f"{k}: differs by {diff:.2e} (tolerance {tol:.1e})"
        checked += 1
    assert checked > 20


def test_single_process_context_is_a_no_op():
    ctx = DistContext()
    assert not ctx.enabled and ctx.is_main and ctx.shard is None
    p = nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    ctx.reduce_grads([p])
    assert torch.equal(p.grad, torch.full((3,), 2.0))
    assert ctx.any(True) and not ctx.any(False)
    ctx.close()


def test_gloo_sync_batchnorm_keeps_keys_and_is_batchnorm_alone():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1))
    ref = {k: v.clone() for k, v in net.state_dict().items()}
    conv = convert_sync_batchnorm(net, torch.device("cpu"))
    assert isinstance(conv[1], GlooSyncBatchNorm) and isinstance(conv[3], GlooSyncBatchNorm)
    assert conv.state_dict().keys() == ref.keys()
    x = torch.randn(6, 4)
    plain = nn.BatchNorm1d(5)
    plain.load_state_dict({k[2:]: v for k, v in ref.items() if k.startswith("1.")})
    h = conv[0](x)
    torch.testing.assert_close(conv[1](h), plain(h))
