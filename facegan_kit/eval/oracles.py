"""Oracle networks for the synthetic faces: expression, intensity and identity attributes.

A small CNN (one trunk, three heads) trained on faces rendered over the full
range -- all 7 classes, intensity uniform in [0, 1], neutral = intensity 0 --
from subjects ``1000 + k`` (never the protocol's subjects 0..79), with
held-out subjects for its own report. The faces are shown the way models hand
them over: rendered at 64 px, at 128 px and pooled, at 32 px and scaled up, and
resampled softer (generated faces are blurrier than renders; a judge that has
never seen a soft face reads softness as an expression). The classification
loss only uses neutral faces and expressions at intensity >= 0.3 (an
expression at intensity ~0 *is* a neutral face). Trained on first use
(5-7 min on a 2-core CPU, with progress bars) and cached as safetensors + json under
``cache_dir("oracles")``.

>>> orc = load_oracles()
>>> orc.expression_probs(x).shape, orc.intensity(x).shape, orc.attrs(x).shape   # x in [-1, 1]
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from facegan_kit.cache import cache_dir, file_lock
from facegan_kit.data.synthetic_render import ATTR_NAMES, NEUTRAL_LABEL, RENDER_VERSION, subject_attributes
from facegan_kit.errors import InputError
from facegan_kit.eval.oracle_faces import render_many as _render_many
from facegan_kit.eval.oracle_faces import render_rows as _render
from facegan_kit.eval.oracle_faces import resize as _resize
from facegan_kit.eval.oracle_faces import sample_rows as _sample

__all__ = ["Oracles", "OracleConfig", "load_oracles", "train_oracles", "estimate_seconds", "ORACLE_VERSION"]

ORACLE_VERSION = 4
#: Expressions below this intensity are left out of the classification loss/accuracy.
MIN_CLASS_INTENSITY = 0.3


@dataclass(frozen=True)
class OracleConfig:
    """How the oracles are trained (every field enters the cache key)."""

    size: int = 64
    train_subjects: int = 400
    heldout_subjects: int = 40
    images_per_subject: int = 30
    heldout_images_per_subject: int = 30
    epochs: int = 9  # version 3: 6 (the softened and 32 px looks need the extra passes)
    batch: int = 64
    lr: float = 3e-3
    seed: int = 0
    subject_offset: int = 1000  # protocol subjects are 0..N-1; oracles never see them
    # Every lowres_every-th training face is rendered at half size and scaled up, the look of
    # the 32 px data the quick recipes train on (the renderer draws small faces with their own
    # line widths, not a pooled 64 px face). Version 3 (none of this) called 24% of real 32 px
    # neutral faces an expression.
    lowres_every: int = 3
    # Share of batches resampled down to a random side in [blur_min_scale, 0.95] * size and back
    # up: generated faces are softer than renders, a 32 px model's faces much softer
    # (version 3: 0.15, 0.7, which never showed the oracles a face that soft).
    blur_share: float = 0.3
    blur_min_scale: float = 0.3


def _block(i: int, o: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(i, o, 3, stride, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]


class _OracleNet(nn.Module):
    """Four stride-2 conv blocks to a 4x4 grid (kept, not pooled: geometry matters), then heads."""

    def __init__(self, size: int, n_attrs: int):
        super().__init__()
        self.trunk = nn.Sequential(*_block(3, 32, 2), *_block(32, 48, 2), *_block(48, 96, 2), *_block(96, 128, 2),
                                   nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(128 * 16, 256), nn.ReLU(inplace=True))
        self.expr = nn.Linear(256, 7)
        self.inten = nn.Linear(256, 1)
        self.attr = nn.Linear(256, n_attrs)

    def forward(self, x):
        h = self.trunk(x)
        return self.expr(h), torch.sigmoid(self.inten(h)).squeeze(1), self.attr(h)


class Oracles(nn.Module):
    """Frozen, CPU, eval-mode oracles. Inputs: (N, 3, S, S) float in [-1, 1] (uint8 also accepted), any S."""

    def __init__(self, net: _OracleNet, size: int, report: dict, config: dict | None = None):
        super().__init__()
        self.net = net.eval()
        self.size = int(size)
        self.report = dict(report)
        self.config = dict(config or {})
        self.attr_names = ATTR_NAMES
        for p in self.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True):  # always eval: BatchNorm uses its running statistics
        return super().train(False)

    def _prep(self, x) -> torch.Tensor:
        x = torch.as_tensor(x)
        if x.dim() != 4 or x.shape[1] != 3:
            raise InputError(f"oracles: expected images (N, 3, S, S), got shape {tuple(x.shape)}")
        x = x.detach().cpu()
        x = x.float() / 127.5 - 1.0 if x.dtype == torch.uint8 else x.float()
        return _resize(x, self.size)

    @torch.no_grad()
    def predict(self, x, chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(expression probs (N, 7), intensity (N,), attrs (N, A))."""
        x = self._prep(x)
        outs = [self.net(x[i:i + chunk]) for i in range(0, len(x), chunk)] or [self.net(x[:0])]
        logits, inten, attrs = (torch.cat(t) for t in zip(*outs))
        return logits.softmax(1), inten.clamp(0, 1), attrs

    def forward(self, x):
        p, i, a = self.predict(x)
        return {"expression_probs": p, "intensity": i, "attrs": a}

    def expression_probs(self, x) -> torch.Tensor:
        return self.predict(x)[0]

    def intensity(self, x) -> torch.Tensor:
        return self.predict(x)[1]

    def attrs(self, x) -> torch.Tensor:
        return self.predict(x)[2]


def _evaluate(net: _OracleNet, x: torch.Tensor, expr, inten, attrs, gallery: np.ndarray, subj_index, rng) -> dict:
    net.eval()
    with torch.no_grad():
        outs = [net(x[i:i + 256]) for i in range(0, len(x), 256)]
    logits, pi, pa = (torch.cat(t) for t in zip(*outs))
    expr_t, inten_t, attrs_t = torch.as_tensor(expr), torch.as_tensor(inten, dtype=torch.float32), torch.as_tensor(attrs)
    pred = logits.argmax(1)
    cls = (expr_t == NEUTRAL_LABEL) | (inten_t >= MIN_CLASS_INTENSITY)
    half = (expr_t == NEUTRAL_LABEL) | (inten_t >= 0.5)
    peak = (expr_t != NEUTRAL_LABEL) & (inten_t >= 0.7)
    resid = ((pa - attrs_t) ** 2).sum(0)
    var = ((attrs_t - attrs_t.mean(0)) ** 2).sum(0).clamp_min(1e-8)
    r2 = (1 - resid / var).tolist()
    # Identity match among all gallery subjects, and among 8 (own + 7 random others).
    d = torch.cdist(pa.double(), torch.as_tensor(gallery).double())
    own = torch.as_tensor(subj_index)
    full = float((d.argmin(1) == own).double().mean())
    hits8 = []
    for i in range(len(d)):
        others = rng.choice(np.delete(np.arange(len(gallery)), int(own[i])), 7, replace=False)
        hits8.append(bool(d[i, own[i]] < d[i, torch.as_tensor(others)].min()))
    return {
        "expression_accuracy": float((pred[cls] == expr_t[cls]).double().mean()),
        "expression_accuracy_at_0.5": float((pred[half] == expr_t[half]).double().mean()),
        "expression_accuracy_peak": float((pred[peak] == expr_t[peak]).double().mean()),
        "intensity_mae": float((pi - inten_t).abs().mean()),
        "attr_r2": dict(zip(ATTR_NAMES, [round(v, 4) for v in r2])),
        "attr_r2_mean": float(np.mean(r2)),
        "identity_match_8": float(np.mean(hits8)),
        f"identity_match_{len(gallery)}": full,
        "heldout_images": int(len(x)),
    }


def _augment(x: torch.Tensor, cfg: OracleConfig, g: torch.Generator) -> torch.Tensor:
    """A training batch with, at random, brightness/contrast jitter or a blur."""
    u = float(torch.rand((), generator=g))
    if u < 0.4:  # mild extra nuisance: brightness/contrast jitter
        return (x * (1 + 0.1 * torch.randn(len(x), 1, 1, 1, generator=g))
                + 0.1 * torch.randn(len(x), 1, 1, 1, generator=g)).clamp(-1, 1)
    if u < 0.4 + cfg.blur_share:  # blur (down-up resample): generated faces are softer than renders
        scale = cfg.blur_min_scale + (0.95 - cfg.blur_min_scale) * float(torch.rand((), generator=g))
        low = max(8, int(cfg.size * scale))
        return F.interpolate(F.interpolate(x, size=(low, low), mode="area"), size=(cfg.size, cfg.size),
                             mode="bilinear", align_corners=False).contiguous(memory_format=torch.channels_last)
    return x


def _workload(cfg: OracleConfig) -> tuple[int, int]:
    """(faces rendered, training steps) of one :func:`train_oracles` run."""
    n_tr, n_ho = cfg.train_subjects * cfg.images_per_subject, cfg.heldout_subjects * cfg.heldout_images_per_subject
    hires, lowres = math.ceil(n_tr / 3), (len(range(1, n_tr, cfg.lowres_every)) if cfg.lowres_every else 0)
    return n_tr + hires + lowres + 2 * n_ho, cfg.epochs * math.ceil(n_tr / cfg.batch)


def estimate_seconds(cfg: OracleConfig) -> float:
    """Rough wall time of :func:`train_oracles` on a 2-core CPU (the default config measured 5-7 min
    on a busy 2-core machine: 4 ms per face rendered over 2 processes, 0.19 s per 64 px step)."""
    faces, steps = _workload(cfg)
    return faces * 0.004 / min(2, os.cpu_count() or 1) + steps * 0.19 * (cfg.size / 64) ** 2


def _say_up_front(cfg: OracleConfig, log) -> None:
    faces, steps = _workload(cfg)
    minutes = estimate_seconds(cfg) / 60
    when = f"about {minutes:.0f} min" if minutes >= 1.5 else "under 2 min"
    log(f"first use: training the synthetic-data oracles (small networks that check each edit against the "
        f"known expression and identity of the synthetic faces): {faces} faces to render, {steps} training steps, "
        f"{when} on a 2-core CPU. This happens once; later evaluations load them from {cache_dir('oracles')}.")


def train_oracles(cfg: OracleConfig = OracleConfig(), log=None, progress: bool = True) -> Oracles:
    """Render the oracle training set, train, measure on held-out subjects; returns :class:`Oracles`.
    Says up front what it does and how long it takes; ``progress`` shows bars with an ETA."""
    from tqdm.auto import tqdm

    log = log or (lambda msg: tqdm.write(f"[oracles] {msg}", file=sys.stderr))
    _say_up_front(cfg, log)
    faces, steps = _workload(cfg)
    bar_opts = dict(file=sys.stderr, disable=not progress, dynamic_ncols=True, mininterval=1.0)
    t0 = time.time()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng([cfg.seed, 0x0AC1E])
    tr_subjects = [cfg.subject_offset + k for k in range(cfg.train_subjects)]
    ho_subjects = [cfg.subject_offset + cfg.train_subjects + k for k in range(cfg.heldout_subjects)]
    tr = _sample(cfg, tr_subjects, cfg.images_per_subject, rng)
    ho = _sample(cfg, ho_subjects, cfg.heldout_images_per_subject, rng)
    with tqdm(total=faces, desc="oracles: rendering faces", unit="face", **bar_opts) as bar:
        x_tr = _render(cfg, *tr, hires_every=3, lowres_every=cfg.lowres_every, tick=bar.update)
        x_ho = _render(cfg, *ho, tick=bar.update).float() / 127.5 - 1.0
        x_ho2 = _resize(_render_many(ho[1], ho[2], ho[3], 2 * cfg.size, ho[4], ho[0], bar.update).float() / 127.5
                        - 1.0, cfg.size)
    _, a_tr, e_tr, i_tr, _ = tr
    e_tr, i_tr, a_tr = torch.as_tensor(e_tr), torch.as_tensor(i_tr, dtype=torch.float32), torch.as_tensor(a_tr)
    cls_tr = (e_tr == NEUTRAL_LABEL) | (i_tr >= MIN_CLASS_INTENSITY)

    net = _OracleNet(cfg.size, len(ATTR_NAMES)).to(memory_format=torch.channels_last)  # ~1.4x faster on CPU
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    n = len(x_tr)
    steps = cfg.epochs * math.ceil(n / cfg.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.15)
    g = torch.Generator().manual_seed(cfg.seed)
    step = 0
    bar = tqdm(total=steps, desc="oracles: training", unit="step", **bar_opts)
    for ep in range(cfg.epochs):
        net.train()
        perm = torch.randperm(n, generator=g)
        tot = 0.0
        for b in range(0, n, cfg.batch):
            idx = perm[b:b + cfg.batch]
            x = _augment((x_tr[idx].float() / 127.5 - 1.0).contiguous(memory_format=torch.channels_last), cfg, g)
            logits, pi, pa = net(x)
            m = cls_tr[idx]
            ce = F.cross_entropy(logits[m], e_tr[idx][m]) if m.any() else logits.sum() * 0
            loss = ce + 10 * F.mse_loss(pi, i_tr[idx]) + 10 * F.mse_loss(pa, a_tr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            bar.update(1)
            tot += float(loss.detach())
        bar.set_postfix_str(f"epoch {ep + 1}/{cfg.epochs} loss {tot / math.ceil(n / cfg.batch):.4f}", refresh=False)
    bar.close()

    net = net.to(memory_format=torch.contiguous_format)  # same kernels as a net loaded from the cache
    gallery_subjects = ho_subjects + tr_subjects[: max(0, 80 - len(ho_subjects))]
    gallery = np.stack([subject_attributes(s, cfg.seed) for s in gallery_subjects])
    subj_index = [gallery_subjects.index(int(s)) for s in ho[0]]
    report = _evaluate(net, x_ho, ho[2], ho[3], ho[1], gallery, subj_index, np.random.default_rng(cfg.seed))
    # the same held-out faces rendered at 2x size and pooled (how 128px images are judged)
    rep2 = _evaluate(net, x_ho2, ho[2], ho[3], ho[1], gallery, subj_index, np.random.default_rng(cfg.seed))
    # ... and rendered at half size (how a 32 px model's faces reach the oracles)
    x_half = _resize(_render_many(ho[1], ho[2], ho[3], cfg.size // 2, ho[4], ho[0]).float() / 127.5 - 1.0, cfg.size)
    rep_half = _evaluate(net, x_half, ho[2], ho[3], ho[1], gallery, subj_index, np.random.default_rng(cfg.seed))
    for k in ("expression_accuracy", "intensity_mae", "attr_r2_mean", "identity_match_8", f"identity_match_{len(gallery)}"):
        report[f"{k}_from_{2 * cfg.size}px"] = rep2[k]
        report[f"{k}_from_{cfg.size // 2}px"] = rep_half[k]
    report["train_seconds"] = round(time.time() - t0, 1)
    report["train_images"] = int(n)
    log("held-out: " + ", ".join(f"{k}={v:.3f}" for k, v in report.items() if isinstance(v, float)))
    return Oracles(net, cfg.size, report, dataclasses.asdict(cfg))


def _key(cfg: OracleConfig) -> str:
    blob = json.dumps({"cfg": dataclasses.asdict(cfg), "render": RENDER_VERSION, "oracle": ORACLE_VERSION},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def save_oracles(orc: Oracles, cfg: OracleConfig) -> None:
    from safetensors.torch import save_file

    base = cache_dir("oracles") / f"oracles_{_key(cfg)}"
    tag = f".{os.getpid()}.tmp"
    st, js = base.with_suffix(".safetensors"), base.with_suffix(".json")
    save_file({k: v.contiguous() for k, v in orc.net.state_dict().items()}, str(st) + tag)
    with open(str(js) + tag, "w") as fh:
        json.dump({"config": dataclasses.asdict(cfg), "report": orc.report, "attr_names": list(ATTR_NAMES)}, fh, indent=1)
    os.replace(str(st) + tag, st)  # weights first: the json marks a complete entry
    os.replace(str(js) + tag, js)


def load_oracles(size: int = 64, train_if_missing: bool = True, config: OracleConfig | None = None) -> Oracles:
    """The cached oracles for input ``size`` (trained and cached on first use if allowed).

    ``config`` overrides the training recipe (its ``size`` wins over ``size``).
    Concurrent first uses are serialised by a lock file, so training runs once.
    """
    cfg = config or OracleConfig(size=size)
    base = cache_dir("oracles") / f"oracles_{_key(cfg)}"
    st, js = base.with_suffix(".safetensors"), base.with_suffix(".json")
    orc = _try_load(cfg, st, js)
    if orc is not None:
        return orc
    if not train_if_missing:
        raise InputError(f"no trained oracles at {st} (call load_oracles(train_if_missing=True))")
    with file_lock(base.with_suffix(".lock")):
        orc = _try_load(cfg, st, js)  # another process may have trained them while we waited
        return orc if orc is not None else _train_and_save(cfg, st)


def _try_load(cfg: OracleConfig, st, js) -> Oracles | None:
    from safetensors.torch import load_file

    if not (st.exists() and js.exists()):
        return None
    try:
        meta = json.loads(js.read_text())
        net = _OracleNet(cfg.size, len(ATTR_NAMES))
        net.load_state_dict(load_file(str(st)))
        return Oracles(net, cfg.size, meta["report"], meta["config"])
    except Exception as exc:  # corrupt entry: caller retrains
        print(f"[oracles] ignoring unreadable cache {st}: {exc}", file=sys.stderr)
        return None


def _train_and_save(cfg: OracleConfig, st) -> Oracles:
    prev = torch.get_num_threads()
    # One thread: on a shared 2-core machine a second OpenMP thread mostly spin-waits
    # (measured: 2 threads under load took 4x the CPU time of 1).
    torch.set_num_threads(1)
    try:
        orc = train_oracles(cfg)
    finally:
        torch.set_num_threads(prev)
    try:
        save_oracles(orc, cfg)
    except OSError as exc:
        print(f"[oracles] could not cache at {st}: {exc}", file=sys.stderr)
    return orc
