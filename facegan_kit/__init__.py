"""facegan_kit: a toolkit for conditional face GANs (ExprGAN, CAAE).

The public API for plugin authors is what this package exports (``from facegan_kit import ...``)
plus :mod:`facegan_kit.interfaces`, :mod:`facegan_kit.data` and :mod:`facegan_kit.testing`;
everything else is internal and may change. The built-in plugins import nothing else, so a
third-party package can do whatever they do:

- registering: :data:`hookimpl`, :class:`Registry` (passed to ``facegan_register_components``),
  :data:`KINDS`, :func:`default_registry` (to build sub-components by name);
- component contracts: the Protocols of :mod:`facegan_kit.interfaces` (``Encoder`` ...
  ``Metric``), :class:`StepContext` (what a loss term reads), :func:`bce_logits`,
  :func:`check_shape`;
- errors: :class:`FaceganError` (one-line user errors), :class:`InputError`;
- assets: :func:`cache_dir`, :func:`file_lock`, :func:`read_state_dict`, :func:`load_converted`,
  :func:`dlib_model_file` (pretrained weights the user supplies; nothing is downloaded).

Names other than ``hookimpl``/``Registry``/``KINDS`` are imported on first use, so that
``import facegan_kit`` stays cheap (no torch) for the command line.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from facegan_kit.hookspecs import hookimpl
from facegan_kit.registry import KINDS, Registry

__version__ = "0.1.0"

#: The six trained expressions, in label order (Oulu-CASIA / the official code).
EXPRESSIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise")
#: Name of the untrained all-negative code (the paper's Fig. 3 "Neutral" column).
NEUTRAL = "neutral"

#: public name -> the module that defines it (imported on first access)
_LAZY = {
    **{name: "facegan_kit.interfaces" for name in (
        "Encoder", "Decoder", "Controller", "ImageDiscriminator", "CodeDiscriminator", "Regularizer",
        "Backbone", "Loss", "Metric", "MetricContext", "StepContext", "bce_logits", "check_shape", "decode")},
    "default_registry": "facegan_kit.pm",
    "FaceganError": "facegan_kit.errors",
    "InputError": "facegan_kit.errors",
    "cache_dir": "facegan_kit.cache",
    "file_lock": "facegan_kit.cache",
    "read_state_dict": "facegan_kit.weights",
    "load_converted": "facegan_kit.weights",
    "dlib_model_file": "facegan_kit.weights",
}

__all__ = ["hookimpl", "KINDS", "Registry", "EXPRESSIONS", "NEUTRAL", "__version__", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from facegan_kit.cache import cache_dir, file_lock  # noqa: F401
    from facegan_kit.errors import FaceganError, InputError  # noqa: F401
    from facegan_kit.interfaces import (  # noqa: F401
        Backbone, CodeDiscriminator, Controller, Decoder, Encoder, ImageDiscriminator, Loss, Metric,
        MetricContext, Regularizer, StepContext, bce_logits, check_shape, decode)
    from facegan_kit.pm import default_registry  # noqa: F401
    from facegan_kit.weights import dlib_model_file, load_converted, read_state_dict  # noqa: F401


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'facegan_kit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
