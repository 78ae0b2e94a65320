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

from facegan_kit.testing._common import MODEL_KINDS, one_hot_labels
from facegan_kit.testing.components import check_component
from facegan_kit.testing.contracts import (
                                           check_controller,
                                           check_loss,
                                           check_registered,
                                           plugin_registry,
                                           tiny_step_context,
)

__all__ = [
    "MODEL_KINDS", "check_component", "check_controller", "check_loss", "check_registered",
    "plugin_registry", "tiny_step_context", "one_hot_labels",
]
