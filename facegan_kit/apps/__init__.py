"""Applications of a trained model (the paper's experiments), as plain functions.

The ``facegan`` commands in :mod:`facegan_kit.cli.apps` and :mod:`facegan_kit.cli.experiments`
are thin wrappers over these modules:

* :mod:`~facegan_kit.apps.images` - reading faces (aligned or not), composing labelled sheets;
* :mod:`~facegan_kit.apps.transfer` - expression transfer (identity of A, expression code of B);
* :mod:`~facegan_kit.apps.retrieve` - retrieval by expression code / label / pixels, t-SNE;
* :mod:`~facegan_kit.apps.classifier` - the expression classifier (encoder architecture + FC);
* :mod:`~facegan_kit.apps.augment` - Table 1: classifier accuracy vs. number of generated faces.

This module holds the small helpers they share (loading an editor, output-path safety).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from facegan_kit.errors import CheckpointError, InputError

__all__ = ["load_editor", "check_outputs", "edit_name"]


def load_editor(path, device: str | None = "cpu"):
    """:meth:`Editor.from_checkpoint` with a one-line error for a missing file; ``device`` as
    :func:`facegan_kit.devices.resolve_device` reads it (``None``/``"auto"``: CUDA if available)."""
    from facegan_kit.devices import resolve_device
    from facegan_kit.edit import Editor

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint not found")
    return Editor.from_checkpoint(p, device=str(resolve_device(device)))


def _key(path) -> Path:
    p = Path(path).expanduser()
    try:
        return p.resolve()
    except OSError:  # pragma: no cover - broken symlink loops
        return p.absolute()


def check_outputs(outputs: Iterable, inputs: Iterable) -> None:
    """Refuse (one-line :class:`InputError`) any output path that is one of the inputs,
    or two outputs that are the same file. Call it before writing anything."""
    ins = {_key(p): Path(p) for p in inputs}
    seen: dict[Path, Path] = {}
    for out in outputs:
        k = _key(out)
        if k in ins:
            raise InputError(f"{out}: output path is the input file {ins[k]}; choose another output")
        if k in seen:
            raise InputError(f"{out}: two outputs would have the same path (inputs with the same name?)")
        seen[k] = Path(out)


def edit_name(stem: str, expression: str, intensity: float | None = None, level: int | None = None,
              suffix: str = "") -> str:
    """``face`` + ``happy`` + intensity 0.7 -> ``face_happy_i0.70.png``; level 3 -> ``face_happy_l3.png``."""
    name = f"{stem}_{expression.strip().lower()}"
    if intensity is not None:
        name += f"_i{float(intensity):.2f}"
    elif level is not None:
        name += f"_l{int(level)}"
    return f"{name}{suffix}.png"
