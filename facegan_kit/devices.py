"""Choosing the torch device from what a user typed (``--device``, ``train.device``)."""
from __future__ import annotations

import torch

from facegan_kit.errors import FaceganError


def resolve_device(name: str | None) -> torch.device:
    """``None``/``"auto"`` -> CUDA when available, else the CPU; ``"cpu"``, ``"cuda"``,
    ``"cuda:N"`` as given. A CUDA device without CUDA, or a name torch does not know, is a
    one-line :class:`FaceganError` (so the command line shows no traceback)."""
    name = name or "auto"
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FaceganError(f"device '{name}' requested but CUDA is not available (use --device cpu)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise FaceganError(f"device '{name}': not a torch device (expected cpu, cuda or cuda:N)") from None
