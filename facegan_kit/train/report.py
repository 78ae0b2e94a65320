"""Training outputs a person looks at: JSONL losses, sample grids, a loss-curve plot."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor, nn

from facegan_kit import EXPRESSIONS
from facegan_kit.checkpoint import atomic_write_bytes


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


def plot_losses(log_path: Path, out_png: Path) -> Path | None:
    """Loss curves per term (one panel per term), stage boundaries marked."""
    rows = read_log(log_path)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({k for r in rows for k in r if "/" in k and not k.startswith("skipped")})
    if not keys:
        return None
    cols = min(3, len(keys))
    nrows = (len(keys) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 2.8 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        pts = [(r["step"], r[key]) for r in rows if key in r]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=1)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        stages = {}
        for r in rows:
            stages.setdefault(r.get("stage"), r["step"])
        for step in list(stages.values())[1:]:
            ax.axvline(step, color="grey", ls=":", lw=0.8)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.tight_layout()
    tmp = out_png.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(out_png)
    return out_png


def save_image_grid(images: Tensor, nrow: int, path: Path) -> Path:
    """Write images in ``[-1,1]`` as one PNG grid (atomically)."""
    import io

    from torchvision.utils import save_image

    buf = io.BytesIO()
    save_image(images.detach().float().cpu().add(1).div(2).clamp(0, 1), buf, nrow=nrow, padding=2,
               pad_value=1.0, format="png")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    return path


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
        cols = [x, dec(g, ctrl(y, generator=gen))]
        n_cls = min(ctrl.num_classes, len(EXPRESSIONS))
        for k in range(n_cls):
            code = ctrl.intensity_code(k, 1.0).to(x.device).expand(x.shape[0], -1)
            cols.append(dec(g, code))
        cols.append(dec(g, ctrl.neutral_code().to(x.device).expand(x.shape[0], -1)))
        grid = torch.stack(cols, dim=1).flatten(0, 1)
        return save_image_grid(grid, nrow=len(cols), path=path)
    finally:
        for k, m in models.items():
            m.train(was_training[k])
