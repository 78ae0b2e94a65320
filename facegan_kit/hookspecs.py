"""The plugin hooks of facegan_kit. The docstrings here are the documentation.

A plugin is a module (or object) with functions decorated by :data:`facegan_kit.hookimpl`.
Third-party packages expose it with one entry point::

    [project.entry-points.facegan]
    myplugin = "myplugin"

The built-in components register through exactly the same hook and entry-point group.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    from facegan_kit.registry import Registry

PROJECT = "facegan"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def facegan_register_components(registry: "Registry") -> None:
    """Register components by calling ``registry.add(kind, name, factory)``.

    ``kind`` is one of :data:`facegan_kit.registry.KINDS`; ``name`` is the string a recipe uses in
    ``type = "<name>"``; ``factory`` is a class or function whose keyword parameters are the
    recipe table's keys (its signature is the schema, validated before any tensor exists).
    What the built object must do for each kind is described by the Protocols in
    :mod:`facegan_kit.interfaces`.

    Example::

        from facegan_kit import hookimpl

        @hookimpl
        def facegan_register_components(registry):
            registry.add("controller", "my-ctrl", MyController)
    """
