"""facegan bench: two quick recipes, a tiny step budget, the documented report structure."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from facegan_kit.bench import budget_stages, parse_checkpoints, recipe_path
from facegan_kit.errors import InputError

torch.set_num_threads(1)
SMALL_DATA = ["--set", "data.subjects=8", "--set", "data.test_subjects=2", "--set", "data.frames=1"]


def _check_report(out, names):
    report = json.loads((out / "report.json").read_text())
    assert set(report["recipes"]) == set(names)
    assert {"type", "name", "torch", "threads"} <= set(report["device"])
    for name in names:
        entry = report["recipes"][name]
        q, s = entry["quality"], entry["speed"]
        for key in ("expression_accuracy", "identity_distance_median", "recon_l1", "recon_psnr", "recon_ssim",
                    "intensity_rho_continuous", "neutral_rate", "fer_feature_frechet"):
            assert key in q, key
        assert 0 <= q["recon_l1"] <= 1
        assert s["train_steps"] >= 1 and s["train_seconds"] > 0
        assert s["train_images_per_second"] and all(v > 0 for v in s["train_images_per_second"].values())
        assert s["edit_latency_ms"] > 0 and s["peak_memory_mib"] > 0
    assert set(report["recipes"]["exprgan"]["speed"]["train_images_per_second"]) == {
        "controller", "reconstruction", "refining"}
    md = (out / "report.md").read_text()
    for name in names:
        assert sum(line.startswith(f"| {name} |") for line in md.splitlines()) == 2  # quality + speed rows
    for png in ("metrics.png", "losses.png", "edits.png"):
        assert (out / png).stat().st_size > 1000, png
    return report


def test_bench_quick_in_process(tmp_path):
    from facegan_kit.cli.evaluate import bench_cmd

    out = tmp_path / "bench"
    args = ["--recipes", "exprgan,caae", "--quick", "--max-steps", "3", "--batch-size", "4", "--max-faces", "2",
            "--identity-faces", "1", "--no-oracles", "--no-isolate", "--threads", "1", "--latency-repeats", "2",
            *SMALL_DATA, "--set", "train.sample_every=0", "--out", str(out)]
    result = CliRunner().invoke(bench_cmd, args)
    assert result.exit_code == 0, result.output
    report = _check_report(out, ["exprgan", "caae"])
    assert report["quick"] is True and report["max_steps"] == 3 and report["checkpoints"] == {}
    assert "- trained here: exprgan, caae; quick: True; step budget: 3" in (out / "report.md").read_text()
    assert report["recipes"]["exprgan"]["speed"]["train_steps"] == 3  # one step per stage
    assert "| exprgan |" in result.output


@pytest.mark.slow
def test_bench_quick_isolated_with_oracles(tmp_path):
    from facegan_kit.cli.evaluate import bench_cmd

    out = tmp_path / "bench"
    args = ["--quick", "--max-steps", "12", "--max-faces", "6", "--identity-faces", "2", "--threads", "1",
            *SMALL_DATA, "--out", str(out)]
    result = CliRunner().invoke(bench_cmd, args)
    assert result.exit_code == 0, result.output
    report = _check_report(out, ["exprgan", "caae"])
    assert report["recipes"]["caae"]["quality"]["oracle_expression_accuracy"] is not None


def test_bench_takes_checkpoints(tmp_path, tiny_checkpoint):
    from facegan_kit.bench import bench

    report = bench([], tmp_path, checkpoints={"tiny": str(tiny_checkpoint)}, max_faces=2, identity_faces=1,
                   oracles=None, isolate=False, latency_repeats=2, num_threads=1)
    speed = report["recipes"]["tiny"]["speed"]
    assert speed["train_images_per_second"] is None and speed["edit_latency_ms"] > 0
    assert (tmp_path / "report.md").is_file() and (tmp_path / "losses.png").is_file()
    assert report["checkpoints"] == {"tiny": str(Path(tiny_checkpoint).resolve())}
    md = (tmp_path / "report.md").read_text()
    assert f"- checkpoints given (not trained here): tiny = {Path(tiny_checkpoint).resolve()}" in md
    assert "trained here" not in md.replace("not trained here", "")  # no quick / step-budget line for a recipe not trained


def test_budget_spreads_steps_over_stages():
    from facegan_kit.recipe import load_recipe

    raw = load_recipe(recipe_path("exprgan", quick=True), ["data.subjects=8", "data.test_subjects=2",
                                                           "data.frames=1"])
    full = [s["steps"] for s in budget_stages(raw, 10**9)["stages"]]  # a budget above the recipe: unchanged
    budget = sum(full) // 2
    budgeted = budget_stages(raw, budget)
    steps = [s["steps"] for s in budgeted["stages"]]
    assert all("epochs" not in s for s in budgeted["stages"])
    assert all(v >= 1 for v in steps) and abs(sum(steps) - budget) <= 2
    for a, b, fa, fb in zip(steps, steps[1:], full, full[1:]):  # proportions kept
        assert (a - b) * (fa - fb) >= 0
    assert [s["steps"] for s in budget_stages(raw, 1)["stages"]] == [1, 1, 1]


def test_small_helpers():
    assert recipe_path("caae", quick=True).name == "caae-quick.toml"
    assert recipe_path("caae").name == "caae.toml"
    with pytest.raises(InputError):
        recipe_path("no-such-recipe")
    assert parse_checkpoints("a=x.safetensors, b=y") == {"a": "x.safetensors", "b": "y"}
    with pytest.raises(InputError):
        parse_checkpoints("a")


def test_bench_options_and_keywords_are_one_set_of_fields(tmp_path):
    """``bench(..., quick=True)`` and ``bench(..., BenchOptions(quick=True))`` mean the same;
    keywords override the options' fields and a misspelt one is an error, not ignored."""
    from dataclasses import fields, replace

    from facegan_kit.bench import BenchOptions, _recipe_specs, bench

    opts = BenchOptions(quick=True, max_steps=5, identity_faces=2)
    assert replace(opts, max_steps=7).max_steps == 7 and opts.max_steps == 5
    specs = _recipe_specs(["caae"], tmp_path, opts)
    assert specs["caae"]["recipe_path"].endswith("caae-quick.toml") and specs["caae"]["max_steps"] == 5
    assert specs["caae"]["identity_faces"] == 2
    assert {f.name for f in fields(BenchOptions)} >= {"data", "checkpoints", "isolate", "oracles", "progress"}
    with pytest.raises(TypeError, match="max_step"):
        bench(["caae"], tmp_path, max_step=3)
    with pytest.raises(InputError, match="no recipes"):
        bench([], tmp_path, BenchOptions(), checkpoints={})
