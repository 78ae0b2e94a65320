"""facegan_kit: a toolkit for conditional face GANs (ExprGAN, CAAE).

Public API for plugin authors: :data:`hookimpl`, :mod:`facegan_kit.interfaces`,
:class:`facegan_kit.registry.Registry` (passed to ``facegan_register_components``).
"""
from facegan_kit.hookspecs import hookimpl
from facegan_kit.registry import KINDS, Registry

__version__ = "0.1.0"

#: The six trained expressions, in label order (Oulu-CASIA / the official code).
EXPRESSIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise")
#: Name of the untrained all-negative code (the paper's Fig. 3 "Neutral" column).
NEUTRAL = "neutral"

__all__ = ["hookimpl", "KINDS", "Registry", "EXPRESSIONS", "NEUTRAL", "__version__"]
