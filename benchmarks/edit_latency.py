"""Benchmark: edit latency of the ExprGAN and CAAE decoders (untrained weights, same sizes).

Builds the models of ``recipes/<name>.toml`` (or ``-quick`` with ``--quick``) without training
and times :meth:`Editor.edit` (encode + one expression code + decode) at batch sizes 1 and
``--batch``, reporting the median over ``--repeats`` calls after a warm-up. Latency does not
depend on the weights' values, so no checkpoint is needed.

Run: ``python benchmarks/edit_latency.py [--quick] [--recipes exprgan,caae] [--threads 1]``
"""
from __future__ import annotations

import argparse

import torch

from facegan_kit.bench import edit_latency_ms, recipe_path
from facegan_kit.edit import Editor
from facegan_kit.pm import default_registry
from facegan_kit.recipe import build_model, load_recipe, validate


def untrained_editor(name: str, quick: bool, device: str) -> Editor:
    recipe = validate(load_recipe(recipe_path(name, quick)), default_registry())
    models = build_model(recipe, default_registry()).to(device).eval()
    for p in models.parameters():
        p.requires_grad_(False)
    return Editor(models=models, recipe=recipe, device=torch.device(device), meta={})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", default="exprgan,caae")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'recipe':<16} {'size':>5} {'batch 1 (ms)':>13} {f'batch {args.batch} (ms/img)':>20}")
    for name in args.recipes.split(","):
        ed = untrained_editor(name.strip(), args.quick, args.device)
        s = ed.image_size
        one = edit_latency_ms(ed, torch.rand(1, 3, s, s) * 2 - 1, repeats=args.repeats)
        many = edit_latency_ms(ed, torch.rand(args.batch, 3, s, s) * 2 - 1, repeats=args.repeats) / args.batch
        print(f"{name:<16} {s:>5} {one:>13.2f} {many:>20.2f}")


if __name__ == "__main__":
    main()
