"""benchmarks/heldout_groups.py: scores on shared unseen people, group by group."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from facegan_kit.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
torch.set_num_threads(1)


def _bench():
    spec = importlib.util.spec_from_file_location("heldout_groups", ROOT / "benchmarks" / "heldout_groups.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_groups_are_scored_separately_and_summarised(tiny_checkpoint):
    from facegan_kit.eval.oracles import OracleConfig

    tiny_oracles = OracleConfig(size=32, train_subjects=24, heldout_subjects=4, images_per_subject=8,
                                heldout_images_per_subject=4, epochs=1)  # as test_suite.py's
    bench = _bench()
    r = bench.score(str(tiny_checkpoint), first=10, people=4, group=2, oracles=tiny_oracles)
    assert r["groups"] == 2
    for key in bench.KEYS:
        vals = r["per_group"][key]
        assert len(vals) == 2
        finite = [v for v in vals if v == v]
        if finite:
            assert r[key]["min"] <= r[key]["mean"] <= r[key]["max"]
            assert min(finite) == pytest.approx(r[key]["min"], abs=1e-4)
    assert 0.0 <= r["oracle_identity_kept_rate"]["mean"] <= 1.0


def test_people_the_model_trained_on_are_refused(tiny_checkpoint, capsys):
    bench = _bench()
    with pytest.raises(InputError, match="overlap the held-out people from 5"):
        bench.score(str(tiny_checkpoint), first=5, people=4, group=2, oracles=None)
    assert bench.main([str(tiny_checkpoint), "--first", "5", "--people", "4", "--group", "2"]) == 1
    assert "overlap" in capsys.readouterr().err
