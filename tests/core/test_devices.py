"""resolve_device: what a user types -> a torch device, or one line saying why not."""
from __future__ import annotations

import pytest
import torch

from facegan_kit.devices import resolve_device
from facegan_kit.errors import FaceganError


def test_auto_and_none_pick_cuda_only_when_present(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None) == resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


def test_explicit_names_and_errors(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(FaceganError, match="CUDA is not available"):
        resolve_device("cuda:1")
    with pytest.raises(FaceganError, match="'tpu': not a torch device"):
        resolve_device("tpu")
