"""Image helpers of ``facegan serve``: PNG encoding, tensor/array conversion, resizing."""
from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

__all__ = ["png_bytes", "tensor_to_uint8", "square_resize", "crop_tensor", "resize"]


def png_bytes(arr: np.ndarray, compress_level: int = 1) -> bytes:
    """``(H, W, 3)`` uint8 -> PNG bytes (fast compression by default: the images are small)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def tensor_to_uint8(t: torch.Tensor) -> np.ndarray:
    from facegan_kit.data.io import to_uint8

    return to_uint8(t)


def square_resize(arr: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop ``(H, W, 3)`` uint8 to a square and resize it to ``size`` (antialiased).

    Not :func:`facegan_kit.apps.images.resize_square`: that one resamples with PIL's
    Lanczos filter, this one with torch's antialiased bilinear filter (the pixels the
    served model has always been given)."""
    from facegan_kit.apps.images import centre_square

    sq = centre_square(arr)
    if sq.shape[0] == size:
        return sq
    t = torch.from_numpy(sq).permute(2, 0, 1)[None].float()
    t = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return t[0].round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def crop_tensor(crop: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(crop).permute(2, 0, 1)[None].float().div(127.5).sub(1.0)


def resize(arr: np.ndarray, h: int, w: int) -> np.ndarray:
    """``(H, W, 3)`` uint8 -> ``(h, w, 3)`` (PIL bilinear; for face detection on big photos)."""
    return np.asarray(Image.fromarray(arr).resize((max(1, w), max(1, h)), Image.BILINEAR, reducing_gap=2.0))
