"""The expression controller F_ctrl (the paper's Eq. 3) and the edit-time codes (``exprgan-fctrl``)."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


#: How ``level_code`` builds level ``l``: the paper's single element, or the first ``l`` elements.
LEVEL_CODES = ("single", "cumulative")


class FCtrl(nn.Module):
    """Labels -> expression code ``c = [c_1, ..., c_K]`` with ``K`` blocks of ``d`` elements.

    Training code (Eq. 3): ``u ~ U(-1, 1)^d`` is drawn once per sample and shared by all blocks
    (as the official code does); the target block is ``|u|`` (in ``[0, 1]``) and every other
    block is ``-|u|`` (in ``[-1, 0]``), i.e. ``c_i = |u| * (2 y_i - 1)``.

    Edit-time codes (never seen in training, the paper's test-time convention):

    - ``level_code(k, level)``: element ``level - 1`` of block ``k`` is +1, every other element
      of the whole code is -1 (the paper's discrete intensity levels ``1..levels``); with
      ``level_codes = "cumulative"`` (a departure) the first ``level`` elements of block ``k``
      are +1 instead, a staircase from next to the neutral code (level 1) to the strongest
      class code (level ``d``), for decoders in which the single-element codes all render the
      same face (docs/paper-fidelity.md, "Neutral and intensity levels");
    - ``neutral_code()``: all -1;
    - ``intensity_code(k, t)``: a linear slider, block ``k`` = ``2t - 1`` everywhere and the
      other blocks -1, so ``t = 0`` is the neutral code and ``t = 1`` the strongest code.

    The module has no parameters; it follows ``.to(device)`` through a non-persistent buffer.

    Args:
        num_classes: number of expression classes ``K``.
        code_dim_per_class: elements per class block ``d``.
        levels: number of discrete intensity levels (default ``d``; at most ``d``).
        level_codes: ``"single"`` (the paper's: one element +1) or ``"cumulative"`` (the first
            ``level`` elements +1). Only edit-time codes depend on it, so it may be changed on a
            trained model (``editor.controller.level_codes = "cumulative"``).

    Shape:
        - Input: ``y (N, K)`` one-hot (a float or integer label vector ``(N,)`` is one-hot encoded).
          An all-zero row (label ``K`` in a label vector) is a neutral face: every block is
          ``-|u|``, so neutral frames in the training data train the edit-time neutral code.
        - Output: ``c (N, K * d)``.

    Example:
        >>> ctrl = FCtrl(num_classes=2, code_dim_per_class=2)
        >>> ctrl.level_code(1, 2)
        tensor([-1., -1., -1.,  1.])
    """

    LEVEL_CODES = LEVEL_CODES

    def __init__(
        self, num_classes: int = 6, code_dim_per_class: int = 5, levels: int | None = None,
        level_codes: str = "single",
    ) -> None:
        super().__init__()
        if num_classes < 1 or code_dim_per_class < 1:
            raise ValueError(
                "exprgan-fctrl: num_classes and code_dim_per_class must be >= 1, "
                f"got {num_classes}, {code_dim_per_class}"
            )
        levels = code_dim_per_class if levels is None else levels
        if not 1 <= levels <= code_dim_per_class:
            raise ValueError(
                f"exprgan-fctrl: levels must be in 1..{code_dim_per_class} (code_dim_per_class), got {levels}"
            )
        if level_codes not in LEVEL_CODES:
            raise ValueError(f"exprgan-fctrl: level_codes must be one of {', '.join(LEVEL_CODES)}, got {level_codes!r}")
        self.level_codes = level_codes
        self.num_classes = num_classes
        self.code_dim_per_class = code_dim_per_class
        self.code_dim = num_classes * code_dim_per_class
        self.levels = levels
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    # -- training code ------------------------------------------------------------------------
    def forward(self, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        y = self._one_hot(y)
        n = y.shape[0]
        device = generator.device if generator is not None else y.device
        u = torch.rand(n, self.code_dim_per_class, generator=generator, device=device)
        mag = (2 * u - 1).abs().to(device=y.device, dtype=y.dtype)
        sign = 2 * y - 1  # (N, K): +1 for the target class, -1 elsewhere
        return (sign[:, :, None] * mag[:, None, :]).reshape(n, self.code_dim)

    def target(self, c: Tensor, y: Tensor) -> Tensor:
        """What Q should predict for ``c``: the code itself."""
        return c

    # -- edit-time codes ----------------------------------------------------------------------
    def neutral_code(self) -> Tensor:
        """All -1: no expression. Shape ``(K * d,)``."""
        return torch.full((self.code_dim,), -1.0, device=self._anchor.device)

    def level_code(self, k: int, level: int) -> Tensor:
        """Discrete level ``level`` (``1..levels``) of class ``k`` (``0..K-1``). Shape ``(K * d,)``."""
        self._check_class(k)
        if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= self.levels:
            raise ValueError(f"exprgan-fctrl: level must be an integer in 1..{self.levels}, got {level!r}")
        code = self.neutral_code()
        start = k * self.code_dim_per_class
        first = start if self.level_codes == "cumulative" else start + level - 1
        code[first : start + level] = 1.0
        return code

    def intensity_code(self, k: int, t: float) -> Tensor:
        """Continuous intensity ``t`` in ``[0, 1]`` of class ``k``; linear from neutral to strongest.

        Shape ``(K * d,)``.
        """
        self._check_class(k)
        t = float(t)
        if not 0.0 <= t <= 1.0:  # also rejects NaN
            raise ValueError(f"exprgan-fctrl: intensity t must be in [0, 1], got {t}")
        code = self.neutral_code()
        d = self.code_dim_per_class
        code[k * d : (k + 1) * d] = 2.0 * t - 1.0
        return code

    # -- helpers ------------------------------------------------------------------------------
    def _check_class(self, k: int) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < self.num_classes:
            raise ValueError(
                f"exprgan-fctrl: class index k must be an integer in 0..{self.num_classes - 1}, got {k!r}"
            )

    def _one_hot(self, y: Tensor) -> Tensor:
        if y.dim() == 1:
            if y.dtype.is_floating_point:
                raise ValueError("exprgan-fctrl: a 1-D label tensor must hold integer class indices")
            if y.numel() and (y.min() < 0 or y.max() > self.num_classes):
                raise ValueError(f"exprgan-fctrl: labels must be in 0..{self.num_classes} ({self.num_classes} = neutral)")
            return F.one_hot(y, self.num_classes + 1)[:, : self.num_classes].float()
        if y.dim() != 2 or y.shape[1] != self.num_classes:
            raise ValueError(
                f"exprgan-fctrl expects one-hot labels (N, {self.num_classes}), got {tuple(y.shape)}"
            )
        return y if y.dtype.is_floating_point else y.float()
