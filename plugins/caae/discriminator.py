"""The CAAE image discriminator (``caae-dimg``)."""
from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from facegan_plugins.common.blocks import as_int_list, check_divisible, concat_maps, conv, init_normal_


class CAAEDImg(nn.Module):
    """Conditional image discriminator of CAAE.

    Blocks of [conv 5x5 stride 2, BatchNorm, ReLU] with widths ``channels``; the label, written
    as -1/+1, is concatenated as constant maps **after the first block only**. Then FC ``fc_dim``
    with LeakyReLU(0.2) (these activations are the ``features``) and an FC to one logit.
    Weights start from N(0, 0.02).

    Args:
        image_size: side of the input image.
        num_classes: number of classes ``K`` (size of ``y``).
        channels: widths of the stride-2 blocks (at least one).
        fc_dim: width of the feature layer (``feature_dim``).

    Shape:
        - Input: ``x (N, 3, image_size, image_size)``, ``y (N, K)`` one-hot.
        - Output: ``(logit (N,), features (N, fc_dim))``.

    Example:
        >>> d = CAAEDImg(image_size=16, num_classes=2, channels=[4, 8], fc_dim=8)
        >>> [t.shape for t in d(torch.zeros(3, 3, 16, 16), torch.eye(2)[[0, 1, 0]])]
        [torch.Size([3]), torch.Size([3, 8])]
    """

    def __init__(
        self,
        image_size: int = 128,
        num_classes: int = 6,
        channels: Sequence[int] = (16, 32, 64, 128),
        fc_dim: int = 1024,
    ) -> None:
        super().__init__()
        chans = as_int_list(channels, "channels")
        side = check_divisible(image_size, len(chans), "caae-dimg")
        self.image_size, self.num_classes, self.feature_dim = image_size, num_classes, fc_dim
        self.first = nn.Sequential(conv(3, chans[0], 5, 2), nn.BatchNorm2d(chans[0]), nn.ReLU())
        rest: list[nn.Module] = []
        in_ch = chans[0] + num_classes
        for out_ch in chans[1:]:
            rest += [conv(in_ch, out_ch, 5, 2), nn.BatchNorm2d(out_ch), nn.ReLU()]
            in_ch = out_ch
        self.rest = nn.Sequential(*rest)
        self.fc = nn.Sequential(nn.Linear(in_ch * side * side, fc_dim), nn.LeakyReLU(0.2))
        self.head = nn.Linear(fc_dim, 1)
        init_normal_(self)

    def forward(self, x: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor]:
        s = self.image_size
        if x.dim() != 4 or tuple(x.shape[1:]) != (3, s, s):
            raise ValueError(f"caae-dimg expects x (N, 3, {s}, {s}), got {tuple(x.shape)}")
        if y is None or y.shape != (x.shape[0], self.num_classes):
            got = None if y is None else tuple(y.shape)
            raise ValueError(f"caae-dimg is conditional: expects y ({x.shape[0]}, {self.num_classes}), got {got}")
        label = 2.0 * y.to(x.dtype) - 1.0
        h = self.rest(concat_maps(self.first(x), label))
        features = self.fc(h.flatten(1))
        return self.head(features).squeeze(1), features
