"""What a person reads after ``facegan eval`` / ``facegan bench``: Markdown and PNGs."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from facegan_kit import EXPRESSIONS
from facegan_kit.eval.metrics import REAL_KEYS, save_metrics
from facegan_kit.eval.plugin_metrics import metrics_markdown
from facegan_kit.figures import save_sheet
from facegan_kit.train.report import loss_keys, loss_series, mark_stages, read_log, stage_starts

#: Rows of the metric tables: key, label, which direction is better.
METRIC_ROWS: list[tuple[str, str, str]] = [
    ("expression_accuracy", "expression accuracy of edits (FER judge)", "higher"),
    ("judge_accuracy_real", "FER judge accuracy on the real test faces (reference)", "higher"),
    ("identity_distance_median", "identity: median dlib distance source-edit", "lower"),
    ("identity_rate_under_0.6", "identity: share of edits under 0.6 (same person)", "higher"),
    ("classical_identity_rate", "identity: edits named as their person by Fisherfaces (not dlib)", "higher"),
    ("neutral_source_expression_accuracy", "edits of neutral photos: expression (FER judge)", "higher"),
    ("neutral_source_identity_distance_median", "edits of neutral photos: median dlib distance", "lower"),
    ("neutral_source_identity_rate_under_0.6", "edits of neutral photos: share under 0.6", "higher"),
    ("ceiling_judge_accuracy_native", "ceiling: FER judge on the real photos at their prepared size", "higher"),
    ("ceiling_identity_same_person_median", "ceiling: dlib, one person's two expressions (real photos)", "lower"),
    ("ceiling_identity_same_person_rate_under_0.6", "ceiling: those real pairs under 0.6", "higher"),
    ("ceiling_identity_other_people_median", "reference: dlib, two different people", "higher"),
    ("ceiling_identity_roundtrip_median", "reference: dlib, a photo vs its resolution round trip", "lower"),
    ("classical_identity_rate_real", "ceiling: Fisherfaces on the real sources", "higher"),
    ("classical_identity_chance", "reference: Fisherfaces chance level", "lower"),
    ("recon_l1", "reconstruction L1 ([0,1] scale)", "lower"),
    ("recon_psnr", "reconstruction PSNR (dB)", "higher"),
    ("recon_ssim", "reconstruction SSIM", "higher"),
    ("intensity_rho_levels", "intensity Spearman rho over levels (judge)", "higher"),
    ("intensity_rho_continuous", "intensity Spearman rho over t=0.2..1 (judge)", "higher"),
    ("ceiling_intensity_rho_morph", "reference: rho of a real neutral-to-expression cross-fade (judge)", "higher"),
    ("neutral_rate", "neutral code judged neutral", "higher"),
    ("fer_feature_frechet", "realism: fer_feature_frechet (not FID)", "lower"),
    ("oracle_expression_accuracy", "oracle: expression accuracy of edits", "higher"),
    ("oracle_accuracy_real", "oracle: accuracy on the real test faces (reference)", "higher"),
    ("oracle_identity_kept_rate", "oracle: identity kept (edit nearest its own subject of the split)", "higher"),
    ("oracle_recon_identity_kept_rate", "oracle: identity kept by reconstructions", "higher"),
    ("oracle_identity_match_rate", "oracle: identity match vs true attributes of all subjects", "higher"),
    ("oracle_intensity_rho_levels", "oracle: intensity rho over levels", "higher"),
    ("oracle_intensity_rho_continuous", "oracle: intensity rho over t=0.2..1", "higher"),
    ("oracle_neutral_rate", "oracle: neutral code judged neutral", "higher"),
]


def fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_fig(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    _plt().close(fig)
    tmp.replace(path)
    return path


def _label_name(k: int) -> str:
    return EXPRESSIONS[k] if 0 <= k < len(EXPRESSIONS) else "neutral"


# -- facegan eval ----------------------------------------------------------------------------
def write_eval_report(metrics: dict, out: Path, *, editor, x: Tensor, recon: Tensor, edits: Tensor,
                      neutral: Tensor, labels: Tensor, grid_faces: int = 6) -> dict[str, Path]:
    """``metrics.json``, ``report.md``, ``edits.png``, ``intensity.png``, ``per_class.png``.

    The intensity sheet walks the same path ``t`` values the suite measured (``metrics["path_t"]``)."""
    path_t = metrics["path_t"]
    out.mkdir(parents=True, exist_ok=True)
    files = {"metrics": save_metrics(metrics, out / "metrics.json")}
    n = min(grid_faces, x.shape[0])
    cols = [x[:n], recon[:n], *[e[:n] for e in edits], neutral[:n]]
    names = ["input", "own label", *EXPRESSIONS[:edits.shape[0]], "neutral"]
    files["edits"] = save_sheet(out / "edits.png", [[c[i].clamp(-1, 1) for c in cols] for i in range(n)],
                                col_labels=names, row_labels=[f"{_label_name(int(k))} face" for k in labels[:n]])

    ctrl = editor.controller
    g = editor.encode(x[:1])
    n_cls = edits.shape[0]
    rows = []
    for k in range(n_cls):
        codes = [ctrl.level_code(k, lv) for lv in range(1, ctrl.levels + 1)] + [ctrl.intensity_code(k, t) for t in path_t]
        rows.append(editor.decode(g.expand(len(codes), -1), torch.stack(codes).to(editor.device), source=x[:1]).cpu())
    heads = [f"level {lv}" for lv in range(1, ctrl.levels + 1)] + [f"t = {t:g}" for t in path_t]
    files["intensity"] = save_sheet(out / "intensity.png", [list(r.clamp(-1, 1)) for r in rows], col_labels=heads,
                                    row_labels=list(EXPRESSIONS[:n_cls]), note="one test face")

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    names = list(EXPRESSIONS[:n_cls])
    series = [("FER judge", metrics.get("expression_accuracy_per_class")),
              ("oracle", metrics.get("oracle_expression_accuracy_per_class"))]
    series = [(lab, d) for lab, d in series if d]
    width = 0.8 / max(1, len(series))
    for i, (lab, d) in enumerate(series):
        ax.bar([j + i * width for j in range(len(names))], [d[nm] for nm in names], width, label=lab)
    ax.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(names))], names, fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy of edits")
    ax.axhline(1 / 7, color="grey", ls=":", lw=0.8)
    if series:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no expression judge available", ha="center", transform=ax.transAxes)
    ax.set_title(f"{metrics['recipe']}: expression accuracy per target class", fontsize=9)
    fig.tight_layout()
    files["per_class"] = _save_fig(fig, out / "per_class.png")

    (out / "report.md").write_text(eval_markdown(metrics, levels=ctrl.levels))
    files["report"] = out / "report.md"
    return files


def eval_markdown(m: dict, levels: int) -> str:
    lines = [f"# Evaluation: {m['recipe']}", ""]
    if m.get("checkpoint"):
        lines.append(f"- checkpoint: `{m['checkpoint']}`")
    lines += [
        f"- data: {m['data']}, {m['split']} split, {m['faces']} faces at {m['image_size']}x{m['image_size']}",
        f"- edits: every face to each of the {len(m.get('expression_accuracy_per_class') or EXPRESSIONS)} "
        "expressions at full intensity; reconstructions use each face's own label at full intensity",
        f"- judges: expression = {m['judges']['expression'] or 'unavailable'}; identity = "
        f"{m['judges']['identity'] or 'unavailable'} ({m['identity_faces']} faces); "
        f"oracles = {m['judges']['oracles'] or 'not used'}",
        f"- time: {m['seconds']:.0f} s",
        "",
    ]
    if m.get("identity_loss_uses_judge"):
        lines += ["> **Identity caveat:** this model was trained with an identity loss computed by dlib's "
                  "face-recognition ResNet, the same network that judges identity below. Its identity "
                  "numbers are not an independent measurement.", ""]
    lines += ["| metric | value | better |", "|---|---|---|"]
    for key, label, better in METRIC_ROWS:
        if key.startswith("oracle_") and m["judges"]["oracles"] is None:
            continue
        if key in REAL_KEYS and m.get(key) is None:  # real-face rows: only where they apply
            continue
        lines.append(f"| {label} | {fmt(m.get(key))} | {better} |")
    lines.append("")
    lines += _per_class_markdown(m)
    lines += metrics_markdown(m.get("plugin_metrics") or {})
    if m.get("notes"):
        lines += ["## Notes", ""] + [f"- {note}" for note in m["notes"]] + [""]
    lines += [
        "## Images", "",
        "![edits](edits.png)", "",
        "Rows: faces. Columns: input, own-label reconstruction, " + ", ".join(EXPRESSIONS) + ", neutral code.", "",
        "![intensity](intensity.png)", "",
        f"One face. Rows: target class. Columns: the {levels} discrete level(s), then t = 0.2, 0.4, 0.6, 0.8, 1.0.", "",
        "![per class](per_class.png)", "",
        "Chance for a 7-way judge is 1/7 (dotted line).", "",
    ]
    return "\n".join(lines)


#: The per-target-class table of the report: (key, row label).
PER_CLASS_ROWS = (
    ("expression_accuracy_per_class", "edits judged as the target (FER)"),
    ("oracle_expression_accuracy_per_class", "edits judged as the target (oracle)"),
    ("ceiling_judge_accuracy_native_per_class", "ceiling: FER on the real photos"),
    ("intensity_rho_levels_per_class", "intensity rho over levels (FER)"),
    ("ceiling_intensity_rho_morph_per_class", "reference: rho of a real cross-fade (FER)"),
)


def _per_class_markdown(m: dict) -> list[str]:
    rows = [(label, m[key]) for key, label in PER_CLASS_ROWS if m.get(key)]
    if not rows:
        return []
    names = list(rows[0][1].keys())
    lines = ["## Per target class", "",
             "| measure | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    lines += [f"| {label} | " + " | ".join(fmt(d.get(nm), 2) for nm in names) + " |" for label, d in rows]
    return lines + [""]


# -- facegan bench ---------------------------------------------------------------------------
BENCH_QUALITY = [
    ("expression_accuracy", "expr acc (FER)"),
    ("oracle_expression_accuracy", "expr acc (oracle)"),
    ("identity_distance_median", "id dist (dlib)"),
    ("identity_rate_under_0.6", "id <0.6"),
    ("ceiling_identity_same_person_median", "id dist, real pairs (ceiling)"),
    ("classical_identity_rate", "id (Fisherfaces)"),
    ("oracle_identity_kept_rate", "id kept (oracle)"),
    ("oracle_identity_match_rate", "id match (oracle)"),
    ("recon_l1", "recon L1"),
    ("recon_psnr", "PSNR"),
    ("recon_ssim", "SSIM"),
    ("intensity_rho_continuous", "rho path (FER)"),
    ("oracle_intensity_rho_continuous", "rho path (oracle)"),
    ("intensity_rho_levels", "rho levels (FER)"),
    ("neutral_rate", "neutral (FER)"),
    ("oracle_neutral_rate", "neutral (oracle)"),
    ("fer_feature_frechet", "fer_feature_frechet"),
]


def _bench_models_line(report: dict) -> list[str]:
    """What was trained (quick or not, step budget) and what was given as a checkpoint."""
    given = report.get("checkpoints") or {}
    trained = [n for n in report["recipes"] if n not in given]
    lines = []
    if trained:
        lines.append(f"- trained here: {', '.join(trained)}; quick: {report.get('quick')}; "
                     f"step budget: {report.get('max_steps') or 'full recipe'}")
    if given:
        lines.append("- checkpoints given (not trained here): " + ", ".join(f"{k} = {v}" for k, v in given.items()))
    return lines


def bench_markdown(report: dict) -> str:
    recipes = report["recipes"]
    dev = report["device"]
    lines = ["# facegan bench", "",
             f"- device: {dev.get('name')} ({dev.get('type')}), torch {dev.get('torch')}, "
             f"{dev.get('threads')} CPU threads",
             f"- data: {report.get('data')}, split {report.get('split')}, "
             f"{report.get('max_faces') or 'all'} faces evaluated",
             *_bench_models_line(report), ""]
    names = list(recipes)
    cols = [(k, lab) for k, lab in BENCH_QUALITY  # only what some recipe measured (no all-n/a columns)
            if any(recipes[n]["quality"].get(k) is not None for n in names)] or BENCH_QUALITY[:1]
    lines += ["## Quality", "", "| recipe | " + " | ".join(lab for _, lab in cols) + " |",
              "|---" * (len(cols) + 1) + "|"]
    for name in names:
        q = recipes[name]["quality"]
        lines.append(f"| {name} | " + " | ".join(fmt(q.get(k)) for k, _ in cols) + " |")
    lines += ["", "## Speed", "",
              "| recipe | steps | train s | train img/s per stage | edit latency (ms, batch 1) | peak memory (MiB) |",
              "|---|---|---|---|---|---|"]
    for name in names:
        s = recipes[name]["speed"]
        ips = ", ".join(f"{k} {v:.1f}" for k, v in (s.get("train_images_per_second") or {}).items()) or "n/a"
        lines.append(f"| {name} | {fmt(s.get('train_steps'))} | {fmt(s.get('train_seconds'), 1)} | {ips} | "
                     f"{fmt(s.get('edit_latency_ms'), 2)} | {fmt(s.get('peak_memory_mib'), 0)} |")
    notes = [f"{name}: {note}" for name in names for note in recipes[name]["quality"].get("notes", [])]
    notes += report.get("notes", [])
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    lines += ["", "## Plots", "", "![metrics](metrics.png)", "", "![losses](losses.png)", "",
              "![edits](edits.png)", "",
              "Same test faces edited by each recipe. Per face, one row per recipe (in table order): "
              "input, " + ", ".join(EXPRESSIONS) + ", neutral code.", ""]
    return "\n".join(lines)


def plot_bench_metrics(report: dict, path: Path) -> Path:
    plt = _plt()
    keys = [(k, lab) for k, lab in BENCH_QUALITY
            if any(r["quality"].get(k) is not None for r in report["recipes"].values())]
    names = list(report["recipes"])
    cols = 4
    rows = max(1, -(-len(keys) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax, (k, lab) in zip(axes.flat, keys):
        vals = [report["recipes"][n]["quality"].get(k) for n in names]
        ax.bar(range(len(names)), [0 if v is None else v for v in vals], color=[f"C{i}" for i in range(len(names))])
        ax.set_xticks(range(len(names)), names, fontsize=7)
        ax.set_title(lab, fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.tight_layout()
    return _save_fig(fig, path)


def plot_bench_losses(logs: dict[str, Path | None], path: Path) -> Path:
    """One panel per loss term seen in any run; one line per recipe."""
    plt = _plt()
    data = {name: read_log(p) if p is not None else [] for name, p in logs.items()}
    keys = sorted({k for rows in data.values() for k in loss_keys(rows)})
    starts = next((stage_starts(rows) for rows in data.values() if rows), [])
    cols = min(3, max(1, len(keys)))
    nrows = max(1, -(-len(keys) // cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 2.8 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        for i, (name, rows) in enumerate(data.items()):
            steps, values = loss_series(rows, key)
            if (values == values).any():
                ax.plot(steps, values, lw=1, color=f"C{i}", label=name)
        ax.set_title(key, fontsize=9, pad=12)
        ax.set_xlabel("step", fontsize=8)
        if len(data) > 1:
            mark_stages(ax, [(step, "") for step, _ in starts])  # recipes' stages differ: lines, no names
        else:
            mark_stages(ax, starts)
        ax.legend(fontsize=7)
    if not keys:
        axes[0, 0].text(0.5, 0.5, "no training logs", ha="center", transform=axes[0, 0].transAxes)
    for ax in list(axes.flat)[max(1, len(keys)):]:
        ax.axis("off")
    fig.tight_layout()
    return _save_fig(fig, path)


def bench_edit_grid(editors: dict[str, Any], x: Tensor, path: Path) -> Path:
    """Per input face, one row per recipe: input, the six expressions, neutral."""
    rows, names = [], []
    for i in range(x.shape[0]):
        for name, ed in editors.items():
            xi = x[i:i + 1]
            ctrl = ed.controller
            codes = [ctrl.intensity_code(k, 1.0) for k in range(min(ctrl.num_classes, len(EXPRESSIONS)))]
            codes.append(ctrl.neutral_code())
            g = ed.encode(xi)
            outs = ed.decode(g.expand(len(codes), -1), torch.stack(codes).to(ed.device), source=xi).cpu().clamp(-1, 1)
            rows.append(torch.cat([_resized(xi, outs.shape[-1]), outs]))
            names.append(f"face {i + 1}: {name}")
    side = max(r.shape[-1] for r in rows)
    rows = [_resized(r, side) for r in rows]
    cols = ["input", *EXPRESSIONS[:rows[0].shape[0] - 2], "neutral"]
    return save_sheet(path, [list(r) for r in rows], col_labels=cols, row_labels=names)


def _resized(x: Tensor, side: int) -> Tensor:
    if x.shape[-1] == side:
        return x
    return torch.nn.functional.interpolate(x, size=(side, side), mode="bilinear", antialias=True,
                                           align_corners=False).clamp(-1, 1)


def save_json(obj: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    return path
