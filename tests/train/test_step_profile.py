"""benchmarks/step_profile.py: kernels (here, CPU ops) land in the component that caused them,
backward included (matched to its forward by the autograd sequence number), and the script runs
end to end on the tiny recipe."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch
from torch import nn
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "fixtures" / "tiny.toml"


def _bench():
    spec = importlib.util.spec_from_file_location("step_profile_bench", ROOT / "benchmarks" / "step_profile.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_forward_and_backward_are_attributed_to_their_component():
    bench = _bench()
    torch.manual_seed(0)
    g, ident = nn.Linear(64, 64), nn.Sequential(*[nn.Linear(64, 64) for _ in range(6)])
    ident.requires_grad_(False)
    opt = torch.optim.Adam(g.parameters())
    x = torch.randn(256, 64)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            with record_function("G"):
                y = g(x)
            with record_function("identity"):
                z = ident(y)
            z.square().mean().backward()
            opt.step()
    parts = bench.attribute(prof.events(), cuda=False)
    assert parts["G fwd"] > 0 and parts["identity fwd"] > 0 and parts["optimiser"] > 0
    # the frozen network's backward (six layers) is its own, and bigger than G's (one layer)
    assert parts["identity bwd"] > parts["G bwd"] > 0
    assert parts["D fwd"] == parts["D bwd"] == 0


def test_step_profile_runs_on_the_tiny_recipe(tmp_path):
    md = tmp_path / "out.md"
    md.write_text("earlier table\n")
    rows = _bench().main(["--recipe", str(TINY), "--device", "cpu", "--batch", "4", "--steps", "1",
                          "--warmup", "1", "--md", str(md), "--json", str(tmp_path / "p.json")])
    (row,) = rows
    parts = row["components_ms"]
    assert all(parts[c] > 0 for c in ("G fwd", "G bwd", "D fwd", "D bwd", "optimiser")), parts
    assert row["busy_ms"] > 0 and row["step_ms"] > 0
    text = md.read_text()
    assert text.startswith("earlier table\n") and "| D bwd |" in text  # appended, not replaced
    assert json.loads((tmp_path / "p.json").read_text())[0]["stage"] == "refining"
