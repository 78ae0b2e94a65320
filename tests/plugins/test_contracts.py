"""Contract tests over every registered model component (all plugins, built-in or not).

Each component is built at a tiny size on CPU, run forward, checked for shape and finiteness,
back-propagated, and round-tripped through safetensors.
"""
from __future__ import annotations

import inspect

import pytest
import torch
from safetensors.torch import load_file, save_file

from facegan_kit import interfaces
from facegan_kit.errors import CheckpointError
from facegan_kit.pm import build_registry

KINDS = ("encoder", "decoder", "controller", "discriminator", "regularizer")
N, S, Z, K, D = 4, 32, 8, 3, 2  # batch, image side, identity code, classes, code per class

#: Tiny values for well-known integer parameters (applied only where a factory has them).
TINY_INTS = {
    "image_size": S, "z_dim": Z, "num_classes": K, "code_dim_per_class": D, "code_dim": K * D,
    "fc_channels": 16, "fc_dim": 16, "feature_dim": 16, "hidden": 8, "branch_hidden": 8,
}
REGISTRY = build_registry()
CASES = [(kind, name) for kind in KINDS for name in REGISTRY.names(kind)]


def _tiny_kwargs(factory) -> dict:
    """Shrink the factory's defaults: known ints from TINY_INTS, int lists divided by 16."""
    kwargs = {}
    for name, p in inspect.signature(factory).parameters.items():
        default = p.default
        if isinstance(default, (list, tuple)) and default and all(isinstance(v, int) for v in default):
            kwargs[name] = [max(2, v // 16) for v in default]
        elif name in TINY_INTS and (default is p.empty or isinstance(default, int) or default is None):
            if name == "code_dim" and "code_dim_per_class" in inspect.signature(factory).parameters:
                continue
            kwargs[name] = TINY_INTS[name]
    return kwargs


def _build(kind: str, name: str, seed: int = 0):
    factory = REGISTRY.get(kind, name)
    torch.manual_seed(seed)
    try:
        return factory(**_tiny_kwargs(factory))
    except (FileNotFoundError, CheckpointError, ImportError) as exc:
        pytest.skip(f"{kind} '{name}' needs unavailable assets: {exc}")


def _labels(k: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.arange(N) % k, k).float()


def _run(kind: str, model, gen: torch.Generator) -> tuple[list[torch.Tensor], tuple]:
    """Forward the component on fixed inputs; return (outputs, inputs)."""
    if kind == "encoder":
        assert isinstance(model, interfaces.Encoder)
        x = torch.rand(N, 3, model.image_size, model.image_size, generator=gen) * 2 - 1
        g = model(x)
        assert g.shape == (N, model.z_dim)
        assert g.abs().max() <= 1
        return [g], (x,)
    if kind == "decoder":
        assert isinstance(model, interfaces.Decoder)
        g = torch.rand(N, model.z_dim, generator=gen) * 2 - 1
        c = torch.rand(N, model.code_dim, generator=gen) * 2 - 1
        x_hat = model(g, c)
        assert x_hat.shape == (N, 3, model.image_size, model.image_size)
        assert x_hat.abs().max() <= 1
        return [x_hat], (g, c)
    if kind == "controller":
        assert isinstance(model, interfaces.Controller)
        y = _labels(model.num_classes)
        c = model(y, generator=gen)
        assert c.shape == (N, model.code_dim)
        for code in (model.neutral_code(), model.level_code(0, 1), model.intensity_code(0, 0.5)):
            assert code.shape == (model.code_dim,)
        return [c], (y,)
    if kind == "discriminator":
        if hasattr(model, "image_size"):  # image discriminator
            assert isinstance(model, interfaces.ImageDiscriminator)
            x = torch.rand(N, 3, model.image_size, model.image_size, generator=gen) * 2 - 1
            y = _labels(model.num_classes) if hasattr(model, "num_classes") else None
            inputs = (x, y)
        else:  # code discriminator
            assert isinstance(model, interfaces.CodeDiscriminator)
            inputs = (torch.rand(N, model.z_dim, generator=gen) * 2 - 1,)
        logit, features = model(*inputs)
        assert logit.shape == (N,)
        assert features.dim() == 2 and features.shape[0] == N
        if hasattr(model, "feature_dim"):
            assert features.shape[1] == model.feature_dim
        return [logit, features], inputs
    if kind == "regularizer":
        assert isinstance(model, interfaces.Regularizer)
        f = torch.randn(N, model.feature_dim, generator=gen)
        pred = model(f)
        assert pred.shape[0] == N and pred.dim() == 2
        loss = model.loss(pred, torch.rand(pred.shape, generator=gen) * 2 - 1)
        assert loss.dim() == 0
        return [pred, loss], (f,)
    raise AssertionError(kind)


@pytest.mark.parametrize(("kind", "name"), CASES, ids=[f"{k}:{n}" for k, n in CASES])
def test_forward_backward(kind: str, name: str) -> None:
    model = _build(kind, name)
    model.train()
    outputs, _ = _run(kind, model, torch.Generator().manual_seed(1))
    for out in outputs:
        assert torch.isfinite(out).all(), f"{kind} '{name}' produced non-finite values"
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        return  # e.g. a parameter-free controller
    sum(o.float().sum() for o in outputs if o.requires_grad).backward()
    grads = [p.grad for p in params]
    assert any(g is not None for g in grads), f"{kind} '{name}': no parameter received a gradient"
    for g in grads:
        if g is not None:
            assert torch.isfinite(g).all(), f"{kind} '{name}': non-finite gradient"


@pytest.mark.parametrize(("kind", "name"), CASES, ids=[f"{k}:{n}" for k, n in CASES])
def test_safetensors_round_trip(kind: str, name: str, tmp_path) -> None:
    model = _build(kind, name, seed=0)
    # One train-mode forward so batch-norm running statistics are not at their defaults.
    with torch.no_grad():
        _run(kind, model.train(), torch.Generator().manual_seed(2))
    model.eval()
    with torch.no_grad():
        before, _ = _run(kind, model, torch.Generator().manual_seed(3))
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))

    fresh = _build(kind, name, seed=123)
    fresh.load_state_dict(load_file(str(path)))
    fresh.eval()
    with torch.no_grad():
        after, _ = _run(kind, fresh, torch.Generator().manual_seed(3))
    for a, b in zip(before, after):
        assert torch.equal(a, b), f"{kind} '{name}': outputs differ after a safetensors round trip"
