"""The evaluation suite's scores, one function per judge, over the model's renderings.

:func:`facegan_kit.eval.suite.evaluate` renders every selected face once (:class:`Renders`) and
hands the renderings to each available judge in turn: pixels (reconstruction), the expression
judge, the identity judge and, on the synthetic faces, the ground-truth oracles. Each returns a
dict of metric keys (:mod:`facegan_kit.eval.metrics`) and appends its caveats to ``notes``.

The judges' module (scipy, h5py) is imported on first use, so that reading the suite's helpers
(``facegan bench`` builds its data with them) stays cheap.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from facegan_kit import EXPRESSIONS
from facegan_kit.data.base import FaceData

#: The continuous intensity path the suite walks (the paper's levels are the controller's).
PATH_T = (0.2, 0.4, 0.6, 0.8, 1.0)
#: Class index of "neutral" in the judges' and oracles' outputs.
NEUTRAL_INDEX = len(EXPRESSIONS)


@dataclass
class Renders:
    """Every selected face, decoded the ways the judges look at it.

    Attributes:
        x: the source faces at the model's size ``(N,3,S,S)``; ``labels`` their classes ``(N,)``.
        edits: each face with each expression at full intensity ``(K,N,3,S,S)``.
        recon: each face with its own label's code; ``neutral``: with the neutral code.
        levels: the controller's discrete intensity levels ``1..L``.
        level_codes, path_codes: per level / per ``t`` of :data:`PATH_T`, the K class codes.
        render: decode every face with one code ``(C,)`` or per-face codes ``(N,C)``.
    """

    x: Tensor
    labels: Tensor
    edits: Tensor
    recon: Tensor
    neutral: Tensor
    levels: list[int]
    level_codes: list[list[Tensor]]
    path_codes: list[list[Tensor]]
    render: Callable[[Tensor], Tensor]

    @property
    def n_cls(self) -> int:
        return len(self.edits)

    @property
    def flat_edits(self) -> Tensor:
        """``edits`` as one batch ``(K*N,3,S,S)``, class-major."""
        return self.edits.flatten(0, 1)

    @property
    def target(self) -> Tensor:
        """The class of each row of :attr:`flat_edits`."""
        return torch.arange(self.n_cls).repeat_interleave(len(self.x))

    def sweep(self, score: Callable[[Tensor, int], Tensor], codes_of: Sequence[Sequence[Tensor]]) -> np.ndarray:
        """``(K*N, steps)``: ``score(images, k)`` of every face rendered along a code sweep."""
        cols = [torch.cat([score(self.render(step_codes[k]), k) for k in range(self.n_cls)])
                for step_codes in codes_of]
        return torch.stack(cols, dim=1).numpy()


def score_reconstruction(r: Renders) -> dict[str, Any]:
    """Each face against its reconstruction: L1, PSNR, SSIM."""
    from facegan_kit.eval import judges

    size = r.x.shape[-1]
    return {"recon_l1": judges.l1(r.recon, r.x),
            "recon_psnr": _finite(judges.psnr(r.recon, r.x)),
            "recon_ssim": judges.ssim(r.recon, r.x, window_size=min(11, _odd(size)))}


def score_expression_judge(ej, r: Renders, notes: list[str]) -> dict[str, Any]:
    """The expression judge: accuracy of the edits, intensity monotonicity, realism."""
    from facegan_kit.eval import judges

    m = class_scores(ej.probs, "", "judge_", r)

    def judge_prob(imgs, k):
        return ej.probs(imgs)[:, k]

    if len(r.levels) >= 2:
        rows = judges.spearman_rows(r.levels, r.sweep(judge_prob, r.level_codes))
        m["intensity_rho_levels"] = _nan_mean(rows)
        m["intensity_rho_levels_per_class"] = per_class_mean(rows, r.target.numpy())
    m["intensity_rho_continuous"] = _nan_to_none(judges.spearman_rho(PATH_T, r.sweep(judge_prob, r.path_codes)))
    if len(r.x) >= 2:
        m["fer_feature_frechet"] = judges.realism_score(ej.features(r.x), ej.features(r.flat_edits))
    else:
        notes.append("fer_feature_frechet needs at least two faces.")
    return m


def score_identity_judge(ij, r: Renders, sel: Tensor, notes: list[str]) -> dict[str, Any]:
    """The identity judge on the faces ``sel`` (indices): distance of each edit to its source."""
    src = ij.embed(r.x[sel])
    edt = ij.embed(r.edits[:, sel].flatten(0, 1)).reshape(r.n_cls, len(sel), -1)
    dist = ij.distance(src[None], edt)  # (K, n)
    if len(sel) < len(r.x):
        notes.append(f"Identity was judged on {len(sel)} of the {len(r.x)} faces (and their edits) "
                     "to keep the dlib judge's CPU time bounded.")
    return {"identity_distance_median": float(np.median(dist)),
            "identity_rate_under_0.6": float((dist < ij.SAME_PERSON_THRESHOLD).mean())}


def score_oracles(orc, r: Renders, subject: Tensor, gallery: dict[int, np.ndarray]) -> dict[str, Any]:
    """The synthetic faces' ground-truth oracles: the judges' measures plus identity kept and
    matched against the true attributes (``gallery``: :func:`true_attributes`)."""
    from facegan_kit.eval import judges

    m = class_scores(orc.expression_probs, "oracle_", "oracle_", r)
    n, flat = len(r.x), r.flat_edits
    m["oracle_identity_match_rate"] = judges.identity_match_rate(orc, None, flat, subject.repeat(r.n_cls), gallery)
    src_attrs = orc.attrs(r.x)
    m["oracle_identity_kept_rate"] = judges.identity_kept_rate(
        orc.attrs(flat), src_attrs, subject, torch.arange(n).repeat(r.n_cls))
    m["oracle_recon_identity_kept_rate"] = judges.identity_kept_rate(
        orc.attrs(r.recon), src_attrs, subject, torch.arange(n))

    def oracle_intensity(imgs, k):
        return orc.intensity(imgs)

    if len(r.levels) >= 2:
        m["oracle_intensity_rho_levels"] = _nan_to_none(
            judges.spearman_rho(r.levels, r.sweep(oracle_intensity, r.level_codes)))
    m["oracle_intensity_rho_continuous"] = _nan_to_none(
        judges.spearman_rho(PATH_T, r.sweep(oracle_intensity, r.path_codes)))
    return m


def class_scores(probs_fn, prefix: str, real_prefix: str, r: Renders) -> dict[str, Any]:
    """Expression accuracy of the edits (overall, per class), on the real faces, and the neutral-code
    rate, as judged by ``probs_fn`` (a judge's or the oracles' 7-way probabilities)."""
    target = r.target
    pred = probs_fn(r.flat_edits).argmax(1)
    return {
        f"{prefix}expression_accuracy": float((pred == target).double().mean()),
        f"{prefix}expression_accuracy_per_class": {
            EXPRESSIONS[k]: float((pred[target == k] == k).double().mean()) for k in range(r.n_cls)},
        f"{real_prefix}accuracy_real": float((probs_fn(r.x).argmax(1) == r.labels).double().mean()),
        f"{prefix}neutral_rate": float((probs_fn(r.neutral).argmax(1) == NEUTRAL_INDEX).double().mean()),
    }


def per_class_mean(values: np.ndarray, target: np.ndarray) -> dict[str, float | None]:
    """Mean of ``values`` over the rows of each target class (``nan`` rows skipped): which targets a
    mean over all rows hides (e.g. one class the judge barely reads)."""
    return {EXPRESSIONS[k]: _nan_mean(values[target == k]) for k in np.unique(target).tolist()}


def _nan_mean(values: np.ndarray) -> float | None:
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else None


def true_attributes(fdata: FaceData) -> dict[int, np.ndarray]:
    """True identity attributes of every subject of both splits ``{subject: attrs}``."""
    gallery: dict[int, np.ndarray] = {}
    for part in (fdata.train, fdata.test):
        if "attrs" not in part.extra:
            continue
        for s, a in zip(part.subject.tolist(), part.extra["attrs"]):
            gallery.setdefault(int(s), a.numpy())
    return gallery


def _odd(n: int) -> int:
    return n if n % 2 else n - 1


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


def _nan_to_none(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)
