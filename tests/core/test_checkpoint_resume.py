"""Checkpoints round-trip bit-identically; resumed runs reproduce uninterrupted ones exactly."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from facegan_kit.checkpoint import load_checkpoint, save_checkpoint
from facegan_kit.errors import CheckpointError
from facegan_kit.train import train

TINY = Path(__file__).resolve().parents[1] / "fixtures" / "tiny.toml"


def _losses(run: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run / "log.jsonl").read_text().splitlines()]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    tensors, _ = load_checkpoint(path)
    return {k: v for k, v in tensors.items() if k.startswith(("model/", "optim/"))}


def test_round_trip_is_bit_identical(tiny_checkpoint, tmp_path):
    tensors, meta = load_checkpoint(tiny_checkpoint)
    copy = save_checkpoint(tmp_path / "copy.safetensors", tensors, {k: v for k, v in meta.items() if k != "format"})
    again, meta2 = load_checkpoint(copy)
    assert meta2["recipe"] == meta["recipe"]
    assert tensors.keys() == again.keys()
    for k in tensors:
        assert torch.equal(tensors[k], again[k]), k


def test_checkpoint_holds_adam_state_and_recipe(tmp_path):
    run = train(TINY, tmp_path / "run", max_steps=4, progress=False)
    tensors, meta = load_checkpoint(run.checkpoint)
    assert meta["global_step"] == 4 and meta["stage"] == 1 and meta["step_in_stage"] == 1
    assert any(k.endswith("exp_avg_sq") for k in tensors), "Adam second moments missing"
    assert meta["optim"]["g"]["param_groups"][0]["betas"] == [0.5, 0.999]
    assert meta["recipe"]["recipe"]["name"] == "tiny"


@pytest.mark.parametrize("sets", [[], ["stages.1.lr_end_factor=0.2", "stages.2.lr_end_factor=0.0"]],
                         ids=["constant-lr", "decaying-lr"])
def test_resume_reproduces_uninterrupted_run(tmp_path, sets):
    full = train(TINY, tmp_path / "full", overrides=sets, progress=False)
    part = train(TINY, tmp_path / "part", overrides=sets, max_steps=5, progress=False)
    assert not part.finished
    resumed = train(TINY, tmp_path / "part", overrides=sets, resume=part.checkpoint, progress=False)
    assert resumed.finished and resumed.global_step == full.global_step
    assert _losses(tmp_path / "full") == _losses(tmp_path / "part")
    a, b = _weights(full.checkpoint), _weights(resumed.checkpoint)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_sigkill_then_resume_matches(tmp_path):
    """Kill a real training process at a random moment; --resume reproduces the losses."""
    train(TINY, tmp_path / "ref", overrides=["train.checkpoint_every=1"], progress=False)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "facegan_kit", "train", str(TINY), "--out", str(out), "--quiet",
           "--set", "train.checkpoint_every=1", "--set", "stages.2.steps=40"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    ckpts = out / "checkpoints"
    while time.time() < deadline and proc.poll() is None:
        if ckpts.is_dir() and len(list(ckpts.glob("step-*.safetensors"))) >= 1 and (out / "log.jsonl").exists() \
                and len((out / "log.jsonl").read_text().splitlines()) >= 5:
            break
        time.sleep(0.05)
    time.sleep(float(torch.rand(1)) * 0.5)
    assert proc.poll() is None, "training ended before it could be killed: " + proc.stderr.read().decode()[-500:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = train(TINY, out, overrides=["train.checkpoint_every=1", "stages.2.steps=40"], resume=ckpts,
                    progress=False)
    assert resumed.finished
    ref = _losses(tmp_path / "ref")
    got = _losses(out)
    # the reference run has 3 steps in stage 3 and the killed one 40: compare the common prefix
    assert got[: len(ref)] == ref
    assert len(got) == 46


def test_bad_checkpoints_give_one_line_errors(tmp_path, tiny_checkpoint):
    trunc = tmp_path / "trunc.safetensors"
    trunc.write_bytes(Path(tiny_checkpoint).read_bytes()[:1000])
    for bad, msg in [(trunc, "not a facegan checkpoint"), (tmp_path / "none.safetensors", "not found"),
                     (tmp_path, "no checkpoint")]:
        with pytest.raises(CheckpointError, match=msg) as err:
            load_checkpoint(bad)
        assert "\n" not in str(err.value)


def test_failed_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ck.safetensors"
    save_checkpoint(path, {"w": torch.ones(3)}, {"step": 1})

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(CheckpointError, match="No space left on device.*previous checkpoint is intact"):
        save_checkpoint(path, {"w": torch.zeros(3)}, {"step": 2})
    monkeypatch.undo()
    tensors, meta = load_checkpoint(path)
    assert torch.equal(tensors["w"], torch.ones(3)) and meta["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ck.safetensors"]  # no temp file left


def test_resume_with_other_model_is_refused(tmp_path, tiny_checkpoint):
    with pytest.raises(CheckpointError, match="different \\[model\\]"):
        train(TINY, tmp_path / "x", overrides=["model.z_dim=9"], resume=tiny_checkpoint, progress=False)


def test_best_checkpoint_is_kept(tmp_path):
    run = train(TINY, tmp_path / "run", overrides=["train.keep_checkpoints=1"], progress=False)
    best = tmp_path / "run" / "best.safetensors"
    assert best.is_file()
    _, meta = load_checkpoint(best)
    _, final_meta = load_checkpoint(run.checkpoint)
    assert meta["best"]["metric"] == "g/l1" and meta["best"]["step"] == meta["global_step"]
    # the best is the lowest mean of g/l1 between checkpoints (tiny.toml: every 2 steps and at
    # each stage end, steps 3, 6 and 9)
    rows = _losses(tmp_path / "run")
    saves = [2, 3, 4, 6, 8, 9]
    windows = {}
    for r in rows:
        if "g/l1" in r:
            windows.setdefault(min(b for b in saves if b >= r["step"]), []).append(r["g/l1"])
    means = {step: sum(v) / len(v) for step, v in windows.items()}
    step = min(means, key=means.get)
    assert meta["best"]["step"] == step and abs(meta["best"]["value"] - means[step]) < 1e-6
    assert final_meta["best"] == meta["best"]
    assert len(list((tmp_path / "run" / "checkpoints").glob("step-*"))) == 1  # pruned, best survives


def test_fresh_run_into_a_used_folder_moves_the_earlier_run_aside(tmp_path):
    # The earlier run has higher-numbered checkpoints than the fresh run will write first, and
    # keeps only 2: pruning must not delete the fresh run's checkpoint (it once crashed here).
    out = tmp_path / "run"
    first = train(TINY, out, overrides=["train.keep_checkpoints=2"], progress=False)
    before = {p.name: p.read_bytes() for p in (out / "checkpoints").iterdir()}
    final_before = first.checkpoint.read_bytes()
    second = train(TINY, out, overrides=["train.keep_checkpoints=2"], max_steps=4, progress=False)
    (prev,) = (out / "previous").iterdir()
    assert {p.name: p.read_bytes() for p in (prev / "checkpoints").iterdir()} == before
    assert (prev / "final.safetensors").read_bytes() == final_before
    assert (prev / "log.jsonl").exists() and (prev / "recipe.json").exists()
    # the folder now holds the fresh run only: its checkpoints, its log from step 1
    assert second.checkpoint.exists() and load_checkpoint(second.checkpoint)[1]["global_step"] == 4
    steps = sorted(int(p.stem.split("-")[1]) for p in (out / "checkpoints").iterdir())
    assert steps[-1] == 4 and len(steps) == 2 and all(s <= 4 for s in steps), steps
    assert _losses(out)[0]["step"] <= 2
    assert not (out / "final.safetensors").exists()  # max_steps stopped it before the end


def test_archive_ignores_an_empty_or_missing_run(tmp_path):
    from facegan_kit.train.rundir import archive_previous_run

    assert archive_previous_run(tmp_path) is None
    (tmp_path / "checkpoints").mkdir()
    assert archive_previous_run(tmp_path) is None and not (tmp_path / "previous").exists()
    (tmp_path / "log.jsonl").write_text("{}\n")
    a = archive_previous_run(tmp_path)
    (tmp_path / "log.jsonl").write_text("{}\n")
    b = archive_previous_run(tmp_path)
    assert a != b and (a / "log.jsonl").exists() and (b / "log.jsonl").exists()
