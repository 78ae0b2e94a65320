"""Training outputs a person looks at: JSONL losses, labelled sample grids, a loss-curve plot."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from facegan_kit import EXPRESSIONS
from facegan_kit.checkpoint import atomic_write_bytes
from facegan_kit.interfaces import decode
from facegan_kit.figures import save_sheet


class JsonlLog:
    """Append-only JSONL of losses; on resume, lines past the resumed step are dropped so the
    log stays one clean history."""

    def __init__(self, path: Path, resume_step: int | None = None) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and path.exists():
            keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= resume_step]
            atomic_write_bytes(path, ("\n".join(keep) + ("\n" if keep else "")).encode())
        elif resume_step is None and path.exists():
            path.unlink()

    def write(self, record: dict) -> None:
        with self.path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")


def read_log(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def loss_series(rows: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Steps and values of one logged loss, NaN where a logged step lacks it.

    Stages train different terms (no ``d/adv_img`` in the reconstruction stage): a plain line
    through the points present would draw a straight segment across the stage where the term
    does not exist. matplotlib breaks a line at NaN, so the gap shows as a gap."""
    steps = np.array([r["step"] for r in rows if "step" in r], dtype=float)
    values = np.array([float(r[key]) if key in r and r[key] is not None else np.nan
                       for r in rows if "step" in r], dtype=float)
    return steps, values


def stage_starts(rows: list[dict]) -> list[tuple[int, str]]:
    """``(first step, stage name)`` of every stage in the log, in order."""
    starts: list[tuple[int, str]] = []
    for r in rows:
        name = r.get("stage")
        if name is not None and "step" in r and (not starts or starts[-1][1] != name):
            starts.append((int(r["step"]), str(name)))
    return starts


def loss_keys(rows: list[dict]) -> list[str]:
    return sorted({k for r in rows for k in r if "/" in k and not k.startswith("skipped")})


def mark_stages(ax, starts: list[tuple[int, str]]) -> None:
    """A dotted line where each stage after the first begins, every stage named just above the
    plot (inside it, a name would hide the curve)."""
    from matplotlib.transforms import blended_transform_factory

    where = blended_transform_factory(ax.transData, ax.transAxes)
    for i, (step, name) in enumerate(starts):
        if i:
            ax.axvline(step, color="grey", ls=":", lw=0.8)
        ax.text(step, 1.005, f" {name}", transform=where, fontsize=6.5, color="dimgrey", va="bottom", ha="left")


def plot_losses(log_path: Path, out_png: Path) -> Path | None:
    """Loss curves per term (one panel per term); a term's line breaks where the term was not
    trained, and the stages are marked and named."""
    rows = read_log(log_path)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = loss_keys(rows)
    if not keys:
        return None
    cols = min(3, len(keys))
    nrows = (len(keys) + cols - 1) // cols
    starts = stage_starts(rows)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 2.8 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        steps, values = loss_series(rows, key)
        ax.plot(steps, values, lw=1)
        ax.set_xlim(steps.min(), max(steps.max(), steps.min() + 1))  # every panel spans the whole run
        ax.set_title(key, fontsize=9, pad=12)
        ax.set_xlabel("step", fontsize=8)
        mark_stages(ax, starts)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.tight_layout()
    tmp = out_png.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(out_png)
    return out_png


def expression_name(y: Tensor) -> str:
    """The expression of a one-hot (or all-zero, neutral) label row."""
    return EXPRESSIONS[int(y.argmax())] if float(y.sum()) > 0 and int(y.argmax()) < len(EXPRESSIONS) else "neutral"


@torch.no_grad()
def sample_grid(models: nn.ModuleDict, x: Tensor, y: Tensor, identity: str, path: Path,
                generator_seed: int = 1234) -> Path:
    """One row per face: input, reconstruction with its own label's code, each of the six
    expressions at full intensity, neutral. Without an encoder (stage ``identity = "noise"``) the
    identity comes from fixed prior noise and the input column shows the real face of that row's
    label for reference."""
    was_training = {k: m.training for k, m in models.items()}
    models.eval()
    try:
        ctrl, dec = models["controller"], models["decoder"]
        gen = torch.Generator(device=x.device).manual_seed(generator_seed)
        if identity == "encoder" and "encoder" in models:
            g = models["encoder"](x)
        else:
            g = torch.rand(x.shape[0], dec.z_dim, generator=gen, device=x.device) * 2 - 1
        encoded = identity == "encoder" and "encoder" in models
        src = x if encoded else None
        cols = [x, decode(dec, g, ctrl(y, generator=gen), src)]
        n_cls = min(ctrl.num_classes, len(EXPRESSIONS))
        for k in range(n_cls):
            code = ctrl.intensity_code(k, 1.0).to(x.device).expand(x.shape[0], -1)
            cols.append(decode(dec, g, code, src))
        cols.append(decode(dec, g, ctrl.neutral_code().to(x.device).expand(x.shape[0], -1), src))
        names = ["input" if encoded else "real face", "own label", *EXPRESSIONS[:n_cls], "neutral"]
        cells = [[c[i].float().clamp(-1, 1).cpu() for c in cols] for i in range(x.shape[0])]
        rows = [f"{expression_name(y[i])} face" for i in range(x.shape[0])]
        how = "identity from the encoder" if encoded else "identity from prior noise"
        return save_sheet(path, cells, col_labels=names, row_labels=rows, note=how)
    finally:
        for k, m in models.items():
            m.train(was_training[k])
