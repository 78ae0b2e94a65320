"""Checkpoints: one safetensors file (weights, optimiser tensors, RNG states) whose header
carries JSON metadata (resolved recipe, stage, step, optimiser hyper-parameters). Never pickle.

Writes are atomic: a temporary file in the same folder, flushed and fsynced, then renamed, so a
crash or a full disk never leaves a half-written checkpoint in place of a good one.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from facegan_kit.errors import CheckpointError
from facegan_kit.outputs import atomic_write

FORMAT = "facegan-ckpt/1"
META_KEY = "facegan"


def optimizer_tensors(prefix: str, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimiser's state dict into tensors and JSON-able hyper-parameters."""
    sd = opt.state_dict()
    tensors = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}/{idx}/{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def load_optimizer(prefix: str, opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state: dict[int, dict[str, Any]] = {}
    plen = len(prefix) + 1
    for name, value in tensors.items():
        if name.startswith(prefix + "/"):
            idx, key = name[plen:].split("/", 1)
            state.setdefault(int(idx), {})[key] = value
    for idx, extra in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(extra)
    try:
        opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"optimizer '{prefix}' does not match this model: {exc}") from None


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Atomically write ``tensors`` and ``meta`` to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, **meta}
    blob = st_save({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                   metadata={META_KEY: json.dumps(meta)})
    atomic_write_bytes(path, blob)
    return path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a fsynced temporary file and a rename
    (:func:`facegan_kit.outputs.atomic_write`); a failure leaves the earlier file intact."""
    try:
        atomic_write(path, data)
    except OSError as exc:
        raise CheckpointError(f"{path}: could not write checkpoint ({exc.strerror or exc}); "
                              "the previous checkpoint is intact") from None


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint; a missing, truncated or foreign file raises :class:`CheckpointError`."""
    path = Path(path)
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is None:
            raise CheckpointError(f"{path}: no checkpoint in this folder")
        path = found
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    data = path.read_bytes()
    try:
        tensors = st_load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + header_len])
        meta = json.loads(header.get("__metadata__", {})[META_KEY])
    except (SafetensorError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise CheckpointError(f"{path}: not a facegan checkpoint (truncated or another format)") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: unsupported checkpoint format {meta.get('format')!r}")
    return tensors, meta


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}.safetensors"


def list_checkpoints(folder: str | Path) -> list[Path]:
    return sorted(Path(folder).glob("step-*.safetensors"))


def latest_checkpoint(folder: str | Path) -> Path | None:
    found = list_checkpoints(folder)
    return found[-1] if found else None


def prune_checkpoints(folder: str | Path, keep: int) -> None:
    """Delete all but the newest ``keep`` step checkpoints (``final``/``best`` are kept)."""
    if keep <= 0:
        return
    for old in list_checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)
