"""The decoder's fast paths compute what the official decoder's concat-then-upsample computes."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from facegan_plugins.common.blocks import concat_maps, conv_with_code, upsample2x
from facegan_plugins.exprgan.decoder import ExprDecoder

FORMATS = [torch.contiguous_format, torch.channels_last]


@pytest.mark.parametrize("fmt", FORMATS, ids=["nchw", "nhwc"])
def test_upsample2x_matches_nearest_interpolate_values_and_gradients(fmt):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 5).contiguous(memory_format=fmt).requires_grad_()
    weight = torch.randn(2, 3, 8, 10)
    ours = upsample2x(x)
    ref = F.interpolate(x, scale_factor=2, mode="nearest")
    assert torch.equal(ours, ref)
    (g_ours,) = torch.autograd.grad((ours * weight).sum(), x)
    (g_ref,) = torch.autograd.grad((ref * weight).sum(), x)
    torch.testing.assert_close(g_ours, g_ref)
    # the gradient really sums each 2x2 block (not, say, averages it)
    torch.testing.assert_close(g_ours[0, 0, 0, 0], weight[0, 0, :2, :2].sum())


@pytest.mark.parametrize("fmt", FORMATS, ids=["nchw", "nhwc"])
@pytest.mark.parametrize("stride,kernel", [(1, 3), (1, 5), (2, 5)])
def test_conv_with_code_matches_conv_over_concatenated_maps(stride, kernel, fmt):
    torch.manual_seed(0)
    layer = nn.Conv2d(4 + 3, 6, kernel, stride=stride, padding=kernel // 2).to(memory_format=fmt)
    x = torch.randn(2, 4, 8, 8).contiguous(memory_format=fmt).requires_grad_()
    code = torch.randn(2, 3, requires_grad=True)
    ours = conv_with_code(layer, x, code)
    ref = layer(concat_maps(x, code))
    torch.testing.assert_close(ours, ref)
    assert ours.is_contiguous(memory_format=fmt)
    # the border differs from the interior: the zero padding is accounted for
    assert not torch.allclose(ref[:, :, 0, 0], ref[:, :, ref.shape[-2] // 2, ref.shape[-1] // 2])
    up = torch.randn_like(ref)
    grads_ours = torch.autograd.grad((ours * up).sum(), [x, code, layer.weight, layer.bias])
    grads_ref = torch.autograd.grad((ref * up).sum(), [x, code, layer.weight, layer.bias])
    for a, b in zip(grads_ours, grads_ref):
        torch.testing.assert_close(a, b)


def test_conv_with_code_names_a_channel_mismatch():
    layer = nn.Conv2d(5, 2, 3, padding=1)
    with pytest.raises(ValueError, match="4 \\+ 3 channels"):
        conv_with_code(layer, torch.zeros(1, 4, 4, 4), torch.zeros(1, 3))


def _reference_decoder(dec: ExprDecoder, g: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """The official order: concatenate the code maps, upsample, convolve."""
    h = dec.fc(torch.cat([g, c.repeat(1, dec.tile)], dim=1))
    h = F.relu(h.view(-1, dec.fc_channels, dec.start, dec.start))
    for layer, norm in zip(dec.ups, dec.up_norms):
        h = F.relu(norm(layer(F.interpolate(concat_maps(h, c), scale_factor=2, mode="nearest"))))
    for layer, norm in zip(dec.extra, dec.extra_norms):
        h = F.relu(norm(layer(h)))
    return torch.tanh(dec.out(h))


@pytest.mark.parametrize("fmt", FORMATS, ids=["nchw", "nhwc"])
def test_decoder_equals_the_official_concat_then_upsample_order(fmt):
    torch.manual_seed(0)
    dec = ExprDecoder(image_size=16, z_dim=5, code_dim=6, channels=[8, 4], fc_channels=8, batch_norm=True)
    dec = dec.to(memory_format=fmt).eval()
    for p in dec.parameters():  # N(0, 0.02) weights leave every output near 0: make them matter
        nn.init.normal_(p, std=0.3)
    g, c = torch.randn(3, 5), torch.randn(3, 6)
    out = dec(g, c)
    ref = _reference_decoder(dec, g, c)
    assert out.abs().max() > 0.1
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    grads = torch.autograd.grad(out.square().sum(), list(dec.parameters()))
    grads_ref = torch.autograd.grad(ref.square().sum(), list(dec.parameters()))
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_conv_with_code_under_bf16_autocast_keeps_dtype_and_layout():
    """The CUDA default (bf16 autocast, channels-last), exercised on the CPU."""
    torch.manual_seed(0)
    layer = nn.Conv2d(4 + 3, 6, 3, padding=1).to(memory_format=torch.channels_last)
    x = torch.randn(2, 4, 8, 8).contiguous(memory_format=torch.channels_last)
    code = torch.randn(2, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = conv_with_code(layer, x, code)
        ref = layer(concat_maps(x, code))
    assert ours.dtype == ref.dtype == torch.bfloat16
    assert ours.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(ours.float(), ref.float(), atol=0.05, rtol=0.02)
