"""A model trained on the synthetic faces says so, once, when it is given a person's image."""
from __future__ import annotations

import pytest
from click.testing import CliRunner
from PIL import Image

from facegan_kit.checkpoint import load_checkpoint, save_checkpoint
from facegan_kit.cli import cli
from facegan_kit.data.synthetic import render_face, subject_attributes

WARNING = "trained on synthetic cartoon faces"


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    paths = []
    for s in range(2):
        p = root / f"person{s}.png"
        Image.fromarray(render_face(subject_attributes(s, 0), 3, 0.9, 32, 0, s)).save(p)
        paths.append(p)
    return paths


@pytest.fixture(scope="module")
def real_checkpoint(tiny_checkpoint, tmp_path_factory):
    """The tiny model, labelled as trained on a prepared folder of real faces."""
    tensors, meta = load_checkpoint(tiny_checkpoint)
    meta["recipe"] = {**meta["recipe"], "data": {"type": "prepared", "root": "faces"}}
    return save_checkpoint(tmp_path_factory.mktemp("real") / "real.safetensors", tensors, meta)


def _commands(ckpt, images, out):
    a, b = (str(p) for p in images)
    return {
        "edit": ["edit", str(ckpt), a, b, "-e", "happy", "--no-align", "--out", str(out / "edits")],
        "grid": ["grid", str(ckpt), a, "--no-align", "--out", str(out / "grid.png")],
        "transfer": ["transfer", str(ckpt), "--identity", a, "--expression", b, "--label", "sad", "--no-align",
                     "--out", str(out / "t.png")],
    }


def test_synthetic_model_warns_once_per_command(tiny_checkpoint, images, tmp_path):
    runner = CliRunner()
    for name, args in _commands(tiny_checkpoint, images, tmp_path).items():
        res = runner.invoke(cli, args)
        assert res.exit_code == 0, (name, res.output)
        assert res.stderr.count(WARNING) == 1, (name, res.stderr)  # two images, one warning
        assert "cartoon" in res.stderr and "facegan data prepare" in res.stderr, name
        assert "recipes/exprgan-real-quick.toml" in res.stderr, name
        assert WARNING not in res.stdout  # stdout stays the list of written files


def test_model_trained_on_real_faces_does_not_warn(real_checkpoint, images, tmp_path):
    runner = CliRunner()
    for name, args in _commands(real_checkpoint, images, tmp_path).items():
        res = runner.invoke(cli, args)
        assert res.exit_code == 0, (name, res.output)
        assert WARNING not in res.output, name
