"""Applying a trained model: encode faces, build expression codes, decode.

    from facegan_kit.edit import Editor
    ed = Editor.from_checkpoint("runs/quick/final.safetensors")
    g = ed.encode(x)                          # x: (N,3,S,S) in [-1,1]
    happy = ed.edit(x, "happy", intensity=0.6) # continuous intensity in [0,1]
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from facegan_kit import EXPRESSIONS, NEUTRAL
from facegan_kit.checkpoint import load_checkpoint
from facegan_kit.errors import CheckpointError, InputError
from facegan_kit.interfaces import decode
from facegan_kit.pm import default_registry
from facegan_kit.recipe import build_model, validate
from facegan_kit.recipe.schema import Recipe
from facegan_kit.train.state import load_model_weights


def expression_index(name: str) -> int | None:
    """``"happy"`` -> 3; ``"neutral"`` -> None; anything else is an :class:`InputError`."""
    key = name.strip().lower()
    if key == NEUTRAL:
        return None
    if key in EXPRESSIONS:
        return EXPRESSIONS.index(key)
    raise InputError(f"unknown expression '{name}' (expected one of: {', '.join(EXPRESSIONS + (NEUTRAL,))})")


#: How to get a model that edits photos, named wherever a synthetic-face model meets a photo.
REAL_PHOTO_HOWTO = ("to edit real photos, train on labelled real faces: `facegan data prepare PHOTOS/ faces/ "
                    "--layout folder` (--help lists the layouts), then "
                    "`facegan train recipes/exprgan-real-quick.toml --set data.root=faces/ --out runs/real`")


def photo_warning(trained_on: str | None) -> str | None:
    """The plain-words warning for a model trained on ``trained_on`` data that is given a
    person's own image, or ``None`` when there is nothing to warn about.

    A model trained on the synthetic faces has only ever seen flat-coloured cartoons: given a
    photo it encodes what it can and decodes a cartoon face, which the paste-back then puts
    into the photo. Nothing in the output says why, so the tools say it up front."""
    if trained_on != "synthetic":
        return None
    return ("this model was trained on synthetic cartoon faces, not on photos: on a photo of a real person "
            "the edited face will look like a blurry cartoon face pasted into the picture; " + REAL_PHOTO_HOWTO)


@dataclass
class Editor:
    """A trained model in eval mode, with the edit-time operations of the paper."""

    models: nn.ModuleDict
    recipe: Recipe
    device: torch.device
    meta: dict

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu") -> "Editor":
        tensors, meta = load_checkpoint(path)
        if "recipe" not in meta:
            raise CheckpointError(f"{path}: checkpoint has no recipe")
        recipe = validate(meta["recipe"], default_registry())
        models = build_model(recipe, default_registry())
        load_model_weights(models, tensors, str(path))
        dev = torch.device(device)
        models.to(dev).eval()
        for p in models.parameters():
            p.requires_grad_(False)
        return cls(models=models, recipe=recipe, device=dev, meta=meta)

    # -- sizes -----------------------------------------------------------------------------
    @property
    def image_size(self) -> int:
        return int(self.models["decoder"].image_size)

    @property
    def trained_on(self) -> str | None:
        """The recipe's ``[data] type`` (``"synthetic"``, ``"prepared"``, ...): what the model saw."""
        return (self.recipe.data or {}).get("type")

    @property
    def photo_warning(self) -> str | None:
        """:func:`photo_warning` for this model."""
        return photo_warning(self.trained_on)

    @property
    def controller(self) -> nn.Module:
        return self.models["controller"]

    @property
    def has_encoder(self) -> bool:
        return "encoder" in self.models

    # -- codes -----------------------------------------------------------------------------
    def code(self, expression: str, intensity: float | None = None, level: int | None = None) -> Tensor:
        """The expression code ``(C,)`` for an expression name and either a continuous
        ``intensity`` in [0,1] (default 1) or a discrete paper ``level`` 1..levels."""
        k = expression_index(expression)
        ctrl = self.controller
        if intensity is not None and level is not None:
            raise InputError("give either an intensity or a level, not both")
        if k is None:
            return ctrl.neutral_code().to(self.device)
        if level is not None:
            if not 1 <= int(level) <= ctrl.levels:
                raise InputError(f"level {level} out of range (1..{ctrl.levels})")
            return ctrl.level_code(k, int(level)).to(self.device)
        t = 1.0 if intensity is None else float(intensity)
        if not 0.0 <= t <= 1.0 or t != t:
            raise InputError(f"intensity {intensity} out of range [0, 1]")
        return ctrl.intensity_code(k, t).to(self.device)

    def set_level_codes(self, mode: str | None) -> None:
        """Choose how ``level`` codes are built (``exprgan-fctrl``: ``"single"``, the paper's one element
        +1, or ``"cumulative"``, the first ``level`` elements +1); ``None`` keeps the
        checkpoint's. An edit-time choice: the training codes do not depend on it."""
        if mode is None:
            return
        ctrl = self.controller
        choices = getattr(ctrl, "LEVEL_CODES", None)
        if not hasattr(ctrl, "level_codes") or not choices:
            raise InputError(f"this model's controller ({type(ctrl).__name__}) has no level-code choice")
        if mode not in choices:
            raise InputError(f"level codes {mode!r}: use one of {', '.join(choices)}")
        ctrl.level_codes = mode

    # -- networks --------------------------------------------------------------------------
    def _check_images(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise InputError(f"images must be (N,3,H,W), got {tuple(x.shape)}")
        x = x.to(self.device, torch.float32)
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = nn.functional.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                                          antialias=True, align_corners=False)
        return x

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """Identity codes ``(N,Z)`` of faces ``(N,3,S,S)`` in [-1,1] (resized to the model's size)."""
        if not self.has_encoder:
            raise CheckpointError("this checkpoint has no encoder (a stage-1-only model?)")
        return self.models["encoder"](self._check_images(x))

    @property
    def uses_source(self) -> bool:
        """Whether the decoder also reads the photo being edited (``source_blend``): then
        :meth:`decode` needs the encoded faces as ``source``."""
        return bool(getattr(self.models["decoder"], "uses_source", False))

    @torch.no_grad()
    def decode(self, g: Tensor, c: Tensor, source: Tensor | None = None) -> Tensor:
        """Faces of identity codes ``g`` with expression codes ``c`` (``(C,)`` is broadcast).
        ``source``: the faces ``g`` was encoded from (``(N,3,S,S)`` or one face, resized to the
        model's size), for decoders that also read the photo (``uses_source``); others ignore it."""
        if c.dim() == 1:
            c = c.expand(g.shape[0], -1)
        if source is not None:
            source = self._check_images(source)
        return decode(self.models["decoder"], g.to(self.device), c.to(self.device), source)

    @torch.no_grad()
    def edit(self, x: Tensor, expression: str, intensity: float | None = None, level: int | None = None) -> Tensor:
        """Faces ``x`` re-rendered with ``expression`` (identity from the encoder)."""
        return self.decode(self.encode(x), self.code(expression, intensity, level), source=x)

    @torch.no_grad()
    def grid(self, x: Tensor) -> Tensor:
        """The paper's Fig. 3 for one face: ``(levels, 7, 3, S, S)`` — rows are the intensity
        levels 1..levels, columns the six expressions and neutral."""
        g = self.encode(x[:1])
        ctrl = self.controller
        rows = []
        for level in range(1, ctrl.levels + 1):
            codes = [ctrl.level_code(k, level) for k in range(ctrl.num_classes)] + [ctrl.neutral_code()]
            rows.append(self.decode(g.expand(len(codes), -1), torch.stack(codes).to(self.device), source=x[:1]))
        return torch.stack(rows)

    @torch.no_grad()
    def generate(self, n: int, expression: str | None = None, intensity: float | None = None,
                 generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """New identities from the prior U(-1,1)^Z; the label of each is random unless given.
        Returns (images, labels)."""
        dec, ctrl = self.models["decoder"], self.controller
        g = torch.rand(n, dec.z_dim, generator=generator) * 2 - 1
        if expression is None:
            labels = torch.randint(0, ctrl.num_classes, (n,), generator=generator)
        else:
            k = expression_index(expression)
            if k is None:
                return self.decode(g, ctrl.neutral_code()), torch.full((n,), -1)
            labels = torch.full((n,), k)
        if intensity is None:
            y = nn.functional.one_hot(labels, ctrl.num_classes).float()
            c = ctrl(y, generator=generator)
        else:
            c = torch.stack([ctrl.intensity_code(int(k), intensity) for k in labels])
        return self.decode(g, c), labels

    @torch.no_grad()
    def code_from_image(self, x: Tensor, label: int | Tensor) -> Tensor:
        """Q's estimate of the expression code of faces ``x`` with expression ``label``
        (the paper's expression transfer)."""
        x = self._check_images(x)
        labels = torch.as_tensor(label).reshape(-1).expand(x.shape[0]).to(self.device)
        y = nn.functional.one_hot(labels.long(), self.controller.num_classes).float()
        if "d_img" not in self.models or "q" not in self.models:
            raise CheckpointError("this checkpoint has no D_img/Q, which expression transfer needs")
        _, feats = self.models["d_img"](x, y)
        return self.models["q"](feats)
