"""[train] speed options: validation, resolution per device, CPU results unchanged by sync_every,
bf16 / channels_last / fused Adam on the CPU when asked for, the identity feature cache, the
batch metadata it relies on, and a smoke run of benchmarks/train_step.py."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from facegan_kit.checkpoint import load_checkpoint
from facegan_kit.data.base import FaceSplit
from facegan_kit.errors import NonFiniteLossError, RecipeError
from facegan_kit.pm import default_registry
from facegan_kit.recipe import load_recipe, validate
from facegan_kit.registry import Registry
from facegan_kit.train import train
from facegan_kit.train.batches import ImageSource, make_batch
from facegan_kit.train.speed import resolve_speed

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "fixtures" / "tiny.toml"


def _spec(*overrides):
    return validate(load_recipe(TINY, list(overrides)), default_registry()).train


def _log(run: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run / "log.jsonl").read_text().splitlines()]


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    tensors, _ = load_checkpoint(path)
    return {k: v for k, v in tensors.items() if k.startswith(("model/", "optim/"))}


# -- validation ------------------------------------------------------------------------------
@pytest.mark.parametrize("override", [
    'train.precision="auto"', 'train.precision="fp32"', 'train.precision="bf16"',
    'train.channels_last="on"', 'train.channels_last="off"', 'train.fused_adam="on"', 'train.resident="off"',
    "train.cudnn_benchmark=false", "train.compile=true", "train.sync_every=8", "train.sync_batchnorm=true",
])
def test_valid_speed_options(override):
    _spec(override)


@pytest.mark.parametrize("override, needle", [
    ('train.precision="fp16"', "train.precision"),
    ('train.channels_last="yes"', "train.channels_last"),
    ("train.fused_adam=true", "train.fused_adam"),
    ('train.resident="gpu"', "train.resident"),
    ("train.sync_every=-1", "train.sync_every"),
    ('train.compile="yes"', "train.compile"),
    ("train.cudnn_benchmark=1", "train.cudnn_benchmark"),
    ("train.sync_batchnorm=1", "train.sync_batchnorm"),
    ("train.sync_everyy=2", "did you mean 'sync_every'"),
])
def test_invalid_speed_options_name_the_key(override, needle):
    with pytest.raises(RecipeError, match=needle) as err:
        _spec(override)
    assert "\n" not in str(err.value)


def test_auto_is_off_on_cpu_and_fast_on_cuda():
    spec = _spec()
    cpu = resolve_speed(spec, torch.device("cpu"))
    assert (cpu.amp_dtype, cpu.channels_last, cpu.fused_adam, cpu.cudnn_benchmark, cpu.compile, cpu.sync_every,
            cpu.resident) == (None, False, False, False, False, 1, False)
    cuda = resolve_speed(spec, torch.device("cuda"))  # resolution only: no GPU needed
    assert (cuda.amp_dtype, cuda.channels_last, cuda.fused_adam, cuda.cudnn_benchmark, cuda.sync_every) == \
        (torch.bfloat16, True, True, True, 20)
    forced = resolve_speed(_spec('train.precision="bf16"', 'train.channels_last="on"', "train.sync_every=5"),
                           torch.device("cpu"))
    assert (forced.amp_dtype, forced.channels_last, forced.sync_every) == (torch.bfloat16, True, 5)


# -- results ---------------------------------------------------------------------------------
def test_sync_every_is_bit_identical_on_cpu(tiny_run, tmp_path):
    """Reading the losses back every 4 steps changes when the host waits, not what is computed."""
    run = train(TINY, tmp_path / "s4", overrides=["train.sync_every=4"], progress=False)
    assert _log(tmp_path / "s4") == _log(tiny_run.out)
    a, b = _tensors(tiny_run.checkpoint), _tensors(run.checkpoint)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_run_json_records_device_settings_and_speed(tiny_run):
    info = json.loads((tiny_run.out / "run.json").read_text())
    assert info["device"] == "cpu" and info["world_size"] == 1 and info["finished"]
    assert info["speed"] == resolve_speed(_spec(), torch.device("cpu")).describe()
    assert info["global_step"] == tiny_run.global_step
    assert set(info["images_per_second"]) == {"controller", "reconstruction", "refining"}
    assert all(v > 0 for v in info["images_per_second"].values())


def test_deferred_check_still_stops_at_the_bad_step(tmp_path, monkeypatch):
    from facegan_plugins.losses import terms

    original = terms.L1Loss.g_loss
    calls = {"n": 0}

    def poisoned(self, ctx):
        calls["n"] += 1
        value = original(self, ctx)
        return value * float("nan") if calls["n"] == 2 else value

    monkeypatch.setattr(terms.L1Loss, "g_loss", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"loss 'g/l1' became non-finite at step 4"):
        train(TINY, tmp_path / "run", overrides=["train.sync_every=3"], progress=False)
    ckpts = sorted((tmp_path / "run" / "checkpoints").glob("*.safetensors"))
    assert ckpts, "the last good checkpoint must be kept"
    for ck in ckpts:  # checkpoints are only written after a check: never with NaN weights
        assert all(torch.isfinite(v).all() for k, v in _tensors(ck).items() if v.is_floating_point()), ck.name
    assert [r["step"] for r in _log(tmp_path / "run")] == [1, 2, 3, 4]  # the records before the bad step


def test_bf16_channels_last_fused_on_cpu_when_asked(tmp_path):
    run = train(TINY, tmp_path / "bf16", max_steps=4, progress=False,
                overrides=['train.precision="bf16"', 'train.channels_last="on"', 'train.fused_adam="on"'])
    log = _log(tmp_path / "bf16")
    assert len(log) == 4
    assert all(torch.isfinite(torch.tensor(v)) for r in log for k, v in r.items() if "/" in k)
    tensors = _tensors(run.checkpoint)
    assert all(v.dtype == torch.float32 for k, v in tensors.items() if k.startswith("model/") and v.is_floating_point())
    # and it resumes from its own checkpoint
    again = train(TINY, tmp_path / "bf16", resume=run.checkpoint, progress=False,
                  overrides=['train.precision="bf16"', 'train.channels_last="on"', 'train.fused_adam="on"'])
    assert again.finished


# -- batches and the identity feature cache ---------------------------------------------------
def _split(n: int = 10, s: int = 8) -> FaceSplit:
    g = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (n, 3, s, s), dtype=torch.uint8, generator=g)
    return FaceSplit(images, torch.arange(n) % 3, torch.arange(n))


def test_batch_exposes_indices_and_flip_mask():
    split = _split()
    index = torch.tensor([4, 1, 7, 2])
    gen = torch.Generator().manual_seed(0)
    batch = make_batch(split, index, torch.device("cpu"), 3, True, gen)
    x, y, labels = batch  # still unpacks as before
    assert torch.equal(batch.index, index) and batch.flip.dtype == torch.bool and batch.flip.shape == (4,)
    plain = ImageSource(split, torch.device("cpu"))(index)
    want = torch.where(batch.flip[:, None, None, None], plain.flip(-1), plain)
    assert torch.equal(x, want) and torch.equal(labels, split.expression[index])
    # two processes' slices of a global batch are the single-process batch, noise included
    halves = [make_batch(split, index, torch.device("cpu"), 3, True, torch.Generator().manual_seed(0),
                         shard=(r, 2)) for r in range(2)]
    assert torch.equal(torch.cat([h.x for h in halves]), x)
    assert torch.equal(torch.cat([h.flip for h in halves]), batch.flip)
    assert torch.equal(halves[1].y_all, y)


class _Backbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.calls = 0

    def features(self, x):
        self.calls += x.shape[0]
        a = self.conv(x)
        return [a, a.mean(dim=(2, 3))]


def _identity(**kw):
    from facegan_plugins.losses.identity import IdentityLoss

    reg = Registry()
    torch.manual_seed(0)
    net = _Backbone()
    reg.add("backbone", "tiny", lambda: net)
    return IdentityLoss(backbone="tiny", registry=reg, **kw), net


def test_identity_cache_computes_each_image_and_flip_once():
    split = _split(n=70)  # two chunks of 64
    source = ImageSource(split, torch.device("cpu"))
    loss, net = _identity()
    direct, _ = _identity(cache_real=False)
    gen = torch.Generator().manual_seed(1)
    for step in range(6):
        index = torch.randperm(70, generator=gen)[:16]
        batch = make_batch(split, index, torch.device("cpu"), 3, True, gen)
        cached = loss.real_features(batch.x, key=(batch.index, batch.flip), source=source)
        plain = direct.real_features(batch.x)
        for c, p in zip(cached, plain):
            torch.testing.assert_close(c, p, rtol=1e-5, atol=1e-6)
    assert loss._cache.computed == 2 * 70 and net.calls == 2 * 70  # never more than once per (image, flip)
    # the values do not depend on which batch first asked (a resumed run gets the same ones)
    other, _ = _identity()
    idx = torch.tensor([69, 3])
    flip = torch.tensor([True, False])
    a = loss.real_features(None, key=(idx, flip), source=source)
    b = other.real_features(None, key=(idx, flip), source=source)
    assert all(torch.equal(u, v) for u, v in zip(a, b))


def test_identity_cache_respects_budget_and_falls_back():
    split = _split(n=8)
    source = ImageSource(split, torch.device("cpu"))
    loss, net = _identity(cache_mb=0)
    x = source(torch.arange(4))
    feats = loss.real_features(x, key=(torch.arange(4), None), source=source)
    assert loss._cache.disabled and feats[0].shape == (4, 4, 8, 8)
    with pytest.raises(ValueError, match="cache_mb"):
        _identity(cache_mb=-1)


# -- benchmark -------------------------------------------------------------------------------
def test_train_step_benchmark_smoke(tmp_path):
    spec = importlib.util.spec_from_file_location("train_step_bench", ROOT / "benchmarks" / "train_step.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.main(["--recipe", str(TINY), "--batch", "4", "--steps", "1", "--warmup", "1", "--repeats", "1",
                       "--stages", "refining", "--device", "cpu", "--opt", 'train.precision="bf16"',
                       "--json", str(tmp_path / "b.json"), "--md", str(tmp_path / "b.md")])
    assert [r["mode"] for r in rows] == ["eager-fp32", "optimised", "graphs"]
    assert all(r["images_per_s"] > 0 for r in rows)
    md = (tmp_path / "b.md").read_text()
    assert "| refining | 4 |" in md and "| CUDA graphs img/s | graphs / eager |" in md
    settings = [r["settings"] for r in json.loads((tmp_path / "b.json").read_text())["rows"]]
    assert [s["precision"] for s in settings] == ["fp32", "bf16", "bf16"]
    assert [s["cuda_graphs"] for s in settings] == [False, False, True]  # the CPU runs the capture-ready step
