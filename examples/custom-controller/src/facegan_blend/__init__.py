"""facegan-blend: a third-party facegan plugin using only facegan_kit's public API.

It adds three components: the controller ``blend-ctrl`` (this module), the loss term
``blend-feature-match`` (:mod:`facegan_blend.loss`) and the metric ``blend-edit-change``
(:mod:`facegan_blend.metric`, reported by ``facegan eval``).

ExprGAN's controller maps a one-hot label to an expression code of ``K`` blocks of ``d``
elements, ``c_i = |u| (2 y_i - 1)`` with ``u ~ U(-1, 1)^d`` (the paper's Eq. 3). ``blend-ctrl``
trains exactly like that, and reads the same formula with a *continuous* per-expression
intensity vector ``w`` in ``[0, 1]^K`` at edit time: block ``k`` of :meth:`BlendCtrl.blend_code`
is ``2 w_k - 1``. So ``{"happy": 0.6, "surprise": 0.3}`` lifts the happy block to ``0.2`` and the
surprise block to ``-0.4`` while every other block stays at ``-1`` (no expression); all-zero
weights give the neutral code (all ``-1``), one weight ``t`` gives the usual intensity slider.

Install next to facegan-kit and select it in any recipe::

    pip install ./examples/custom-controller
    facegan train recipes/exprgan-quick.toml --set model.controller.type=blend-ctrl
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from facegan_kit import EXPRESSIONS, hookimpl

__all__ = ["BlendCtrl", "blend_code"]
__version__ = "0.1.0"


def blend_code(weights: Tensor, code_dim_per_class: int) -> Tensor:
    """Intensity weights ``(..., K)`` in ``[0, 1]`` -> code ``(..., K * d)``, block ``k`` = ``2 w_k - 1``.

    Example:
        >>> blend_code(torch.tensor([0.0, 0.75]), 2)
        tensor([-1.0000, -1.0000,  0.5000,  0.5000])
    """
    block = 2.0 * weights - 1.0
    return block.unsqueeze(-1).expand(*weights.shape, code_dim_per_class).reshape(
        *weights.shape[:-1], weights.shape[-1] * code_dim_per_class)


class BlendCtrl(nn.Module):
    """Controller ``blend-ctrl``: Eq. 3 for training, blends of expressions at edit time.

    Args:
        num_classes: number of expression classes ``K``.
        code_dim_per_class: elements per class block ``d``.
        levels: discrete intensity levels for :meth:`level_code` (default ``d``, at most ``d``).
        class_names: names accepted by :meth:`blend_code` (default: facegan's six expressions
            when ``K = 6``, otherwise ``"0"``, ``"1"``, ...).

    Shape:
        - ``forward(y (N, K)) -> c (N, K * d)``; ``y`` one-hot (or integer labels ``(N,)``) as
          in training, or soft intensity rows in ``[0, 1]``.
        - ``blend_code(weights) -> (K * d,)`` for a dict or a ``(K,)`` tensor; ``(N, K * d)``
          for an ``(N, K)`` tensor.

    Example:
        >>> ctrl = BlendCtrl()
        >>> code = ctrl.blend_code({"happy": 0.6, "surprise": 0.3})
        >>> code.view(6, 5)[:, 0]
        tensor([-1.0000, -1.0000, -1.0000,  0.2000, -1.0000, -0.4000])
    """

    def __init__(self, num_classes: int = 6, code_dim_per_class: int = 5, levels: int | None = None,
                 class_names: Sequence[str] | None = None) -> None:
        super().__init__()
        if num_classes < 1 or code_dim_per_class < 1:
            raise ValueError(f"blend-ctrl: num_classes and code_dim_per_class must be >= 1, "
                             f"got {num_classes}, {code_dim_per_class}")
        levels = code_dim_per_class if levels is None else levels
        if not 1 <= levels <= code_dim_per_class:
            raise ValueError(f"blend-ctrl: levels must be in 1..{code_dim_per_class}, got {levels}")
        if class_names is None:
            class_names = EXPRESSIONS if num_classes == len(EXPRESSIONS) else [str(k) for k in range(num_classes)]
        names = [str(n).strip().lower() for n in class_names]
        if len(names) != num_classes or len(set(names)) != num_classes:
            raise ValueError(f"blend-ctrl: class_names must be {num_classes} distinct names, got {list(class_names)}")
        self.num_classes = num_classes
        self.code_dim_per_class = code_dim_per_class
        self.code_dim = num_classes * code_dim_per_class
        self.levels = levels
        self.class_names = tuple(names)
        # no parameters: a non-persistent buffer makes the codes follow .to(device)
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    # -- training code (the paper's Eq. 3) ----------------------------------------------------
    def forward(self, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``c_i = |u| (2 y_i - 1)``, one ``u ~ U(-1, 1)^d`` per sample shared by all blocks."""
        y = self._rows(y)
        n = y.shape[0]
        device = generator.device if generator is not None else y.device
        u = torch.rand(n, self.code_dim_per_class, generator=generator, device=device)
        mag = (2 * u - 1).abs().to(device=y.device, dtype=y.dtype)
        return ((2 * y - 1)[:, :, None] * mag[:, None, :]).reshape(n, self.code_dim)

    def target(self, c: Tensor, y: Tensor) -> Tensor:
        """What Q should predict for ``c``: the code itself."""
        return c

    # -- edit-time codes ----------------------------------------------------------------------
    def blend_code(self, weights: Mapping[str | int, float] | Tensor | Sequence[float]) -> Tensor:
        """The code of a blend of expressions: block ``k`` = ``2 w_k - 1``.

        Args:
            weights: ``{"happy": 0.6, "surprise": 0.3}`` (names from ``class_names`` or class
                indices; missing classes are 0), or intensities ``(K,)`` / ``(N, K)`` in ``[0, 1]``.

        Returns:
            ``(K * d,)`` (``(N, K * d)`` for a batch of weight rows); all-zero weights give
            :meth:`neutral_code`, a single weight ``t`` gives :meth:`intensity_code`.
        """
        w = self._weights(weights)
        return blend_code(w, self.code_dim_per_class)

    def neutral_code(self) -> Tensor:
        """All -1: no expression. Shape ``(K * d,)``."""
        return torch.full((self.code_dim,), -1.0, device=self._anchor.device)

    def intensity_code(self, k: int, t: float) -> Tensor:
        """Class ``k`` alone at intensity ``t`` in ``[0, 1]`` (``t = 0`` neutral). Shape ``(K * d,)``."""
        self._check_class(k)
        t = float(t)
        if not 0.0 <= t <= 1.0:  # also rejects NaN
            raise ValueError(f"blend-ctrl: intensity t must be in [0, 1], got {t}")
        return self.blend_code({k: t})

    def level_code(self, k: int, level: int) -> Tensor:
        """The paper's discrete level ``1..levels`` of class ``k``: element ``level - 1`` of block
        ``k`` is +1, everything else -1. Shape ``(K * d,)``."""
        self._check_class(k)
        if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= self.levels:
            raise ValueError(f"blend-ctrl: level must be an integer in 1..{self.levels}, got {level!r}")
        code = self.neutral_code()
        code[k * self.code_dim_per_class + level - 1] = 1.0
        return code

    # -- helpers ------------------------------------------------------------------------------
    def _check_class(self, k: int) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < self.num_classes:
            raise ValueError(f"blend-ctrl: class index must be an integer in 0..{self.num_classes - 1}, got {k!r}")

    def _class_index(self, key: str | int) -> int:
        if isinstance(key, str):
            name = key.strip().lower()
            if name not in self.class_names:
                raise ValueError(f"blend-ctrl: unknown expression '{key}' (known: {', '.join(self.class_names)})")
            return self.class_names.index(name)
        self._check_class(key)
        return key

    def _weights(self, weights) -> Tensor:
        dev = self._anchor.device
        if isinstance(weights, Mapping):
            w = torch.zeros(self.num_classes, device=dev)
            for key, value in weights.items():
                w[self._class_index(key)] = float(value)
        else:
            w = torch.as_tensor(weights, dtype=torch.float32, device=dev)
            if w.dim() not in (1, 2) or w.shape[-1] != self.num_classes:
                raise ValueError(f"blend-ctrl: weights must have shape ({self.num_classes},) or "
                                 f"(N, {self.num_classes}), got {tuple(w.shape)}")
        if not bool(((w >= 0) & (w <= 1)).all()):  # also rejects NaN
            raise ValueError(f"blend-ctrl: blend weights must be in [0, 1], got {w.tolist()}")
        return w

    def _rows(self, y: Tensor) -> Tensor:
        if y.dim() == 1:
            if y.dtype.is_floating_point:
                raise ValueError("blend-ctrl: a 1-D label tensor must hold integer class indices")
            if y.numel() and (y.min() < 0 or y.max() >= self.num_classes):
                raise ValueError(f"blend-ctrl: labels must be in 0..{self.num_classes - 1}")
            return F.one_hot(y, self.num_classes).float()
        if y.dim() != 2 or y.shape[1] != self.num_classes:
            raise ValueError(f"blend-ctrl expects labels (N, {self.num_classes}), got {tuple(y.shape)}")
        return y if y.dtype.is_floating_point else y.float()


@hookimpl
def facegan_register_components(registry):
    """Make ``type = "blend-ctrl"`` and ``type = "blend-feature-match"`` available to recipes, and
    add ``blend-edit-change`` to what ``facegan eval`` measures."""
    from facegan_blend.loss import FeatureMatchLoss
    from facegan_blend.metric import EditChange

    registry.add("controller", "blend-ctrl", BlendCtrl)
    registry.add("loss", "blend-feature-match", FeatureMatchLoss)
    registry.add("metric", "blend-edit-change", EditChange)
