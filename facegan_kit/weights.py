"""Pretrained weights the user supplies: reading, converting once, and finding shipped model files.

Nothing is downloaded. A backbone that takes a user's file gives a ``read_weights(src)``
function (its format knowledge lives with the backbone, in its plugin); the user converts once::

    facegan weights convert vgg_face_dag.pth vggface.safetensors --kind vggface

and :func:`convert` writes the checked tensors as safetensors, atomically. At training time the
backbone calls :func:`load_converted`, which turns a missing or wrong file into one line saying
what to do. :func:`dlib_model_file` finds the model files of the ``face_recognition_models``
package (dlib's networks), which both an identity backbone and an evaluation judge read.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Callable

from torch import Tensor

from facegan_kit.errors import FaceganError, InputError

__all__ = ["read_state_dict", "convert", "load_converted", "dlib_model_file", "FORMAT_KEY"]

#: safetensors metadata key naming the backbone a converted file is for
FORMAT_KEY = "facegan_weights"

Reader = Callable[[Path], "dict[str, Tensor]"]


def read_state_dict(src: str | Path) -> dict[str, Tensor]:
    """A ``.safetensors`` file, or a plain PyTorch state dict (``.pt``/``.pth``, loaded with
    ``weights_only=True``; a ``state_dict`` wrapper and ``module.`` prefixes are removed).

    Raises:
        InputError: a missing file, or one that is not a readable state dict of tensors.
    """
    import torch

    src = Path(src)
    if not src.is_file():
        raise InputError(f"{src}: no such file")
    if src.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(src))
        except Exception as e:
            raise InputError(f"{src}: not a readable safetensors file ({type(e).__name__})") from None
    try:
        obj = torch.load(str(src), map_location="cpu", weights_only=True)
    except Exception as e:  # pickles with code, corrupt files...
        raise InputError(f"{src}: not a plain PyTorch state dict ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise InputError(f"{src}: expected a state dict of tensors")
    return {(k[7:] if k.startswith("module.") else k): v for k, v in obj.items()}


def convert(src: str | Path, dst: str | Path, read: Reader, kind: str) -> Path:
    """``read(src)`` written to ``dst`` as safetensors (atomically), tagged with ``kind``."""
    from safetensors.torch import save

    from facegan_kit.outputs import atomic_write

    src, dst = Path(src), Path(dst)
    if (dst.exists() and dst.resolve() == src.resolve()) or dst.absolute() == src.absolute():
        raise InputError(f"{dst}: refusing to overwrite the source file; choose another output path")
    sd = read(src)
    return atomic_write(dst, save(sd, metadata={FORMAT_KEY: kind, "source": src.name}))


def load_converted(path: str | os.PathLike | None, who: str, read: Reader, how: str,
                   recipe_key: str = "losses.identity.backbone_weights") -> dict[str, Tensor]:
    """``read(path)`` for backbone ``who``; a missing or wrong file is one-line
    :class:`FaceganError` that names ``recipe_key`` and says ``how`` to get a good one."""
    if path is None or str(path) == "":
        raise FaceganError(f"{who}: no pretrained weights given ({recipe_key} is not set); "
                           f"{how}, then set {recipe_key} to that file")
    p = Path(path).expanduser()
    if not p.is_file():
        raise FaceganError(f"{who}: weights file not found: {recipe_key} = '{p}'; {how}")
    try:
        return read(p)
    except InputError as e:
        raise FaceganError(f"{who}: bad weights file ({recipe_key} = {p}): {e}") from None


def dlib_model_file(name: str) -> Path | None:
    """Path of ``name`` (e.g. ``dlib_face_recognition_resnet_model_v1.dat``) in the
    ``face_recognition_models`` package, or ``None`` when it is not installed. The package is
    located without importing it: its ``__init__`` needs ``pkg_resources``, which newer
    setuptools no longer ship."""
    spec = importlib.util.find_spec("face_recognition_models")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / "models" / name
        if path.is_file():
            return path
    return None
