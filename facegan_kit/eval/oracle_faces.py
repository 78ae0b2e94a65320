"""The faces the oracles learn from: random subjects, expressions and intensities, rendered the
ways a model hands faces over (at the oracles' size, at twice it and pooled, at half and scaled
up), in two worker processes with a progress callback. Split from :mod:`facegan_kit.eval.oracles`,
which trains and applies the networks."""
from __future__ import annotations

import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

from facegan_kit.data.synthetic_render import NEUTRAL_LABEL, render_face, subject_attributes

__all__ = ["sample_rows", "render_rows", "render_many", "resize"]


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Area-average down (matches the renderer's own box-filter supersampling, so a 128px face
    pooled to 64 looks like a 64px render), bilinear up."""
    if x.shape[-2:] == (size, size):
        return x
    if x.shape[-1] > size and x.shape[-2] > size:
        return F.interpolate(x, size=(size, size), mode="area")
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def sample_rows(cfg, subjects: list[int], per_subject: int, rng: np.random.Generator):
    """Random (attrs, expression, intensity, nuisance seed, style seed) rows over the full range."""
    n = len(subjects) * per_subject
    subj = np.repeat(np.asarray(subjects, np.int64), per_subject)
    expr = rng.integers(0, 7, n)
    inten = np.where(expr == NEUTRAL_LABEL, 0.0, rng.uniform(0, 1, n))
    attrs_by = {s: subject_attributes(int(s), cfg.seed) for s in subjects}
    attrs = np.stack([attrs_by[s] for s in subj]).astype(np.float32)
    nseeds = rng.integers(0, 2 ** 31, n)
    return subj, attrs, expr, inten, nseeds


def _render_np(job) -> np.ndarray:
    """Worker: numpy/PIL only (no torch ops after fork), (n, S, S, 3) uint8."""
    attrs, expr, inten, size, nseeds, subj = job
    out = np.empty((len(attrs), size, size, 3), np.uint8)
    for i in range(len(attrs)):
        out[i] = render_face(attrs[i], int(expr[i]), float(inten[i]), size, int(nseeds[i]), int(subj[i]))
    return out


def render_many(attrs, expr, inten, size, nseeds, subj, tick=None) -> torch.Tensor:
    """Like :func:`~facegan_kit.data.synthetic_render.render_batch`, split over 2 forked worker
    processes for large batches (rendering is ~1/4 of the training time); falls back to one
    process on any failure. Rendered in chunks of about 500 faces so a bar can move.
    ``tick(n)`` is called as each chunk of ``n`` faces is done (the progress bar)."""
    n = len(attrs)
    tick = tick or (lambda k: None)
    workers = min(2, os.cpu_count() or 1)
    chunks = np.array_split(np.arange(n), max(1, math.ceil(n / 500)))
    jobs = [(attrs[c], expr[c], inten[c], size, nseeds[c], subj[c]) for c in chunks]
    if n >= 1000 and workers > 1:
        try:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            parts = []
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as ex:
                for part in ex.map(_render_np, jobs):
                    parts.append(part)
                    tick(len(part))
            return torch.from_numpy(np.concatenate(parts)).permute(0, 3, 1, 2).contiguous()
        except Exception as exc:  # no fork / no processes allowed: render serially
            print(f"[oracles] parallel rendering unavailable ({exc}); rendering in one process", file=sys.stderr)
    parts = []
    for job in jobs:
        parts.append(_render_np(job))
        tick(len(parts[-1]))
    return torch.from_numpy(np.concatenate(parts)).permute(0, 3, 1, 2).contiguous()


def render_rows(cfg, subj, attrs, expr, inten, nseeds, hires_every: int = 0, lowres_every: int = 0,
            tick=None) -> torch.Tensor:
    """uint8 (N, 3, size, size); every ``hires_every``-th face (from 0) is rendered at 2x and
    area-pooled (the path a 128px GAN output takes through :class:`Oracles`), every
    ``lowres_every``-th (from 1) at half size and scaled up (the path of a 32 px one)."""
    x = render_many(attrs, expr, inten, cfg.size, nseeds, subj, tick)
    for every, start, scale in ((hires_every, 0, 2.0), (lowres_every, 1, 0.5)):
        if not every:
            continue
        idx = np.arange(start, len(x), every)
        other = render_many(attrs[idx], expr[idx], inten[idx], int(scale * cfg.size), nseeds[idx], subj[idx], tick)
        x[torch.as_tensor(idx)] = resize(other.float(), cfg.size).round().clamp(0, 255).to(torch.uint8)
    return x
