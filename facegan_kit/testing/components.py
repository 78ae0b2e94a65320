"""check_component: a model component against its kind's contract (see the package docstring)."""
from __future__ import annotations

import copy
import inspect
from typing import Any, Callable

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor, nn

from facegan_kit import interfaces
from facegan_kit.registry import KINDS
from facegan_kit.testing._common import (
    _PROTOCOLS,
    MODEL_KINDS,
    _attr,
    _in_range,
    _shape,
    _uniform,
    one_hot_labels,
)


def _forward(kind: str, model: Any, n: int, gen: torch.Generator) -> list[Tensor]:
    """Feed ``model`` correctly shaped inputs for ``kind``; check and return its outputs."""
    name = f"{kind} {type(model).__name__}"
    if kind == "encoder":
        s, z = _attr(model, "image_size", kind), _attr(model, "z_dim", kind)
        g = model(_uniform(gen, n, 3, s, s))
        _shape(f"{name}.forward(x (N,3,S,S))", g, (n, z))
        _in_range(f"{name}: identity code", g)
        return [g]
    if kind == "decoder":
        s, z, c = (_attr(model, a, kind) for a in ("image_size", "z_dim", "code_dim"))
        x_hat = model(_uniform(gen, n, z), _uniform(gen, n, c))
        _shape(f"{name}.forward(g (N,Z), c (N,C))", x_hat, (n, 3, s, s))
        _in_range(f"{name}: image", x_hat)
        return [x_hat]
    if kind == "controller":
        k, c = _attr(model, "num_classes", kind), _attr(model, "code_dim", kind)
        y = one_hot_labels(n, k)
        code = model(y, generator=gen)
        _shape(f"{name}.forward(y (N,K))", code, (n, c))
        target = model.target(code, y) if hasattr(model, "target") else code
        _shape(f"{name}.target(c, y)", target, (n, c))
        return [code]
    if kind == "discriminator":
        if hasattr(model, "image_size"):
            assert isinstance(model, interfaces.ImageDiscriminator), (
                f"{name}: an image discriminator needs attribute feature_dim and forward(x, y)")
            s = _attr(model, "image_size", kind)
            y = one_hot_labels(n, _attr(model, "num_classes", kind)) if hasattr(model, "num_classes") else None
            out = model(_uniform(gen, n, 3, s, s), y)
        else:
            assert isinstance(model, interfaces.CodeDiscriminator), f"{name}: needs forward(g, y=None)"
            out = model(_uniform(gen, n, _attr(model, "z_dim", kind)))
        assert isinstance(out, tuple) and len(out) == 2, (
            f"{name}.forward must return (logit (N,), features (N,F)), got {type(out).__name__}")
        logit, feats = out
        _shape(f"{name}: logit", logit, (n,))
        _shape(f"{name}: features", feats, (n, getattr(model, "feature_dim", None)))
        return [logit, feats]
    if kind == "regularizer":
        f = model(torch.randn(n, _attr(model, "feature_dim", kind), generator=gen))
        _shape(f"{name}.forward(features (N,F))", f, (n, getattr(model, "code_dim", None)))
        loss = model.loss(f, _uniform(gen, *f.shape))
        _shape(f"{name}.loss(pred, target)", loss, ())
        return [f, loss]
    if kind == "backbone":
        s = getattr(model, "input_size", None) or 64
        x = _uniform(gen, n, 3, s, s)
        feats = model.features(x)
        assert isinstance(feats, (list, tuple)) and feats, f"{name}.features must return a non-empty list"
        for i, f in enumerate(feats):
            _shape(f"{name}.features(x)[{i}]", f, (n, None, None, None))
        emb = model.embed(x)
        _shape(f"{name}.embed(x)", emb, (n, None))
        return [*feats, emb]
    raise AssertionError(f"check_component: kind '{kind}' is not supported (supported: {', '.join(MODEL_KINDS)}); "
                         "use check_loss for losses")


# -- components -------------------------------------------------------------------------------
def _resolve(kind: str, factory_or_module: Any) -> tuple[Callable[..., Any] | None, nn.Module | None, str]:
    if isinstance(factory_or_module, nn.Module):
        return None, factory_or_module, type(factory_or_module).__name__
    if isinstance(factory_or_module, str):
        from facegan_kit.pm import default_registry

        return default_registry().get(kind, factory_or_module), None, factory_or_module
    assert callable(factory_or_module), f"{kind}: expected a factory, a registered name or a module, got {factory_or_module!r}"
    return factory_or_module, None, getattr(factory_or_module, "__name__", repr(factory_or_module))


def _build(kind: str, factory: Callable[..., Any], kwargs: dict, seed: int, label: str) -> nn.Module:
    from facegan_kit.errors import RecipeError
    from facegan_kit.recipe.schema import check_arguments

    try:  # the recipe's view: the table must bind to the signature
        check_arguments(f"{kind} {label}", factory, kwargs)
    except RecipeError as exc:
        raise AssertionError(f"recipe table does not bind to the factory's signature: {exc}") from None
    args = dict(kwargs)
    if "registry" in inspect.signature(factory).parameters:
        from facegan_kit.pm import default_registry

        args["registry"] = default_registry()
    torch.manual_seed(seed)
    model = factory(**args)
    assert isinstance(model, nn.Module), f"{kind} {label}: the factory built a {type(model).__name__}, not an nn.Module"
    return model


def _rebuild(factory: Callable[..., Any] | None, model: nn.Module, kind: str, kwargs: dict, seed: int, label: str) -> nn.Module:
    if factory is not None:
        return _build(kind, factory, kwargs, seed, label)
    fresh = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in list(fresh.parameters()) + list(fresh.buffers()):
            if t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=gen))
    return fresh


def check_component(kind: str, factory_or_module: Any, *, batch: int = 4, seed: int = 0,
                    round_trip: bool = True, **small_kwargs: Any) -> nn.Module:
    """Build a component tiny on CPU and check the contract of its ``kind``.

    Args:
        kind: one of :data:`MODEL_KINDS`.
        factory_or_module: the factory a plugin registers (class or function), a registered
            name (looked up in :func:`facegan_kit.pm.default_registry`), or an already built
            ``nn.Module`` (then the round trip loads into a deep copy with scrambled tensors).
        batch: batch size ``N`` of the test inputs (at least 2, batch norm needs it).
        seed: seed of the build and of the inputs.
        round_trip: also check the safetensors save/load round trip.
        **small_kwargs: the recipe table, small (e.g. ``image_size=16, z_dim=8``); it must bind
            to the factory's signature like a recipe would. A ``registry`` parameter is injected.

    Returns:
        The built module (in eval mode), for further checks.

    Example:
        >>> from facegan_plugins.common.encoder import ConvEncoder
        >>> enc = check_component("encoder", ConvEncoder, image_size=16, z_dim=4, channels=[4, 8])
    """
    assert kind in KINDS, f"unknown kind '{kind}' (kinds: {', '.join(KINDS)})"
    assert kind in MODEL_KINDS, f"check_component supports {', '.join(MODEL_KINDS)}; use check_loss for losses"
    assert batch >= 2, "batch must be >= 2"
    factory, model, label = _resolve(kind, factory_or_module)
    if model is None:
        model = _build(kind, factory, small_kwargs, seed, label)
    else:
        assert not small_kwargs, "keyword arguments are only used with a factory, not a built module"
    who = f"{kind} '{label}'"
    proto = _PROTOCOLS.get(kind)
    if proto is not None:
        missing = [a for a in _protocol_members(proto) if not hasattr(model, a)]
        assert not missing, f"{who}: missing {', '.join(missing)} required by interfaces.{proto.__name__}"

    # forward + backward in train mode
    model.train()
    outputs = _forward(kind, model, batch, torch.Generator().manual_seed(seed + 1))
    for i, out in enumerate(outputs):
        assert torch.isfinite(out).all(), f"{who}: output {i} has non-finite values"
    params = [p for p in model.parameters() if p.requires_grad]
    differentiable = [o for o in outputs if o.requires_grad]
    if params:
        assert differentiable, f"{who}: has trainable parameters but no output depends on them"
        model.zero_grad(set_to_none=True)
        sum(o.float().sum() for o in differentiable).backward()
        assert any(p.grad is not None for p in params), f"{who}: no parameter received a gradient"
        for name, p in model.named_parameters():
            if p.grad is not None:
                assert torch.isfinite(p.grad).all(), f"{who}: non-finite gradient in '{name}'"
        model.zero_grad(set_to_none=True)

    if round_trip:
        _check_round_trip(kind, who, model, factory, small_kwargs, batch, seed, label)
    return model.eval()


def _protocol_members(proto: type) -> list[str]:
    names = set(getattr(proto, "__annotations__", {}))
    names |= {n for n, v in vars(proto).items() if callable(v) and not n.startswith("_")}
    return sorted(names)


def _check_round_trip(kind, who, model, factory, kwargs, batch, seed, label) -> None:
    with torch.no_grad():  # a train-mode forward moves batch-norm statistics off their defaults
        _forward(kind, model.train(), batch, torch.Generator().manual_seed(seed + 2))
        model.eval()
        before = _forward(kind, model, batch, torch.Generator().manual_seed(seed + 3))
    sd = model.state_dict()
    for name, t in sd.items():
        assert isinstance(t, Tensor), f"{who}: state_dict entry '{name}' is a {type(t).__name__}, not a tensor"
    blob = st_save({k: v.detach().cpu().contiguous() for k, v in sd.items()})
    fresh = _rebuild(factory, model, kind, kwargs, seed + 1000, label)
    try:
        fresh.load_state_dict(st_load(blob), strict=True)
    except RuntimeError as exc:
        raise AssertionError(f"{who}: a fresh build does not accept its own safetensors state dict: {exc}") from None
    fresh.eval()
    with torch.no_grad():
        after = _forward(kind, fresh, batch, torch.Generator().manual_seed(seed + 3))
    for i, (a, b) in enumerate(zip(before, after, strict=True)):
        assert torch.equal(a, b), (
            f"{who}: output {i} differs after a safetensors round trip (max |diff| "
            f"{(a - b).abs().max().item():.3g}); is some state outside state_dict (a plain attribute "
            "instead of a buffer), or a non-persistent buffer that the constructor randomises?")
