"""Small building blocks shared by the built-in models.

Everything here is generic (no ExprGAN- or CAAE-specific choices): weight initialisation,
convolution / linear layer helpers, and tiling a code vector to constant feature maps.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

#: Standard deviation of the normal weight initialisation used by both official codes.
INIT_STD = 0.02


def init_normal_(module: nn.Module, std: float = INIT_STD) -> nn.Module:
    """Initialise every conv / linear weight of ``module`` from N(0, std), biases to 0.

    Batch-norm layers keep PyTorch's defaults (scale 1, shift 0), like TensorFlow's.

    Args:
        module: the module to initialise in place (recursively).
        std: standard deviation of the normal distribution.

    Returns:
        ``module`` itself, for chaining.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


def as_int_list(value: int | Sequence[int], name: str) -> list[int]:
    """Normalise a recipe value (int, list or tuple of ints) to a non-empty list of positive ints.

    Raises:
        ValueError: naming ``name`` when the value is empty or not positive integers.
    """
    items = [value] if isinstance(value, int) else list(value)
    if not items or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in items):
        raise ValueError(f"{name} must be a non-empty list of positive integers, got {value!r}")
    return items


def check_divisible(image_size: int, num_halvings: int, name: str) -> int:
    """Side of the smallest feature map after ``num_halvings`` stride-2 steps.

    Raises:
        ValueError: when ``image_size`` is not divisible by ``2**num_halvings``.
    """
    step = 2**num_halvings
    if image_size < step or image_size % step:
        raise ValueError(
            f"{name}: image_size={image_size} must be a positive multiple of 2**{num_halvings}={step}"
        )
    return image_size // step


def conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    """A 'same'-padded convolution: output side = ceil(input side / stride).

    Uses symmetric padding ``kernel // 2`` (TensorFlow's 'SAME' pads one more pixel at the
    bottom/right for even kernels-minus-strides; the output size is the same for even inputs).

    Shape:
        - Input: ``(N, in_ch, H, W)``; Output: ``(N, out_ch, H/stride, W/stride)``.
    """
    return nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2)


def tile_maps(code: Tensor, height: int, width: int | None = None) -> Tensor:
    """Broadcast a code vector to constant feature maps.

    Args:
        code: ``(N, C)`` vector per sample.
        height: map height.
        width: map width (default ``height``).

    Shape:
        - Input: ``(N, C)``; Output: ``(N, C, height, width)``.

    Example:
        >>> tile_maps(torch.ones(2, 3), 4).shape
        torch.Size([2, 3, 4, 4])
    """
    width = height if width is None else width
    return code[:, :, None, None].expand(-1, -1, height, width)


def concat_maps(x: Tensor, code: Tensor) -> Tensor:
    """Concatenate ``code`` as constant maps to the channels of ``x``.

    Shape:
        - Input: ``x (N, C1, H, W)``, ``code (N, C2)``; Output: ``(N, C1 + C2, H, W)``.
    """
    return torch.cat([x, tile_maps(code.to(x.dtype), x.shape[-2], x.shape[-1])], dim=1)


class _Upsample2x(torch.autograd.Function):
    """Nearest x2 for NCHW tensors: a broadcast view reshaped; the gradient is a 2x2 sum pool."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        return x[:, :, :, None, :, None].expand(n, c, h, 2, w, 2).reshape(n, c, 2 * h, 2 * w)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return F.avg_pool2d(grad, 2) * 4


def upsample2x(x: Tensor) -> Tensor:
    """Nearest-neighbour x2 upsampling, equal to ``F.interpolate(x, scale_factor=2, mode="nearest")``.

    ``F.interpolate`` is fast on channels-last tensors, but on NCHW ones (the CPU default) its
    forward and backward cost about three times a broadcast view with a sum-pool gradient
    (``benchmarks/decoder_speed.py``), so NCHW tensors take that path.

    Shape:
        - Input: ``(N, C, H, W)``; Output: ``(N, C, 2H, 2W)``.
    """
    if x.dim() == 4 and not x.is_contiguous(memory_format=torch.channels_last):
        return _Upsample2x.apply(x)
    return F.interpolate(x, scale_factor=2, mode="nearest")


def conv_with_code(layer: nn.Conv2d, x: Tensor, code: Tensor) -> Tensor:
    """``layer(concat_maps(x, code))`` without building the constant code maps.

    ``layer`` takes ``x``'s channels followed by ``code``'s. Through a zero-padded convolution a
    constant map contributes a response that depends only on the position (it differs at the
    border), so the code's part is the convolution of a ones-map with each code channel's
    filters (one small convolution with a single input channel), mixed per sample by the code.
    Same result up to float rounding, with the large convolution over ``x``'s channels only
    (the code is 30 of the 62 input channels of the quick decoder's last block).

    Shape:
        - Input: ``x (N, C1, H, W)``, ``code (N, C2)`` with ``C1 + C2 = layer.in_channels``.
        - Output: ``(N, layer.out_channels, H', W')``, as ``layer``'s.
    """
    if layer.groups != 1 or layer.padding_mode != "zeros" or layer.in_channels != x.shape[1] + code.shape[1]:
        raise ValueError(f"conv_with_code: needs an ungrouped zero-padded conv over {x.shape[1]} + "
                         f"{code.shape[1]} channels, got {layer}")
    k = code.shape[1]
    w_x, w_code = layer.weight[:, :-k], layer.weight[:, -k:]
    out = F.conv2d(x, w_x, layer.bias, layer.stride, layer.padding, layer.dilation)
    o = w_code.shape[0]
    ones = x.new_ones(1, 1, x.shape[-2], x.shape[-1])
    basis = F.conv2d(ones, w_code.reshape(o * k, 1, *w_code.shape[2:]), None, layer.stride, layer.padding,
                     layer.dilation)
    h, w = basis.shape[-2:]
    code = code.to(basis.dtype)
    if out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous():
        # the response in the output's layout, else the sum is a slow strided one
        basis = basis.view(o, k, h, w).permute(1, 2, 3, 0).reshape(k, h * w * o)
        return out + (code @ basis).view(-1, h, w, o).permute(0, 3, 1, 2)
    return out + (code @ basis.view(o, k, h * w).transpose(0, 1).reshape(k, o * h * w)).view(-1, o, h, w)


def tile_vector(code: Tensor, times: int) -> Tensor:
    """Repeat a code ``times`` times along its feature axis (``(N, C) -> (N, C * times)``)."""
    return code.repeat(1, times)


def mlp_block(in_dim: int, out_dim: int, act: nn.Module, batch_norm: bool = True) -> nn.Sequential:
    """``Linear -> (BatchNorm1d) -> act``.

    Shape:
        - Input: ``(N, in_dim)``; Output: ``(N, out_dim)``.
    """
    layers: list[nn.Module] = [nn.Linear(in_dim, out_dim)]
    if batch_norm:
        layers.append(nn.BatchNorm1d(out_dim))
    layers.append(act)
    return nn.Sequential(*layers)
