"""``train.cuda_graphs``: the capture-ready step and its CUDA graphs.

On the CPU (always run): the capture-ready step (static buffers, batches drawn on the device)
gives bit-identical losses and weights to the eager step for 20 steps over several epochs, with
an identity loss whose feature cache is read with the static index; the option off, on and auto
train bit-identically; resolution and validation of the option; device learning rates and
checkpoints of capturable optimisers.

On CUDA (marked ``gpu``, skipped without one; run by benchmarks/gpu_checks.sh): 50 replayed
steps track the same step run eagerly, and a graph run resumed from its own checkpoint
continues the uninterrupted run's curve.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from facegan_kit.checkpoint import load_checkpoint
from facegan_kit.data.base import FaceSplit
from facegan_kit.errors import FaceganError, RecipeError
from facegan_kit.pm import default_registry
from facegan_kit.recipe import build_dataset, build_losses, build_model, load_recipe, validate
from facegan_kit.registry import Registry
from facegan_kit.train import train
from facegan_kit.train.batches import ImageSource, batch_indices, stage_steps
from facegan_kit.train.graphs import WARMUP_STEPS, GraphStep, _device_lr
from facegan_kit.train.loop import one_step
from facegan_kit.train.phases import StepHooks, plan_stage
from facegan_kit.train.speed import apply_to_models, resolve_speed
from facegan_kit.train.state import TrainState

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "fixtures" / "tiny.toml"
REFINING = 2
FP32 = ['train.precision="fp32"', 'train.channels_last="off"', "train.cudnn_benchmark=false"]


class _Backbone(nn.Module):
    """A small random frozen face network (the identity loss only needs ``features``)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 3, 2, 1), nn.Conv2d(4, 8, 3, 2, 1)

    def features(self, x):
        h = torch.relu(self.a(x))
        return [h, torch.relu(self.b(h))]


def _setup(device: str, *overrides: str, identity: bool = True):
    """Models, optimisers and data of the tiny recipe's refining stage, built from the seed."""
    from facegan_plugins.losses.identity import IdentityLoss

    registry = default_registry()
    recipe = validate(load_recipe(TINY, list(overrides)), registry)
    spec = recipe.train
    dev = torch.device(device)
    speed = resolve_speed(spec, dev, 0)
    torch.manual_seed(spec.seed)
    models = build_model(recipe, registry).to(dev)
    apply_to_models(models, speed)
    losses = build_losses(recipe, registry, dev)
    if identity:
        reg = Registry()
        torch.manual_seed(1)
        net = _Backbone().to(dev)
        reg.add("backbone", "tiny", lambda: net)
        losses["identity"] = IdentityLoss(backbone="tiny", registry=reg)
    split = build_dataset(recipe, registry).train
    split = type(split)(split.images.to(dev), split.expression.to(dev), split.subject, split.extra)
    s = recipe.stages[REFINING]
    if identity:
        s = replace(s, losses={**s.losses, "identity": 1.0})
    plan = plan_stage(REFINING, s, stage_steps(len(split), s.batch_size, s.epochs, s.steps), losses)
    state = TrainState(models=models, generator=torch.Generator(device=dev).manual_seed(spec.seed))
    state.make_optimizers(plan, fused=speed.fused_adam, capturable=speed.capture)
    models.train()
    hooks = StepHooks(autocast=speed.autocast, check_finite=False)
    return state, plan, split, spec, speed, hooks, ImageSource(split, dev, speed.channels_last)


def _weights(state) -> dict[str, torch.Tensor]:
    return {f"{slot}/{k}": v.detach().cpu().clone() for slot, m in state.models.items()
            for k, v in m.state_dict().items()}


# -- the capture-ready step on the CPU ------------------------------------------------------------
def test_capture_ready_step_is_bit_identical_to_the_eager_step_for_20_steps():
    """Same seed, same batches, same flips and noise: every loss of every step and every weight
    after 20 steps (three epochs of six batches) equal bit for bit."""
    eager = _setup("cpu")
    ready = _setup("cpu")
    state_e, plan, split, spec, _, hooks, source_e = eager
    state_r, plan_r, split_r, _, speed_r, hooks_r, source_r = ready
    before = _weights(state_e)
    speed_r = replace(speed_r, cuda_graphs=True)  # on the CPU: the ready step, nothing captured
    step = GraphStep(state_r, plan_r, split_r, 6, spec, speed_r, hooks_r, source_r)
    assert not step.capture and len(split) // plan.spec.batch_size == 6
    x_ptr = None
    for k in range(20):
        for st in (state_e, state_r):
            st.step_in_stage = k
        want = one_step(state_e, plan, split, 6, spec, torch.device("cpu"), hooks=hooks, source=source_e)
        got = step()
        assert list(got) == list(want) and "g/identity" in got and "d/adv_img" in got
        for key in want:
            assert torch.equal(got[key], want[key].float()), (k, key, got[key], want[key])
        # the batch is the eager one: same permutation of (seed, stage, epoch), in a static buffer
        assert torch.equal(step.index, batch_indices(len(split), 8, spec.seed, REFINING, k))
        x_ptr = x_ptr or step.x.data_ptr()
        assert step.x.data_ptr() == x_ptr
        for st in (state_e, state_r):
            st.global_step += 1
    assert step.graph is None and step.calls == 20
    a, b = _weights(state_e), _weights(state_r)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], before[k]) for k in a if k.startswith("decoder/")), "nothing trained"


def test_filled_identity_cache_is_read_without_the_host(monkeypatch):
    """A captured step looks features up with indices on the device: once ``fill_cache`` has
    computed every image, the lookup must not fill, check or copy through the host."""
    from facegan_plugins.losses.identity import IdentityLoss, _RealFeatureCache

    g = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (70, 3, 8, 8), dtype=torch.uint8, generator=g)  # two chunks of 64
    split = FaceSplit(images, torch.arange(70) % 3, torch.arange(70))
    source = ImageSource(split, torch.device("cpu"))
    reg = Registry()
    torch.manual_seed(1)
    net = _Backbone()
    reg.add("backbone", "tiny", lambda: net)
    loss = IdentityLoss(backbone="tiny", registry=reg)
    assert loss.fill_cache(source, torch.device("cpu"))
    assert bool(loss._cache.filled.all()) and loss._cache.computed == 140

    def no_host(self, index):
        raise AssertionError("the filled cache went through the host")

    monkeypatch.setattr(_RealFeatureCache, "_ensure", no_host)
    index, flip = torch.tensor([69, 3, 64]), torch.tensor([True, False, True])
    got = loss.real_features(None, key=(index, flip), source=source)
    x = source(index)
    want = IdentityLoss(backbone="tiny", registry=reg, cache_real=False).real_features(
        torch.where(flip[:, None, None, None], x.flip(-1), x))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(got, want))
    over = IdentityLoss(backbone="tiny", registry=reg, cache_mb=0)
    assert not over.fill_cache(source, torch.device("cpu"))  # over budget: computed per step instead


def _log(run: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run / "log.jsonl").read_text().splitlines()]


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    tensors, _ = load_checkpoint(path)
    return {k: v for k, v in tensors.items() if k.startswith(("model/", "optim/"))}


def test_off_on_and_auto_train_bit_identically_on_cpu(tiny_run, tmp_path):
    """``auto`` (the fixture) is the eager step; ``on`` runs the capture-ready step on the CPU."""
    runs = {v: train(TINY, tmp_path / v, overrides=[f'train.cuda_graphs="{v}"'], progress=False)
            for v in ("off", "on")}
    info = {v: json.loads((tmp_path / v / "run.json").read_text())["speed"]["cuda_graphs"] for v in runs}
    assert info == {"off": False, "on": True}
    assert json.loads((tiny_run.out / "run.json").read_text())["speed"]["cuda_graphs"] is False
    reference = _log(tiny_run.out)
    ref_tensors = _tensors(tiny_run.checkpoint)
    for v, run in runs.items():
        assert _log(tmp_path / v) == reference, v
        got = _tensors(run.checkpoint)
        assert got.keys() == ref_tensors.keys()
        assert all(torch.equal(got[k], ref_tensors[k]) for k in got), v


def test_capture_ready_run_resumes_exactly_on_cpu(tiny_run, tmp_path):
    on = ['train.cuda_graphs="on"']
    part = train(TINY, tmp_path / "run", overrides=on, max_steps=5, progress=False)
    assert part.global_step == 5 and not part.finished
    done = train(TINY, tmp_path / "run", overrides=on, resume=part.checkpoint, progress=False)
    assert done.finished and _log(tmp_path / "run") == _log(tiny_run.out)
    a, b = _tensors(done.checkpoint), _tensors(tiny_run.checkpoint)
    assert all(torch.equal(a[k], b[k]) for k in a)


# -- resolution and validation ----------------------------------------------------------------------
def _spec(*overrides):
    return validate(load_recipe(TINY, list(overrides)), default_registry()).train


def test_cuda_graphs_resolution():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")  # resolution only: no GPU needed
    assert resolve_speed(_spec(), cpu).cuda_graphs is False
    assert resolve_speed(_spec('train.cuda_graphs="on"'), cpu).cuda_graphs is True
    assert resolve_speed(_spec('train.cuda_graphs="on"'), cpu).capture is False  # nothing to capture on a CPU
    resident = 'train.resident="on"'
    plan = resolve_speed(_spec(resident), cuda)
    assert plan.cuda_graphs and plan.capture
    # auto steps aside where a captured step cannot work
    for blocker in ('train.resident="off"', "train.compile=true", 'train.on_nonfinite="skip"'):
        assert resolve_speed(_spec(resident, blocker), cuda).cuda_graphs is False, blocker
    assert resolve_speed(_spec(resident), cuda, distributed=True).cuda_graphs is False
    assert resolve_speed(_spec('train.cuda_graphs="off"', resident), cuda).cuda_graphs is False


@pytest.mark.parametrize("overrides, device, distributed, needle", [
    (['train.on_nonfinite="skip"'], "cpu", False, "on_nonfinite"),
    (["train.compile=true"], "cpu", False, "compile"),
    (['train.resident="off"'], "cuda", False, "not resident"),
    ([], "cpu", True, "more than one process"),
])
def test_on_names_what_stands_in_its_way(overrides, device, distributed, needle):
    spec = _spec('train.cuda_graphs="on"', *overrides)
    with pytest.raises(FaceganError, match=needle) as err:
        resolve_speed(spec, torch.device(device), distributed=distributed)
    assert "\n" not in str(err.value) and 'train.cuda_graphs = "on"' in str(err.value)


def test_invalid_value_names_the_key():
    with pytest.raises(RecipeError, match="train.cuda_graphs"):
        _spec('train.cuda_graphs="yes"')
    with pytest.raises(RecipeError, match="train.cuda_graphs"):
        _spec("train.cuda_graphs=true")


def test_device_learning_rate_follows_the_schedule_and_checkpoints_as_a_number(tmp_path):
    """A captured ``step()`` reads the learning rate from the device: the schedule must update
    that tensor in place, and a checkpoint must store a number (and load anywhere)."""
    state, plan, *_ = _setup("cpu", "stages.2.lr_end_factor=0.5", identity=False)
    lr = plan.spec.lr
    _device_lr(state.opt_g, torch.device("cpu"))
    held = state.opt_g.param_groups[0]["lr"]
    assert torch.is_tensor(held)
    state.step_in_stage = plan.total_steps - 1
    state.set_learning_rates(plan)
    assert state.opt_g.param_groups[0]["lr"] is held and float(held) == pytest.approx(lr * 0.5)
    path = state.save(tmp_path / "c.safetensors", {"r": 1})
    tensors, meta = load_checkpoint(path)
    assert meta["optim"]["g"]["param_groups"][0]["lr"] == pytest.approx(lr * 0.5)
    # a checkpoint of a capturable optimiser loads into this run's (non-capturable) one
    meta["optim"]["g"]["param_groups"][0]["capturable"] = True
    again, plan2, *_ = _setup("cpu", "stages.2.lr_end_factor=0.5", identity=False)
    again.load_optimizers(tensors, meta)
    assert again.opt_g.param_groups[0]["capturable"] is False
    assert again.opt_g.param_groups[0]["lr"] == pytest.approx(lr * 0.5)


# -- CUDA ------------------------------------------------------------------------------------------
#: Replayed vs eager losses, fp32: |a - b| <= LOSS_TOL * (1 + |b|). cuDNN's and atomics' summation
#: order makes two CUDA runs differ in the last bits from the first step; over 50 GAN steps such
#: differences grow but stay far below what a wrong batch, a repeated noise draw or a missed
#: optimiser step causes (the losses then differ in the first or second digit).
LOSS_TOL = 2e-3


@pytest.mark.gpu
def test_replayed_steps_track_the_eager_step_on_cuda():
    n = 50 + WARMUP_STEPS
    runs = {}
    for capture in (False, True):
        state, plan, split, spec, speed, hooks, source = _setup("cuda", *FP32, 'train.cuda_graphs="on"',
                                                                "stages.2.steps=60")
        assert speed.capture  # both runs: capturable optimisers, batches drawn on the GPU
        step = GraphStep(state, plan, split, 6, spec, replace(speed, cuda_graphs=capture), hooks, source)
        assert step.capture is capture
        losses, flips, rng = [], [], []
        for k in range(n):
            state.step_in_stage = k
            state.set_learning_rates(plan)
            parts = step()
            losses.append(torch.stack(list(parts.values())))
            flips.append(step.flip.clone())
            rng.append(state.generator.get_state())
            state.global_step += 1
        assert (step.graph is not None) is capture
        runs[capture] = (torch.stack(losses).cpu(), torch.stack(flips).cpu(), rng)
    (eager, eager_flips, _), (graph, graph_flips, rng) = runs[False], runs[True]
    # the generator is registered with the graph: every replay draws new flips and noise ...
    assert all(not torch.equal(a, b) for a, b in zip(rng, rng[1:]))
    # ... the very ones the eager step draws (Philox offsets advance as in eager mode)
    assert torch.equal(graph_flips, eager_flips)
    err = ((graph - eager).abs() / (1 + eager.abs())).max()
    print(f"\nreplayed vs eager, {n} steps: worst relative loss difference {err:.2e}")
    assert torch.isfinite(graph).all() and err <= LOSS_TOL, err


@pytest.mark.gpu
def test_graph_run_resumes_on_the_uninterrupted_curve_on_cuda(tmp_path):
    on = FP32 + ['train.cuda_graphs="on"'] + [f"stages.{i}.steps=10" for i in range(3)]
    whole = train(TINY, tmp_path / "whole", device="cuda", overrides=on, progress=False)
    info = json.loads((tmp_path / "whole" / "run.json").read_text())
    assert info["speed"]["cuda_graphs"] is True and whole.global_step == 30
    part = train(TINY, tmp_path / "part", device="cuda", overrides=on, max_steps=16, progress=False)
    assert part.global_step == 16  # mid-stage 2, after its capture
    resumed = train(TINY, tmp_path / "part", device="cuda", overrides=on, resume=part.checkpoint, progress=False)
    assert resumed.finished and resumed.global_step == 30
    a, b = _log(tmp_path / "whole"), _log(tmp_path / "part")
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        for key in ra:
            if "/" in key:
                assert abs(ra[key] - rb[key]) <= LOSS_TOL * (1 + abs(ra[key])), (ra["step"], key, ra[key], rb[key])
    wa, wb = _tensors(whole.checkpoint), _tensors(resumed.checkpoint)
    diff = torch.cat([(wa[k] - wb[k]).abs().flatten() for k in wa if k.startswith("model/")
                      and wa[k].is_floating_point()])
    print(f"\nCUDA graph resume vs uninterrupted: mean |dw| {diff.mean():.2e}, worst {diff.max():.2e}")
    assert diff.mean() < 1e-5 and diff.max() < 5e-3, (diff.mean().item(), diff.max().item())


@pytest.mark.gpu
def test_auto_captures_each_stage_with_the_cuda_defaults(tmp_path, monkeypatch):
    """bf16 autocast, channels_last, fused capturable Adam, resident data: one graph per stage."""
    captured = []
    capture = GraphStep._capture

    def counting(self):
        capture(self)
        captured.append(self.plan.spec.name)

    monkeypatch.setattr(GraphStep, "_capture", counting)
    run = train(TINY, tmp_path / "run", device="cuda", progress=False,
                overrides=[f"stages.{i}.steps=8" for i in range(3)])
    speed = json.loads((tmp_path / "run" / "run.json").read_text())["speed"]
    assert (speed["cuda_graphs"], speed["precision"], speed["channels_last"], speed["fused_adam"]) == \
        (True, "bf16", True, True)
    assert run.finished and captured == ["controller", "reconstruction", "refining"]
    losses = [v for r in _log(tmp_path / "run") for k, v in r.items() if "/" in k]
    assert len(losses) > 24 and all(torch.isfinite(torch.tensor(losses)))
    assert len({r["g/l1"] for r in _log(tmp_path / "run") if "g/l1" in r}) > 10  # every replay differs
