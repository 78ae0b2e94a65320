"""The CAAE label code: the one-hot label written as -1/+1 (``onehot-pm1``)."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class OneHotPM1(nn.Module):
    """Labels -> the CAAE code ``c = 2 y - 1`` (+1 for the class, -1 elsewhere).

    CAAE has no expression-intensity code: training always sees the exact class code, with no
    noise. The edit-time codes of the controller interface are derived from it:

    - ``level_code(k, level)``: the class code; CAAE has a single level (``levels = 1``), so
      ``level`` must be 1;
    - ``intensity_code(k, t)``: linear from all -1 (``t = 0``) to the class code (``t = 1``),
      i.e. element ``k`` is ``2t - 1`` and every other element -1;
    - ``neutral_code()``: all -1.

    The module has no parameters. Its one buffer, ``codes`` (row ``k`` is the code of class
    ``k``), is saved in checkpoints, so a checkpoint holds weights for every model slot.

    Args:
        num_classes: number of classes ``K`` (also the code size).

    Shape:
        - Input: ``y (N, K)`` one-hot (an integer label vector ``(N,)`` is one-hot encoded).
        - Output: ``c (N, K)`` with entries in ``{-1, +1}``.

    Example:
        >>> OneHotPM1(num_classes=3).intensity_code(1, 0.5)
        tensor([-1.,  0., -1.])
    """

    levels = 1

    def __init__(self, num_classes: int = 6) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"onehot-pm1: num_classes must be an integer >= 1, got {num_classes!r}")
        self.num_classes = num_classes
        self.code_dim = num_classes
        self.register_buffer("codes", 2.0 * torch.eye(num_classes) - 1.0)

    def forward(self, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The training code of labels ``y``; ``generator`` is unused (the code has no noise)."""
        y = self._one_hot(y)
        return y @ self.codes.to(y.dtype)

    def target(self, c: Tensor, y: Tensor) -> Tensor:
        """What a regulariser would predict for ``c``: the code itself."""
        return c

    def neutral_code(self) -> Tensor:
        """All -1: no class. Shape ``(K,)``."""
        return torch.full((self.code_dim,), -1.0, device=self.codes.device)

    def level_code(self, k: int, level: int) -> Tensor:
        """The class code of ``k`` at level ``1..levels`` (CAAE has one level: its class code)."""
        self._check_class(k)
        if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= self.levels:
            raise ValueError(f"onehot-pm1: level must be an integer in 1..{self.levels}, got {level!r}")
        return self.intensity_code(k, 1.0)

    def intensity_code(self, k: int, t: float) -> Tensor:
        """Linear path from the neutral code (``t = 0``) to the class code (``t = 1``). Shape ``(K,)``."""
        self._check_class(k)
        t = float(t)
        if not 0.0 <= t <= 1.0:  # also rejects NaN
            raise ValueError(f"onehot-pm1: intensity t must be in [0, 1], got {t}")
        code = self.neutral_code()
        code[k] = 2.0 * t - 1.0
        return code

    def _check_class(self, k: int) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < self.num_classes:
            raise ValueError(f"onehot-pm1: class index k must be an integer in 0..{self.num_classes - 1}, got {k!r}")

    def _one_hot(self, y: Tensor) -> Tensor:
        if y.dim() == 1:
            if y.dtype.is_floating_point:
                raise ValueError("onehot-pm1: a 1-D label tensor must hold integer class indices")
            if y.numel() and (y.min() < 0 or y.max() >= self.num_classes):
                raise ValueError(f"onehot-pm1: labels must be in 0..{self.num_classes - 1}")
            return F.one_hot(y, self.num_classes).float()
        if y.dim() != 2 or y.shape[1] != self.num_classes:
            raise ValueError(f"onehot-pm1 expects one-hot labels (N, {self.num_classes}), got {tuple(y.shape)}")
        return y if y.dtype.is_floating_point else y.float()
