"""Oracle scores of trained models on the same unseen people, in groups of 8.

A recipe's own test split is 8 people, and which 8 moves the identity and neutral rates by
10-30 points (two similar-looking people cost a whole subject's edits). To compare recipes
or seeds, this scores every checkpoint on one shared set of synthetic people that none of them
trained on -- by default subjects 160..199 of the synthetic generator, split into 5 groups of 8
(the paper's gallery size, so identity chance stays 12.5%) -- and prints each metric's mean over
the groups with its range.

    python benchmarks/heldout_groups.py runs/quick/final.safetensors runs/quick-seed1/final.safetensors
    python benchmarks/heldout_groups.py runs/old/final.safetensors --background random --json out.json

Needs models trained on synthetic subjects below ``--first`` (the default 160); the oracles are
trained on first use (1-2 minutes), as for ``facegan eval``.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

KEYS = ("oracle_expression_accuracy", "oracle_identity_kept_rate", "oracle_intensity_rho_levels",
        "oracle_intensity_rho_continuous", "oracle_neutral_rate")


def heldout_table(first: int, people: int, background: str, size: int) -> dict:
    """A synthetic [data] table whose test split is subjects ``first .. first + people - 1``."""
    return {"type": "synthetic", "subjects": first + people, "test_subjects": people, "size": size,
            "include_neutral": True, "background": background}


def score(ckpt: str, first: int = 160, people: int = 40, group: int = 8, background: str = "plain",
          level_codes: str | None = None, oracles="auto") -> dict:
    """Per-group metrics and their mean / min / max for one checkpoint (``oracles`` as in
    :func:`facegan_kit.eval.suite.evaluate`)."""
    from facegan_kit.errors import InputError
    from facegan_kit.apps import load_editor
    from facegan_kit.eval.suite import evaluate

    editor = load_editor(ckpt)
    trained_on = editor.recipe.data
    if trained_on.get("type") != "synthetic":
        raise InputError(f"{ckpt}: trained on {trained_on.get('type')!r} data, not the synthetic faces")
    if int(trained_on.get("subjects", 80)) > first:
        raise InputError(f"{ckpt}: trained on subjects 0..{trained_on['subjects'] - 1}, which overlap "
                         f"the held-out people from {first}; pass a larger --first")
    if level_codes is not None:
        editor.set_level_codes(level_codes)
    table = heldout_table(first, people, background, editor.image_size)
    ids = list(range(first, first + people))
    groups = [ids[g::people // group] for g in range(people // group)]  # spread, like max_subjects
    rows = []
    for members in groups:
        m = evaluate(editor, data=table, subjects=members, expression_judge=None, identity_judge=None,
                     oracles=oracles)
        rows.append([m[k] if m[k] is not None else float("nan") for k in KEYS])
    arr = np.asarray(rows, dtype=float)
    return {"checkpoint": ckpt, "groups": len(groups), "people": people, "background": background,
            "per_group": {k: arr[:, i].round(4).tolist() for i, k in enumerate(KEYS)},
            **{k: {"mean": float(np.nanmean(arr[:, i])), "min": float(np.nanmin(arr[:, i])),
                   "max": float(np.nanmax(arr[:, i]))} for i, k in enumerate(KEYS)}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--first", type=int, default=160, help="first held-out subject id (default 160)")
    ap.add_argument("--people", type=int, default=40, help="held-out people (default 40)")
    ap.add_argument("--group", type=int, default=8, help="people per group (default 8, as the paper)")
    ap.add_argument("--background", default="plain", choices=("plain", "random"))
    ap.add_argument("--level-codes", default=None, choices=("single", "cumulative"),
                    help="override the checkpoint's level codes (default: its own)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    if args.people % args.group:
        ap.error(f"--people {args.people} is not a multiple of --group {args.group}")
    torch.set_num_threads(args.threads)
    results = []
    print("| checkpoint | expression | identity kept | rho levels | rho --intensity | neutral |")
    print("|---|---|---|---|---|---|")
    for ckpt in args.checkpoints:
        try:
            r = score(ckpt, args.first, args.people, args.group, args.background, args.level_codes)
        except Exception as exc:  # one bad checkpoint: say which, keep going, exit non-zero
            print(f"error: {ckpt}: {exc}", file=sys.stderr)
            results.append({"checkpoint": ckpt, "error": str(exc)})
            continue
        results.append(r)
        cells = [f"{r[k]['mean']:.3f} ({r[k]['min']:.2f}-{r[k]['max']:.2f})" for k in KEYS]
        print(f"| {ckpt} | " + " | ".join(cells) + " |", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
