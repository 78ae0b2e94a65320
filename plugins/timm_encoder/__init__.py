"""timm backbones as facegan components: the ``timm-encoder`` identity encoder.

Registered through the ``facegan`` entry point ``timm`` like any third-party plugin. Importing
this module does not import timm (it is imported when a model is built). The same module offers
:func:`~facegan_plugins.timm_encoder.encoder.timm_classifier`, an expression classifier on any
timm backbone.
"""
from __future__ import annotations

from facegan_kit import hookimpl
from facegan_plugins.timm_encoder.encoder import TimmClassifier, TimmEncoder, timm_classifier

__all__ = ["TimmEncoder", "TimmClassifier", "timm_classifier"]


@hookimpl
def facegan_register_components(registry):
    registry.add("encoder", "timm-encoder", TimmEncoder)
