"""The convolutional identity encoder shared by ExprGAN and CAAE (``conv-encoder``)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from facegan_plugins.common.blocks import as_int_list, check_divisible, conv, init_normal_


class ConvEncoder(nn.Module):
    """Image -> identity code ``g`` in ``[-1, 1]`` (the paper's G_enc).

    ``len(channels)`` blocks of [conv ``kernel`` x ``kernel`` stride 2 'same', ReLU] without batch
    norm (as the official code), then a fully connected layer to ``z_dim`` and tanh. The last
    feature map has side ``image_size / 2**len(channels)``. Weights start from N(0, 0.02).

    Args:
        image_size: side of the square input image.
        z_dim: size of the identity code.
        channels: output channels of each stride-2 block.
        kernel: convolution kernel size.
        batch_norm: insert BatchNorm after every convolution (not in the official code; the
            quick CPU recipe uses it because it converges faster in few steps, see its header).
        code_norm: BatchNorm (no affine) on the FC output before tanh, so the code stays in
            tanh's working range (not in the official code). At 128 px the official encoder's
            FC output grows from about 0.1 to about 27 within ten Adam steps: tanh saturates,
            its gradient is exactly 0 and every face gets the same code for good
            (``benchmarks/encoder_collapse.py`` shows it).

    Shape:
        - Input: ``x (N, 3, image_size, image_size)`` in ``[-1, 1]``.
        - Output: ``g (N, z_dim)`` in ``[-1, 1]``.

    Example:
        >>> enc = ConvEncoder(image_size=32, z_dim=8, channels=[4, 8])
        >>> enc(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 8])
    """

    def __init__(
        self,
        image_size: int = 128,
        z_dim: int = 50,
        channels: Sequence[int] = (64, 128, 256, 512, 1024),
        kernel: int = 5,
        batch_norm: bool = False,
        code_norm: bool = False,
    ) -> None:
        super().__init__()
        chans = as_int_list(channels, "channels")
        side = check_divisible(image_size, len(chans), "conv-encoder")
        self.image_size = image_size
        self.z_dim = z_dim
        blocks: list[nn.Module] = []
        in_ch = 3
        for out_ch in chans:
            blocks.append(conv(in_ch, out_ch, kernel, stride=2))
            if batch_norm:
                blocks.append(nn.BatchNorm2d(out_ch))
            blocks.append(nn.ReLU())
            in_ch = out_ch
        self.convs = nn.Sequential(*blocks)
        self.fc = nn.Linear(in_ch * side * side, z_dim)
        self.code_norm = nn.BatchNorm1d(z_dim, affine=False) if code_norm else nn.Identity()
        init_normal_(self)

    def forward(self, x: Tensor) -> Tensor:
        s = self.image_size
        if x.dim() != 4 or tuple(x.shape[1:]) != (3, s, s):
            raise ValueError(f"conv-encoder expects (N, 3, {s}, {s}), got {tuple(x.shape)}")
        if self.training and x.shape[0] < 2 and isinstance(self.code_norm, nn.BatchNorm1d):
            raise ValueError("conv-encoder: code_norm needs training batches of at least 2 images")
        return torch.tanh(self.code_norm(self.fc(self.convs(x).flatten(1))))
