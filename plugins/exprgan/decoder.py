"""The ExprGAN decoder G_dec (``exprgan-decoder``)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from facegan_plugins.common.blocks import (
    as_int_list,
    check_divisible,
    conv,
    conv_with_code,
    init_normal_,
    tile_vector,
    upsample2x,
)


class ExprDecoder(nn.Module):
    """Identity code ``g`` + expression code ``c`` -> image (the official ExprGAN generator).

    1. ``[g, c tiled `tile` times]`` -> FC -> ``fc_channels`` maps of side
       ``image_size / 2**len(channels)``, ReLU.
    2. For each width in ``channels``: concatenate ``c`` as constant maps, nearest x2 upsample,
       3x3 conv stride 1, ReLU. The code thus enters before **every** upsampling block.
    3. For each width in ``extra_channels``: 3x3 conv, ReLU (no code concatenated).
    4. 3x3 conv -> 3 channels, tanh.

    Weights start from N(0, 0.02).

    Args:
        image_size: side of the output image.
        z_dim: size of the identity code ``g``.
        code_dim: size of the expression code ``c``.
        channels: widths of the upsampling blocks.
        fc_channels: channels of the first (smallest) feature map.
        tile: how many times ``c`` is repeated next to ``g`` at the input.
        extra_channels: widths of the full-resolution 3x3 convs before the output conv.
        batch_norm: BatchNorm after every 3x3 conv but the output one (not in the official code;
            the quick CPU recipe uses it because it converges faster in few steps).
        source_blend: not in the paper: the output conv also draws a mask ``a`` (sigmoid), and
            ``x_hat = a * source + (1 - a) * drawn`` where ``source`` is the face the encoder
            read, so pixels the expression does not change (hair, skin, the eyes' shape) can
            come from the photo instead of through the identity code (GANimation's attention,
            Pumarola et al. 2018). Without a source (identities from the prior) the drawn image
            is the output. Train it with ``pairs = "same-person"``: on the photo itself,
            copying it is a perfect reconstruction and the mask learns nothing else. The
            latest pass's mask is kept as ``last_keep`` (``(N,1,S,S)``, with its graph) for
            the ``source-keep`` loss term.
        mask_sees_source: not in the paper, with ``source_blend`` only: the mask also reads the
            photo (a 3-layer conv net to quarter resolution, receptive field ~19 px, upsampled
            and joined to the last feature maps), its logits added to those drawn from
            ``(g, c)``. Why: with same-person pairs ``g`` is trained to carry the person and not
            the expression, so a mask computed from ``(g, c)`` cannot tell where the photo's
            own expression lies (an open mouth, raised brows) and must open wherever any
            photo might differ; seeing the photo, it can keep the rest.

    Shape:
        - Input: ``g (N, z_dim)``, ``c (N, code_dim)``.
        - Output: ``x_hat (N, 3, image_size, image_size)`` in ``[-1, 1]``.

    Example:
        >>> dec = ExprDecoder(image_size=16, z_dim=4, code_dim=6, channels=[8, 4], fc_channels=8)
        >>> dec(torch.zeros(2, 4), torch.zeros(2, 6)).shape
        torch.Size([2, 3, 16, 16])
    """

    def __init__(
        self,
        image_size: int = 128,
        z_dim: int = 50,
        code_dim: int = 30,
        channels: Sequence[int] = (512, 256, 128, 64, 32),
        fc_channels: int = 1024,
        tile: int = 8,
        extra_channels: Sequence[int] = (16,),
        batch_norm: bool = False,
        source_blend: bool = False,
        mask_sees_source: bool = False,
    ) -> None:
        super().__init__()
        chans = as_int_list(channels, "channels")
        extra = [] if extra_channels in (None, [], ()) else as_int_list(extra_channels, "extra_channels")
        if tile < 1:
            raise ValueError(f"exprgan-decoder: tile must be >= 1, got {tile}")
        self.image_size, self.z_dim, self.code_dim, self.tile = image_size, z_dim, code_dim, tile
        self.fc_channels = fc_channels
        self.start = check_divisible(image_size, len(chans), "exprgan-decoder")
        self.fc = nn.Linear(z_dim + code_dim * tile, fc_channels * self.start**2)
        self.ups = nn.ModuleList()
        in_ch = fc_channels
        for out_ch in chans:
            self.ups.append(conv(in_ch + code_dim, out_ch, 3))
            in_ch = out_ch
        self.extra = nn.ModuleList()
        for out_ch in extra:
            self.extra.append(conv(in_ch, out_ch, 3))
            in_ch = out_ch
        self.source_blend = bool(source_blend)
        self.last_keep: Tensor | None = None
        self.out = conv(in_ch, 4 if self.source_blend else 3, 3)
        if mask_sees_source and not self.source_blend:
            raise ValueError("exprgan-decoder: mask_sees_source needs source_blend = true")
        self.mask_source: nn.Module | None = None
        if mask_sees_source:
            self.mask_source = nn.Sequential(
                conv(3, 16, 3, 2), nn.ReLU(), conv(16, 32, 3, 2), nn.ReLU(), conv(32, 32, 3), nn.ReLU())
            self.mask_head = conv(in_ch + 32, 1, 3)
        norm = nn.BatchNorm2d if batch_norm else (lambda ch: nn.Identity())
        self.up_norms = nn.ModuleList(norm(layer.out_channels) for layer in self.ups)
        self.extra_norms = nn.ModuleList(norm(layer.out_channels) for layer in self.extra)
        init_normal_(self)

    @property
    def uses_source(self) -> bool:
        """Whether :func:`facegan_kit.decode` hands this decoder the encoded face."""
        return self.source_blend

    def forward(self, g: Tensor, c: Tensor, source: Tensor | None = None) -> Tensor:
        if g.dim() != 2 or g.shape[1] != self.z_dim:
            raise ValueError(f"exprgan-decoder expects g (N, {self.z_dim}), got {tuple(g.shape)}")
        if c.dim() != 2 or c.shape != (g.shape[0], self.code_dim):
            raise ValueError(
                f"exprgan-decoder expects c ({g.shape[0]}, {self.code_dim}), got {tuple(c.shape)}"
            )
        c = c.to(g.dtype)
        h = self.fc(torch.cat([g, tile_vector(c, self.tile)], dim=1))
        h = F.relu(h.view(-1, self.fc_channels, self.start, self.start))
        for layer, norm in zip(self.ups, self.up_norms):
            # = layer(upsample(concat_maps(h, c))): the code maps are constant, so they are
            # concatenated after the upsampling, and never built (see conv_with_code)
            h = F.relu(norm(conv_with_code(layer, upsample2x(h), c)))
        for layer, norm in zip(self.extra, self.extra_norms):
            h = F.relu(norm(layer(h)))
        out = self.out(h)
        drawn = torch.tanh(out[:, :3])
        if not self.source_blend or source is None:
            return drawn
        if source.shape != drawn.shape:
            raise ValueError(f"exprgan-decoder: source {tuple(source.shape)} must match the output {tuple(drawn.shape)}")
        logits = out[:, 3:]
        if self.mask_source is not None:
            seen = self.mask_source(source.to(drawn.dtype))
            seen = F.interpolate(seen, size=drawn.shape[-2:], mode="bilinear", align_corners=False)
            logits = logits + self.mask_head(torch.cat([h, seen], dim=1))
        keep = torch.sigmoid(logits)
        self.last_keep = keep
        return keep * source.to(drawn.dtype) + (1 - keep) * drawn
