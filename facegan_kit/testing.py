"""Reusable contract checks for plugin authors: plain asserts with messages that say what broke.

Use them from your plugin's own tests (pytest shows the assertion message)::

    from facegan_kit.testing import check_component, check_controller, check_registered

    def test_my_controller():
        ctrl = check_component("controller", MyController, num_classes=3, code_dim_per_class=2)
        check_controller(ctrl)

    def test_entry_point():          # after `pip install -e .` of your package
        check_registered("my-ctrl", "controller")

Checks, all on CPU at the tiny size you pass:

- :func:`check_component` - kinds ``encoder``, ``decoder``, ``controller``, ``discriminator``,
  ``regularizer``, ``backbone``: the keyword arguments bind to the factory's signature the way
  a recipe table would (signature = schema), the built object is an ``nn.Module`` satisfying
  the kind's Protocol in :mod:`facegan_kit.interfaces`, a forward on correctly shaped inputs
  gives the documented shapes, finite values (codes and images in ``[-1, 1]``), back-propagation
  reaches the parameters with finite gradients, and a safetensors round trip into a freshly
  built (differently seeded) copy gives bit-identical eval-mode outputs.
- :func:`check_controller` - the controller's edit-time contract (neutral, levels, intensity
  path endpoints, reproducible noise, errors on out-of-range arguments).
- :func:`check_loss` - a loss term's ``g_loss``/``d_loss`` on a tiny :func:`tiny_step_context`.
- :func:`check_registered` / :func:`plugin_registry` - registration through the real entry
  points, or through one plugin module before it is installed.
"""
from __future__ import annotations

import copy
import importlib
import inspect
from typing import Any, Callable

import pluggy
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor, nn

from facegan_kit import interfaces
from facegan_kit.registry import KINDS, Entry, Registry

__all__ = [
    "MODEL_KINDS", "check_component", "check_controller", "check_loss", "check_registered",
    "plugin_registry", "tiny_step_context", "one_hot_labels",
]

#: Kinds :func:`check_component` knows how to feed.
MODEL_KINDS = ("encoder", "decoder", "controller", "discriminator", "regularizer", "backbone")
_PROTOCOLS = {
    "encoder": interfaces.Encoder, "decoder": interfaces.Decoder, "controller": interfaces.Controller,
    "regularizer": interfaces.Regularizer, "backbone": interfaces.Backbone,
}


# -- inputs -----------------------------------------------------------------------------------
def one_hot_labels(n: int, num_classes: int) -> Tensor:
    """``(n, num_classes)`` float one-hot labels cycling through the classes."""
    return nn.functional.one_hot(torch.arange(n) % num_classes, num_classes).float()


def _uniform(gen: torch.Generator, *shape: int) -> Tensor:
    return torch.rand(*shape, generator=gen) * 2 - 1


def _attr(model: Any, name: str, kind: str) -> int:
    value = getattr(model, name, None)
    assert isinstance(value, int) and not isinstance(value, bool) and value > 0, (
        f"{kind} {type(model).__name__}: attribute '{name}' must be a positive int "
        f"(see facegan_kit.interfaces), got {value!r}")
    return value


def _shape(who: str, t: Any, shape: tuple) -> None:
    assert isinstance(t, Tensor), f"{who}: expected a tensor, got {type(t).__name__}"
    ok = t.dim() == len(shape) and all(s is None or s == a for s, a in zip(shape, t.shape, strict=True))
    want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
    assert ok, f"{who}: shape {tuple(t.shape)}, expected {want}"


def _in_range(who: str, t: Tensor) -> None:
    assert torch.isfinite(t).all(), f"{who}: non-finite values"
    assert t.detach().abs().max() <= 1 + 1e-6, (
        f"{who}: values must lie in [-1, 1], got range [{t.min().item():.4g}, {t.max().item():.4g}]")


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


# -- controllers ------------------------------------------------------------------------------
def check_controller(ctrl: Any, *, batch: int = 6, check_errors: bool = True) -> None:
    """Check a controller's training and edit-time contract (:class:`interfaces.Controller`).

    - ``num_classes``, ``code_dim``, ``levels`` are positive ints;
    - ``forward(y, generator)`` gives ``(N, code_dim)`` finite codes, reproducible for equal
      generator seeds, and ``target(c, y)`` has the same shape;
    - ``neutral_code()``, ``level_code(k, l)`` for every class and level, and
      ``intensity_code(k, t)`` are ``(code_dim,)`` and finite;
    - the intensity path starts at neutral: ``intensity_code(k, 0) == neutral_code()`` for every
      ``k``; ``intensity_code(k, 1)`` is not neutral and differs between classes;
      ``intensity_code(k, 0.5)`` lies element-wise between the two endpoints;
    - with ``check_errors``: a class index out of range, level ``0`` / ``levels + 1`` and
      ``t = 1.5`` raise ``ValueError`` (or a :class:`~facegan_kit.errors.FaceganError`).
    """
    from facegan_kit.errors import FaceganError

    who = f"controller {type(ctrl).__name__}"
    assert isinstance(ctrl, interfaces.Controller), f"{who}: does not satisfy interfaces.Controller"
    k, c, levels = (_attr(ctrl, a, "controller") for a in ("num_classes", "code_dim", "levels"))
    y = one_hot_labels(batch, k)
    a = ctrl(y, generator=torch.Generator().manual_seed(5))
    b = ctrl(y, generator=torch.Generator().manual_seed(5))
    _shape(f"{who}.forward(y)", a, (batch, c))
    assert torch.isfinite(a).all(), f"{who}: non-finite training code"
    assert torch.equal(a, b), f"{who}: forward(y, generator) is not reproducible for equal generator seeds"
    if hasattr(ctrl, "target"):
        _shape(f"{who}.target(c, y)", ctrl.target(a, y), (batch, c))

    neutral = ctrl.neutral_code()
    _shape(f"{who}.neutral_code()", neutral, (c,))
    assert torch.isfinite(neutral).all(), f"{who}: non-finite neutral code"
    strongest = []
    for cls in range(k):
        for lvl in range(1, levels + 1):
            code = ctrl.level_code(cls, lvl)
            _shape(f"{who}.level_code({cls}, {lvl})", code, (c,))
            assert torch.isfinite(code).all(), f"{who}: level_code({cls}, {lvl}) is not finite"
        start, mid, end = (ctrl.intensity_code(cls, t) for t in (0.0, 0.5, 1.0))
        for t, code in ((0.0, start), (0.5, mid), (1.0, end)):
            _shape(f"{who}.intensity_code({cls}, {t})", code, (c,))
        assert torch.allclose(start, neutral), (
            f"{who}: intensity_code({cls}, 0) must equal neutral_code() (the path starts at neutral)")
        assert not torch.allclose(end, neutral), f"{who}: intensity_code({cls}, 1) is the neutral code"
        lo, hi = torch.minimum(start, end), torch.maximum(start, end)
        assert ((mid >= lo - 1e-6) & (mid <= hi + 1e-6)).all(), (
            f"{who}: intensity_code({cls}, 0.5) is not between the t=0 and t=1 codes")
        strongest.append(end)
    for i in range(k):
        for j in range(i + 1, k):
            assert not torch.allclose(strongest[i], strongest[j]), (
                f"{who}: intensity_code({i}, 1) equals intensity_code({j}, 1)")

    if check_errors:
        bad_calls = {
            f"level_code({k}, 1)": lambda: ctrl.level_code(k, 1),
            "level_code(0, 0)": lambda: ctrl.level_code(0, 0),
            f"level_code(0, {levels + 1})": lambda: ctrl.level_code(0, levels + 1),
            "intensity_code(0, 1.5)": lambda: ctrl.intensity_code(0, 1.5),
            "intensity_code(-1, 0.5)": lambda: ctrl.intensity_code(-1, 0.5),
        }
        for text, call in bad_calls.items():
            try:
                call()
            except (ValueError, FaceganError):
                continue
            raise AssertionError(f"{who}: {text} must raise ValueError (out of range)")


# -- losses -----------------------------------------------------------------------------------
def tiny_step_context(batch: int = 4, image_size: int = 16, num_classes: int = 6, seed: int = 0,
                      with_encoder: bool = True):
    """A :class:`~facegan_kit.train.context.StepContext` from tiny built-in components
    (``conv-encoder``, ``fctrl``, ``exprgan-decoder``, ``exprgan-dimg``, ``exprgan-q``,
    ``dz-mlp``) with a forward pass done, for testing loss terms."""
    from facegan_kit.pm import default_registry
    from facegan_kit.train.context import StepContext

    reg = default_registry()
    d, z = 2, 8
    specs = {
        "controller": ("controller", "fctrl", dict(num_classes=num_classes, code_dim_per_class=d)),
        "decoder": ("decoder", "exprgan-decoder", dict(image_size=image_size, z_dim=z, code_dim=num_classes * d,
                                                        channels=[8, 8], fc_channels=8, extra_channels=[4])),
        "d_img": ("discriminator", "exprgan-dimg", dict(image_size=image_size, num_classes=num_classes,
                                                        channels=[4, 8], fc_dim=16)),
        "q": ("regularizer", "exprgan-q", dict(feature_dim=16, num_classes=num_classes, code_dim_per_class=d,
                                               hidden=8, branch_hidden=4)),
        "d_z": ("discriminator", "dz-mlp", dict(z_dim=z, hidden=[8])),
    }
    if with_encoder:
        specs["encoder"] = ("encoder", "conv-encoder", dict(image_size=image_size, z_dim=z, channels=[4, 8]))
    torch.manual_seed(seed)
    models = {}
    for slot, (kind, name, kwargs) in specs.items():
        factory = reg.get(kind, name)
        params = inspect.signature(factory).parameters
        models[slot] = factory(**{k: v for k, v in kwargs.items() if k in params})
    gen = torch.Generator().manual_seed(seed)
    x = _uniform(gen, batch, 3, image_size, image_size)
    y = one_hot_labels(batch, num_classes)
    g = models["encoder"](x) if with_encoder else _uniform(gen, batch, z)
    c = models["controller"](y, generator=gen)
    x_hat = models["decoder"](g, c)
    return StepContext(models=models, x=x, y=y, g=g, g_from_encoder=with_encoder, c=c, x_hat=x_hat,
                       z_prior=_uniform(gen, batch, z), stage="test")


def check_loss(term: Any, ctx: Any | None = None) -> dict[str, Tensor]:
    """Check a loss term (:class:`interfaces.Loss`) on ``ctx`` (default :func:`tiny_step_context`).

    ``needs`` must name model slots and ``requires_encoder`` be a bool (the recipe validator
    reads both from the factory); ``g_loss(ctx)`` (and ``d_loss(ctx)`` when present) must be a
    finite scalar that back-propagates into some model. Returns ``{"g": ..., "d": ...}``.
    """
    from facegan_kit.recipe.schema import MODEL_SLOTS

    who = f"loss {type(term).__name__}"
    needs = getattr(term, "needs", ())
    assert isinstance(needs, (tuple, list)) and all(n in MODEL_SLOTS for n in needs), (
        f"{who}: 'needs' must list model slots ({', '.join(MODEL_SLOTS)}), got {needs!r}")
    assert isinstance(getattr(term, "requires_encoder", False), bool), f"{who}: 'requires_encoder' must be a bool"
    assert callable(getattr(term, "g_loss", None)), f"{who}: needs a g_loss(ctx) method"
    ctx = ctx if ctx is not None else tiny_step_context(with_encoder=True)
    out = {}
    for side in ("g", "d"):
        fn = getattr(term, f"{side}_loss", None)
        if fn is None:
            continue
        ctx.new_phase()
        value = fn(ctx)
        _shape(f"{who}.{side}_loss(ctx)", value, ())
        assert torch.isfinite(value), f"{who}: {side}_loss is not finite ({value.item()})"
        if value.requires_grad:
            params = [p for m in ctx.models.values() for p in m.parameters()]
            grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
            assert any(g is not None for g in grads), f"{who}: {side}_loss reaches no model parameter"
        out[side] = value.detach()
    return out


# -- registration -----------------------------------------------------------------------------
def check_registered(name: str, kind: str, provider: str | None = None) -> Entry:
    """Assert that ``name`` is registered as ``kind`` through the installed entry points.

    Builds a fresh registry (no cache) after :func:`importlib.invalidate_caches`, so a package
    installed during the test run is seen. ``provider`` (e.g. the distribution name
    ``"facegan-blend"``) must then occur in the entry's provider ``"<dist>:<entry point>"``.
    Returns the :class:`~facegan_kit.registry.Entry`.
    """
    from facegan_kit.pm import build_registry, clear_cache

    assert kind in KINDS, f"unknown kind '{kind}' (kinds: {', '.join(KINDS)})"
    importlib.invalidate_caches()
    clear_cache()
    registry = build_registry()
    known = registry.names(kind)
    assert name in known, (
        f"{kind} '{name}' is not registered (known: {', '.join(known) or 'none'}); is the package "
        "installed (pip install -e .), with `[project.entry-points.facegan] <name> = \"<module>\"` "
        "and not blocked by FACEGAN_BLOCK_PLUGINS / FACEGAN_ONLY_PLUGINS?")
    entry = registry.entry(kind, name)
    if provider is not None:
        assert provider in entry.provider, f"{kind} '{name}' is provided by {entry.provider}, expected {provider}"
    return entry


def plugin_registry(*plugins: Any) -> Registry:
    """A registry filled only by the given plugin modules/objects (no entry points), with the
    same hook validation as the real loader (``check_pending``): test a plugin before
    installing it, or check that it registers exactly what you expect."""
    from facegan_kit import hookspecs

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for plugin in plugins:
        pm.register(plugin)
    pm.check_pending()
    registry = Registry()
    for impl in reversed(pm.hook.facegan_register_components.get_hookimpls()):
        registry.current_provider = pm.get_name(impl.plugin) or repr(impl.plugin)
        impl.function(registry=registry)
    registry.current_provider = "<direct>"
    return registry
