"""Turning a validated :class:`Recipe` into modules, loss terms and data."""
from __future__ import annotations

import inspect
from typing import Any, Callable

import torch
from torch import nn

from facegan_kit.data.base import FaceData
from facegan_kit.errors import FaceganError, RecipeError
from facegan_kit.recipe.schema import MODEL_SLOTS, Recipe
from facegan_kit.registry import Registry


def instantiate(path: str, factory: Callable[..., Any], args: dict[str, Any], registry: Registry) -> Any:
    """Call ``factory(**args)``, injecting ``registry`` when the factory asks for it."""
    kwargs = dict(args)
    if "registry" in inspect.signature(factory).parameters:
        kwargs["registry"] = registry
    try:
        return factory(**kwargs)
    except FaceganError:
        raise
    except (TypeError, ValueError) as exc:
        raise RecipeError(f"{path}: {exc}") from exc


def build_model(recipe: Recipe, registry: Registry) -> nn.ModuleDict:
    """Build every ``[model.<slot>]`` component and check that their sizes agree."""
    modules = {}
    for slot, table in recipe.model.items():
        args = {k: v for k, v in table.items() if k != "type"}
        factory = registry.get(MODEL_SLOTS[slot], table["type"])
        module = instantiate(f"model.{slot}", factory, args, registry)
        if not isinstance(module, nn.Module):
            raise RecipeError(f"model.{slot}: '{table['type']}' built a {type(module).__name__}, not an nn.Module")
        modules[slot] = module
    _check_agreement(modules)
    return nn.ModuleDict(modules)


def _check_agreement(m: dict[str, nn.Module]) -> None:
    pairs = [
        ("encoder", "z_dim", "decoder", "z_dim"),
        ("controller", "code_dim", "decoder", "code_dim"),
        ("encoder", "image_size", "decoder", "image_size"),
        ("controller", "num_classes", "d_img", "num_classes"),
        ("encoder", "z_dim", "d_z", "z_dim"),
        ("controller", "code_dim", "q", "code_dim"),
        ("d_img", "feature_dim", "q", "feature_dim"),
    ]
    for a, an, b, bn in pairs:
        va = getattr(m.get(a), an, None)
        vb = getattr(m.get(b), bn, None)
        if va is not None and vb is not None and va != vb:
            raise RecipeError(f"model.{b}.{bn} = {vb} does not match model.{a}.{an} = {va}")


def build_losses(recipe: Recipe, registry: Registry, device: torch.device | str | None = None) -> dict[str, Any]:
    """Build every ``[losses.<name>]`` term (modules with ``g_loss``/``d_loss``); terms that are
    modules are moved to ``device`` when given."""
    out = {}
    for name, table in recipe.losses.items():
        args = {k: v for k, v in table.items() if k != "type"}
        term = instantiate(f"losses.{name}", registry.get("loss", table["type"]), args, registry)
        if device is not None and isinstance(term, nn.Module):
            term.to(device)
        out[name] = term
    return out


def build_dataset(recipe: Recipe, registry: Registry) -> FaceData:
    """Build the ``[data]`` component."""
    args = {k: v for k, v in recipe.data.items() if k != "type"}
    data = instantiate("data", registry.get("dataset", recipe.data["type"]), args, registry)
    if not isinstance(data, FaceData):
        raise RecipeError(f"data: '{recipe.data['type']}' returned {type(data).__name__}, not FaceData")
    return data
