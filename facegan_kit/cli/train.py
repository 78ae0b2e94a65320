"""``facegan train``."""
from __future__ import annotations

import json
from pathlib import Path

import click

from facegan_kit.pm import default_registry


@click.command("train")
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe value, e.g. --set stages.0.epochs=5 --set model.controller.type=exprgan-fctrl.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder (checkpoints/, samples/, log.jsonl, losses.png). Default: runs/<recipe name>.")
@click.option("--device", default=None, help="cpu, cuda or cuda:N (default: the recipe's train.device, 'auto').")
@click.option("--max-steps", type=click.IntRange(min=1), default=None,
              help="Stop the whole run after this many steps (smoke tests); a checkpoint is written.")
@click.option("--resume", type=click.Path(path_type=Path), default=None,
              help="Continue exactly from a checkpoint file (or the newest one in a folder).")
@click.option("--dry-run", is_flag=True, help="Validate and print the resolved recipe, then exit.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train_cmd(recipe, overrides, out, device, max_steps, resume, dry_run, quiet):
    """Train the model a RECIPE describes, stage by stage.

    \b
    Examples:
      facegan train recipes/exprgan-quick.toml --out runs/quick
      facegan train recipes/exprgan.toml --set data.type=prepared --set data.root=data/oulu
      facegan train recipes/exprgan.toml --resume runs/exprgan/checkpoints

    An earlier run in the output folder is never overwritten: it moves, whole, to
    OUT/previous/<UTC time>/ (--resume continues it instead).
    """
    from facegan_kit.recipe import load_recipe, validate
    from facegan_kit.train import train

    raw = load_recipe(recipe, overrides)
    rec = validate(raw, default_registry())
    if dry_run:
        click.echo(json.dumps(rec.raw, indent=2))
        return
    out = out or Path("runs") / rec.name
    import os

    from facegan_kit.outputs import ensure_folder

    ensure_folder(out)  # a path that cannot be a folder: one line now, not a traceback later

    rank0 = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 reports
    result = train(rec, out, device=device, max_steps=max_steps, resume=resume, progress=not quiet and rank0)
    if not rank0:
        return
    speed = ", ".join(f"{k} {v:.0f} img/s" for k, v in result.images_per_second.items())
    state = "finished" if result.finished else f"stopped at step {result.global_step}"
    click.echo(f"{state} in {result.seconds:.0f}s ({speed}); checkpoint: {result.checkpoint}")
