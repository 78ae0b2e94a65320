"""Render speed of the synthetic faces on one core (images/s), per size.

    python benchmarks/synthetic_speed.py [--n 400] [--sizes 32 64 128]

Reports wall-clock and CPU-time rates (CPU time is the fairer number on a
shared machine). The requirement is >= 200 images/s at 128x128 on one core.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from facegan_kit.data.synthetic import render_face, subject_attributes


def bench(size: int, n: int) -> tuple[float, float]:
    attrs = [subject_attributes(s) for s in range(16)]
    for i in range(10):  # warm-up (imports, grid cache)
        render_face(attrs[i % 16], i % 7, 0.8, size, i, i % 16)
    w0, c0 = time.perf_counter(), time.process_time()
    for i in range(n):
        render_face(attrs[i % 16], i % 7, 0.5 + 0.5 * ((i * 37) % 100) / 100, size, i, i % 16)
    w1, c1 = time.perf_counter(), time.process_time()
    return n / (w1 - w0), n / max(c1 - c0, 1e-9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128])
    args = ap.parse_args()
    torch.set_num_threads(1)
    np.seterr(all="ignore")
    for size in args.sizes:
        wall, cpu = bench(size, args.n)
        print(f"size {size:4d}: {wall:7.1f} img/s wall, {cpu:7.1f} img/s CPU-time (1 core, n={args.n})")


if __name__ == "__main__":
    main()
