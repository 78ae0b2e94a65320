"""Real-face scores: the judges' ceilings on the real photos, edits of neutral photos, and an
identity measure that shares nothing with dlib.

On real faces a judge's number means little alone: the FER judge misreads some real expressions
and dlib calls two photos of one person in different expressions a little apart. So every edit
score is reported beside the same judge on the real held-out photos themselves (the *ceiling*):

- ``ceiling_judge_accuracy_native``: the expression judge on the real expressive photos at their
  prepared size (``judge_accuracy_real`` is the same after the model's resolution round trip);
- ``ceiling_identity_same_person_median`` / ``..._rate_under_0.6``: dlib distance between two real
  photos of one person in different expressions (what an edit would score if it were a real
  photo of the person in the target expression);
- ``ceiling_identity_other_people_median``: dlib distance between photos of different people;
- ``ceiling_identity_roundtrip_median``: a photo against itself after the model's resolution
  round trip (what the resolution alone costs);
- ``ceiling_intensity_rho_morph`` (a reference rather than a bound): the intensity rho of a pixel
  cross-fade from each person's real neutral photo to their real expressive photo (t = 0.2 .. 1).
  Real photos carry no intensity labels, so this is the judge ordering a real expression that
  grows on the person's own face; a fade also ghosts the two photos, so a model's clean edits can
  score above it. Its per-class values show targets the judge orders poorly even on real faces.

A model trained with dlib's network in its identity loss cannot be judged by dlib alone, so
``classical_identity_rate`` identifies each edit among the held-out people with Fisherfaces (PCA
then LDA on grey pixels, Belhumeur et al. 1997), fitted on *other* photos of those people (two
folds: each person's photos alternate between gallery and sources), beside
``classical_identity_rate_real``, the same classifier on the real source photos (its ceiling).

Edits from neutral photos (``neutral_source_*``) are the common use: a neutral portrait made to
smile. The paper's protocol edits expressive frames only; both are reported.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from facegan_kit import EXPRESSIONS
from facegan_kit.data.base import FaceSplit, to_float
from facegan_kit.eval.metrics import REAL_KEYS

__all__ = ["REAL_KEYS", "roundtrip", "identity_ceilings", "morph_rho_ceiling", "fisherfaces_identification",
           "real_face_scores",
           "score_real"]



def roundtrip(x: Tensor, size: int) -> Tensor:
    """``x`` brought to ``size`` pixels and back (antialiased bilinear both ways)."""
    side = x.shape[-1]
    if side == size:
        return x
    small = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return F.interpolate(small, size=(side, side), mode="bilinear", antialias=True, align_corners=False)


def identity_ceilings(vecs: np.ndarray, subject: np.ndarray, expression: np.ndarray,
                      threshold: float = 0.6) -> dict[str, float | None]:
    """dlib distances between real photos: one person in two different expressions, and two
    different people (every such pair of the given embeddings)."""
    d = np.linalg.norm(vecs[:, None] - vecs[None], axis=-1)
    upper = np.triu(np.ones_like(d, dtype=bool), k=1)
    same = upper & (subject[:, None] == subject[None]) & (expression[:, None] != expression[None])
    other = upper & (subject[:, None] != subject[None])
    out: dict[str, float | None] = {"ceiling_identity_same_person_median": None,
                                    "ceiling_identity_same_person_rate_under_0.6": None,
                                    "ceiling_identity_other_people_median": None}
    if same.any():
        out["ceiling_identity_same_person_median"] = float(np.median(d[same]))
        out["ceiling_identity_same_person_rate_under_0.6"] = float((d[same] < threshold).mean())
    if other.any():
        out["ceiling_identity_other_people_median"] = float(np.median(d[other]))
    return out


def _grey(x: Tensor, side: int = 64) -> np.ndarray:
    """Fisherfaces' input: grey pixels at ``side``, each image standardised (lighting-robust)."""
    x = F.interpolate(x.float(), size=(side, side), mode="bilinear", antialias=True, align_corners=False)
    g = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).flatten(1)
    g = (g - g.mean(1, keepdim=True)) / (g.std(1, keepdim=True) + 1e-6)
    return g.numpy().astype(np.float64)


def fisherfaces_identification(gallery: Tensor, gallery_subject: np.ndarray, probes: list[Tensor],
                               probe_subject: list[np.ndarray]) -> list[float]:
    """Share of each probe set identified as its own subject by Fisherfaces fitted on ``gallery``.

    Uses scikit-learn's PCA (to ``n - c`` dimensions at most, as Fisherfaces prescribe, capped at
    100) and linear discriminant analysis rather than a hand-written eigen-solver.
    """
    from sklearn.decomposition import PCA
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.pipeline import make_pipeline

    n, c = len(gallery), len(np.unique(gallery_subject))
    clf = make_pipeline(PCA(n_components=max(1, min(100, n - c))), LinearDiscriminantAnalysis())
    clf.fit(_grey(gallery), gallery_subject)
    return [float((clf.predict(_grey(p)) == s).mean()) if len(p) else float("nan")
            for p, s in zip(probes, probe_subject)]


def _classical(held: FaceSplit, size: int, sources: Tensor, source_subject: np.ndarray,
               source_row: np.ndarray, edits: Tensor) -> dict[str, float | None]:
    """Two folds over each held-out person's photos (alternating): fit on one, identify the
    sources of the other and their edits (``edits``: ``(K, N, 3, S, S)`` of ``sources``)."""
    subject = held.subject.numpy()
    rank = np.zeros(len(subject), dtype=np.int64)
    for s in np.unique(subject):
        idx = np.nonzero(subject == s)[0]
        rank[idx] = np.arange(len(idx))
    fold = rank % 2
    real = roundtrip(to_float(held.images), size)
    rates_real, rates_edit, weights = [], [], []
    for f in (0, 1):
        gal = fold == f
        probe = fold[source_row] != f  # sources whose own photo is not in this gallery
        if len(np.unique(subject[gal])) < 2 or not probe.any():
            continue
        k = edits.shape[0]
        r_real, r_edit = fisherfaces_identification(
            real[torch.as_tensor(gal)], subject[gal],
            [sources[torch.as_tensor(probe)], edits[:, torch.as_tensor(probe)].flatten(0, 1)],
            [source_subject[probe], np.tile(source_subject[probe], k)])
        rates_real.append(r_real)
        rates_edit.append(r_edit)
        weights.append(int(probe.sum()))
    if not weights:
        return {"classical_identity_rate": None, "classical_identity_rate_real": None,
                "classical_identity_chance": None}
    return {"classical_identity_rate": float(np.average(rates_edit, weights=weights)),
            "classical_identity_rate_real": float(np.average(rates_real, weights=weights)),
            "classical_identity_chance": 1.0 / len(np.unique(subject))}


def score_real(editor: Any, held: FaceSplit, native: FaceSplit | None, sources: Tensor, source_row: np.ndarray,
               edits: Tensor, ej: Any, ij: Any, identity_faces: int | None = 32,
               batch_size: int = 64) -> tuple[dict[str, Any], list[str]]:
    """:func:`real_face_scores` for an :class:`~facegan_kit.edit.Editor`: ``held`` is the split at
    the model's size (its ``extra["row"]`` indexes ``native``, the same split at the prepared
    size, or ``None`` to use ``held`` itself)."""
    ctrl = editor.controller
    n_cls = edits.shape[0]
    size = int(editor.image_size)
    if native is not None:
        held = native.select(held.extra["row"])

    def edit_all(src: Tensor) -> Tensor:
        z = torch.cat([editor.encode(src[i:i + batch_size]) for i in range(0, len(src), batch_size)])
        out = []
        for k in range(n_cls):
            code = ctrl.intensity_code(k, 1.0).to(editor.device)
            out.append(torch.cat([editor.decode(z[i:i + batch_size], code.expand(len(z[i:i + batch_size]), -1),
                                                source=src[i:i + batch_size]).cpu()
                                  for i in range(0, len(z), batch_size)]))
        return torch.stack(out).clamp(-1, 1)

    return real_face_scores(held, size, edit_all, sources, source_row, edits, ej, ij, identity_faces)


def real_face_scores(held: FaceSplit, size: int, edit_fn: Callable[[Tensor], Tensor], sources: Tensor,
                     source_row: np.ndarray, edits: Tensor, ej: Any, ij: Any,
                     identity_faces: int | None = 32) -> tuple[dict[str, Any], list[str]]:
    """The keys of :data:`REAL_KEYS` for one held-out split of real faces.

    Args:
        held: every photo of the split, neutral ones included, at the prepared size.
        size: the model's image side.
        edit_fn: ``(N, 3, size, size)`` sources -> ``(K, N, 3, size, size)`` full-intensity edits.
        sources: the expressive sources the suite edited, at ``size``; ``source_row``: their rows
            in ``held``; ``edits``: their edits ``(K, N, 3, size, size)``.
        ej, ij: the expression and identity judges (either may be ``None``).
        identity_faces: at most this many photos per person go to the dlib judge (CPU time).

    Returns:
        ``(scores, notes)``.
    """
    m: dict[str, Any] = {k: None for k in REAL_KEYS}
    notes: list[str] = []
    n_cls = edits.shape[0]
    native = to_float(held.images)
    expressive = held.expression < len(EXPRESSIONS)
    neutral_rows = torch.nonzero(~expressive).squeeze(1)
    if ej is not None and bool(expressive.any()):
        pred = ej.probs(native[expressive])[:, :len(EXPRESSIONS)].argmax(1)
        m["ceiling_judge_accuracy_native"] = float((pred == held.expression[expressive]).float().mean())
        m["ceiling_judge_accuracy_native_per_class"] = {
            EXPRESSIONS[k]: float((pred[held.expression[expressive] == k] == k).float().mean())
            for k in held.expression[expressive].unique().tolist()}
        m.update(morph_rho_ceiling(native, held.subject, held.expression, ej, notes))
    neutral_edits = None
    if len(neutral_rows):
        small = F.interpolate(native[neutral_rows], size=(size, size), mode="bilinear", antialias=True,
                              align_corners=False) if native.shape[-1] != size else native[neutral_rows]
        neutral_edits = edit_fn(small)  # (K, M, 3, S, S)
        if ej is not None:
            target = torch.arange(n_cls).repeat_interleave(len(neutral_rows))
            pred = ej.probs(neutral_edits.flatten(0, 1))[:, :len(EXPRESSIONS)].argmax(1)
            m["neutral_source_expression_accuracy"] = float((pred == target).float().mean())
    else:
        notes.append("The held-out split has no neutral photos, so edits from neutral photos are not measured.")
    if ij is not None:
        m.update(_dlib_scores(held, native, size, neutral_rows, neutral_edits, ij, identity_faces))
    src_subject = held.subject.numpy()[source_row]
    m.update(_classical(held, size, sources, src_subject, source_row, edits))
    return m, notes


def morph_rho_ceiling(images: Tensor, subject: Tensor, expression: Tensor, ej: Any,
                      notes: list[str]) -> dict[str, Any]:
    """``ceiling_intensity_rho_morph`` (and per class): the judge's target probability along a
    pixel cross-fade from the person's first neutral photo to each of their expressive photos
    (aligned photos of one person, so the fade is an expression growing on that face)."""
    from facegan_kit.eval.judges import spearman_rows
    from facegan_kit.eval.scoring import PATH_T, per_class_mean

    out: dict[str, Any] = {"ceiling_intensity_rho_morph": None, "ceiling_intensity_rho_morph_per_class": None}
    n_expr = len(EXPRESSIONS)
    first_neutral: dict[int, int] = {}
    for i, (s, e) in enumerate(zip(subject.tolist(), expression.tolist())):
        if e == n_expr:
            first_neutral.setdefault(s, i)
    rows = [i for i, (s, e) in enumerate(zip(subject.tolist(), expression.tolist()))
            if e < n_expr and s in first_neutral]
    if not rows:
        notes.append("No held-out person has both a neutral and an expressive photo: the intensity "
                     "ceiling (ceiling_intensity_rho_morph) is not measured.")
        return out
    src = images[[first_neutral[int(subject[i])] for i in rows]]
    dst, target = images[rows], expression[rows]
    probs = [ej.probs((1 - t) * src + t * dst)[torch.arange(len(rows)), target] for t in PATH_T]
    rho = spearman_rows(PATH_T, torch.stack(probs, dim=1))
    finite = rho[np.isfinite(rho)]
    out["ceiling_intensity_rho_morph"] = float(finite.mean()) if len(finite) else None
    out["ceiling_intensity_rho_morph_per_class"] = per_class_mean(rho, target.numpy())
    return out


def _per_subject_rows(subject: np.ndarray, cap: int | None) -> np.ndarray:
    rows = []
    for s in np.unique(subject):
        idx = np.nonzero(subject == s)[0]
        if cap is not None and len(idx) > cap:
            idx = idx[np.linspace(0, len(idx) - 1, cap).round().astype(int)]
        rows.append(idx)
    return np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)


def _dlib_scores(held: FaceSplit, native: Tensor, size: int, neutral_rows: Tensor, neutral_edits: Tensor | None,
                 ij: Any, identity_faces: int | None) -> dict[str, float | None]:
    subject, expression = held.subject.numpy(), held.expression.numpy()
    rows = _per_subject_rows(subject, identity_faces)
    vecs = ij.embed(native[torch.as_tensor(rows)])
    out: dict[str, float | None] = identity_ceilings(vecs, subject[rows], expression[rows], ij.SAME_PERSON_THRESHOLD)
    trip = ij.embed(roundtrip(native[torch.as_tensor(rows)], size))
    out["ceiling_identity_roundtrip_median"] = float(np.median(ij.distance(vecs, trip)))
    if neutral_edits is not None and len(neutral_rows):
        src = ij.embed(native[neutral_rows])
        k, n = neutral_edits.shape[:2]
        edt = ij.embed(neutral_edits.flatten(0, 1)).reshape(k, n, -1)
        dist = ij.distance(src[None], edt)
        out["neutral_source_identity_distance_median"] = float(np.median(dist))
        out["neutral_source_identity_rate_under_0.6"] = float((dist < ij.SAME_PERSON_THRESHOLD).mean())
    return out
