"""Shared fixtures: a tiny trained checkpoint made by the test suite itself."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures"
TINY_RECIPE = FIXTURES / "tiny.toml"


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    skip_slow = pytest.mark.skip(reason="slow: pass --runslow")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(skip_slow)


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory):
    """Tests share one cache (converted weights, oracles, synthetic sets) unless the user's
    FACEGAN_CACHE is set; never write into the user's home from tests."""
    if "FACEGAN_CACHE" not in os.environ:
        os.environ["FACEGAN_CACHE"] = str(Path(__file__).parent.parent / ".cache" / "facegan-tests")
    yield


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A tiny ExprGAN trained through all three stages (a few seconds on CPU).
    Returns the TrainResult; ``.checkpoint`` is the final checkpoint path."""
    from facegan_kit.train import train

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("tiny-run")
    return train(TINY_RECIPE, out, progress=False)


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_run) -> Path:
    return tiny_run.checkpoint
