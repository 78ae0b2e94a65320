"""Feature visualisation (the paper's Figs. 6 and 7): retrieval and t-SNE of identity codes.

Retrieval ranks a gallery against a query face by one of

* ``code``  - Euclidean distance between Q's expression codes ``c = Q(x, y)`` (query and gallery
  need expression labels ``y``: user-given, from ``index.csv`` or from a classifier);
* ``label`` - distance 0 for the same label, 1 otherwise; ties keep gallery order (sorted file
  names), so this ranking says nothing about style or intensity - the paper's point;
* ``pixel`` - Euclidean distance between the images at the model's size, in [-1,1].

:func:`tsne` embeds feature vectors in 2-D with scikit-learn's TSNE.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from facegan_kit.errors import InputError

__all__ = ["BY", "features", "rank", "tsne", "plot_embedding", "encode_batches"]

BY = ("code", "label", "pixel")


@torch.no_grad()
def encode_batches(fn, images: Tensor, batch_size: int = 256) -> Tensor:
    """Apply ``fn`` to uint8/float images in batches (uint8 converted to [-1,1]); CPU result."""
    from facegan_kit.apps.classifier import as_float

    out = [fn(as_float(images[i:i + batch_size])).cpu() for i in range(0, images.shape[0], batch_size)]
    return torch.cat(out) if out else torch.zeros(0)


def features(editor, images: Tensor, by: str, labels: Optional[Tensor] = None) -> Tensor:
    """The retrieval features ``(N, D)`` of ``images`` (uint8 or [-1,1], any size)."""
    if by not in BY:
        raise InputError(f"unknown retrieval feature '{by}' (use one of: {', '.join(BY)})")
    if by == "pixel":
        return encode_batches(lambda x: editor._check_images(x).flatten(1), images)
    if labels is None or (labels < 0).any():
        raise InputError(f"retrieval by {by} needs an expression label (0..5) for every image")
    if by == "label":
        return torch.nn.functional.one_hot(labels.long(), editor.controller.num_classes).float()
    from facegan_kit.apps.classifier import as_float

    codes = [editor.code_from_image(as_float(images[i:i + 256]), labels[i:i + 256]).cpu()
             for i in range(0, images.shape[0], 256)]
    return torch.cat(codes)


def rank(query: Tensor, gallery: Tensor, by: str) -> tuple[np.ndarray, np.ndarray]:
    """Gallery indices sorted by distance to ``query`` (stable) and their distances."""
    q = query.reshape(1, -1).double()
    g = gallery.reshape(gallery.shape[0], -1).double()
    if by == "label":
        d = (~(g == q).all(dim=1)).double()
    else:
        d = (g - q).pow(2).sum(1).sqrt()
    d = d.numpy()
    order = np.argsort(d, kind="stable")
    return order, d[order]


# -- t-SNE -----------------------------------------------------------------------------------

def tsne(x: np.ndarray, perplexity: float = 30.0, seed: int = 0) -> np.ndarray:
    """2-D t-SNE of ``x`` ``(N, D)`` -> ``(N, 2)`` (scikit-learn, PCA initialisation).

    The perplexity is clipped to ``(N - 1) / 3`` (and at least 1.5), so a small gallery still
    embeds; fewer than 3 points is an :class:`InputError`.
    """
    from sklearn.manifold import TSNE

    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 3:
        raise InputError(f"t-SNE needs at least 3 points, got {x.shape[0] if x.ndim else 0}")
    perp = float(max(1.5, min(perplexity, (x.shape[0] - 1) / 3.0)))
    return TSNE(n_components=2, perplexity=perp, random_state=seed, init="pca").fit_transform(x)


def plot_embedding(y: np.ndarray, groups: Sequence[str], path, title: str = "") -> None:
    """Scatter of ``y`` ``(N,2)`` coloured by group, each group's name at its centroid (Fig. 6)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from facegan_kit.data.io import write_png_atomic

    names = list(dict.fromkeys(str(g) for g in groups))
    cmap = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
    fig, ax = plt.subplots(figsize=(7, 7), dpi=100)
    groups = np.asarray([str(g) for g in groups])
    for i, name in enumerate(names):
        sel = groups == name
        color = cmap(i % cmap.N)
        ax.scatter(y[sel, 0], y[sel, 1], s=18, color=color, label=name)
        cx, cy = y[sel].mean(0)
        ax.annotate(name, (cx, cy), xytext=(5, 5), textcoords="offset points", fontsize=8,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": color, "alpha": 0.8})
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or "t-SNE of identity codes g(x)")
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    buf.seek(0)
    from PIL import Image

    write_png_atomic(path, np.asarray(Image.open(buf).convert("RGB")))
