"""Table 1 protocol (augment-experiment) and expression transfer on the tiny checkpoint."""
from __future__ import annotations

import json

import pytest
import torch

from facegan_kit.apps import load_editor
from facegan_kit.apps.augment import generate_balanced, parse_sizes
from facegan_kit.apps.transfer import transfer
from facegan_kit.cli import main
from facegan_kit.errors import InputError


def test_parse_sizes():
    assert parse_sizes("0, 3K,6000") == [0, 3000, 6000]
    with pytest.raises(InputError):
        parse_sizes("0,lots")
    with pytest.raises(InputError):
        parse_sizes("-5")


def test_generated_faces_are_balanced(tiny_checkpoint):
    torch.set_num_threads(1)
    ed = load_editor(tiny_checkpoint)
    x, y = generate_balanced(ed, 20, seed=0, batch_size=2)
    assert x.dtype == torch.uint8 and x.shape == (20, 3, 16, 16)
    assert torch.bincount(y, minlength=6).tolist() == [4, 4, 3, 3, 3, 3]


def test_augment_experiment_prints_one_row_per_size(capsys, tiny_checkpoint, tmp_path):
    torch.set_num_threads(1)
    try:
        main(["augment-experiment", str(tiny_checkpoint), "--data", "synthetic", "--sizes", "0,60",
              "--epochs", "1", "--out", str(tmp_path / "aug")])
    except SystemExit as exc:  # pragma: no cover - shows the error
        pytest.fail(f"exit {exc.code}: {capsys.readouterr()}")
    out = capsys.readouterr().out
    rows = [ln for ln in out.splitlines() if ln.startswith("| ") and ln[2].isdigit()]
    assert [r.split("|")[1].strip() for r in rows] == ["0", "60"]
    res = json.loads((tmp_path / "aug" / "results.json").read_text())
    assert [r["synthetic"] for r in res["rows"]] == [0, 60]
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in res["rows"])
    assert res["real_train"] > 0 and res["real_test"] > 0
    assert (tmp_path / "aug" / "classifier_60.safetensors").is_file()
    from facegan_kit.apps.classifier import load_classifier

    assert load_classifier(tmp_path / "aug" / "classifier_0.safetensors").image_size == 16


def test_transfer_uses_q_code_of_b(tiny_checkpoint):
    torch.set_num_threads(1)
    ed = load_editor(tiny_checkpoint)
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 3, 16, 16, generator=g) * 2 - 1, torch.rand(1, 3, 16, 16, generator=g) * 2 - 1
    res = transfer(ed, a, b, 3)
    assert res.result.shape == (2, 3, 16, 16) and res.labels.tolist() == [3, 3]
    expect = ed.decode(ed.encode(a), ed.code_from_image(b, 3).expand(2, -1))
    assert torch.allclose(res.result, expect)
