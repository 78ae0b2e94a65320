"""Benchmark: decoding N prepared PNG crops vs loading the safetensors store.

Generates ``--count`` (default 1296, the paper's Oulu-CASIA training-set size)
synthetic 128x128 crops (smooth colour fields plus noise, so PNG compression is
realistic) into a temporary prepared folder with an ``index.csv``, then times:

* ``decode``: reading every PNG with :func:`facegan_kit.data.io.read_image` and
  stacking into a uint8 ``(N, 3, S, S)`` tensor (what an epoch costs without a store);
* ``store``: :func:`facegan_kit.data.store.load_store` on an already built store.

Run: ``python benchmarks/data_loading.py [--count 1296] [--size 128] [--repeats 3]``
"""
from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from facegan_kit.data.io import read_image, write_png_atomic
from facegan_kit.data.prepare import INDEX_COLUMNS
from facegan_kit.data.store import build_store, load_store


def make_prepared(root: Path, count: int, size: int, seed: int = 0) -> None:
    """Write ``count`` synthetic crops and an index.csv under ``root``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    rows = []
    for i in range(count):
        a, b, c = rng.uniform(0, 6, 3)
        base = np.stack([np.sin(a * xx + b * yy + k) for k in (0.0, c, 2 * c)], axis=-1)
        img = (base * 90 + 128 + rng.normal(0, 6, base.shape)).clip(0, 255).astype(np.uint8)
        rel = f"images/S{i // 18:03d}/img_{i:05d}.png"
        write_png_atomic(root / rel, img)
        rows.append({"path": rel, "subject": f"S{i // 18:03d}", "expression": i % 6,
                     "expression_name": "x", "source": rel, "landmarks": "", "score": "1",
                     "split": "train"})
    with open(root / "index.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(INDEX_COLUMNS), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def decode_all(root: Path) -> torch.Tensor:
    """Decode every crop listed in index.csv (the no-store baseline)."""
    with open(root / "index.csv", newline="") as fh:
        paths = [r["path"] for r in csv.DictReader(fh)]
    return torch.stack([torch.from_numpy(read_image(root / p)).permute(2, 0, 1) for p in paths])


def main() -> None:
    """Parse arguments, run both timings, print them and their ratio."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1296)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        make_prepared(root, args.count, args.size)
        print(f"generated {args.count} PNGs {args.size}x{args.size} in "
              f"{time.perf_counter() - t:.2f} s")
        t = time.perf_counter()
        build_store(root)
        print(f"built store in {time.perf_counter() - t:.2f} s")
        decode_t, store_t = [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            a = decode_all(root)
            decode_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            b = load_store(root)["images"]
            store_t.append(time.perf_counter() - t)
        assert torch.equal(a, b), "store differs from decoded PNGs"
        d, s = min(decode_t), min(store_t)
        print(f"decode {args.count} PNGs: {d * 1000:.1f} ms (best of {args.repeats})")
        print(f"load store ({args.count} images, incl. staleness check): {s * 1000:.1f} ms")
        print(f"ratio decode/store: {d / s:.1f}x")


if __name__ == "__main__":
    main()
