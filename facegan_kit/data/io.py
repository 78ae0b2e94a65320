"""Safe image input/output for real photographs.

:func:`read_image` is the single entry point through which user photos enter the
toolkit. It never trusts the file: the pixel count is checked from the header
*before* any pixel is decoded (decompression bombs), EXIF orientation is applied,
every Pillow mode is converted to 8-bit RGB, and every failure becomes a one-line
:class:`ImageReadError` (an :class:`~facegan_kit.errors.InputError`) whose message
starts with the offending path.

Mode conversions (documented policy):

* ``1``/``L``/``P``/``CMYK``/``YCbCr``/``LAB``/``HSV`` -> Pillow's ``convert("RGB")``
  (CMYK uses Pillow's plain conversion; embedded ICC profiles are ignored).
* Images with alpha (``RGBA``, ``LA``, ``PA``, palette with ``transparency``) are
  **composited on a white background** (transparent pixels become white, which is
  what a viewer shows and keeps face detectors away from black holes).
* 16-bit integer images (``I;16*`` and ``I`` from 16-bit PNG/TIFF) are mapped from
  0..65535 to 0..255 with ``round(v / 257)`` (so 65535 -> 255 exactly); ``I``
  values are clipped to 0..65535 first.
* Float images (``F``) are taken as 0..1 if their maximum is <= 1, else 0..255.
"""
from __future__ import annotations

import contextlib
import os
import re
import threading
import warnings
from pathlib import Path
from typing import Iterator, Union

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from facegan_kit.errors import InputError
from facegan_kit.outputs import atomic_write

__all__ = [
    "ImageReadError",
    "DEFAULT_MAX_PIXELS",
    "read_image",
    "write_png_atomic",
    "to_tensor",
    "to_uint8",
    "centre_square",
    "resize_square",
]

#: Default cap on width * height accepted by :func:`read_image`.
DEFAULT_MAX_PIXELS = 40_000_000

PathLike = Union[str, os.PathLike]

# Pillow's MAX_IMAGE_PIXELS and LOAD_TRUNCATED_IMAGES are process globals; guard
# our temporary changes so concurrent readers in threads see consistent values.
_PIL_LOCK = threading.RLock()


class ImageReadError(InputError):
    """An image file that cannot be read safely.

    Attributes:
        path: The offending file.
        reason: A short machine-readable code: ``"empty"``, ``"missing"``,
            ``"not_an_image"``, ``"truncated"``, ``"too_large"``, ``"permission_denied"`` or
            ``"unreadable"``.
    """

    def __init__(self, path: PathLike, reason: str, detail: str):
        self.path = str(path)
        self.reason = reason
        self.detail = " ".join(str(detail).split())  # force one line
        super().__init__(f"{self.path}: {self.detail}")


@contextlib.contextmanager
def _pil_limits(max_pixels: int) -> Iterator[None]:
    """Temporarily set Pillow's bomb limit and forbid loading truncated files."""
    with _PIL_LOCK:
        old_max, old_trunc = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
        # Pillow warns above MAX and raises above 2*MAX; we check ourselves too.
        Image.MAX_IMAGE_PIXELS = max(int(max_pixels), 1)
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = old_max, old_trunc


def _to_rgb_array(img: Image.Image) -> np.ndarray:
    """Convert a loaded Pillow image of any mode to a (H, W, 3) uint8 RGB array."""
    mode = img.mode
    if mode == "P" and "transparency" in img.info:
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"), dtype=np.uint8)
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(img).astype(np.float64)
        arr = np.clip(arr, 0, 65535)
        gray = np.rint(arr / 257.0).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2) if gray.ndim == 2 else gray[..., :3]
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
        scale = 255.0 if arr.size and arr.max() <= 1.0 else 1.0
        gray = np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode != "RGB":
        img = img.convert("RGB")
    return np.array(img, dtype=np.uint8)


def _too_large(path, cap: int, pixels: int | None, size: str = "") -> ImageReadError:
    what = f"{size}{pixels:,} pixels" if pixels else "more pixels"
    return ImageReadError(path, "too_large", f"image too large ({what} > the cap of {cap:,} pixels)")


def read_image(path: PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as 8-bit RGB, safely.

    Args:
        path: Image file (anything Pillow can identify; first frame of animations).
        max_pixels: Refuse images whose header announces more than this many pixels.
            Checked before decoding, so a bomb costs no memory.

    Returns:
        A C-contiguous ``(H, W, 3)`` ``uint8`` array, EXIF orientation applied.

    Raises:
        ImageReadError: (an ``InputError``) with message ``"<path>: <reason>"`` for a
            missing, empty, non-image, truncated/corrupt, over-sized or unreadable (permission)
            file.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageReadError(path, "missing", "file not found") from None
    except PermissionError:
        raise ImageReadError(path, "permission_denied", "permission denied (cannot read this file)") from None
    except OSError as exc:
        raise ImageReadError(path, "unreadable", f"cannot stat file ({exc.strerror})") from None
    if not path.is_file():
        raise ImageReadError(path, "unreadable", "not a regular file")
    if size == 0:
        raise ImageReadError(path, "empty", "empty file (0 bytes)")
    with _pil_limits(max_pixels), warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as img:
                w, h = img.size
                if w <= 0 or h <= 0:
                    raise ImageReadError(path, "unreadable", f"invalid image size {w}x{h}")
                if w * h > max_pixels:
                    raise _too_large(path, max_pixels, w * h, f"{w}x{h} = ")
                img.load()  # decode now, while the file is open and limits apply
                try:
                    img = ImageOps.exif_transpose(img)
                except Exception:  # noqa: BLE001 - a broken EXIF block is not fatal
                    pass
                arr = _to_rgb_array(img)
        except ImageReadError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            # Pillow's message names its own limit (twice ours for the error): name the real cap
            found = re.search(r"\((\d+) pixels\)", str(exc))
            raise _too_large(path, max_pixels, int(found.group(1)) if found else None) from None
        except PermissionError:
            raise ImageReadError(path, "permission_denied", "permission denied (cannot read this file)") from None
        except UnidentifiedImageError:
            raise ImageReadError(path, "not_an_image", "not an image (unrecognised format)") from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            text = str(exc) or type(exc).__name__
            low = text.lower()
            if "truncated" in low or "premature" in low or isinstance(exc, EOFError):
                raise ImageReadError(path, "truncated", f"truncated image ({text})") from None
            raise ImageReadError(path, "unreadable", f"corrupt or unsupported image ({text})") from None
        except MemoryError:
            raise ImageReadError(path, "too_large", "out of memory while decoding") from None
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.size == 0:
        raise ImageReadError(path, "unreadable", f"unexpected decoded shape {arr.shape}")
    return np.ascontiguousarray(arr)


def to_uint8(t: torch.Tensor) -> np.ndarray:
    """Convert a float image tensor in [-1, 1] to uint8 HWC.

    Args:
        t: ``(3, H, W)`` or ``(N, 3, H, W)`` float tensor in [-1, 1] (values outside
            are clipped). A uint8 tensor is only transposed.

    Returns:
        ``(H, W, 3)`` or ``(N, H, W, 3)`` uint8 numpy array.
    """
    t = t.detach().cpu()
    if t.dtype != torch.uint8:
        t = ((t.float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    if t.dim() == 3:
        return t.permute(1, 2, 0).contiguous().numpy()
    if t.dim() == 4:
        return t.permute(0, 2, 3, 1).contiguous().numpy()
    raise ValueError(f"to_uint8 expects (3,H,W) or (N,3,H,W), got {tuple(t.shape)}")


def to_tensor(img: Union[np.ndarray, torch.Tensor]) -> torch.Tensor:
    """Convert a uint8 ``(H, W, 3)`` image to a float ``(3, H, W)`` tensor in [-1, 1].

    Args:
        img: uint8 array or tensor, ``(H, W, 3)`` (or ``(H, W)`` grayscale, repeated).

    Returns:
        float32 tensor ``(3, H, W)`` with ``x / 127.5 - 1``.
    """
    arr = torch.as_tensor(np.asarray(img)) if not isinstance(img, torch.Tensor) else img
    if arr.dtype != torch.uint8:
        raise ValueError(f"to_tensor expects uint8 pixels, got {arr.dtype}")
    if arr.dim() == 2:
        arr = arr.unsqueeze(-1).expand(-1, -1, 3)
    if arr.dim() != 3 or arr.shape[2] != 3:
        raise ValueError(f"to_tensor expects (H,W,3), got {tuple(arr.shape)}")
    return arr.permute(2, 0, 1).float().div(127.5).sub(1.0).contiguous()


def centre_square(img: np.ndarray) -> np.ndarray:
    """The largest centred square of an ``(H, W, ...)`` array (contiguous)."""
    h, w = img.shape[:2]
    side = min(h, w)
    y0, x0 = (h - side) // 2, (w - side) // 2
    return np.ascontiguousarray(img[y0:y0 + side, x0:x0 + side])


def resize_square(img: np.ndarray, size: int, resample: int = Image.Resampling.LANCZOS) -> np.ndarray:
    """Centre-crop ``(H, W, 3)`` uint8 to a square and resize it to ``size`` x ``size``.

    Lanczos by default (sharp, and antialiased when shrinking); a crop already of that size is
    returned unchanged. ``resample``: another PIL filter where pixels must match earlier
    results (``facegan data prepare`` keeps bicubic, so a folder prepared again is identical).
    """
    crop = centre_square(img)
    if crop.shape[0] == size:
        return crop
    return np.array(Image.fromarray(crop).resize((size, size), resample), dtype=np.uint8)


def _as_hwc_uint8(image: Union[np.ndarray, torch.Tensor]) -> np.ndarray:
    """Normalise an array/tensor to uint8 HWC (or HW) for saving."""
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.dim() == 3 and t.shape[0] == 3:  # CHW: float [-1,1] or uint8
            image = to_uint8(t)
        else:  # already HWC / HW
            image = t.numpy()
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"write_png_atomic expects uint8 arrays or [-1,1] tensors, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise ValueError(f"write_png_atomic expects (H,W), (H,W,3) or (H,W,4), got {arr.shape}")
    return np.ascontiguousarray(arr)


def write_png_atomic(path: PathLike, image: Union[np.ndarray, torch.Tensor]) -> Path:
    """Write a PNG so that readers never see a partial file.

    The image is written to a temporary file in the destination folder, flushed
    and fsync'ed, then moved over ``path`` (:func:`facegan_kit.outputs.atomic_write`);
    the file gets the permissions a plain ``open()`` would give.

    Args:
        path: Destination ``.png`` path; parent folders are created.
        image: uint8 ``(H, W[, 3|4])`` array, uint8 ``(3, H, W)`` tensor, or a float
            ``(3, H, W)`` tensor in [-1, 1].

    Returns:
        The destination path.
    """
    path = Path(path)
    arr = _as_hwc_uint8(image)
    atomic_write(path, lambda fh: Image.fromarray(arr).save(fh, format="PNG"))
    return path
