"""The CAAE decoder (generator) with the label at its input only (``caae-decoder``)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from facegan_plugins.common.blocks import as_int_list, check_divisible, init_normal_, tile_vector


def deconv(in_ch: int, out_ch: int, kernel: int, stride: int) -> nn.ConvTranspose2d:
    """A 'same'-style transposed convolution: output side = input side * ``stride``.

    Shape:
        - Input: ``(N, in_ch, H, W)``; Output: ``(N, out_ch, H * stride, W * stride)``.
    """
    return nn.ConvTranspose2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2,
                              output_padding=stride - 1)


class CAAEDecoder(nn.Module):
    """Identity code ``g`` + label code ``c`` -> image (the official CAAE generator).

    The label enters **only at the input**: ``[g, c repeated `tile` times]`` goes through one FC
    layer; no later layer sees ``c``.

    1. FC -> ``fc_channels`` maps of side ``image_size / 2**len(channels)``, ReLU.
    2. For each width in ``channels``: 5x5 transposed conv stride 2, ReLU.
    3. For each width in ``extra_channels``: 5x5 transposed conv stride 1, ReLU.
    4. 5x5 transposed conv stride 1 -> 3 channels, tanh.

    ``tile = max(1, int(z_dim * tile_ratio / code_dim))``, so the label takes about as many
    input elements as the identity code (the official code's "duplicate"). Weights start from
    N(0, 0.02).

    Args:
        image_size: side of the output image.
        z_dim: size of the identity code ``g``.
        code_dim: size of the label code ``c`` (the number of classes for ``onehot-pm1``).
        channels: widths of the stride-2 blocks.
        fc_channels: channels of the first (smallest) feature map.
        tile_ratio: label elements at the input relative to ``z_dim``.
        extra_channels: widths of the stride-1 blocks before the output layer.

    Shape:
        - Input: ``g (N, z_dim)``, ``c (N, code_dim)``.
        - Output: ``x_hat (N, 3, image_size, image_size)`` in ``[-1, 1]``.

    Example:
        >>> dec = CAAEDecoder(image_size=16, z_dim=4, code_dim=2, channels=[8, 4], fc_channels=8)
        >>> dec(torch.zeros(2, 4), torch.zeros(2, 2)).shape
        torch.Size([2, 3, 16, 16])
    """

    def __init__(
        self,
        image_size: int = 128,
        z_dim: int = 50,
        code_dim: int = 6,
        channels: Sequence[int] = (512, 256, 128, 64, 32),
        fc_channels: int = 1024,
        tile_ratio: float = 1.0,
        extra_channels: Sequence[int] = (16,),
    ) -> None:
        super().__init__()
        chans = as_int_list(channels, "channels")
        extra = [] if extra_channels in (None, [], ()) else as_int_list(extra_channels, "extra_channels")
        if code_dim < 1 or z_dim < 1:
            raise ValueError(f"caae-decoder: z_dim and code_dim must be >= 1, got {z_dim}, {code_dim}")
        if not tile_ratio > 0:
            raise ValueError(f"caae-decoder: tile_ratio must be > 0, got {tile_ratio}")
        self.image_size, self.z_dim, self.code_dim = image_size, z_dim, code_dim
        self.tile = max(1, int(z_dim * tile_ratio / code_dim))
        self.fc_channels = fc_channels
        self.start = check_divisible(image_size, len(chans), "caae-decoder")
        self.fc = nn.Linear(z_dim + code_dim * self.tile, fc_channels * self.start**2)
        layers: list[nn.Module] = []
        in_ch = fc_channels
        for out_ch in chans:
            layers += [deconv(in_ch, out_ch, 5, 2), nn.ReLU()]
            in_ch = out_ch
        for out_ch in extra:
            layers += [deconv(in_ch, out_ch, 5, 1), nn.ReLU()]
            in_ch = out_ch
        layers += [deconv(in_ch, 3, 5, 1), nn.Tanh()]
        #: Everything after the input FC: a plain chain that never sees the label.
        self.body = nn.Sequential(*layers)
        init_normal_(self)

    def forward(self, g: Tensor, c: Tensor) -> Tensor:
        if g.dim() != 2 or g.shape[1] != self.z_dim:
            raise ValueError(f"caae-decoder expects g (N, {self.z_dim}), got {tuple(g.shape)}")
        if c.dim() != 2 or c.shape != (g.shape[0], self.code_dim):
            raise ValueError(f"caae-decoder expects c ({g.shape[0]}, {self.code_dim}), got {tuple(c.shape)}")
        h = self.fc(torch.cat([g, tile_vector(c.to(g.dtype), self.tile)], dim=1))
        h = F.relu(h.view(-1, self.fc_channels, self.start, self.start))
        return self.body(h)
