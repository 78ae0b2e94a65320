"""VGG-Face (VGG-16 topology) identity backbone with the official ExprGAN preprocessing.

Input ``x`` in [-1,1] -> ``(x+1)/2*255`` resized to ``input_size`` (224 paper-faithful, 128
for speed) minus the VGG-Face mean (129.1863, 104.7624, 93.5940) in RGB order. ``features``
returns conv1_2, conv2_2, conv3_2, conv4_2, conv5_2 taken *before* their ReLU (as the official
ExprGAN code does). ``embed`` is the L2-normalised fc7 activation (4096-d) when the weights
hold the fc layers, otherwise the L2-normalised global average of pool5.

Weights come from a user file converted once with ``facegan weights convert``
(``facegan weights convert vgg_face_dag.pth vggface.safetensors``); nothing is downloaded.
Layer widths are taken from the file (the real VGG-Face: 64..512).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facegan_kit import InputError, load_converted
from facegan_plugins.identity.frozen import FrozenBackbone
from facegan_plugins.identity.vggface_weights import VGG_CONVS, read_vggface_weights

VGG_MEAN_RGB = (129.1863, 104.7624, 93.5940)
FEATURE_LAYERS = ("conv1_2", "conv2_2", "conv3_2", "conv4_2", "conv5_2")
HOW = "convert VGG-Face weights once with `facegan weights convert vgg_face_dag.pth vggface.safetensors`"


class VggFace(FrozenBackbone):
    """Frozen VGG-Face. ``weights``: path of a converted safetensors file (recipe key
    ``losses.identity.backbone_weights``); ``input_size``: 224 (paper) or e.g. 128 (faster);
    ``layers``: which pre-ReLU conv outputs ``features`` returns."""

    name = "vggface"
    #: what ``facegan weights convert --kind vggface`` reads (.pth, .mat or safetensors)
    read_weights = staticmethod(read_vggface_weights)

    def __init__(self, weights: str | None = None, input_size: int = 224,
                 layers: tuple[str, ...] | list[str] = FEATURE_LAYERS) -> None:
        super().__init__()
        sd = load_converted(weights, "vggface", read_vggface_weights, HOW)
        names = [n for group in VGG_CONVS for n in group]
        unknown = [n for n in layers if n not in names]
        if unknown or not layers:
            raise InputError(f"vggface: unknown feature layer '{unknown[0] if unknown else ''}' "
                             f"(known: {', '.join(names)})")
        if int(input_size) < 32:
            raise InputError(f"vggface: input_size must be >= 32, got {input_size}")
        self.input_size = int(input_size)
        self.layers = tuple(layers)
        self.convs = nn.ModuleDict()
        for name in names:
            w = sd[f"{name}.weight"]
            self.convs[name] = nn.Conv2d(w.shape[1], w.shape[0], 3, padding=1)
        self.fcs = nn.ModuleList()
        for name in ("fc6", "fc7"):
            if f"{name}.weight" in sd:
                w = sd[f"{name}.weight"]
                self.fcs.append(nn.Linear(w.shape[1], w.shape[0]))
        state = {f"convs.{n}.{p}": sd[f"{n}.{p}"] for n in names for p in ("weight", "bias")}
        for i, name in enumerate(("fc6", "fc7")[:len(self.fcs)]):
            state[f"fcs.{i}.weight"], state[f"fcs.{i}.bias"] = sd[f"{name}.weight"], sd[f"{name}.bias"]
        self.load_state_dict(state, strict=True)
        self.register_buffer("mean", torch.tensor(VGG_MEAN_RGB).view(1, 3, 1, 1), persistent=False)
        self.freeze()

    def preprocess(self, x: Tensor) -> Tensor:
        self.check_images(x)
        x = (x.to(self.mean.dtype) + 1) * 127.5
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                              align_corners=False, antialias=True)
        return x - self.mean

    def _run(self, x: Tensor, stop_after: str | None) -> tuple[list[Tensor], Tensor | None]:
        """Pre-ReLU outputs of ``self.layers`` and (when ``stop_after`` is None) pool5."""
        z = self.preprocess(x)
        feats = []
        for group in VGG_CONVS:
            for name in group:
                pre = self.convs[name](z)
                if name in self.layers:
                    feats.append(pre)
                if name == stop_after:
                    return feats, None
                z = F.relu(pre)
            z = F.max_pool2d(z, 2, 2)
        return feats, z

    def features(self, x: Tensor) -> list[Tensor]:
        last = max(self.layers, key=lambda n: [m for g in VGG_CONVS for m in g].index(n))
        return self._run(x, stop_after=last)[0]

    def embed(self, x: Tensor) -> Tensor:
        _, z = self._run(x, stop_after=None)
        if not len(self.fcs):
            return F.normalize(z.mean(dim=(2, 3)), dim=1)
        side = round((self.fcs[0].in_features // z.shape[1]) ** 0.5)
        if z.shape[-1] != side:  # input_size != 224: resample pool5 to the 7x7 fc6 expects
            z = F.adaptive_avg_pool2d(z, side)
        h = z.flatten(1)
        for fc in self.fcs:
            h = F.relu(fc(h))
        return F.normalize(h, dim=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.embed(x)
