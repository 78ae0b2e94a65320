"""Image helpers of ``facegan serve``: PNG encoding and downscaling photos for detection (conversions
and crops are :mod:`facegan_kit.data.io`'s)."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

__all__ = ["png_bytes", "resize"]


def png_bytes(arr: np.ndarray, compress_level: int = 1) -> bytes:
    """``(H, W, 3)`` uint8 -> PNG bytes (fast compression by default: the images are small)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def resize(arr: np.ndarray, h: int, w: int) -> np.ndarray:
    """``(H, W, 3)`` uint8 -> ``(h, w, 3)`` (PIL bilinear; for face detection on big photos)."""
    return np.asarray(Image.fromarray(arr).resize((max(1, w), max(1, h)), Image.BILINEAR, reducing_gap=2.0))
