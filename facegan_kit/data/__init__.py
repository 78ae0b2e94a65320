"""Face data: the public dataset types and the data sources the built-in ``dataset`` plugins wrap.

A ``dataset`` component returns :class:`FaceData` (``train``/``test`` :class:`FaceSplit`). The
other names here are the synthetic renderer (:func:`make_dataset`, :class:`SyntheticConfig`,
:data:`RENDER_VERSION`, which changes whenever the rendered pixels do) and the store of folders
written by ``facegan data prepare`` (:class:`PreparedFaces`). Imported on first use.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {
    "FaceData": "facegan_kit.data.base",
    "FaceSplit": "facegan_kit.data.base",
    "NEUTRAL_LABEL": "facegan_kit.data.layouts",
    "SyntheticConfig": "facegan_kit.data.synthetic",
    "make_dataset": "facegan_kit.data.synthetic",
    "RENDER_VERSION": "facegan_kit.data.synthetic",
    "PreparedFaces": "facegan_kit.data.store",
}

__all__ = list(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from facegan_kit.data.base import FaceData, FaceSplit  # noqa: F401
    from facegan_kit.data.layouts import NEUTRAL_LABEL  # noqa: F401
    from facegan_kit.data.store import PreparedFaces  # noqa: F401
    from facegan_kit.data.synthetic import RENDER_VERSION, SyntheticConfig, make_dataset  # noqa: F401


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'facegan_kit.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
