"""The state one training step shares between its phases and loss terms."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn


@dataclass
class StepContext:
    """Everything a loss term may read during one step.

    Attributes:
        models: slot name -> module (``encoder``, ``decoder``, ``controller``, ``d_img``, ``q``,
            ``d_z``; absent slots are missing keys).
        x: real images ``(N,3,S,S)`` in ``[-1,1]``.
        y: one-hot labels ``(N,K)``.
        g: identity code ``(N,Z)`` fed to the decoder (encoder output or prior noise).
        g_from_encoder: whether ``g`` came from the encoder (stage 1 uses noise).
        c: expression code ``(N,C)`` fed to the decoder.
        x_hat: decoded images ``(N,3,S,S)``.
        z_prior: a sample of the identity prior ``(N,Z)`` for D_z.
        stage: the stage name.
        sample_index, sample_flip, sample_source: where the batch came from (feature caches).
        x_in: the faces the encoder read (``x`` itself unless the stage pairs photos of one
            person), None when the identity came from the prior; decoders with
            ``uses_source`` read it.
    """

    models: dict[str, nn.Module]
    x: Tensor
    y: Tensor
    g: Tensor
    g_from_encoder: bool
    c: Tensor
    x_hat: Tensor
    z_prior: Tensor
    stage: str = ""
    cache: dict[str, Any] = field(default_factory=dict)
    #: like ``cache`` but kept across phases (e.g. an extra decoder pass the D and G steps share)
    step_cache: dict[str, Any] = field(default_factory=dict)
    #: dataset indices, flip mask and an unflipped-image source of this batch (lets frozen-network
    #: features of real images be cached per (image, flip); see ``plugins/losses/identity.py``)
    sample_index: Tensor | None = None
    sample_flip: Tensor | None = None
    sample_source: Any = None
    x_in: Tensor | None = None

    def memo(self, key: str, fn):
        """Compute ``fn()`` once per step and phase (e.g. one D(x_hat) forward shared by the
        adversarial and Q terms)."""
        if key not in self.cache:
            self.cache[key] = fn()
        return self.cache[key]

    def d_img_fake(self, detach: bool) -> tuple[Tensor, Tensor]:
        """``d_img(x_hat, y)`` -> (logit, features); ``detach`` cuts the graph into G."""
        x_hat = self.x_hat.detach() if detach else self.x_hat
        return self.memo(f"d_img_fake/{detach}", lambda: self.models["d_img"](x_hat, self.y))

    def d_img_real(self) -> tuple[Tensor, Tensor]:
        return self.memo("d_img_real", lambda: self.models["d_img"](self.x, self.y))

    def new_phase(self) -> None:
        """Forget memoised forwards (called between the D step and the G step)."""
        self.cache.clear()

