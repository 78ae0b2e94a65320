"""Converting user-supplied pretrained weights to the safetensors files the backbones load.

Nothing is downloaded: the user brings a file they obtained themselves and converts it once::

    facegan weights convert vgg_face_dag.pth vggface.safetensors

Accepted inputs for ``kind="vggface"``: the common PyTorch conversion ``vgg_face_dag.pth``
(a state dict with keys ``conv1_1.weight`` ... ``fc8.bias``, read with ``weights_only=True``),
MatConvNet's ``vgg-face.mat`` (``simplenn`` ``layers`` or ``dagnn`` ``params``, read with
``scipy.io.loadmat``) or an already converted safetensors file. ``kind="facenet"`` takes a
facenet-pytorch ``InceptionResnetV1`` state dict (``.pt``/``.pth``) or safetensors.
The output always uses the ``vgg_face_dag`` key names (fc weights as ``nn.Linear``, fc6 flattened
in PyTorch's C,H,W order) and is written atomically (temporary file + ``os.replace``).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from facegan_kit.errors import FaceganError, InputError

__all__ = ["convert", "read_weights", "load_converted", "VGG_CONVS", "VGG_FCS", "KINDS"]

#: VGG-16 convolution names in order; a max-pool follows the last of each group.
VGG_CONVS = (("conv1_1", "conv1_2"), ("conv2_1", "conv2_2"), ("conv3_1", "conv3_2", "conv3_3"),
             ("conv4_1", "conv4_2", "conv4_3"), ("conv5_1", "conv5_2", "conv5_3"))
VGG_FCS = ("fc6", "fc7", "fc8")
KINDS = ("vggface", "facenet")
FORMAT_KEY = "facegan_weights"


# -- readers ----------------------------------------------------------------------------------


def _read_torch(src: Path) -> dict[str, Tensor]:
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


def _read_safetensors(src: Path) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(src))
    except Exception as e:
        raise InputError(f"{src}: not a readable safetensors file ({type(e).__name__})") from None


def _cell(x):
    """Unwrap loadmat's 1x1 object/struct arrays."""
    while isinstance(x, np.ndarray) and x.dtype == object and x.size == 1:
        x = x.reshape(-1)[0]
    return x


def _as_str(x) -> str:
    x = _cell(x)
    if isinstance(x, np.ndarray):
        x = x.reshape(-1)[0] if x.size else ""
    return str(x)


def _items(x) -> list:
    x = _cell(x) if not (isinstance(x, np.ndarray) and x.size > 1) else x
    if isinstance(x, np.ndarray) and x.dtype == object:
        return [_cell(v) for v in x.reshape(-1, order="F")]
    return [x]


def _mat_conv_params(filters: np.ndarray, biases: np.ndarray, name: str) -> tuple[Tensor, Tensor]:
    """MatConvNet filters (H,W,Cin,Cout) / biases (Cout,) -> PyTorch conv or linear weights."""
    biases = np.asarray(biases, dtype=np.float32).reshape(-1)
    f = np.asarray(filters, dtype=np.float32)
    cout = biases.size
    if f.ndim == 4:
        h, w, cin = f.shape[:3]
    elif f.ndim == 2 and name in VGG_FCS:  # 1x1 'conv' fc squeezed by loadmat
        h = w = 1
        cin = f.shape[0]
    else:
        raise InputError(f"{name}: unexpected MatConvNet filter shape {f.shape}")
    f = f.reshape(h, w, cin, cout).transpose(3, 2, 0, 1)  # -> (Cout, Cin, H, W)
    if name in VGG_FCS:
        f = f.reshape(cout, -1)  # flatten in (C, H, W) order like vgg_face_dag's view()
    return torch.from_numpy(np.ascontiguousarray(f)), torch.from_numpy(biases.copy())


def _read_mat(src: Path) -> dict[str, Tensor]:
    from scipy.io import loadmat

    try:
        mat = loadmat(str(src), struct_as_record=False, squeeze_me=False)
    except Exception as e:
        raise InputError(f"{src}: not a readable MATLAB file ({type(e).__name__})") from None
    wanted = {n for group in VGG_CONVS for n in group} | set(VGG_FCS)
    sd: dict[str, Tensor] = {}
    root = mat
    if "layers" not in mat and "params" not in mat and "net" in mat:
        net = _cell(mat["net"])
        root = {k: getattr(net, k) for k in ("layers", "params") if hasattr(net, k)}
    if "params" in root:  # dagnn: params(i).name = '<layer>f' / '<layer>b' (or _filter/_bias)
        values = {}
        for p in _items(root["params"]):
            values[_as_str(p.name)] = np.asarray(_cell(p.value))
        for name in wanted:
            for fk, bk in ((f"{name}f", f"{name}b"), (f"{name}_filter", f"{name}_bias")):
                if fk in values and bk in values:
                    w, b = _mat_conv_params(values[fk], values[bk], name)
                    sd[f"{name}.weight"], sd[f"{name}.bias"] = w, b
    elif "layers" in root:  # simplenn: layers{i}.name / .type / .weights = {filters, biases}
        for layer in _items(root["layers"]):
            name = _as_str(getattr(layer, "name", ""))
            if name not in wanted:
                continue
            ws = getattr(layer, "weights", None)
            if ws is None:  # very old MatConvNet: .filters / .biases fields
                ws = np.array([layer.filters, layer.biases], dtype=object)
            parts = _items(ws)
            if len(parts) != 2:
                raise InputError(f"{src}: layer {name} has {len(parts)} weight arrays, expected 2")
            w, b = _mat_conv_params(np.asarray(parts[0]), np.asarray(parts[1]), name)
            sd[f"{name}.weight"], sd[f"{name}.bias"] = w, b
    else:
        raise InputError(f"{src}: no MatConvNet 'layers' or 'params' found")
    return sd


def _check_vggface(sd: dict[str, Tensor], src: Path) -> dict[str, Tensor]:
    """Keep the VGG-16 keys, check the convolutions chain (any widths, 3x3 kernels)."""
    out: dict[str, Tensor] = {}
    cin = 3
    for group in VGG_CONVS:
        for name in group:
            w, b = sd.get(f"{name}.weight"), sd.get(f"{name}.bias")
            if w is None or b is None:
                raise InputError(f"{src}: missing {name}.weight/{name}.bias (not VGG-Face weights?)")
            if w.dim() != 4 or w.shape[1] != cin or tuple(w.shape[2:]) != (3, 3) or b.shape != w.shape[:1]:
                raise InputError(f"{src}: {name}.weight has shape {tuple(w.shape)}, expected (*, {cin}, 3, 3)")
            out[f"{name}.weight"], out[f"{name}.bias"] = w, b
            cin = w.shape[0]
    fin = None
    for name in VGG_FCS:  # optional (features only need the convolutions)
        w, b = sd.get(f"{name}.weight"), sd.get(f"{name}.bias")
        if w is None or b is None:
            break
        w = w.reshape(w.shape[0], -1)
        if (fin is None and w.shape[1] != cin * 49) or (fin is not None and w.shape[1] != fin):
            raise InputError(f"{src}: {name}.weight has shape {tuple(w.shape)}, inconsistent with VGG-16")
        out[f"{name}.weight"], out[f"{name}.bias"] = w, b
        fin = w.shape[0]
    return {k: v.detach().to(torch.float32).contiguous() for k, v in out.items()}


def _check_facenet(sd: dict[str, Tensor], src: Path) -> dict[str, Tensor]:
    need = ("conv2d_1a.conv.weight", "repeat_1.0.conv2d.weight", "last_linear.weight", "last_bn.running_var")
    missing = [k for k in need if k not in sd]
    if missing:
        raise InputError(f"{src}: missing {missing[0]} (not facenet-pytorch InceptionResnetV1 weights?)")
    return {k: v.detach().contiguous() for k, v in sd.items()}


def read_weights(src: str | Path, kind: str = "vggface") -> dict[str, Tensor]:
    """Read and validate a weights file of ``kind`` (.pth/.pt, .mat or .safetensors)."""
    src = Path(src)
    if kind not in KINDS:
        raise InputError(f"unknown weights kind '{kind}' (known: {', '.join(KINDS)})")
    if not src.is_file():
        raise InputError(f"{src}: no such file")
    suffix = src.suffix.lower()
    if suffix == ".safetensors":
        sd = _read_safetensors(src)
    elif suffix == ".mat":
        if kind != "vggface":
            raise InputError(f"{src}: .mat files are only supported for vggface")
        sd = _read_mat(src)
    else:
        sd = _read_torch(src)
    return _check_vggface(sd, src) if kind == "vggface" else _check_facenet(sd, src)


def convert(src: Path, dst: Path, kind: str = "vggface") -> Path:
    """Convert ``src`` to a safetensors file at ``dst`` (atomic); returns ``dst``."""
    from safetensors.torch import save_file

    src, dst = Path(src), Path(dst)
    if (dst.exists() and dst.resolve() == src.resolve()) or dst.absolute() == src.absolute():
        raise InputError(f"{dst}: refusing to overwrite the source file; choose another output path")
    sd = read_weights(src, kind)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        save_file(sd, str(tmp), metadata={FORMAT_KEY: kind, "source": src.name})
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dst


def load_converted(path: str | os.PathLike | None, kind: str, who: str,
                   recipe_key: str = "losses.identity.backbone_weights") -> dict[str, Tensor]:
    """Load a converted file for backbone ``who``; one-line FaceganError when missing/wrong."""
    if kind == "vggface":
        how = ("convert VGG-Face weights once with "
               "`facegan weights convert vgg_face_dag.pth vggface.safetensors`")
    else:
        how = ("use a facenet-pytorch InceptionResnetV1 state dict you have "
               "(e.g. 20180402-114759-vggface2.pt) or its safetensors")
    if path is None or str(path) == "":
        raise FaceganError(f"{who}: no pretrained weights given ({recipe_key} is not set); "
                           f"{how}, then set {recipe_key} to that file")
    p = Path(path).expanduser()
    if not p.is_file():
        raise FaceganError(f"{who}: weights file not found: {recipe_key} = '{p}'; {how}")
    try:
        return read_weights(p, kind)
    except InputError as e:
        raise FaceganError(f"{who}: bad weights file ({recipe_key} = {p}): {e}") from None
