"""The identity codes' spread is logged, and a collapse (every face the same code) is warned about
once, naming the fix (benchmarks/encoder_collapse.py shows the real case: the official encoder at
128 px)."""
from __future__ import annotations

import json
from pathlib import Path

from facegan_kit.train import train
from facegan_kit.train.loop import SPREAD_KEY
from facegan_plugins.common.encoder import ConvEncoder

TINY = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "tiny.toml"


def _rows(run: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run / "log.jsonl").read_text().splitlines()]


def test_spread_is_logged_where_images_are_encoded_and_healthy_runs_do_not_warn(tmp_path, capsys):
    train(TINY, tmp_path / "run", progress=False)
    rows = _rows(tmp_path / "run")
    assert all(SPREAD_KEY not in r for r in rows if r["stage"] == "controller")  # noise identities
    encoded = [r[SPREAD_KEY] for r in rows if r["stage"] != "controller"]
    assert len(encoded) == 6 and all(v > 1e-3 for v in encoded)
    assert "collapsed" not in capsys.readouterr().err


def test_collapsed_codes_are_warned_about_once(tmp_path, capsys, monkeypatch):
    forward = ConvEncoder.forward
    monkeypatch.setattr(ConvEncoder, "forward", lambda self, x: forward(self, x) * 0 + 0.999)
    train(TINY, tmp_path / "run", progress=False)
    err = capsys.readouterr().err
    assert err.count("identity codes have collapsed") == 1, err
    line = next(ln for ln in err.splitlines() if "collapsed" in ln)
    assert line.startswith("facegan: warning: step 4:") and "code_norm = true" in line
    assert all(r[SPREAD_KEY] == 0.0 for r in _rows(tmp_path / "run") if r["stage"] != "controller")
