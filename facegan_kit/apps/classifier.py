"""The expression classifier of the paper's experiments.

"The classifier has the same network architecture as G_enc except one additional FC layer
with six neurons is added" (Table 1). :class:`ExpressionClassifier` builds the checkpoint's
``[model.encoder]`` component from the registry (freshly initialised, not the GAN's weights)
and puts ``nn.Linear(z_dim, 6)`` on top. It is used to label faces for expression transfer
and retrieval, and trained on real (+ generated) faces for the augmentation experiment.

Saved as two files: ``NAME.safetensors`` (weights) and ``NAME.json`` (the encoder spec, class
names, accuracy and anything else passed as ``info``)::

    from facegan_kit.apps.classifier import build_classifier, fit, save_classifier
    clf = build_classifier(editor.recipe.model["encoder"])
    fit(clf, images_uint8, labels, epochs=10)
    save_classifier(clf, "runs/quick/classifier.safetensors")
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from facegan_kit import EXPRESSIONS
from facegan_kit.errors import CheckpointError, InputError

__all__ = ["ExpressionClassifier", "build_classifier", "fit", "evaluate", "predict",
           "save_classifier", "load_classifier", "as_float", "resolve_labels"]


class ExpressionClassifier(nn.Module):
    """Encoder architecture + one FC layer: ``(N,3,S,S)`` in [-1,1] -> logits ``(N, classes)``."""

    def __init__(self, encoder: nn.Module, spec: dict, classes: tuple = EXPRESSIONS) -> None:
        super().__init__()
        self.encoder = encoder
        self.spec = dict(spec)
        self.classes = tuple(classes)
        self.image_size = int(getattr(encoder, "image_size", spec.get("image_size", 0)))
        self.fc = nn.Linear(int(encoder.z_dim), len(self.classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.encoder(x))


def build_classifier(encoder_spec: dict, classes: tuple = EXPRESSIONS, seed: int | None = None) -> ExpressionClassifier:
    """A fresh classifier from an encoder table such as ``editor.recipe.model["encoder"]``
    (``{"type": "conv-encoder", "image_size": 128, "z_dim": 50, "channels": [...]}``)."""
    from facegan_kit.pm import default_registry

    spec = dict(encoder_spec)
    if "type" not in spec:
        raise InputError("classifier: encoder spec needs a 'type'")
    factory = default_registry().get("encoder", spec["type"])
    if seed is not None:
        torch.manual_seed(seed)
    encoder = factory(**{k: v for k, v in spec.items() if k != "type"})
    return ExpressionClassifier(encoder, spec, classes)


def as_float(images: Tensor) -> Tensor:
    """uint8 ``(N,3,S,S)`` -> float in [-1,1]; float tensors are returned unchanged."""
    return images.float().div(127.5).sub(1.0) if images.dtype == torch.uint8 else images.float()


def _fit_size(model: ExpressionClassifier, x: Tensor) -> Tensor:
    s = model.image_size
    if s and x.shape[-1] != s:
        x = F.interpolate(x, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
    return x


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def fit(model: ExpressionClassifier, images: Tensor, labels: Tensor, epochs: int = 10,
        batch_size: int = 64, lr: float = 1e-3, seed: int = 0,
        progress: Optional[Callable[[int, float], None]] = None) -> list[float]:
    """Train with Adam and cross-entropy on ``images`` (uint8 or [-1,1] float, any size: they
    are resized per batch) and integer ``labels``; returns the mean loss of each epoch."""
    if images.shape[0] != labels.shape[0] or images.shape[0] == 0:
        raise InputError(f"classifier: need matching non-empty images/labels, "
                         f"got {images.shape[0]} and {labels.shape[0]}")
    dev = _device(model)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999))
    labels = labels.long()
    history = []
    model.train()
    for epoch in range(int(epochs)):
        order = torch.randperm(images.shape[0], generator=gen)
        total, count = 0.0, 0
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            x = _fit_size(model, as_float(images[idx]).to(dev))
            loss = F.cross_entropy(model(x), labels[idx].to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            count += len(idx)
        history.append(total / max(count, 1))
        if progress is not None:
            progress(epoch + 1, history[-1])
    model.eval()
    return history


@torch.no_grad()
def predict(model: ExpressionClassifier, images: Tensor, batch_size: int = 256) -> Tensor:
    """Predicted class indices ``(N,)`` (on the CPU)."""
    model.eval()
    dev = _device(model)
    out = [model(_fit_size(model, as_float(images[i:i + batch_size]).to(dev))).argmax(1).cpu()
           for i in range(0, images.shape[0], batch_size)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def evaluate(model: ExpressionClassifier, images: Tensor, labels: Tensor) -> float:
    """Accuracy in [0, 1]."""
    if images.shape[0] == 0:
        raise InputError("classifier: empty test set")
    return float((predict(model, images) == labels.long().cpu()).float().mean())


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def save_classifier(model: ExpressionClassifier, path, info: dict | None = None) -> Path:
    """Write ``path`` (safetensors) and its ``.json`` sidecar atomically; returns ``path``."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise InputError(f"{path}: classifier files end in .safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": "facegan-expression-classifier", "version": 1, "encoder": model.spec,
            "classes": list(model.classes), **(info or {})}
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for dest, write in ((path, lambda t: save_file(sd, str(t), metadata={"format": meta["format"]})),
                        (_sidecar(path), lambda t: t.write_text(json.dumps(meta, indent=2) + "\n"))):
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        try:
            write(tmp)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
    return path


def load_classifier(path, device: str = "cpu") -> ExpressionClassifier:
    """Load a classifier written by :func:`save_classifier` (one-line errors for bad files)."""
    from safetensors.torch import load_file

    path = Path(path)
    side = _sidecar(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: classifier not found")
    try:
        meta = json.loads(side.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{side}: missing (a classifier is a .safetensors file plus this .json)") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{side}: unreadable classifier description ({exc})") from None
    if meta.get("format") != "facegan-expression-classifier":
        raise CheckpointError(f"{side}: not a facegan expression classifier")
    model = build_classifier(meta["encoder"], tuple(meta.get("classes", EXPRESSIONS)))
    try:
        model.load_state_dict(load_file(str(path)), strict=True)
    except Exception as exc:  # noqa: BLE001 - corrupt file or other architecture
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise CheckpointError(f"{path}: classifier weights do not load ({first})") from None
    model.info = meta
    return model.to(device).eval()


def resolve_labels(images: Tensor, label: str | None = None, classifier=None, what: str = "image") -> Tensor:
    """Expression labels ``(N,)`` of faces: the user's ``label`` name for all of them, or the
    ``classifier``'s predictions (a loaded model or a path). Neither is a one-line error."""
    from facegan_kit.edit import expression_index

    if label is not None:
        k = expression_index(label)
        if k is None:
            raise InputError(f"--label must be one of the six trained expressions ({', '.join(EXPRESSIONS)}), "
                             f"not '{label}'")
        return torch.full((images.shape[0],), k, dtype=torch.long)
    if classifier is None:
        raise InputError(f"the {what}'s expression label is needed: pass --label NAME or --classifier "
                         "FILE.safetensors (one is written by `facegan augment-experiment --out DIR`)")
    if not isinstance(classifier, nn.Module):
        classifier = load_classifier(classifier)
    return predict(classifier, images)
