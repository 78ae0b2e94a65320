"""check_controller, check_loss, check_registered, plugin_registry (see the package docstring)."""
from __future__ import annotations

import importlib
import inspect
from typing import Any

import pluggy
import torch
from torch import Tensor

from facegan_kit import interfaces
from facegan_kit.registry import KINDS, Entry, Registry
from facegan_kit.testing._common import (
    _attr,
    _shape,
    _uniform,
    one_hot_labels,
)


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
    """The trainer's step context (a :class:`facegan_kit.StepContext`) from tiny built-in components
    (``conv-encoder``, ``exprgan-fctrl``, ``exprgan-decoder``, ``exprgan-dimg``, ``exprgan-q``,
    ``dz-mlp``) with a forward pass done, for testing loss terms."""
    from facegan_kit.pm import default_registry
    from facegan_kit.train.context import StepContext

    reg = default_registry()
    d, z = 2, 8
    specs = {
        "controller": ("controller", "exprgan-fctrl", dict(num_classes=num_classes, code_dim_per_class=d)),
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
                       x_in=x if with_encoder else None,
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
