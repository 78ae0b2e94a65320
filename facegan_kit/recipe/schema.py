"""The recipe's structure, and validation of every table against its factory's signature."""
from __future__ import annotations

import copy
import difflib
import inspect
import sys
from dataclasses import dataclass, field, fields
from typing import Any, Callable

from facegan_kit.errors import RecipeError
from facegan_kit.recipe.load import RETYPED_KEY
from facegan_kit.registry import Registry

#: ``[model.<slot>]`` tables and the registry kind each slot is built from.
MODEL_SLOTS: dict[str, str] = {
    "encoder": "encoder",
    "decoder": "decoder",
    "controller": "controller",
    "d_img": "discriminator",
    "q": "regularizer",
    "d_z": "discriminator",
}
#: Slots updated by the discriminator-side optimiser; the others by the generator-side one.
D_SLOTS = ("d_img", "q", "d_z")
#: ``[model]`` keys shared by every component whose factory has a parameter of that name
#: (a default filled in where the component's own table leaves it out; not inheritance).
MODEL_SHARED = ("image_size", "z_dim", "num_classes")
TOP_LEVEL = ("recipe", "data", "model", "losses", "train", "stages")


@dataclass
class TrainSpec:
    """``[train]``: run-wide settings.

    Speed options (``facegan_kit.train.speed`` applies them; every ``"auto"`` is a fast choice on
    CUDA and a no-op on the CPU, so CPU runs stay bit-identical to plain fp32 eager training):

    - ``precision``: ``"auto"`` (bf16 autocast on CUDA, fp32 on CPU), ``"fp32"`` or ``"bf16"``
      (autocast to bfloat16 for the forward passes and losses; weights, optimiser state and
      gradients stay fp32; bf16 on the CPU works but is rarely faster).
    - ``channels_last``: ``"auto"`` (on CUDA), ``"on"`` or ``"off"``: NHWC memory format for the
      models and the image batches (faster convolutions on tensor cores).
    - ``fused_adam``: ``"auto"`` (on CUDA), ``"on"`` or ``"off"``: the fused Adam kernel.
    - ``cudnn_benchmark``: let cuDNN pick the fastest convolution algorithms (CUDA only).
    - ``compile``: ``torch.compile`` every model slot (opt-in; the first steps of each stage
      are slow while it compiles; the checkpoint keys are unchanged).
    - ``sync_every``: read the losses back and check them for NaN/inf every N steps instead of
      every step, so the hot loop never waits for the device (``0`` = auto: 1 on the CPU, 20 on
      CUDA). Logged values are identical; a non-finite loss is reported with the step where it
      happened, and a checkpoint is only written after a check, so it is never corrupted.
      ``on_nonfinite = "skip"`` needs the check before each update, so there it still syncs
      every step.
    - ``resident``: ``"auto"`` (on CUDA when the uint8 training images take at most a quarter of
      the free device memory), ``"on"`` or ``"off"``: keep the whole training split on the
      device, so batches are gathered, flipped and scaled there without host copies.
    - ``sync_batchnorm``: with more than one process (torchrun), normalise BatchNorm layers
      over the global batch instead of each process's slice (one all-reduce per BN layer).
    - ``cuda_graphs``: ``"auto"``, ``"on"`` or ``"off"``: run each stage's whole step (batch
      gathering and flipping, forward, D and G updates) as one captured CUDA graph, replayed
      every step, so a small-batch step is not bound by the host launching kernels (see
      :mod:`facegan_kit.train.graphs`). ``"auto"`` turns it on for a single-process CUDA run with
      the dataset resident, ``compile = false`` and ``on_nonfinite = "stop"``, and is off (the
      plain eager step) on the CPU. ``"on"`` insists: where those conditions fail it is an error;
      on the CPU, which has no graphs, it runs the same capture-ready step (static inputs,
      batches drawn on the device, losses checked in bulk) without capture, with results
      bit-identical to ``"off"``. On CUDA a graph run draws its batch permutation on the GPU, so
      its batches differ from an eager CUDA run's (each run is still a function of the seed).
    """

    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    #: a logged loss (e.g. ``g/l1``); ``best.safetensors`` is the checkpoint with its lowest mean
    #: over the steps since the previous checkpoint ("" = no best checkpoint)
    best_metric: str = "g/l1"
    sample_every: int = 200
    log_every: int = 10
    flip: bool = True
    num_threads: int = 0
    on_nonfinite: str = "stop"
    precision: str = "auto"
    channels_last: str = "auto"
    fused_adam: str = "auto"
    cudnn_benchmark: bool = True
    compile: bool = False
    sync_every: int = 0
    resident: str = "auto"
    sync_batchnorm: bool = False
    cuda_graphs: str = "auto"

    def __post_init__(self) -> None:
        choices = {"precision": ("auto", "fp32", "bf16"), "channels_last": ("auto", "on", "off"),
                   "fused_adam": ("auto", "on", "off"), "resident": ("auto", "on", "off"),
                   "cuda_graphs": ("auto", "on", "off")}
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value not in allowed:
                raise RecipeError(f"train.{name}: {value!r} must be one of {', '.join(map(repr, allowed))}")
        if self.sync_every < 0:
            raise RecipeError(f"train.sync_every: must be >= 0 (0 = auto), got {self.sync_every}")


@dataclass
class StageSpec:
    """One ``[[stages]]`` entry: which modules train, on which losses, for how long."""

    name: str
    train: list[str]
    losses: dict[str, float]
    batch_size: int = 48
    epochs: float | None = None
    steps: int | None = None
    identity: str = "encoder"
    lr: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    d_lr: float | None = None
    #: The learning rates fall linearly over the stage from ``lr`` (and ``d_lr``) to this
    #: fraction of them at its last step; 1.0 (the default, as the paper) keeps them constant.
    lr_end_factor: float = 1.0
    #: What the encoder reads: ``"self"`` (the paper) encodes the target photo itself;
    #: ``"same-person"`` encodes another photo of the target's person (often in another
    #: expression), so reconstructing the target means changing the expression while keeping
    #: the person (docs/paper-fidelity.md, "Same-person pairs").
    pairs: str = "self"


@dataclass
class Recipe:
    """A validated recipe. ``raw`` is the resolved dict saved into every checkpoint."""

    raw: dict[str, Any]
    name: str
    data: dict[str, Any]
    model: dict[str, dict[str, Any]]
    losses: dict[str, dict[str, Any]]
    train: TrainSpec
    stages: list[StageSpec]


def validate(raw: dict[str, Any], registry: Registry) -> Recipe:
    """Check every table against the registry and the factories' signatures."""
    if RETYPED_KEY in raw:
        raw = _drop_old_type_keys(raw, registry)
    _unknown_keys("recipe", raw, TOP_LEVEL)
    for key in ("model", "stages"):
        if key not in raw:
            raise RecipeError(f"{key}: missing (a recipe needs [model.*] tables and [[stages]])")
    model_raw = _table("model", raw["model"])
    shared = {k: model_raw[k] for k in MODEL_SHARED if k in model_raw}
    slots = {k: v for k, v in model_raw.items() if k not in MODEL_SHARED}
    _unknown_keys("model", slots, tuple(MODEL_SLOTS) + MODEL_SHARED)
    model = {
        slot: _component(f"model.{slot}", MODEL_SLOTS[slot], _table(f"model.{slot}", t), registry, shared)
        for slot, t in slots.items()
    }
    for slot in ("decoder", "controller"):
        if slot not in model:
            raise RecipeError(f"model.{slot}: missing (every recipe needs a decoder and a controller)")
    losses = {
        name: _component(f"losses.{name}", "loss", _table(f"losses.{name}", t), registry, {})
        for name, t in _table("losses", raw.get("losses", {})).items()
    }
    data_t = dict(_table("data", raw.get("data", {"type": "synthetic"})))
    if "image_size" in shared and "size" not in data_t:
        data_t["size"] = shared["image_size"]
    data = _component("data", "dataset", data_t, registry, {})
    train = _dataclass("train", TrainSpec, _table("train", raw.get("train", {})))
    if train.on_nonfinite not in ("stop", "skip"):
        raise RecipeError(f"train.on_nonfinite: '{train.on_nonfinite}' must be 'stop' or 'skip'")
    stages_raw = raw["stages"]
    if not isinstance(stages_raw, list) or not stages_raw:
        raise RecipeError("stages: expected one or more [[stages]] tables")
    stages = [_stage(i, s, model, losses, registry) for i, s in enumerate(stages_raw)]
    name = str(_table("recipe", raw.get("recipe", {})).get("name", "recipe"))
    return Recipe(raw=raw, name=name, data=data, model=model, losses=losses, train=train, stages=stages)


def _stage(i: int, raw: Any, model: dict, losses: dict, registry: Registry) -> StageSpec:
    path = f"stages[{i}]"
    spec = _dataclass(path, StageSpec, _table(path, raw))
    for slot in spec.train:
        if slot not in model:
            raise RecipeError(f"{path}.train: '{slot}' is not a [model.*] table (have: {', '.join(model)})")
    if (spec.epochs is None) == (spec.steps is None):
        raise RecipeError(f"{path}: give exactly one of 'epochs' or 'steps'")
    if spec.identity not in ("encoder", "noise"):
        raise RecipeError(f"{path}.identity: '{spec.identity}' must be 'encoder' or 'noise'")
    if spec.identity == "encoder" and "encoder" not in model:
        raise RecipeError(f"{path}.identity: 'encoder' needs a [model.encoder] table")
    if spec.pairs not in ("self", "same-person"):
        raise RecipeError(f"{path}.pairs: '{spec.pairs}' must be 'self' or 'same-person'")
    if spec.pairs == "same-person" and spec.identity != "encoder":
        raise RecipeError(f"{path}.pairs: 'same-person' pairs feed the encoder, but identity = 'noise'")
    if spec.batch_size < 1:
        raise RecipeError(f"{path}.batch_size: must be >= 1, got {spec.batch_size}")
    if not 0.0 <= spec.lr_end_factor <= 1.0:
        raise RecipeError(f"{path}.lr_end_factor: must be in [0, 1] (a fraction of lr), got {spec.lr_end_factor}")
    for name, weight in spec.losses.items():
        if name not in losses:
            raise RecipeError(f"{path}.losses: '{name}' is not a [losses.*] table (have: {', '.join(losses) or 'none'})")
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight < 0:
            raise RecipeError(f"{path}.losses.{name}: weight must be a number >= 0, got {weight!r}")
        factory = registry.get("loss", losses[name]["type"])
        needs_encoder = getattr(factory, "requires_encoder", False)
        if needs_encoder and spec.identity != "encoder" and weight > 0:
            raise RecipeError(f"{path}.losses.{name}: needs the encoder, but identity = 'noise'")
        for slot in getattr(factory, "needs", ()):
            if slot not in model and weight > 0:
                raise RecipeError(f"{path}.losses.{name}: needs a [model.{slot}] table")
    return spec


def _drop_old_type_keys(raw: dict[str, Any], registry: Registry) -> dict[str, Any]:
    """Leave out, with a note on stderr, the recipe keys of a table whose ``type`` a ``--set``
    changed that the new component does not take (keys given by ``--set`` always stay)."""
    raw = copy.deepcopy(raw)
    for path, kept in raw.pop(RETYPED_KEY).items():
        parts = path.split(".")
        kind = "dataset" if parts == ["data"] else "loss" if parts[0] == "losses" else MODEL_SLOTS.get(parts[-1])
        table = raw
        for part in parts:
            table = table.get(part) if isinstance(table, dict) else None
        if kind is None or not isinstance(table, dict) or table.get("type") not in registry.names(kind):
            continue  # validation below names the problem
        factory = registry.get(kind, table["type"])
        dropped = [k for k in table if k != "type" and k not in kept and not _accepts(factory, k)]
        for key in dropped:
            del table[key]
        if dropped:
            print(f"note: {path}.type = {table['type']!r}: leaving out "
                  f"{', '.join(f'{path}.{k}' for k in dropped)} (settings of the recipe's previous "
                  f"{kind} that {table['type']!r} does not take)", file=sys.stderr)
    return raw


def _component(path: str, kind: str, table: dict, registry: Registry, shared: dict) -> dict:
    """Validate one component table; ``shared`` values fill keys the factory accepts."""
    if "type" not in table:
        raise RecipeError(f"{path}: missing 'type' (a registered {kind} name)")
    entry = registry.entry(kind, table["type"], where=path)
    args = {k: v for k, v in table.items() if k != "type"}
    for key, value in shared.items():
        if key not in args and _accepts(entry.factory, key):
            args[key] = value
    check_arguments(path, entry.factory, args)
    return {"type": table["type"], **args}


def _accepts(factory: Callable, key: str) -> bool:
    params = inspect.signature(factory).parameters
    return key in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def check_arguments(path: str, factory: Callable, args: dict[str, Any]) -> None:
    """Bind ``args`` to ``factory``'s signature; errors name the TOML path and expected keys."""
    sig = inspect.signature(factory)
    params = {n: p for n, p in sig.parameters.items() if n not in ("self", "registry")}
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        for key in args:
            if key not in params:
                close = difflib.get_close_matches(key, list(params), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise RecipeError(
                    f"{path}: unknown key '{key}'{hint}; expected {', '.join(params) or 'no keys'}"
                )
    for name, p in params.items():
        if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name not in args:
            raise RecipeError(f"{path}: missing required key '{name}'")
        if name in args and p.default is not p.empty and p.default is not None:
            _check_type(f"{path}.{name}", p.default, args[name])


def _check_type(path: str, default: Any, value: Any) -> None:
    want = type(default)
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(default, (list, tuple)):
        ok = isinstance(value, (list, tuple))
        want = list
    else:
        ok = isinstance(value, want)
    if not ok:
        raise RecipeError(f"{path}: expected {want.__name__}, got {type(value).__name__} {value!r}")


def _dataclass(path: str, cls: type, table: dict) -> Any:
    from dataclasses import MISSING

    _unknown_keys(path, table, tuple(f.name for f in fields(cls)))
    for f in fields(cls):
        if f.name not in table:
            if f.default is MISSING and f.default_factory is MISSING:
                raise RecipeError(f"{path}: missing required key '{f.name}'")
            continue
        example = {"name": "", "train": [], "losses": {}, "epochs": 1.0, "steps": 1, "d_lr": 1.0}.get(f.name)
        if example is None:
            example = f.default if f.default is not MISSING else f.default_factory()
        if table[f.name] is not None:
            _check_type(f"{path}.{f.name}", example, table[f.name])
    return cls(**table)


def _table(path: str, value: Any) -> dict:
    if not isinstance(value, dict):
        raise RecipeError(f"{path}: expected a table, got {type(value).__name__}")
    return value


def _unknown_keys(path: str, table: dict, allowed: tuple[str, ...]) -> None:
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, list(allowed), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise RecipeError(f"{path}: unknown key '{key}'{hint}; expected {', '.join(allowed)}")
