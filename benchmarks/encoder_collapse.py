"""Does the identity encoder collapse? Reconstruction-only training of a recipe's encoder + decoder.

The official ExprGAN/CAAE encoder (5 x conv 5x5 stride 2 up to 1024 channels, ReLU, FC 50, tanh,
weights N(0, 0.02), Adam 2e-4 / 0.5) at 128 px: within about ten Adam steps every input maps to the
same saturated corner of tanh (the batch spread of ``g`` is 0, ``|g| = 1``), its gradient is then
zero, and it stays there: every face is decoded as the same average face, the "does not keep
identity" defect of the released model. The FC layer sums 4x4x1024 = 16384 non-negative inputs
and Adam moves all its weights the same way at the same rate. Batch norm in the encoder
after each convolution keeps the codes apart but most of them saturated; a BatchNorm between the
FC layer and tanh (``model.encoder.code_norm = true``, what the recipes use) keeps them apart and
unsaturated, and the reconstruction loss falls (docs/paper-fidelity.md has the numbers).

Prints, every ``--every`` steps, the L1 reconstruction loss, the batch spread of ``g`` (mean over
its 50 dimensions of the standard deviation over the batch) and the share of saturated elements.
About 3 s a step at 128 px on 2 CPU cores.

    python benchmarks/encoder_collapse.py --set model.encoder.code_norm=false   # the official encoder
    python benchmarks/encoder_collapse.py                                       # the recipe's
    python benchmarks/encoder_collapse.py --set model.encoder.batch_norm=true --set model.encoder.code_norm=false
    python benchmarks/encoder_collapse.py --image-size 64 --steps 120 --set model.encoder.code_norm=false
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from facegan_kit.data.base import to_float
from facegan_kit.pm import default_registry
from facegan_kit.recipe import build_dataset, build_model, load_recipe, validate

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default=str(ROOT / "recipes" / "exprgan.toml"))
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=41)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    registry = default_registry()
    recipe = validate(load_recipe(args.recipe, [f"model.image_size={args.image_size}", *args.overrides]), registry)
    models = build_model(recipe, registry)
    split = build_dataset(recipe, registry).train
    enc, dec, ctrl = models["encoder"], models["decoder"], models["controller"]
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=args.lr, betas=(0.5, 0.999))
    gen = torch.Generator().manual_seed(0)
    rows, t0 = [], time.perf_counter()
    for step in range(args.steps):
        idx = torch.randint(0, len(split), (args.batch,), generator=gen)
        x = to_float(split.images[idx])
        g = enc(x)
        x_hat = dec(g, ctrl(F.one_hot(split.expression[idx], ctrl.num_classes).float(), generator=gen))
        loss = (x_hat - x).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % args.every == 0:
            row = {"step": step, "l1": round(loss.item(), 4), "g_batch_std": round(g.std(0).mean().item(), 4),
                   "g_saturated": round((g.abs() > 0.999).float().mean().item(), 3),
                   "seconds": round(time.perf_counter() - t0, 1)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


if __name__ == "__main__":
    main()
