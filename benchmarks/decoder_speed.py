"""Decoder forward + backward: the shipped ``exprgan-decoder`` vs the official layer order, side by side.

The official generator concatenates the expression code as constant maps, upsamples the whole
stack with ``F.interpolate`` and convolves it. ``exprgan-decoder`` computes the same function
(``tests/plugins/test_blocks.py``) while upsampling only the features (``upsample2x``) and
adding the code's response instead of convolving constant maps (``conv_with_code``). Both run
with the same weights on the same batches, alternating, in NCHW and channels-last layouts.

    python benchmarks/decoder_speed.py --threads 2                                  # quick recipe, batch 48
    python benchmarks/decoder_speed.py --recipe recipes/exprgan.toml --batch 48 --device cuda
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from facegan_kit.pm import default_registry
from facegan_kit.recipe import build_model, load_recipe, validate
from facegan_plugins.common.blocks import concat_maps

ROOT = Path(__file__).resolve().parent.parent


def official(dec, g: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """The official order: code maps concatenated, then upsampled with the features, then convolved."""
    h = dec.fc(torch.cat([g, c.repeat(1, dec.tile)], dim=1))
    h = F.relu(h.view(-1, dec.fc_channels, dec.start, dec.start))
    if dec.out.weight.is_contiguous(memory_format=torch.channels_last):
        h = h.contiguous(memory_format=torch.channels_last)
    for layer, norm in zip(dec.ups, dec.up_norms):
        h = F.relu(norm(layer(F.interpolate(concat_maps(h, c), scale_factor=2, mode="nearest"))))
    for layer, norm in zip(dec.extra, dec.extra_norms):
        h = F.relu(norm(layer(h)))
    return torch.tanh(dec.out(h))


def timed(fn, dec, g, c, steps: int, dev: torch.device) -> float:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    for _ in range(steps):
        fn(dec, g, c).abs().mean().backward()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return (time.perf_counter() - t0) / steps


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default=str(ROOT / "recipes" / "exprgan-quick.toml"))
    ap.add_argument("--batch", type=int, default=48)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default).")
    ap.add_argument("--steps", type=int, default=10, help="Timed steps per round.")
    ap.add_argument("--repeats", type=int, default=3, help="Rounds per variant, alternating (best counts).")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    registry = default_registry()
    recipe = validate(load_recipe(args.recipe, []), registry)
    rows = []
    for layout, fmt in [("NCHW", torch.contiguous_format), ("channels-last", torch.channels_last)]:
        torch.manual_seed(0)
        dec = build_model(recipe, registry)["decoder"].to(dev).to(memory_format=fmt).train()
        g = torch.randn(args.batch, dec.z_dim, device=dev)
        c = torch.randn(args.batch, dec.code_dim, device=dev)
        variants = {"official order": official, "exprgan-decoder": lambda d, g, c: d(g, c)}
        best = {name: float("inf") for name in variants}
        for name, fn in variants.items():  # warm-up
            timed(fn, dec, g, c, 2, dev)
        for _ in range(args.repeats):
            for name, fn in variants.items():
                best[name] = min(best[name], timed(fn, dec, g, c, args.steps, dev))
        rows.append({"layout": layout, **{k: 1000 * v for k, v in best.items()}})
    print(f"Device: {dev} ({torch.get_num_threads()} threads); torch {torch.__version__}; {Path(args.recipe).name}, "
          f"batch {args.batch}; ms per forward + backward, best of {args.repeats} alternating rounds of {args.steps}.\n")
    print("| layout | official order | exprgan-decoder | speed-up |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['layout']} | {r['official order']:.1f} | {r['exprgan-decoder']:.1f} | "
              f"{r['official order'] / r['exprgan-decoder']:.2f}x |")
    return rows


if __name__ == "__main__":
    main()
