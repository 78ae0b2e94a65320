"""The embedded default dataset: procedural synthetic faces with ground truth.

Subjects have identity attributes (:data:`ATTR_NAMES`, a float vector in
[0, 1]); expressions are geometric actions with a continuous intensity (see
:mod:`facegan_kit.data.synthetic_render`). The protocol mirrors the paper's
Oulu-CASIA use: per subject, 6 expressions x ``frames`` frames near peak
intensity (no neutral unless ``include_neutral``), split by subject (the last
``test_subjects`` subjects are test).

>>> ds = make_dataset(SyntheticConfig(subjects=80))      # 1440 images, cached
>>> ds.images.shape, int(ds.train.sum())
(torch.Size([1440, 3, 128, 128]), 1296)
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from facegan_kit import EXPRESSIONS
from facegan_kit.cache import cache_dir
from facegan_kit.data.synthetic_render import (  # noqa: F401  (re-exported API)
    ACTIONS,
    BACKGROUNDS,
    ATTR_NAMES,
    HAIR_STYLES,
    NEUTRAL_LABEL,
    RENDER_VERSION,
    expression_style,
    render_batch,
    render_face,
    subject_attributes,
)
from facegan_kit.errors import InputError

__all__ = ["SyntheticConfig", "SyntheticFaces", "ATTR_NAMES", "ACTIONS", "NEUTRAL_LABEL", "EXPRESSION_NAMES",
           "subject_attributes", "render_face", "render_batch", "make_dataset", "write_dataset",
           "frame_intensities", "contact_sheet"]

#: Label names 0..6 (the six trained expressions, then neutral).
EXPRESSION_NAMES: tuple[str, ...] = tuple(EXPRESSIONS) + ("neutral",)
#: Peak-ish intensities that the protocol's frames are drawn near (jitter +/- 0.03).
PEAK_LOW, PEAK_HIGH, PEAK_JITTER = 0.7, 1.0, 0.03


@dataclass(frozen=True)
class SyntheticConfig:
    """What :func:`make_dataset` renders (every field enters the cache key)."""

    subjects: int = 80
    size: int = 128
    frames: int = 3
    seed: int = 0
    test_subjects: int | None = None  # default: 10% of subjects, rounded, at least 1
    include_neutral: bool = False  # add ``frames`` neutral images (label 6, intensity 0) per subject
    background: str = "random"  # or "plain" (one lab grey, like Oulu-CASIA); see synthetic_render.BACKGROUNDS
    neutral_frames: int | None = None  # neutral images per subject with include_neutral (default: frames)

    def n_test(self) -> int:
        n = max(1, int(round(0.1 * self.subjects))) if self.test_subjects is None else int(self.test_subjects)
        return n

    def validate(self) -> None:
        if self.subjects < 1:
            raise InputError(f"subjects: expected >= 1, got {self.subjects}")
        if self.size < 16:
            raise InputError(f"size: expected >= 16, got {self.size}")
        if self.frames < 1:
            raise InputError(f"frames: expected >= 1, got {self.frames}")
        if not 0 <= self.n_test() <= self.subjects:
            raise InputError(f"test_subjects: expected 0..{self.subjects}, got {self.test_subjects}")
        if self.neutral_frames is not None and self.neutral_frames < 1:
            raise InputError(f"neutral_frames: expected >= 1, got {self.neutral_frames}")
        if self.background not in BACKGROUNDS:
            raise InputError(f"background: expected one of {', '.join(BACKGROUNDS)}, got {self.background!r}")


@dataclass
class SyntheticFaces:
    """The whole protocol in memory (rows ordered subject, expression, frame)."""

    images: torch.Tensor  # (N, 3, S, S) uint8
    expression: torch.Tensor  # (N,) int64, 0..5 (6 = neutral)
    intensity: torch.Tensor  # (N,) float32
    subject: torch.Tensor  # (N,) int64
    attrs: torch.Tensor  # (N, A) float32
    train: torch.Tensor  # (N,) bool (subject-disjoint split)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, mask) -> "SyntheticFaces":
        """Rows selected by a bool mask or an index tensor/list."""
        m = torch.as_tensor(mask)
        return SyntheticFaces(**{f.name: getattr(self, f.name)[m] for f in dataclasses.fields(self)})

    def images_float(self) -> torch.Tensor:
        """Images as float in [-1, 1] (the GAN/oracle convention)."""
        return self.images.float() / 127.5 - 1.0


def frame_intensities(cfg: SyntheticConfig, subject: int, expression: int) -> np.ndarray:
    """The ``frames`` intensities of one subject's expression: near linspace(0.7, 1.0) with jitter."""
    rng = np.random.default_rng([cfg.seed & 0xFFFFFFFF, subject, expression, 0x1A7])
    base = np.linspace(PEAK_LOW, PEAK_HIGH, cfg.frames) if cfg.frames > 1 else np.array([0.85])
    return np.clip(base + rng.uniform(-PEAK_JITTER, PEAK_JITTER, cfg.frames), 0.0, 1.0)


def _protocol_rows(cfg: SyntheticConfig):
    """Yield (subject, expression, frame, intensity, nuisance_seed) in dataset order."""
    exprs = list(range(6)) + ([NEUTRAL_LABEL] if cfg.include_neutral else [])
    for s in range(cfg.subjects):
        for e in exprs:
            n = (cfg.neutral_frames or cfg.frames) if e == NEUTRAL_LABEL else cfg.frames
            its = np.zeros(n) if e == NEUTRAL_LABEL else frame_intensities(cfg, s, e)
            for f in range(n):
                nseed = int.from_bytes(hashlib.blake2b(f"{cfg.seed}/{s}/{e}/{f}".encode(), digest_size=4).digest(), "little")
                yield s, e, f, float(its[f]), nseed


def _cache_key(cfg: SyntheticConfig) -> str:
    fields = dataclasses.asdict(cfg)
    if fields["background"] == "random":  # keys of datasets cached before the option existed stay valid
        del fields["background"]
    if fields["neutral_frames"] is None:  # likewise
        del fields["neutral_frames"]
    blob = json.dumps({"cfg": fields, "render": RENDER_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _build(cfg: SyntheticConfig) -> SyntheticFaces:
    rows = list(_protocol_rows(cfg))
    n = len(rows)
    subj = np.array([r[0] for r in rows], np.int64)
    attrs_by_subject = np.stack([subject_attributes(s, cfg.seed) for s in range(cfg.subjects)])
    images = np.empty((n, cfg.size, cfg.size, 3), np.uint8)
    for i, (s, e, _f, it, ns) in enumerate(rows):
        images[i] = render_face(attrs_by_subject[s], e, it, cfg.size, ns, s, cfg.background)
    first_test = cfg.subjects - cfg.n_test()
    return SyntheticFaces(
        images=torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
        expression=torch.tensor([r[1] for r in rows], dtype=torch.int64),
        intensity=torch.tensor([r[3] for r in rows], dtype=torch.float32),
        subject=torch.from_numpy(subj),
        attrs=torch.from_numpy(attrs_by_subject[subj].astype(np.float32)),
        train=torch.from_numpy(subj < first_test),
    )


def make_dataset(cfg: SyntheticConfig = SyntheticConfig()) -> SyntheticFaces:
    """Render (or load from ``cache_dir("synthetic")``) the protocol described by ``cfg``.

    Deterministic: the same ``cfg`` always gives identical tensors. The cache
    file is keyed by a hash of ``cfg`` and :data:`RENDER_VERSION`.
    """
    from safetensors.torch import load_file, save_file

    cfg.validate()
    path = cache_dir("synthetic") / f"synthetic_{_cache_key(cfg)}.safetensors"
    names = [f.name for f in dataclasses.fields(SyntheticFaces)]
    if path.exists():
        try:
            t = load_file(str(path))
            return SyntheticFaces(**{k: t[k] for k in names})
        except Exception:  # corrupt/partial cache: rebuild
            pass
    ds = _build(cfg)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file({k: getattr(ds, k).contiguous() for k in names}, str(tmp),
                  metadata={"config": json.dumps(dataclasses.asdict(cfg)), "render_version": str(RENDER_VERSION)})
        os.replace(tmp, path)
    except OSError as exc:  # a read-only cache is not fatal
        print(f"facegan_kit: could not cache synthetic dataset at {path}: {exc}", file=sys.stderr)
        tmp.unlink(missing_ok=True)
    return ds


def _save_png(arr: np.ndarray, path: Path) -> None:
    from PIL import Image

    tmp = path.with_name(f".{path.stem}.tmp.png")
    Image.fromarray(arr).save(tmp, format="PNG")
    os.replace(tmp, path)


def _frame_numbers(ds: SyntheticFaces) -> list[int]:
    seen: dict[tuple[int, int], int] = {}
    out = []
    for s, e in zip(ds.subject.tolist(), ds.expression.tolist()):
        out.append(seen.get((s, e), 0))
        seen[(s, e)] = out[-1] + 1
    return out


def write_dataset(out_dir, cfg: SyntheticConfig = SyntheticConfig()) -> Path:
    """Write the protocol as PNGs + ``index.csv`` + ``contact_sheet.png`` under ``out_dir``.

    Files: ``train/<subject:03d>_<expression>_<frame>.png`` and ``test/...``;
    index columns: path (relative to ``out_dir``), subject, expression,
    expression_name, intensity, split, then one column per attribute. Every
    file is written to a temporary name and renamed, so a crash leaves no
    half-written PNG/CSV. Returns ``out_dir``.
    """
    out = Path(out_dir)
    ds = make_dataset(cfg)
    for split in ("train", "test"):
        (out / split).mkdir(parents=True, exist_ok=True)
    imgs = ds.images.permute(0, 2, 3, 1).numpy()
    frames = _frame_numbers(ds)
    rows = []
    for i in range(len(ds)):
        s, e = int(ds.subject[i]), int(ds.expression[i])
        split = "train" if bool(ds.train[i]) else "test"
        rel = f"{split}/{s:03d}_{e}_{frames[i]}.png"
        _save_png(imgs[i], out / rel)
        rows.append([rel, s, e, EXPRESSION_NAMES[e], f"{float(ds.intensity[i]):.4f}", split]
                    + [f"{float(v):.4f}" for v in ds.attrs[i]])
    tmp = out / ".index.csv.tmp"
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "subject", "expression", "expression_name", "intensity", "split", *ATTR_NAMES])
        w.writerows(rows)
    os.replace(tmp, out / "index.csv")
    _save_png(contact_sheet(ds, cfg), out / "contact_sheet.png")
    return out


def contact_sheet(ds: SyntheticFaces, cfg: SyntheticConfig, max_subjects: int = 8) -> np.ndarray:
    """Labelled grid (H, W, 3) uint8 (:func:`facegan_kit.figures.sheet`): one row per subject
    (first ``max_subjects``), columns = neutral (rendered without nuisance) then the six
    expressions at their most intense frame."""
    from facegan_kit.figures import sheet

    size = cfg.size
    subjects = sorted(set(ds.subject.tolist()))[:max_subjects]
    cells = []
    for s in subjects:
        rows = (ds.subject == s).nonzero().flatten()
        row = [render_face(ds.attrs[rows[0]].numpy(), NEUTRAL_LABEL, 0.0, size, None, s)]
        for e in range(6):
            sel = rows[ds.expression[rows] == e]
            row.append(ds.images[sel[int(ds.intensity[sel].argmax())]].permute(1, 2, 0).numpy() if len(sel) else None)
        cells.append(row)
    return sheet(cells, col_labels=["neutral", *EXPRESSION_NAMES[:6]], row_labels=[f"subject {s}" for s in subjects])
