"""CAAE baseline: components, the label-at-input-only property, recipes, a short training run."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from facegan_kit.errors import InputError
from facegan_kit.pm import default_registry
from facegan_plugins.caae.controller import OneHotPM1
from facegan_plugins.caae.discriminator import CAAEDImg
from facegan_plugins.caae.generator import CAAEDecoder

ROOT = Path(__file__).resolve().parent.parent
torch.set_num_threads(1)


def _dec(**kw) -> CAAEDecoder:
    torch.manual_seed(0)
    args = dict(image_size=16, z_dim=8, code_dim=3, channels=[8, 4], fc_channels=8)
    return CAAEDecoder(**{**args, **kw})


def test_registered_names():
    reg = default_registry()
    assert reg.get("decoder", "caae-decoder") is CAAEDecoder
    assert reg.get("controller", "onehot-pm1") is OneHotPM1
    assert reg.get("discriminator", "caae-dimg") is CAAEDImg


def test_controller_codes():
    ctrl = OneHotPM1(num_classes=4)
    assert (ctrl.num_classes, ctrl.code_dim, ctrl.levels) == (4, 4, 1)
    y = torch.eye(4)[[2, 0]]
    assert torch.equal(ctrl(y), torch.tensor([[-1.0, -1, 1, -1], [1, -1, -1, -1]]))
    assert torch.equal(ctrl(torch.tensor([2, 0])), ctrl(y))
    assert torch.equal(ctrl.target(ctrl(y), y), ctrl(y))
    assert torch.equal(ctrl.neutral_code(), -torch.ones(4))
    assert torch.equal(ctrl.level_code(1, 1), torch.tensor([-1.0, 1, -1, -1]))
    assert torch.equal(ctrl.level_code(1, 1), ctrl.intensity_code(1, 1.0))  # the only level: the class code
    assert torch.equal(ctrl.intensity_code(3, 0.0), ctrl.neutral_code())
    assert torch.equal(ctrl.intensity_code(3, 1.0), ctrl(torch.tensor([3]))[0])
    assert torch.allclose(ctrl.intensity_code(3, 0.25), torch.tensor([-1.0, -1, -1, -0.5]))
    for bad in (lambda: ctrl.intensity_code(0, 1.5), lambda: ctrl.level_code(4, 1),
                lambda: ctrl.level_code(0, 0), lambda: ctrl.level_code(0, 2), lambda: ctrl(torch.zeros(2, 3))):
        with pytest.raises(ValueError):
            bad()


@pytest.mark.parametrize("size,channels", [(16, [8, 4]), (48, [12, 8, 4]), (32, [4, 4, 4, 4, 4])])
def test_decoder_shapes_and_backward(size, channels):
    dec = _dec(image_size=size, channels=channels)
    g = torch.rand(5, 8) * 2 - 1
    c = OneHotPM1(3)(torch.tensor([0, 1, 2, 0, 1]))
    out = dec(g, c)
    assert out.shape == (5, 3, size, size)
    assert out.abs().max() <= 1 and torch.isfinite(out).all()
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in dec.parameters())
    with pytest.raises(ValueError):
        dec(g, c[:, :2])


def test_decoder_label_only_at_input():
    dec = _dec(z_dim=12, code_dim=3)
    # By construction: the input FC takes [g, c tiled]; every later layer only takes the
    # previous layer's channels (no extra label channels anywhere).
    assert dec.tile == 4
    assert dec.fc.in_features == 12 + 3 * dec.tile
    convs = [m for m in dec.body if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert convs[0].in_channels == dec.fc_channels
    for a, b in zip(convs, convs[1:]):
        assert b.in_channels == a.out_channels
    assert all(isinstance(m, (nn.ConvTranspose2d, nn.ReLU, nn.Tanh)) for m in dec.body)
    # Behaviour: the label changes the output ...
    ctrl = OneHotPM1(3)
    g = torch.rand(2, 12) * 2 - 1
    a = dec(g, ctrl(torch.tensor([0, 0])))
    b = dec(g, ctrl(torch.tensor([2, 2])))
    assert (a - b).abs().max() > 1e-6
    # ... but only through the input FC: with the FC's output pinned, the label has no effect.
    pinned = dec.fc(torch.cat([g, ctrl(torch.tensor([1, 1])).repeat(1, dec.tile)], 1)).detach()
    handle = dec.fc.register_forward_hook(lambda mod, inp, out: pinned)
    try:
        assert torch.equal(dec(g, ctrl(torch.tensor([0, 0]))), dec(g, ctrl(torch.tensor([2, 2]))))
    finally:
        handle.remove()


def test_dimg_shapes_label_after_first_conv_and_backward():
    torch.manual_seed(0)
    d = CAAEDImg(image_size=16, num_classes=3, channels=[4, 8], fc_dim=10)
    assert d.first[0].in_channels == 3  # no label maps on the image itself
    assert d.rest[0].in_channels == 4 + 3  # label maps after the first block
    later = [m for m in d.rest if isinstance(m, nn.Conv2d)][1:]
    assert all(m.in_channels == p.out_channels for p, m in zip([d.rest[0]] + later, later))
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    y = torch.eye(3)[[0, 1, 2, 0]]
    logit, feats = d(x, y)
    assert logit.shape == (4,) and feats.shape == (4, 10) and d.feature_dim == 10
    d.eval()
    assert not torch.equal(d(x, y)[0], d(x, torch.eye(3)[[1, 2, 0, 1]])[0])  # the label matters
    d.train()
    (logit.sum() + feats.sum()).backward()
    assert all(p.grad is not None for p in d.parameters())
    with pytest.raises(ValueError):
        d(x, None)


def test_caae_recipe_dry_run(capsys):
    from facegan_kit.cli import main

    main(["train", str(ROOT / "recipes" / "caae.toml"), "--dry-run"])
    out = capsys.readouterr().out
    assert '"caae-decoder"' in out and '"conv-encoder"' in out and '"dz-mlp"' in out


def test_caae_recipe_follows_official_setup():
    from facegan_kit.recipe import load_recipe, validate

    rec = validate(load_recipe(ROOT / "recipes" / "caae.toml"), default_registry())
    assert rec.model["encoder"]["type"] == "conv-encoder" and rec.model["d_z"]["type"] == "dz-mlp"
    assert rec.model["decoder"]["image_size"] == 128
    (stage,) = rec.stages
    assert stage.losses["adv_img"] == stage.losses["adv_z"] == 1e-4 and stage.losses["l1"] == 1.0
    assert "tv" in stage.losses
    assert (stage.batch_size, stage.epochs, stage.lr, stage.betas[0]) == (100, 50, 2e-4, 0.5)


def test_caae_quick_trains_and_loads_in_editor(tmp_path):
    from facegan_kit.edit import Editor
    from facegan_kit.train import train

    over = ["data.subjects=6", "data.test_subjects=1", "data.frames=1", "stages.0.batch_size=8",
            "train.sample_every=0"]
    result = train(ROOT / "recipes" / "caae-quick.toml", tmp_path, overrides=over, max_steps=2, progress=False)
    assert result.global_step == 2 and result.checkpoint.exists()
    ed = Editor.from_checkpoint(result.checkpoint)
    s = ed.image_size
    assert s == 32  # the quick recipes' size
    x = torch.rand(2, 3, s, s) * 2 - 1
    out = ed.edit(x, "happy", intensity=0.5)
    assert out.shape == (2, 3, s, s) and torch.isfinite(out).all()
    assert ed.code("neutral").tolist() == [-1.0] * 6
    assert ed.code("happy", level=1).tolist() == [-1.0, -1, -1, 1, -1, -1]
    with pytest.raises(InputError, match="no level-code choice"):  # CAAE's code has no levels to stack
        ed.set_level_codes("cumulative")
    ed.set_level_codes(None)  # None: keep the checkpoint's, for any controller
