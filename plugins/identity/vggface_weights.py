"""VGG-Face weights: reading the files users have and checking they are VGG-16.

Accepted inputs: the common PyTorch conversion ``vgg_face_dag.pth`` (a state dict with keys
``conv1_1.weight`` ... ``fc8.bias``, read with ``weights_only=True``), MatConvNet's
``vgg-face.mat`` (``simplenn`` ``layers`` or ``dagnn`` ``params``, read with
``scipy.io.loadmat``) or an already converted safetensors file. The result always uses the
``vgg_face_dag`` key names (fc weights as ``nn.Linear``, fc6 flattened in PyTorch's C,H,W order).
:func:`read_vggface_weights` is what ``facegan weights convert --kind vggface`` runs.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from facegan_kit import InputError, read_state_dict

__all__ = ["VGG_CONVS", "VGG_FCS", "read_vggface_weights"]

#: VGG-16 convolution names in order; a max-pool follows the last of each group.
VGG_CONVS = (("conv1_1", "conv1_2"), ("conv2_1", "conv2_2"), ("conv3_1", "conv3_2", "conv3_3"),
             ("conv4_1", "conv4_2", "conv4_3"), ("conv5_1", "conv5_2", "conv5_3"))
VGG_FCS = ("fc6", "fc7", "fc8")


def read_vggface_weights(src: str | Path) -> dict[str, Tensor]:
    """Read ``src`` (.pth/.pt, .mat or .safetensors) and keep the checked VGG-16 tensors (float32).

    Raises:
        InputError: a missing or unreadable file, or tensors that do not chain as VGG-16.
    """
    src = Path(src)
    if src.suffix.lower() == ".mat":
        if not src.is_file():
            raise InputError(f"{src}: no such file")
        sd = _read_mat(src)
    else:
        sd = read_state_dict(src)
    return _check_vggface(sd, src)


# -- MatConvNet files --------------------------------------------------------------------------


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


# -- checking --------------------------------------------------------------------------------


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
