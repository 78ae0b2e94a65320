"""FaceNet (facenet-pytorch's ``InceptionResnetV1``) identity backbone with user-supplied weights.

Input ``x`` in [-1,1] is resized to ``input_size`` (160 as trained) and standardised the way
facenet-pytorch does (``(x255 - 127.5) / 128``). ``features`` returns the activations after
``conv2d_4b``, ``repeat_1``, ``repeat_2`` and ``repeat_3``; ``embed`` the L2-normalised 512-d
embedding. Weights: a facenet-pytorch state dict (``.pt``/``.pth``, read with
``weights_only=True``) or safetensors, given as ``weights`` (recipe key
``losses.identity.backbone_weights``); nothing is downloaded.
"""
from __future__ import annotations

from pathlib import Path

import torch.nn.functional as F
from torch import Tensor

from facegan_kit import FaceganError, InputError, load_converted, read_state_dict
from facegan_plugins.identity.frozen import FrozenBackbone

FEATURE_BLOCKS = ("conv2d_4b", "repeat_1", "repeat_2", "repeat_3")
_ORDER = ("conv2d_1a", "conv2d_2a", "conv2d_2b", "maxpool_3a", "conv2d_3b", "conv2d_4a",
          "conv2d_4b", "repeat_1", "mixed_6a", "repeat_2", "mixed_7a", "repeat_3", "block8")

HOW = ("use a facenet-pytorch InceptionResnetV1 state dict you have "
       "(e.g. 20180402-114759-vggface2.pt) or its safetensors")


def read_facenet_weights(src: str | Path) -> dict[str, Tensor]:
    """A facenet-pytorch ``InceptionResnetV1`` state dict (.pt/.pth or safetensors), checked."""
    sd = read_state_dict(src)
    need = ("conv2d_1a.conv.weight", "repeat_1.0.conv2d.weight", "last_linear.weight", "last_bn.running_var")
    missing = [k for k in need if k not in sd]
    if missing:
        raise InputError(f"{src}: missing {missing[0]} (not facenet-pytorch InceptionResnetV1 weights?)")
    return {k: v.detach().contiguous() for k, v in sd.items()}


class FaceNet(FrozenBackbone):
    """Frozen InceptionResnetV1 (512-d embeddings)."""

    embed_dim = 512

    name = "facenet"
    #: what ``facegan weights convert --kind facenet`` reads (.pt/.pth or safetensors)
    read_weights = staticmethod(read_facenet_weights)

    def __init__(self, weights: str | None = None, input_size: int = 160,
                 layers: tuple[str, ...] | list[str] = FEATURE_BLOCKS) -> None:
        super().__init__()
        try:
            from facenet_pytorch import InceptionResnetV1
        except ImportError:
            raise FaceganError("facenet: facenet-pytorch is not installed "
                               "(pip install 'facegan-kit[faces]')") from None
        sd = load_converted(weights, "facenet", read_facenet_weights, HOW)
        unknown = [n for n in layers if n not in _ORDER]
        if unknown or not layers:
            raise InputError(f"facenet: unknown feature block '{unknown[0] if unknown else ''}' "
                             f"(known: {', '.join(_ORDER)})")
        self.net = InceptionResnetV1(pretrained=None, classify=False)
        sd = {k: v for k, v in sd.items() if not k.startswith("logits.")}
        missing, unexpected = self.net.load_state_dict(sd, strict=False)
        if missing or unexpected:
            bad = (missing or unexpected)[0]
            raise FaceganError(f"facenet: weights file does not fit InceptionResnetV1 "
                               f"({'missing' if missing else 'unexpected'} key {bad})")
        self.input_size = int(input_size)
        self.layers = tuple(layers)
        self.freeze()

    def preprocess(self, x: Tensor) -> Tensor:
        self.check_images(x)
        x = x.to(self.net.last_linear.weight.dtype)
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                              align_corners=False, antialias=True)
        return ((x + 1) * 127.5 - 127.5) / 128.0

    def _trunk(self, x: Tensor, upto: str) -> tuple[list[Tensor], Tensor]:
        z, feats = self.preprocess(x), []
        for name in _ORDER:
            z = getattr(self.net, name)(z)
            if name in self.layers:
                feats.append(z)
            if name == upto:
                break
        return feats, z

    def features(self, x: Tensor) -> list[Tensor]:
        last = max(self.layers, key=_ORDER.index)
        return self._trunk(x, last)[0]

    def embed(self, x: Tensor) -> Tensor:
        _, z = self._trunk(x, "block8")
        n = self.net
        z = n.last_bn(n.last_linear(n.avgpool_1a(z).flatten(1)))
        return F.normalize(z, p=2, dim=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.embed(x)
