"""Real faces, identity-disjoint: train a recipe on several splits of one prepared set and judge
every split's held-out people (and as many training people) beside the judges' ceilings.

A real expression set has few people (the Taiwanese set: 29), so one split of 5 held-out people
says little; this trains one model per split (or takes existing checkpoints), runs
:func:`facegan_kit.eval.suite.evaluate` on each split's held-out people and on the same number
of its training people (to see over-fitting), and prints each number's mean and range over the
splits, next to the same judges on the real photos (see :mod:`facegan_kit.eval.real`).

    python benchmarks/real_faces.py --data data/tw --recipe recipes/exprgan-real-quick.toml --out runs/real
    python benchmarks/real_faces.py --data data/tw --out runs/real --splits 05,07,12,19,24 01,09,15,22,28 \\
        --md results.md --json results.json
    python benchmarks/real_faces.py --data data/tw --out runs/real --no-train     # score what is there

Each split trains into ``OUT/split<i>`` (``--set`` overrides go to every run); a split whose
``final.safetensors`` exists is scored, not trained again, and its scores are kept beside it
(``real_scores.json``), so ``--only I`` in several processes shares the work and a last run
without it prints the table. Writes nothing inside the repository
unless asked (``--md``/``--json``): real faces and what is derived from them stay where the
data are.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

#: Default held-out people for the Taiwanese set (29 performers, 01-30 without 04): three
#: disjoint groups of 5, the first being `data prepare`'s own split at seed 0.
DEFAULT_SPLITS = ("05,07,12,19,24", "01,09,15,22,28", "03,11,17,26,30")

#: (key, label, scale) of the table's rows; scale 100 prints a rate in %.
ROWS = (
    ("expression_accuracy", "expression of edits (FER), %", 100),
    ("judge_accuracy_real", "ceiling: FER on the real sources at the model's size, %", 100),
    ("ceiling_judge_accuracy_native", "ceiling: FER on the real photos at their prepared size, %", 100),
    ("identity_distance_median", "identity: dlib distance source -> edit, median", 1),
    ("identity_rate_under_0.6", "identity: edits under dlib's 0.6, %", 100),
    ("ceiling_identity_same_person_median", "ceiling: dlib, one person's two expressions, median", 1),
    ("ceiling_identity_same_person_rate_under_0.6", "ceiling: those pairs under 0.6, %", 100),
    ("ceiling_identity_other_people_median", "dlib, two different people, median", 1),
    ("ceiling_identity_roundtrip_median", "dlib, a photo vs its resolution round trip, median", 1),
    ("classical_identity_rate", "identity: edits named as their person by Fisherfaces, %", 100),
    ("classical_identity_rate_real", "ceiling: Fisherfaces on the real sources, %", 100),
    ("classical_identity_chance", "Fisherfaces chance level, %", 100),
    ("intensity_rho_levels", "rho of the target's probability over --level", 1),
    ("intensity_rho_continuous", "rho over --intensity", 1),
    ("ceiling_intensity_rho_morph", "reference: rho over a real neutral-to-expression cross-fade", 1),
    ("neutral_rate", "neutral code judged neutral, %", 100),
    ("neutral_source_expression_accuracy", "edits of neutral photos: expression, %", 100),
    ("neutral_source_identity_distance_median", "edits of neutral photos: dlib median", 1),
    ("neutral_source_identity_rate_under_0.6", "edits of neutral photos: under 0.6, %", 100),
)


def run_split(i: int, held: list[str], args) -> dict:
    """Train (unless done) and score one split; returns {"test": metrics, "train": metrics, ...}."""
    from facegan_kit.eval.suite import evaluate
    from facegan_kit.train import train

    run = args.out / f"split{i}"
    ckpt = run / "final.safetensors"
    overrides = [f"data.root={args.data}", "data.test_subjects=[" + ",".join(f'"{s}"' for s in held) + "]",
                 *args.overrides]
    seconds = None
    if not ckpt.exists():
        if args.no_train:
            raise SystemExit(f"real_faces: {ckpt} does not exist (drop --no-train to train it)")
        t0 = time.perf_counter()
        train(args.recipe, run, overrides=overrides, device=args.device, progress=not args.quiet)
        seconds = round(time.perf_counter() - t0, 1)
    cached = run / "real_scores.json"
    if cached.exists() and cached.stat().st_mtime > ckpt.stat().st_mtime and seconds is None:
        kept = json.loads(cached.read_text())
        if all(key in kept["test"] for key, _, _ in ROWS) and all(key in kept["test"] for key, _ in PER_CLASS_ROWS):
            return kept  # scored by this version of the suite (an older one lacks some keys: score again)
    out = {"held_out": held, "checkpoint": str(ckpt), "train_seconds": seconds}
    for split in ("test", "train"):
        out[split] = evaluate(ckpt, split=split, max_subjects=len(held) if split == "train" else None,
                              identity_faces=args.identity_faces, device=args.device or "cpu")
        print(f"split {i} {split}: expression {out[split]['expression_accuracy']}, identity median "
              f"{out[split]['identity_distance_median']}", file=sys.stderr, flush=True)
    cached.write_text(json.dumps(out, indent=2, default=str))
    return out


#: (key, label) of the per-target table (held-out people, mean over splits).
PER_CLASS_ROWS = (
    ("expression_accuracy_per_class", "edits judged as the target, %"),
    ("ceiling_judge_accuracy_native_per_class", "ceiling: FER on the real photos, %"),
    ("intensity_rho_levels_per_class", "rho over --level (x100)"),
    ("ceiling_intensity_rho_morph_per_class", "reference: rho over a real cross-fade (x100)"),
)


def summarise_per_class(results: list[dict]) -> str:
    """Markdown: each per-target measure of the held-out people, mean over splits, x100."""
    names = list(results[0]["test"]["expression_accuracy_per_class"] or [])
    lines = ["| per target (held-out, mean over splits) | " + " | ".join(names) + " |",
             "|---" * (len(names) + 1) + "|"]
    for key, label in PER_CLASS_ROWS:
        cells = []
        for nm in names:
            vals = [(r["test"].get(key) or {}).get(nm) for r in results]
            vals = [v for v in vals if v is not None]
            cells.append(f"{100 * np.mean(vals):.0f}" if vals else "-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def summarise(results: list[dict]) -> str:
    """Markdown: per row, held-out mean (range over splits) and training people's mean."""
    n = len(results)
    lines = [f"| measure | held-out people: mean (range) over {n} split(s) | training people: mean |",
             "|---|---|---|"]
    for key, label, scale in ROWS:
        cells = []
        for split in ("test", "train"):
            vals = [r[split].get(key) for r in results]
            vals = np.array([v for v in vals if v is not None], dtype=float) * scale
            if not len(vals):
                cells.append("-")
                continue
            fmt = "{:.1f}" if scale == 100 else "{:.3f}"
            rng = f" ({fmt.format(vals.min())}-{fmt.format(vals.max())})" if split == "test" and n > 1 else ""
            cells.append(fmt.format(vals.mean()) + rng)
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    times = [r["train_seconds"] for r in results if r["train_seconds"]]
    if times:
        lines.append("")
        lines.append("Training time per split (s): " + ", ".join(f"{t:.0f}" for t in times))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="A folder written by `facegan data prepare`.")
    ap.add_argument("--recipe", default="recipes/exprgan-real-quick.toml")
    ap.add_argument("--out", type=Path, required=True, help="Where the runs go (outside the repository).")
    ap.add_argument("--splits", nargs="+", default=list(DEFAULT_SPLITS),
                    help="Held-out subject names per split, comma-separated (default: three groups of 5 "
                         "of the Taiwanese set).")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--identity-faces", type=int, default=40, help="Photos per person sent to dlib.")
    ap.add_argument("--no-train", action="store_true", help="Only score existing checkpoints.")
    ap.add_argument("--device", default=None,
                    help="Where to train and render the edits (default: the recipe's train.device to train, "
                         "the CPU to score); the judges (dlib, Fisherfaces) run on the CPU whatever this says.")
    ap.add_argument("--only", type=int, default=None, metavar="I",
                    help="Only split I (0-based; several processes can share the work). Scores are kept in "
                         "OUT/split<I>/real_scores.json and reused by a later run.")
    ap.add_argument("--quiet", action="store_true", help="No progress bars.")
    ap.add_argument("--md", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    results = [run_split(i, [s.strip() for s in spec.split(",") if s.strip()], args)
               for i, spec in enumerate(args.splits) if args.only is None or i == args.only]
    md = summarise(results) + "\n" + summarise_per_class(results)
    print(md)
    if args.md:
        args.md.write_text(md)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return results


if __name__ == "__main__":
    main()
