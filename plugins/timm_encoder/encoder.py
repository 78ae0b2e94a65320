"""Any timm network as the identity encoder (``timm-encoder``) or as an expression classifier.

The file reads top-down: helpers (weights files, input sizes, preprocessing), the encoder, the
classifier and its small factory :func:`timm_classifier`.

Nothing is downloaded: timm models are always created with ``pretrained=False``; pretrained
weights come from a file the user supplies (safetensors, or a PyTorch state dict read with
``torch.load(weights_only=True)``). ``timm`` itself is imported only when a model is built, so
listing plugins (``facegan plugins``) stays fast.
"""
from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from facegan_kit import FaceganError

__all__ = ["TimmEncoder", "TimmClassifier", "timm_classifier", "read_state_dict", "auto_input_size"]


# -- helpers ----------------------------------------------------------------------------------
def _create(model_name: str, who: str, **kwargs: Any) -> nn.Module:
    """``timm.create_model(model_name, pretrained=False, **kwargs)`` with a helpful unknown-name
    error (``ValueError``, which the recipe builder reports under the table's path)."""
    import timm

    if not isinstance(model_name, str) or not timm.is_model(model_name):
        close = difflib.get_close_matches(str(model_name), timm.list_models(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"{who}: unknown timm model '{model_name}'{hint}; see timm.list_models()")
    return timm.create_model(model_name, pretrained=False, **kwargs)


def read_state_dict(path: str | Path, who: str = "timm") -> dict[str, Tensor]:
    """Read a state dict of tensors from a ``.safetensors`` file or a PyTorch file.

    PyTorch files are read with ``torch.load(..., weights_only=True)`` (never arbitrary pickles);
    a ``{"state_dict": ...}``, ``{"model": ...}`` or ``{"state_dict_ema": ...}`` wrapper is
    unwrapped and a ``module.`` prefix (DataParallel) removed.

    Raises:
        FaceganError: the file is missing or holds something other than named tensors.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise FaceganError(f"{who}: weights file not found: '{p}'")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(p))
        else:
            obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt files, pickles with code...
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise FaceganError(f"{who}: cannot read weights '{p}' ({type(exc).__name__}: {first})") from None
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise FaceganError(f"{who}: '{p}' is not a state dict of tensors")
    return {(k[7:] if k.startswith("module.") else k): v for k, v in obj.items()}


def _load_into(net: nn.Module, path: str | Path, who: str) -> list[str]:
    """Load a weights file into ``net``; every parameter must be found. Returns the file's keys
    that ``net`` does not use (e.g. the classifier head of a full ImageNet checkpoint)."""
    sd = read_state_dict(path, who)
    try:
        missing, unexpected = net.load_state_dict(sd, strict=False)
    except RuntimeError as exc:  # shape mismatches
        first = str(exc).strip().splitlines()[-1].strip()
        raise FaceganError(f"{who}: weights '{path}' do not fit the model: {first}") from None
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise FaceganError(f"{who}: weights '{path}' do not fit the model: missing key "
                           f"'{missing[0]}'{more}")
    return list(unexpected)


def auto_input_size(image_size: int, stride: int, fixed: int | None = None) -> int:
    """The side images are resized to before the network: ``fixed`` for models that only take
    one size (ViTs), otherwise ``image_size`` rounded up to a multiple of the network's
    ``stride``, and at least ``2 * stride`` (so the last feature map is at least 2x2 and batch
    norm sees more than one value per channel even for a batch of one).

    Example:
        >>> auto_input_size(48, 32), auto_input_size(128, 32), auto_input_size(48, 16, fixed=224)
        (64, 128, 224)
    """
    if fixed:
        return int(fixed)
    return max(math.ceil(image_size / stride) * stride, 2 * stride)


def _stride(net: nn.Module) -> int:
    info = getattr(net, "feature_info", None)
    try:
        if hasattr(info, "reduction"):  # features_only wrappers
            return int(info.reduction()[-1])
        if info:
            return int(info[-1]["reduction"])
    except (KeyError, IndexError, TypeError):
        pass
    return 32


def _fixed_size(net: nn.Module) -> int | None:
    """The one input side a model accepts, or ``None`` when any multiple of its stride works."""
    net = getattr(net, "model", net)  # features_only wrappers of some architectures
    cfg = getattr(net, "pretrained_cfg", None) or {}
    if not cfg.get("fixed_input_size"):
        return None
    size = getattr(getattr(net, "patch_embed", None), "img_size", None)  # honours img_size=...
    if size is None:
        size = cfg.get("input_size", (3, 224, 224))[-2:]
    return int(size[-1] if isinstance(size, (tuple, list)) else size)


class Preprocess(nn.Module):
    """Images in ``[-1, 1]`` -> the network's input: resize to ``input_size`` (bilinear,
    antialiased when shrinking) and standardise with the model's ``mean``/``std``.

    Shape:
        - Input: ``(N, 3, S, S)`` in ``[-1, 1]``; Output: ``(N, 3, input_size, input_size)``.
    """

    def __init__(self, input_size: int, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), normalize: bool = True):
        super().__init__()
        self.input_size = int(input_size)
        self.normalize = normalize
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor, size: int | None = None) -> Tensor:
        s = size or self.input_size
        if tuple(x.shape[-2:]) != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False,
                              antialias=x.shape[-1] > s)
        x = (x + 1) / 2
        if self.normalize:
            x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        return x


def _preprocess_for(net: nn.Module, input_size: int, normalize: bool) -> Preprocess:
    cfg = getattr(net, "pretrained_cfg", None) or getattr(getattr(net, "model", None), "pretrained_cfg", None) or {}
    return Preprocess(input_size, cfg.get("mean", (0.5,) * 3), cfg.get("std", (0.5,) * 3), normalize)


def _check_images(who: str, x: Tensor, s: int | None = None) -> None:
    if x.dim() != 4 or x.shape[1] != 3 or (s is not None and tuple(x.shape[-2:]) != (s, s)):
        want = f"(N, 3, {s}, {s})" if s is not None else "(N, 3, H, W)"
        raise ValueError(f"{who} expects images {want}, got {tuple(x.shape)}")


# -- the encoder ------------------------------------------------------------------------------
class TimmEncoder(nn.Module):
    """A timm network as the identity encoder: image -> ``g`` in ``[-1, 1]`` (``timm-encoder``).

    ``x`` in ``[-1, 1]`` is resized to ``input_size`` and standardised with the model's ImageNet
    mean/std; the trunk (``timm.create_model(model_name, pretrained=False, ...)``) gives either

    - ``features_only = false`` (default): the globally pooled features (``num_classes=0``),
    - ``features_only = true``: the feature map of stage ``out_index`` (``-1`` the last,
      stride 32 for most CNNs; ``2`` a stride-8 map, ...), flattened so the layout of the face is
      kept, as the paper's conv encoder does;

    then a linear layer to ``z_dim`` and tanh.

    ``input_size`` defaults to :func:`auto_input_size`: the fixed size of models that have one
    (ViTs: 224, or ``model_kwargs = {img_size = 48}``), else ``image_size`` rounded up to a multiple
    of the feature stride and at least twice the stride (48 -> 64 for ResNets).

    Args:
        image_size: side of the square input images ``S``.
        z_dim: size of the identity code ``Z``.
        model_name: any name from ``timm.list_models()``.
        features_only: flatten a feature map instead of global pooling (see above).
        out_index: which feature stage with ``features_only`` (timm's ``out_indices``).
        input_size: side the images are resized to (default: automatic, see above).
        weights: optional file with pretrained trunk weights (``.safetensors`` or a PyTorch state
            dict, read with ``weights_only=True``); keys the trunk does not use (the ImageNet
            head) are ignored, missing ones are an error. Default: random initialisation.
        freeze_backbone: keep the trunk fixed (no gradients, batch norm in eval mode); only the
            final linear layer trains. Useful with pretrained ``weights``.
        normalize: standardise with the model's mean/std (turn off for networks trained on
            ``[0, 1]`` inputs).
        model_kwargs: extra keyword arguments for ``timm.create_model`` (e.g. ``{img_size = 48}``,
            ``{drop_path_rate = 0.1}``).

    Shape:
        - Input: ``x (N, 3, image_size, image_size)`` in ``[-1, 1]``.
        - Output: ``g (N, z_dim)`` in ``[-1, 1]``.

    Example:
        >>> enc = TimmEncoder(image_size=48, z_dim=8, model_name="resnet18")
        >>> enc.input_size, enc(torch.zeros(2, 3, 48, 48)).shape
        (64, torch.Size([2, 8]))
    """

    def __init__(
        self,
        image_size: int = 128,
        z_dim: int = 50,
        model_name: str = "resnet18",
        features_only: bool = False,
        out_index: int = -1,
        input_size: int | None = None,
        weights: str | None = None,
        freeze_backbone: bool = False,
        normalize: bool = True,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        who = "timm-encoder"
        if image_size < 1 or z_dim < 1:
            raise ValueError(f"{who}: image_size and z_dim must be >= 1, got {image_size}, {z_dim}")
        if input_size is not None and (isinstance(input_size, bool) or not isinstance(input_size, int)
                                       or input_size < 1):
            raise ValueError(f"{who}: input_size must be a positive integer, got {input_size!r}")
        kwargs = dict(model_kwargs or {})
        if features_only:
            kwargs.update(features_only=True, out_indices=(out_index,))
        else:
            kwargs.update(num_classes=0)
        self.image_size = int(image_size)
        self.z_dim = int(z_dim)
        self.model_name = model_name
        self.features_only = bool(features_only)
        self.freeze_backbone = bool(freeze_backbone)
        self.trunk = _create(model_name, who, **kwargs)
        self.ignored_weight_keys = _load_into(self.trunk, weights, who) if weights else []
        self.stride = _stride(self.trunk)
        self.input_size = input_size or auto_input_size(self.image_size, self.stride, _fixed_size(self.trunk))
        self.pre = _preprocess_for(self.trunk, self.input_size, normalize)
        self.feature_dim = self._probe_feature_dim()
        self.fc = nn.Linear(self.feature_dim, self.z_dim)
        if self.freeze_backbone:
            self.trunk.requires_grad_(False)
            self.trunk.eval()

    def _probe_feature_dim(self) -> int:
        """Size of the flattened trunk output, found by one eval-mode forward (robust to any
        architecture's padding and stride arithmetic)."""
        was_training = self.trunk.training
        self.trunk.eval()
        with torch.no_grad():
            f = self._features(torch.zeros(1, 3, self.input_size, self.input_size))
        self.trunk.train(was_training)
        return int(f.shape[1])

    def _features(self, z: Tensor) -> Tensor:
        f = self.trunk(z)
        if self.features_only:
            f = f[-1]
        return f.flatten(1)

    def train(self, mode: bool = True) -> "TimmEncoder":
        super().train(mode)
        if self.freeze_backbone:
            self.trunk.eval()
        return self

    def forward(self, x: Tensor) -> Tensor:
        _check_images("timm-encoder", x, self.image_size)
        return torch.tanh(self.fc(self._features(self.pre(x))))


# -- the expression classifier ----------------------------------------------------------------
class TimmClassifier(nn.Module):
    """A timm network with a ``num_classes`` head for images in ``[-1, 1]`` (see
    :func:`timm_classifier`). ``forward`` gives logits, ``embed`` the pooled features."""

    def __init__(self, net: nn.Module, input_size: int | None, normalize: bool = True) -> None:
        super().__init__()
        self.net = net
        self.num_classes = int(getattr(net, "num_classes", 0))
        self.stride = _stride(net)
        self.fixed_size = _fixed_size(net)
        self.input_size = input_size
        self.pre = _preprocess_for(net, input_size or 0, normalize)

    def _prep(self, x: Tensor) -> Tensor:
        _check_images("timm_classifier", x)
        return self.pre(x, self.input_size or auto_input_size(x.shape[-1], self.stride, self.fixed_size))

    def forward(self, x: Tensor) -> Tensor:
        """``(N, 3, S, S)`` in ``[-1, 1]`` -> logits ``(N, num_classes)``."""
        return self.net(self._prep(x))

    def embed(self, x: Tensor) -> Tensor:
        """``(N, 3, S, S)`` in ``[-1, 1]`` -> pooled pre-logit features ``(N, num_features)``."""
        net = self.net
        return net.forward_head(net.forward_features(self._prep(x)), pre_logits=True)


def timm_classifier(
    name: str = "resnet18",
    num_classes: int = 6,
    *,
    weights: str | Path | None = None,
    input_size: int | None = None,
    normalize: bool = True,
    **model_kwargs: Any,
) -> TimmClassifier:
    """An expression classifier on any timm backbone (e.g. to score edited faces with a network
    trained on your own labels, or as the trunk of a classifier-guided experiment).

    ``timm.create_model(name, pretrained=False, num_classes=num_classes, **model_kwargs)``
    wrapped to take images in ``[-1, 1]`` of any side: they are resized to ``input_size``
    (default: :func:`auto_input_size` of the incoming side) and standardised with the model's
    mean/std. ``weights`` loads a user file (safetensors or a ``weights_only`` PyTorch state
    dict) into the whole network; a head of another size is left freshly initialised.

    Args:
        name: any ``timm.list_models()`` name.
        num_classes: number of output classes (6 = :data:`facegan_kit.EXPRESSIONS`; 7 with neutral).
        weights: optional pretrained weights file; nothing is downloaded.
        input_size: fixed network input side (default automatic).
        normalize: standardise with the model's mean/std.
        **model_kwargs: passed to ``timm.create_model`` (``drop_rate``, ``img_size``...).

    Shape:
        - Input: ``(N, 3, S, S)`` in ``[-1, 1]``; Output: logits ``(N, num_classes)``.

    Example:
        >>> clf = timm_classifier("resnet18", num_classes=6)
        >>> clf(torch.zeros(2, 3, 48, 48)).shape
        torch.Size([2, 6])
    """
    who = "timm_classifier"
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"{who}: num_classes must be a positive integer, got {num_classes!r}")
    net = _create(name, who, num_classes=num_classes, **model_kwargs)
    if weights:
        sd = read_state_dict(weights, who)
        own = net.state_dict()
        head = {k for k, v in sd.items() if k in own and own[k].shape != v.shape}
        missing, _ = net.load_state_dict({k: v for k, v in sd.items() if k not in head}, strict=False)
        missing = [k for k in missing if not _is_head(net, k)]
        if missing:
            raise FaceganError(f"{who}: weights '{weights}' do not fit '{name}': missing key '{missing[0]}'"
                               + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
    return TimmClassifier(net, input_size, normalize)


def _is_head(net: nn.Module, key: str) -> bool:
    cfg = getattr(net, "pretrained_cfg", None) or {}
    heads = cfg.get("classifier") or ()
    heads = (heads,) if isinstance(heads, str) else tuple(heads)
    return any(key.startswith(h + ".") for h in heads)
