"""Labelled grids of faces: the one layout every picture meant for a person uses.

Training sample grids, ``facegan eval`` / ``facegan bench`` figures, ``facegan grid`` /
``transfer`` / ``retrieve`` sheets and the browser editor's grid all go through :func:`sheet`,
so they share the same rules:

* each face is shown at least :data:`MIN_CELL` pixels wide. The quick models make 32 px faces;
  at one pixel per pixel a 54-face grid is a 300 px thumbnail nobody can judge. Small faces are
  enlarged with a smooth (bicubic) filter, which reads as a soft face rather than a mosaic of
  blocks;
* the columns (and rows, where rows mean something) carry their names, drawn with Pillow's
  default font, so a figure makes sense without the report next to it;
* a footer states the source resolution (``faces 32x32 px, shown at 128x128 px``), because
  an enlarged face looks sharper or softer than the model's real output and a reader must know.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from facegan_kit.data.io import to_uint8, write_png_atomic

__all__ = ["sheet", "save_sheet", "cell_size", "resolution_note", "HEADER", "MIN_CELL", "FONT_SIZE", "GAP",
           "cell_origin"]

#: Smallest width in pixels at which a face is shown.
MIN_CELL = 128
#: Size of the label font (Pillow's default font, scalable since Pillow 10.1).
FONT_SIZE = 13
#: Height of the column-label row and of a caption strip.
HEADER = FONT_SIZE + 7
#: White pixels between neighbouring cells (faces on the same studio wall would merge).
GAP = 2

_INK = (0, 0, 0)
_MUTED = (90, 90, 90)


def cell_size(size: int, min_cell: int = MIN_CELL) -> int:
    """Side of one cell: the face's own size, or ``min_cell`` when the face is smaller."""
    return max(int(size), int(min_cell))


def resolution_note(size: int, cell: int) -> str:
    """The footer text: what the model made and how big it is shown."""
    if cell == size:
        return f"faces {size}x{size} px, shown at their own size"
    return f"faces {size}x{size} px, shown enlarged to {cell} px"


def cell_origin(i: int, j: int, cell: int, top: int = 0, left: int = 0, cap: int = 0) -> tuple[int, int]:
    """Pixel ``(y, x)`` of the top-left corner of cell ``(i, j)`` in a :func:`sheet` whose column
    labels take ``top`` rows, row labels ``left`` columns and captions ``cap`` rows per row."""
    return top + i * (cell + cap + GAP), left + j * (cell + GAP)


def _font(size: int = FONT_SIZE):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, width: int, font) -> str:
    """``text`` cut to fit ``width`` pixels (an ellipsis marks the cut)."""
    if draw.textlength(text, font=font) <= width - 4:
        return text
    while text and draw.textlength(text + "…", font=font) > width - 4:
        text = text[:-1]
    return text + "…" if text else ""


def _wrap(draw: ImageDraw.ImageDraw, text: str, width: int, font) -> list[str]:
    """``text`` broken into lines of at most ``width`` pixels (at word boundaries)."""
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= width - 8:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(_fit(draw, word, width, font))
    return lines


def _as_uint8(img) -> np.ndarray:
    return to_uint8(img) if isinstance(img, torch.Tensor) else np.asarray(img, np.uint8)


def _enlarge(arr: np.ndarray, cell: int) -> np.ndarray:
    if arr.shape[0] == cell:
        return arr
    return np.asarray(Image.fromarray(arr).resize((cell, cell), Image.Resampling.BICUBIC), dtype=np.uint8)


def _label_width(draw, labels: Sequence[str], font, cell: int) -> int:
    widest = max((draw.textlength(str(t), font=font) for t in labels), default=0)
    return int(min(cell, max(40, widest + 10)))


def sheet(cells: Sequence[Sequence[Optional[torch.Tensor]]], col_labels: Sequence[str] | None = None,
          row_labels: Sequence[str] | None = None, min_cell: int = MIN_CELL,
          captions: Sequence[Sequence[str]] | None = None, texts: dict | None = None,
          note: bool | str = True) -> np.ndarray:
    """Lay out faces as a labelled grid.

    Args:
        cells: rows of ``(3,S,S)`` tensors in [-1,1] (or uint8 tensors / ``(S,S,3)`` arrays);
            ``None`` is a white cell. All images must have the same size ``S``.
        col_labels: text above each column (adds a :data:`HEADER` row).
        row_labels: text left of each row (adds a label column as wide as the longest label,
            at most one cell).
        min_cell: faces smaller than this are enlarged (bicubic) to this width.
        captions: optional text under every cell (same shape as ``cells``; adds a
            :data:`HEADER` strip below each row).
        texts: ``{(row, col): text}`` written in the middle of (usually empty) cells.
        note: ``True`` adds a footer with :func:`resolution_note`; a string is added to that
            note; ``False`` leaves the footer out (an image of exactly the cells).

    Returns:
        ``(H, W, 3)`` uint8: cells of ``cell`` pixels :data:`GAP` apart (see
        :func:`cell_origin`), then a footer of one line of the note per ``FONT_SIZE + 3``
        pixels, plus 6.
    """
    rows = [list(r) for r in cells]
    if not rows or not any(c is not None for r in rows for c in r):
        raise ValueError("sheet needs at least one image")
    first = _as_uint8(next(c for r in rows for c in r if c is not None))
    size = int(first.shape[0])
    cell = cell_size(size, min_cell)
    font = _font()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    ncols = max(len(r) for r in rows)
    top = HEADER if col_labels else 0
    left = _label_width(probe, row_labels, font, cell) if row_labels else 0
    cap = HEADER if captions else 0
    note_text = (resolution_note(size, cell) + (f"; {note}" if isinstance(note, str) else "")) if note else ""
    note_lines = _wrap(probe, note_text, cell_origin(0, ncols, cell, 0, left)[1] - GAP, font)
    foot = len(note_lines) * (FONT_SIZE + 3) + 6 if note_lines else 0
    height, width = cell_origin(len(rows), ncols, cell, top, left, cap)
    canvas = np.full((height - GAP + foot, width - GAP, 3), 255, np.uint8)
    for i, r in enumerate(rows):
        for j, img in enumerate(r):
            if img is None:
                continue
            arr = _as_uint8(img)
            if arr.shape[:2] != (size, size):
                raise ValueError(f"sheet cells must all be {size}x{size}, got {arr.shape[:2]}")
            y, x = cell_origin(i, j, cell, top, left, cap)
            canvas[y:y + cell, x:x + cell] = _enlarge(arr, cell)
    if not (col_labels or row_labels or captions or texts or note):
        return canvas
    pil = Image.fromarray(canvas)
    draw = ImageDraw.Draw(pil)
    for j, text in enumerate(col_labels or []):
        text = _fit(draw, str(text), cell, font)
        x = cell_origin(0, j, cell, top, left, cap)[1] + (cell - draw.textlength(text, font=font)) / 2
        draw.text((x, 3), text, fill=_INK, font=font)
    for i, text in enumerate(row_labels or []):
        y = cell_origin(i, 0, cell, top, left, cap)[0] + cell // 2 - FONT_SIZE // 2
        draw.text((4, y), _fit(draw, str(text), left, font), fill=_INK, font=font)
    for i, row in enumerate(captions or []):
        for j, text in enumerate(row):
            y, x = cell_origin(i, j, cell, top, left, cap)
            draw.text((x + 2, y + cell + 3), _fit(draw, str(text), cell, font), fill=_INK, font=font)
    for (i, j), text in (texts or {}).items():
        y, x = cell_origin(i, j, cell, top, left, cap)
        draw.text((x + 4, y + cell // 2 - FONT_SIZE // 2), _fit(draw, str(text), cell, font), fill=_INK, font=font)
    for k, line in enumerate(note_lines):
        draw.text((4, canvas.shape[0] - foot + 3 + k * (FONT_SIZE + 3)), line, fill=_MUTED, font=font)
    return np.asarray(pil, dtype=np.uint8)


def save_sheet(path, *args, **kwargs) -> Path:
    """:func:`sheet` written atomically as a PNG; returns the path."""
    return write_png_atomic(path, sheet(*args, **kwargs))
