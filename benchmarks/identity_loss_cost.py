"""Per-image cost of a multi-layer identity loss on dlib-resnet features (forward + backward).

Simulates one generator step's identity term: the generated batch ``x_hat`` (requires grad)
and the real batch ``x`` go through the frozen backbone, the loss is the sum over layers of the
mean L1 feature distance, and it backpropagates into ``x_hat``. The real batch's features are
computed without grad (as a training loop would). Prints ms/image and one JSON line.

    python benchmarks/identity_loss_cost.py                # 128x128, batch 8, CPU
    python benchmarks/identity_loss_cost.py --input-size 128 --threads 2
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import torch


def identity_l1(feats_a: list[torch.Tensor], feats_b: list[torch.Tensor]) -> torch.Tensor:
    return sum((a - b).abs().mean() for a, b in zip(feats_a, feats_b))


def measure(net, batch: int, size: int, iters: int, warmup: int, device: str) -> dict:
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(batch, 3, size, size, generator=g) * 2 - 1).to(device)
    x_hat = (torch.rand(batch, 3, size, size, generator=g) * 2 - 1).to(device).requires_grad_(True)
    times = []
    for i in range(warmup + iters):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.no_grad():
            target = net.features(x)
        loss = identity_l1(net.features(x_hat), target)
        loss.backward()
        x_hat.grad = None
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    med = times[len(times) // 2]
    return {"median_s_per_batch": med, "min_s_per_batch": times[0],
            "ms_per_image": 1000 * med / batch, "ms_per_image_min": 1000 * times[0] / batch,
            "iters": iters}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=128, help="side of the generator's images")
    ap.add_argument("--input-size", type=int, default=None,
                    help="backbone input side (default: dlib's 150; images are resized to it)")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from facegan_plugins.identity.dlib_resnet import DlibResNet

    t0 = time.perf_counter()
    net = DlibResNet(input_size=args.input_size).to(args.device)
    load_s = time.perf_counter() - t0
    res = measure(net, args.batch, args.size, args.iters, args.warmup, args.device)
    res.update(backbone="dlib-resnet", device=args.device, batch=args.batch, image_size=args.size,
               backbone_input=net.input_size, threads=torch.get_num_threads(),
               load_s=round(load_s, 3), torch=torch.__version__, machine=platform.machine())
    print(f"dlib-resnet identity features fwd+bwd: {res['ms_per_image']:.1f} ms/image median, "
          f"{res['ms_per_image_min']:.1f} min "
          f"(batch {args.batch}, {args.size}px -> {net.input_size}px, {args.device}, "
          f"{res['threads']} threads)")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
