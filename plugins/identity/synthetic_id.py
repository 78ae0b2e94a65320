"""``synthetic-id``: a small face-recognition network for the embedded synthetic faces.

The paper's identity loss (Eq. 7) compares features of a face-recognition network pretrained
on *other* people (VGG-Face). The synthetic faces have no such network, and the real-face
backbones (``dlib-resnet``, ``vggface``, ``facenet``) see cartoons at 32 px as noise and cost
~0.1 s per batch on a CPU. This backbone is the same idea on the toolkit's own data: a 4-block
CNN trained to tell apart ``subjects`` synthetic people drawn with another seed than the
protocol's (so no protocol subject, train or test, is among them), with flips, blur and noise
so that its features also describe the blurry faces a young generator draws.

It is trained on first use (1000 steps, about 40 s on 2 CPU cores at 32 px) and cached as
safetensors + json under ``cache_dir("synthetic_id")``, like the oracles; concurrent first uses
train once.
The json holds its report: identification of ``heldout_subjects`` people it never saw, by
nearest mean embedding among 8 (the evaluation protocol's gallery size) and among all.

It is *not* the oracle that scores identity in ``facegan eval``: that one regresses the
renderer's true attributes from faces of yet other subjects (``facegan_kit.eval.oracles``);
this one only ever saw subject labels, as a real face-recognition network does.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facegan_kit import InputError, cache_dir, file_lock
from facegan_plugins.identity.frozen import FrozenBackbone

__all__ = ["SyntheticId", "SyntheticIdConfig", "heldout_identification", "train_synthetic_id"]

VERSION = 1


@dataclass(frozen=True)
class SyntheticIdConfig:
    """How the backbone is trained (every field enters the cache key)."""

    size: int = 32
    subjects: int = 400  # people it learns to tell apart
    heldout_subjects: int = 40  # people kept out, for its report
    frames: int = 3  # images per subject and expression (six expressions + neutral)
    data_seed: int = 7919  # the protocol uses seed 0: these are other people
    width: int = 32
    steps: int = 1000
    batch: int = 64
    lr: float = 2e-3
    seed: int = 0


def _block(i: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(i, o, 3, 2, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU())


class SyntheticId(FrozenBackbone):
    """Four stride-2 conv blocks (``width, 2 width, 4 width, 4 width``), a 128-d embedding.

    ``features(x)`` returns the four blocks' activations (what the identity loss compares);
    ``embed(x)`` the L2-normalised embedding. Inputs: ``(N, 3, S, S)`` in [-1, 1], any ``S``
    (area-pooled down or bilinearly scaled up to ``input_size``). Frozen, always in eval mode.

    Args:
        input_size: the side it was trained at (selects the cached network).
        subjects: how many synthetic people it is trained on (selects the cached network).
        steps: training steps (selects the cached network).
        train_if_missing: train and cache it when no cached copy exists (else an error).
    """

    name = "synthetic-id"

    def __init__(self, input_size: int = 32, subjects: int = 400, steps: int = 1000,
                 train_if_missing: bool = True, _config: SyntheticIdConfig | None = None) -> None:
        super().__init__()
        cfg = _config or SyntheticIdConfig(size=int(input_size), subjects=int(subjects), steps=int(steps))
        if cfg.size < 16:
            raise InputError(f"synthetic-id: input_size must be >= 16, got {cfg.size}")
        if cfg.subjects < 2 or cfg.steps < 1:
            raise InputError(f"synthetic-id: needs subjects >= 2 and steps >= 1, got {cfg.subjects}, {cfg.steps}")
        self.config = cfg
        self.input_size = cfg.size
        w = cfg.width
        self.blocks = nn.ModuleList([_block(3, w), _block(w, 2 * w), _block(2 * w, 4 * w), _block(4 * w, 4 * w)])
        self.embedding = nn.Linear(4 * w * 4, 128)
        self.report: dict = {}
        if train_if_missing is not None:  # None: an untrained shell (used by the trainer itself)
            self._load(train_if_missing)
        self.freeze()

    def _prep(self, x: Tensor) -> Tensor:
        self.check_images(x)
        s = self.input_size
        if x.shape[-2:] == (s, s):
            return x
        if x.shape[-1] > s:
            return F.interpolate(x, size=(s, s), mode="area")
        return F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False)

    def features(self, x: Tensor) -> list[Tensor]:
        h, out = self._prep(x), []
        for block in self.blocks:
            h = block(h)
            out.append(h)
        return out

    def _embed_raw(self, x: Tensor) -> Tensor:
        return self.embedding(F.adaptive_avg_pool2d(self.features(x)[-1], 2).flatten(1))

    def embed(self, x: Tensor) -> Tensor:
        return F.normalize(self._embed_raw(x), dim=1)

    # -- cache ---------------------------------------------------------------------------------
    def _load(self, train_if_missing: bool) -> None:
        from safetensors.torch import load_file

        base = cache_dir("synthetic_id") / f"synthetic_id_{_key(self.config)}"
        st, js = base.with_suffix(".safetensors"), base.with_suffix(".json")
        if not (st.exists() and js.exists()):
            if not train_if_missing:
                raise InputError(f"synthetic-id: no trained network at {st}")
            with file_lock(base.with_suffix(".lock")):
                if not (st.exists() and js.exists()):  # another process may have trained it meanwhile
                    _save(train_synthetic_id(self.config), st, js)
        self.load_state_dict(load_file(str(st)))
        self.report = json.loads(js.read_text())["report"]


def _key(cfg: SyntheticIdConfig) -> str:
    from facegan_kit.data import RENDER_VERSION

    blob = json.dumps({"cfg": dataclasses.asdict(cfg), "render": RENDER_VERSION, "v": VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _save(net: "SyntheticId", st, js) -> None:
    from safetensors.torch import save_file

    tag = f".{os.getpid()}.tmp"
    try:
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(st) + tag)
        with open(str(js) + tag, "w") as fh:
            json.dump({"config": dataclasses.asdict(net.config), "report": net.report}, fh, indent=1)
        os.replace(str(st) + tag, st)  # weights first: the json marks a complete entry
        os.replace(str(js) + tag, js)
    except OSError as exc:
        raise InputError(f"synthetic-id: cannot write the cache at {st}: {exc}") from None


def _augment(x: Tensor, g: torch.Generator) -> Tensor:
    """Mirror, blur (a young generator's faces are blurry) and pixel noise, per image."""
    from kornia.filters import gaussian_blur2d

    n = len(x)
    flip = torch.rand(n, generator=g) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    sigma = torch.rand(n, generator=g) * 1.2 + 0.05
    blurred = gaussian_blur2d(x, (5, 5), torch.stack([sigma, sigma], 1))
    use = (torch.rand(n, generator=g) < 0.5)[:, None, None, None]
    x = torch.where(use, blurred, x)
    return x + 0.05 * torch.randn(x.shape, generator=g)


def train_synthetic_id(cfg: SyntheticIdConfig = SyntheticIdConfig(), log=None) -> SyntheticId:
    """Render its faces, train subject classification, report held-out identification."""
    from facegan_kit.data import SyntheticConfig, make_dataset

    log = log or (lambda msg: print(f"[synthetic-id] {msg}", file=sys.stderr, flush=True))
    t0 = time.time()
    total = cfg.subjects + cfg.heldout_subjects
    log(f"rendering {total} synthetic people (not the protocol's) at {cfg.size}px")
    ds = make_dataset(SyntheticConfig(subjects=total, size=cfg.size, frames=cfg.frames, seed=cfg.data_seed,
                                      test_subjects=cfg.heldout_subjects, include_neutral=True))
    x_all = ds.images_float()
    tr = ds.train
    x_tr, y_tr = x_all[tr], ds.subject[tr]
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    net = SyntheticId(_config=cfg, train_if_missing=None)
    net.requires_grad_(True)
    head = nn.Linear(128, cfg.subjects)
    params = list(net.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.15)
    log(f"training {cfg.steps} steps on {len(x_tr)} faces of {cfg.subjects} people")
    nn.Module.train(net, True)
    # First use often happens inside a caller's no_grad block (the identity loss's feature cache).
    with torch.inference_mode(False), torch.enable_grad():
        for _ in range(cfg.steps):
            idx = torch.randint(0, len(x_tr), (cfg.batch,), generator=g)
            loss = F.cross_entropy(head(net._embed_raw(_augment(x_tr[idx], g))), y_tr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    nn.Module.train(net, False)
    net.requires_grad_(False)
    with torch.no_grad():
        ho = ~tr
        emb = torch.cat([net.embed(x_all[ho][i:i + 256]) for i in range(0, int(ho.sum()), 256)])
    net.report = {"train_loss": round(loss.item(), 4), "seconds": round(time.time() - t0, 1),
                  **heldout_identification(emb, ds.subject[ho])}
    log(", ".join(f"{k}={v}" for k, v in net.report.items()))
    return net


def heldout_identification(emb: Tensor, subject: Tensor, gallery: int = 8) -> dict:
    """Leave-one-out identification by nearest subject-mean embedding: among ``gallery``
    subjects (own + the next ones in id order) and among all of them."""
    ids = subject.unique()
    means = torch.stack([emb[subject == s].mean(0) for s in ids])
    own = torch.searchsorted(ids, subject)
    counts = torch.bincount(own, minlength=len(ids)).float()
    # leave the face itself out of its own subject's mean
    own_mean = (means[own] * counts[own, None] - emb) / (counts[own, None] - 1).clamp_min(1)
    d = torch.cdist(emb, means)
    d[torch.arange(len(emb)), own] = (emb - own_mean).norm(dim=1)
    hits_all = d.argmin(1) == own
    k = min(gallery, len(ids))
    cols = (own[:, None] + torch.arange(k)[None]) % len(ids)
    hits_k = d.gather(1, cols).argmin(1) == 0
    return {f"heldout_identification_{k}": round(float(hits_k.float().mean()), 4),
            f"heldout_identification_{len(ids)}": round(float(hits_all.float().mean()), 4)}
