"""Plugin loading: entry points of group ``facegan`` into one pluggy PluginManager.

``FACEGAN_BLOCK_PLUGINS=name1,name2`` skips the named entry points (built-in ones included);
``FACEGAN_ONLY_PLUGINS=name1,...`` loads only those.
"""
from __future__ import annotations

import os
from functools import lru_cache
from importlib.metadata import entry_points

import pluggy

from facegan_kit import hookspecs
from facegan_kit.errors import FaceganError
from facegan_kit.registry import Registry

BLOCK_ENV = "FACEGAN_BLOCK_PLUGINS"
ONLY_ENV = "FACEGAN_ONLY_PLUGINS"


#: plugin name -> distribution that provides it (filled while loading entry points)
_DISTS: dict[str, str] = {}


def _env_set(name: str) -> set[str] | None:
    raw = os.environ.get(name)
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


def plugin_manager() -> pluggy.PluginManager:
    """A fresh PluginManager with every allowed ``facegan`` entry point registered."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    blocked = _env_set(BLOCK_ENV) or set()
    only = _env_set(ONLY_ENV)
    for ep in sorted(entry_points(group=hookspecs.PROJECT), key=lambda e: e.name):
        if ep.name in blocked or (only is not None and ep.name not in only):
            continue
        try:
            module = ep.load()
        except Exception as exc:  # a broken third-party plugin must not be silent
            raise FaceganError(f"plugin '{ep.name}' ({ep.value}) failed to import: {exc}") from exc
        if pm.is_registered(module):
            continue
        pm.register(module, name=ep.name)
        dist = getattr(ep, "dist", None)
        _DISTS[ep.name] = dist.name if dist is not None else "?"
    pm.check_pending()  # a misspelled hook name is an error, not silence
    return pm


def build_registry(pm: pluggy.PluginManager | None = None) -> Registry:
    """Call every plugin's ``facegan_register_components`` into a new :class:`Registry`."""
    pm = pm or plugin_manager()
    registry = Registry()
    for impl in reversed(pm.hook.facegan_register_components.get_hookimpls()):
        registry.current_provider = _provider_name(pm, impl.plugin)
        impl.function(registry=registry)
    registry.current_provider = "<direct>"
    return registry


def _provider_name(pm: pluggy.PluginManager, plugin: object) -> str:
    name = pm.get_name(plugin) or repr(plugin)
    dist = _DISTS.get(name)
    return f"{dist}:{name}" if dist else name


@lru_cache(maxsize=1)
def _cached_registry(key: tuple) -> Registry:
    return build_registry()


def default_registry() -> Registry:
    """The registry for the current environment (cached per plugin env-var setting)."""
    return _cached_registry((os.environ.get(BLOCK_ENV), os.environ.get(ONLY_ENV)))


def clear_cache() -> None:
    _cached_registry.cache_clear()
