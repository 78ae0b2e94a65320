"""The decoder's ``source_blend`` option (a mask keeps the encoded photo's pixels) and
:func:`facegan_kit.decode`, which hands the photo only to decoders that read it."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from facegan_kit import decode
from facegan_kit.edit import Editor
from facegan_kit.train import train
from facegan_plugins.exprgan.decoder import ExprDecoder

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "fixtures" / "tiny.toml"


def _decoder(blend: bool) -> ExprDecoder:
    torch.manual_seed(0)
    return ExprDecoder(image_size=16, z_dim=4, code_dim=6, channels=[8, 4], fc_channels=8, source_blend=blend)


def test_blend_mixes_the_source_and_the_drawn_face_by_the_mask():
    dec = _decoder(True).eval()
    g, c = torch.rand(2, 4) * 2 - 1, torch.rand(2, 6) * 2 - 1
    drawn = dec(g, c)  # no source: the drawn face alone
    assert dec.uses_source and drawn.shape == (2, 3, 16, 16)
    white, black = torch.ones(2, 3, 16, 16), -torch.ones(2, 3, 16, 16)
    a, b = dec(g, c, source=white), dec(g, c, source=black)
    keep = (a - b) / 2  # the mask, per pixel (the same for all three channels)
    assert torch.allclose(keep[:, 0], keep[:, 1]) and torch.allclose(keep[:, 0], keep[:, 2])
    assert bool(((keep > 0) & (keep < 1)).all())
    assert torch.allclose(a, keep * white + (1 - keep) * drawn, atol=1e-6)
    assert float(a.max()) <= 1 and float(b.min()) >= -1
    with pytest.raises(ValueError, match="source"):
        dec(g, c, source=torch.zeros(2, 3, 8, 8))


def test_decode_passes_the_source_only_to_decoders_that_read_it():
    plain, blend = _decoder(False).eval(), _decoder(True).eval()
    g, c = torch.rand(3, 4) * 2 - 1, torch.rand(3, 6) * 2 - 1
    src = torch.rand(1, 3, 16, 16) * 2 - 1
    assert not plain.uses_source
    assert torch.equal(decode(plain, g, c, src), plain(g, c))  # a paper decoder never sees it
    got = decode(blend, g, c, src)  # one face broadcast to the batch
    assert torch.equal(got, blend(g, c, source=src.expand(3, -1, -1, -1)))
    assert torch.equal(decode(blend, g, c), blend(g, c))


def test_a_trained_blend_model_edits_from_the_photo(tmp_path):
    run = train(TINY, tmp_path / "run", progress=False, overrides=[
        "model.decoder.source_blend=true", 'stages.1.pairs="same-person"', 'stages.2.pairs="same-person"'])
    ed = Editor.from_checkpoint(run.checkpoint)
    assert ed.uses_source
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    g = ed.encode(x)
    code = ed.code("happy", intensity=1.0)
    with_photo = ed.edit(x, "happy", intensity=1.0)
    assert torch.allclose(with_photo, ed.decode(g, code, source=x))
    other = ed.decode(g, code, source=x.flip(-1))  # the same identity code, another photo
    assert not torch.allclose(with_photo, other)
    assert not torch.allclose(with_photo, ed.decode(g, code))  # no photo: the drawn face
    assert ed.grid(x[:1]).shape[1:] == (7, 3, 16, 16)


def test_source_keep_is_the_mean_of_what_the_mask_draws_and_trains_the_decoder():
    from facegan_kit.testing import tiny_step_context
    from facegan_plugins.losses.terms import SourceKeepLoss

    term = SourceKeepLoss()
    ctx = tiny_step_context()
    with pytest.raises(ValueError, match="source_blend"):
        term.g_loss(ctx)  # the paper's decoder draws no mask
    dec = _decoder(True)
    g, c = torch.rand(2, 4) * 2 - 1, torch.rand(2, 6) * 2 - 1
    src = torch.rand(2, 3, 16, 16) * 2 - 1
    ctx = type(ctx)(models={"decoder": dec}, x=src, y=torch.eye(6)[:2], g=g, g_from_encoder=True, c=c,
                    x_hat=decode(dec, g, c, src), z_prior=g, x_in=src)
    value = term.g_loss(ctx)
    assert torch.allclose(value, (1 - dec.last_keep).mean())
    value.backward()
    assert dec.out.weight.grad is not None and float(dec.out.weight.grad.abs().sum()) > 0
    # the term only lowers by keeping more: its gradient on the mask logit is negative
    assert float(dec.out.bias.grad[3]) < 0 and float(dec.out.bias.grad[:3].abs().sum()) == 0


def test_a_mask_that_sees_the_source_depends_on_the_photo_where_the_code_alone_cannot():
    with pytest.raises(ValueError, match="source_blend"):
        ExprDecoder(image_size=16, z_dim=4, code_dim=6, channels=[8, 4], fc_channels=8, mask_sees_source=True)
    torch.manual_seed(0)
    dec = ExprDecoder(image_size=16, z_dim=4, code_dim=6, channels=[8, 4], fc_channels=8,
                      source_blend=True, mask_sees_source=True).eval()
    g, c = torch.rand(1, 4) * 2 - 1, torch.rand(1, 6) * 2 - 1
    a, b = torch.rand(1, 3, 16, 16) * 2 - 1, torch.rand(1, 3, 16, 16) * 2 - 1
    dec(g, c, source=a)
    keep_a = dec.last_keep.clone()
    dec(g, c, source=b)
    assert not torch.allclose(keep_a, dec.last_keep)  # the photo moves the mask
    plain = _decoder(True).eval()
    plain(g, c, source=a)
    keep_plain = plain.last_keep.clone()
    plain(g, c, source=b)
    assert torch.equal(keep_plain, plain.last_keep)  # without the option it cannot
    # the source-keep term trains the photo's branch too
    dec = ExprDecoder(image_size=16, z_dim=4, code_dim=6, channels=[8, 4], fc_channels=8,
                      source_blend=True, mask_sees_source=True)
    dec(g, c, source=a)
    (1 - dec.last_keep).mean().backward()
    assert float(dec.mask_head.weight.grad.abs().sum()) > 0
    assert float(dec.mask_source[0].weight.grad.abs().sum()) > 0

