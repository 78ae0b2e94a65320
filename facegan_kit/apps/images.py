"""Faces in, pictures out: reading inputs for the apps and composing labelled sheets.

Inputs (:func:`load_face`):

* ``align=True`` (default for photos): the image is read safely
  (:func:`~facegan_kit.data.io.read_image`), the largest face is detected and aligned with
  :class:`~facegan_kit.data.align.FaceAligner` (at ``align_size``, then resized to the model
  size), and the photo and :class:`~facegan_kit.data.align.AlignedFace` are kept so that an
  edited face can be pasted back (:func:`paste_face`).
* ``align=False`` (``--no-align``): the file is taken as an already aligned crop; a non-square
  image is centre-cropped to a square, then resized to the model size.

Outputs: :func:`sheet` is :func:`facegan_kit.figures.sheet`, the labelled grid every picture
meant for a person uses (faces enlarged to at least 128 px, named columns, the source size
stated).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from facegan_kit.data.io import centre_square, read_image, resize_square, to_tensor, to_uint8  # noqa: F401 (centre_square re-exported)
from facegan_kit.errors import InputError
from facegan_kit.figures import HEADER, cell_size, save_sheet, sheet  # re-exported: the apps' sheets

__all__ = ["FaceInput", "load_face", "load_faces", "centre_square", "resize_square", "paste_face", "sheet",
           "cell_size", "HEADER", "IMAGE_SUFFIXES", "list_images", "make_aligner", "read_folder",
           "load_crops", "save_sheet"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


@dataclass
class FaceInput:
    """One input face.

    Attributes:
        path: The file it came from.
        face: ``(3, S, S)`` float tensor in [-1, 1] at the model size.
        photo: ``(H, W, 3)`` uint8 original photo (``None`` with ``align=False``).
        aligned: The :class:`~facegan_kit.data.align.AlignedFace` for paste-back (or ``None``).
    """

    path: Path
    face: torch.Tensor
    photo: Optional[np.ndarray] = None
    aligned: object = None

    @property
    def stem(self) -> str:
        return self.path.stem


def make_aligner(size: int = 128, device: str = "cpu"):
    """A :class:`FaceAligner` (MTCNN ships inside facenet-pytorch; nothing is downloaded)."""
    try:
        from facegan_kit.data.align import FaceAligner
    except ImportError as exc:  # pragma: no cover - optional dependency missing
        raise InputError(f"face alignment needs facenet-pytorch ({exc}); pass --no-align for aligned crops")
    try:
        return FaceAligner(size=size, device=device)
    except ImportError as exc:  # pragma: no cover
        raise InputError(f"face alignment needs facenet-pytorch ({exc}); pass --no-align for aligned crops")


def load_face(path, size: int, align: bool = True, aligner=None, align_size: int = 128,
              device: str = "cpu") -> FaceInput:
    """Read one face for a model of side ``size`` (see the module docstring).

    Raises:
        InputError: unreadable file (message starts with the path) or no face found.
    """
    path = Path(path)
    img = read_image(path)
    if not align:
        return FaceInput(path, to_tensor(resize_square(img, int(size))))
    if aligner is None:
        aligner = make_aligner(max(int(size), int(align_size)), device)
    try:
        aligned, _det = aligner.align_face(img, policy="largest")
    except InputError as exc:
        raise InputError(f"{path}: {exc} (pass --no-align if it is already an aligned face crop)") from None
    crop = aligned.crop if aligned.crop.shape[0] == size else resize_square(aligned.crop, int(size))
    return FaceInput(path, to_tensor(crop), photo=img, aligned=aligned)


def load_faces(paths: Sequence, size: int, align: bool = True, device: str = "cpu",
               align_size: int = 128) -> list[FaceInput]:
    """:func:`load_face` for several files with one shared aligner; all are read before any
    result is written, so a bad file stops the command before it writes anything."""
    aligner = make_aligner(max(int(size), int(align_size)), device) if align and paths else None
    return [load_face(p, size, align=align, aligner=aligner) for p in paths]


def paste_face(face_in: FaceInput, edited: torch.Tensor) -> np.ndarray:
    """The original photo with ``edited`` (``(3,S,S)`` in [-1,1]) pasted back over the face."""
    from facegan_kit.data.align import paste_back

    if face_in.photo is None or face_in.aligned is None:
        raise InputError(f"{face_in.path}: no photo to paste into (it was read with --no-align)")
    return paste_back(face_in.photo, to_uint8(edited.detach().cpu()), face_in.aligned)


def list_images(folder, exclude: Sequence = ()) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted), minus the ``exclude`` paths."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    skip = {Path(p).resolve() for p in exclude}
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                   and not p.name.startswith(".") and p.resolve() not in skip)
    return files


# -- folders of faces with an index.csv ------------------------------------------------------

def _label_of(row: dict) -> int | None:
    """Expression label 0..5 from an index row (``label``/``expression_name``/``expression``
    columns, as names or integers); ``None`` for neutral or when there is none."""
    from facegan_kit import EXPRESSIONS

    for key in ("label", "expression_name", "expression"):
        val = (row.get(key) or "").strip().lower()
        if not val:
            continue
        if val in EXPRESSIONS:
            return EXPRESSIONS.index(val)
        if val.lstrip("-").isdigit():
            k = int(val)
            return k if 0 <= k < len(EXPRESSIONS) else None
        if val == "neutral":
            return None
    return None


def read_folder(folder, require_index: bool = False) -> list[dict]:
    """The faces of a folder: ``index.csv`` rows (as written by ``facegan data synthetic``,
    ``facegan data prepare`` or ``facegan generate``: a ``path`` or ``file`` column relative to
    the folder, optional ``subject``, ``split`` and expression columns), else every image file.

    Returns dicts with ``file`` (Path), ``label`` (0..5 or None), ``subject`` (str or None),
    ``split`` (str or None).
    """
    import csv

    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    index = root / "index.csv"
    if not index.is_file():
        if require_index:
            raise InputError(f"{index}: not found (a folder written by `facegan data synthetic`, "
                             "`facegan data prepare` or `facegan generate` has one)")
        return [{"file": p, "label": None, "subject": None, "split": None} for p in list_images(root)]
    try:
        with open(index, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{index}: unreadable ({exc})") from None
    if rows and "path" not in rows[0] and "file" not in rows[0]:
        raise InputError(f"{index}: needs a 'path' (or 'file') column")
    out = []
    for r in rows:
        rel = (r.get("path") or r.get("file") or "").strip()
        if rel:
            out.append({"file": root / rel, "label": _label_of(r), "subject": (r.get("subject") or None),
                        "split": (r.get("split") or None)})
    if not out:
        raise InputError(f"{index}: no rows")
    return out


def load_crops(files: Sequence, size: int) -> torch.Tensor:
    """Pre-aligned crops as ``(N,3,size,size)`` uint8 (each read safely and resized)."""
    arrs = [resize_square(read_image(f), int(size)) for f in files]
    if not arrs:
        return torch.zeros(0, 3, size, size, dtype=torch.uint8)
    return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).contiguous()
