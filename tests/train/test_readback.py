"""The loop's loss watchers, each on its own: one read-back per sync, the best score's mean, the
deferred non-finite stop, the once-only collapse warning and the logged records."""
from __future__ import annotations

import math

import pytest
import torch

from facegan_kit.errors import NonFiniteLossError
from facegan_kit.train.distributed import DistContext
from facegan_kit.train.phases import SPREAD_KEY
from facegan_kit.train.readback import (
    BestScore, CollapseWarning, DeferredFiniteCheck, LogWriter, LossReadback, StepLosses)


class _Log:
    def __init__(self):
        self.records = []

    def write(self, record):
        self.records.append(record)


def test_readback_returns_each_steps_values_in_order_and_empties():
    rb = LossReadback(DistContext())
    rb.add(1, "a", {"g/x": torch.tensor(1.5), "d/y": torch.tensor(2.0)}, False)
    rb.add(2, "a", {"g/x": torch.tensor(-3.0)}, True)
    got = rb.take()
    assert got == [StepLosses(1, "a", {"g/x": 1.5, "d/y": 2.0}, False), StepLosses(2, "a", {"g/x": -3.0}, True)]
    assert len(rb) == 0 and rb.take() == []


def test_best_score_is_the_finite_mean_since_the_last_take():
    best = BestScore("g/x")
    for v in (1.0, math.nan, 3.0):
        best(StepLosses(1, "a", {"g/x": v}, False))
    best(StepLosses(2, "a", {"other": 9.0}, False))
    assert best.take() == 2.0
    assert best.take() is None
    unset = BestScore("")
    unset(StepLosses(1, "a", {"": 1.0}, False))
    assert unset.take() is None


def test_deferred_check_names_the_first_bad_loss():
    check = DeferredFiniteCheck()
    check(StepLosses(5, "a", {"g/x": 1.0}, False))
    with pytest.raises(NonFiniteLossError, match="loss 'd/y' became non-finite at step 6"):
        check(StepLosses(7, "a", {"g/x": 1.0, "d/y": math.inf, "g/z": math.nan}, False))


def test_collapse_is_warned_about_once(capsys):
    warn = CollapseWarning()
    warn(StepLosses(1, "a", {SPREAD_KEY: 0.5}, False))
    warn(StepLosses(2, "a", {SPREAD_KEY: 0.0}, False))
    warn(StepLosses(3, "a", {SPREAD_KEY: 0.0}, False))
    err = capsys.readouterr().err
    assert err.count("collapsed") == 1 and "step 2:" in err


def test_log_writer_writes_logging_steps_and_shows_the_last():
    log = _Log()
    writer = LogWriter(log)
    writer(StepLosses(1, "a", {"g/x": 1.0}, False))
    writer(StepLosses(2, "a", {"g/x": 2.0}, True))

    class Bar:
        postfix = None

        def set_postfix(self, d, refresh):
            self.postfix = d

    bar = Bar()
    writer.show(bar)
    assert log.records == [{"step": 2, "stage": "a", "g/x": 2.0}]
    assert bar.postfix == {"x": "2"}
    bar.postfix = None
    writer.show(bar)  # nothing new since
    assert bar.postfix is None
