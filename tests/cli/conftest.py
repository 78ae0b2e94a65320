"""Shared fixtures of the CLI tests."""
from __future__ import annotations

import pytest
import torch

from facegan_kit.cli import main


@pytest.fixture
def run(capsys):
    """``run(*ARGS)``: ``facegan ARGS`` in-process -> (exit code, stdout, stderr)."""

    def _run(*args):
        torch.set_num_threads(1)
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    return _run
