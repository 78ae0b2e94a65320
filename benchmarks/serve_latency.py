"""Benchmark: the cost of one slider step in ``facegan serve`` (decode + PNG encode).

What repeats while the intensity slider moves is only: build the expression code,
decode ``(identity code, expression code)`` to an aligned face, PNG-encode it. This
times exactly that path (:meth:`EditService.edit_png` on a stored session), and the
whole HTTP round trip of ``GET /api/edit`` on a local server.

Model: ``--checkpoint`` (a trained model), else the architecture of ``--recipe`` with
random weights (the cost does not depend on the weights). The default recipe is the
test suite's tiny 16x16 model; ``--recipe recipes/exprgan-quick.toml`` gives the
quick recipe's real size.

Run: ``python benchmarks/serve_latency.py [--checkpoint CKPT | --recipe RECIPE] [--repeats 50]``
"""
from __future__ import annotations

import argparse
import http.client
import statistics
import threading
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "fixtures" / "tiny.toml"


def build_editor(checkpoint: str | None, recipe: str | None):
    """The Editor to time: a checkpoint, or a recipe's architecture with seeded random weights."""
    from facegan_kit.edit import Editor
    from facegan_kit.pm import default_registry
    from facegan_kit.recipe import build_model, load_recipe, validate

    if checkpoint:
        return Editor.from_checkpoint(checkpoint), f"checkpoint {checkpoint}"
    path = Path(recipe) if recipe else TINY
    rec = validate(load_recipe(path), default_registry())
    torch.manual_seed(0)
    models = build_model(rec, default_registry()).eval()
    for p in models.parameters():
        p.requires_grad_(False)
    return Editor(models=models, recipe=rec, device=torch.device("cpu"), meta={}), f"recipe {path.name} (random weights)"


def timed(fn, repeats: int, warmup: int = 5) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def summary(ms: list[float]) -> str:
    q = np.percentile(ms, [50, 90])
    return f"median {q[0]:.2f} ms, p90 {q[1]:.2f} ms, min {min(ms):.2f} ms (n={len(ms)})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="a trained checkpoint (its real size)")
    ap.add_argument("--recipe", default=None, help="time this recipe's architecture (default: the tiny test model)")
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from facegan_kit.data.synthetic import render_face, subject_attributes
    from facegan_kit.serve.app import EditService, FaceganHTTPServer, ServeLimits

    editor, what = build_editor(args.checkpoint, args.recipe)
    service = EditService(editor, ServeLimits())
    s = editor.image_size
    face = render_face(subject_attributes(3), 6, 0.0, 128, None, 3)
    t0 = time.perf_counter()
    token = service._new_session(face, 128, 128, True).token
    encode_ms = (time.perf_counter() - t0) * 1000.0

    intensities = iter(np.tile(np.linspace(0, 1, 101), 1000))
    edit = lambda: service.edit_png(token, "happy", float(next(intensities)))  # noqa: E731
    core = timed(edit, args.repeats)
    decode_only = timed(lambda: editor.decode(service.sessions.get(token).code,
                                              editor.code("happy", intensity=float(next(intensities)))), args.repeats)

    server = FaceganHTTPServer(("127.0.0.1", 0), service, quiet=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=30)  # keep-alive, like the page

    def http_edit():
        conn.request("GET", f"/api/edit?token={token}&expression=happy&intensity={float(next(intensities)):.3f}")
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200 and body[:4] == b"\x89PNG", body[:200]

    http_ms = timed(http_edit, args.repeats)
    conn.close()
    server.shutdown()
    server.server_close()

    print(f"model: {what}, {s}x{s}, torch threads {torch.get_num_threads()}")
    print(f"upload-time encode (once per face): {encode_ms:.1f} ms")
    print(f"decode only:               {summary(decode_only)}")
    print(f"edit (decode + PNG):       {summary(core)}")
    print(f"HTTP GET /api/edit (local): {summary(http_ms)}")
    print(f"=> one slider step: {statistics.median(core):.2f} ms at {s}x{s}")


if __name__ == "__main__":
    main()
