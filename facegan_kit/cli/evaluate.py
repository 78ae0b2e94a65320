"""``facegan eval`` and ``facegan bench``: thin commands over :mod:`facegan_kit.eval.suite` and
:mod:`facegan_kit.bench`."""
from __future__ import annotations

from pathlib import Path

import click

from facegan_kit.cli import overwrite_option

DATA_HELP = "'synthetic' or a folder written by 'facegan data prepare'. Default: the recipe's own data."


def _data_folder(data) -> list:
    """``--data`` as an input an overwritten output folder must not hold (none for 'synthetic')."""
    return [] if data in (None, "synthetic") else [Path(data)]


@click.command("eval")
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path, exists=True))
@click.option("--data", default=None, metavar="synthetic|DIR", help=DATA_HELP)
@click.option("--split", type=click.Choice(["test", "train"]), default="test", show_default=True,
              help="Which subjects to evaluate on (test: never seen in training).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (metrics.json, report.md, PNGs). Default: <checkpoint folder>/eval-<name>.")
@click.option("--max-faces", type=click.IntRange(min=1), default=None,
              help="Evaluate at most N faces of the split (evenly spread). Default: all.")
@click.option("--max-subjects", type=click.IntRange(min=1), default=None,
              help="Keep only N subjects of the split (evenly spread), e.g. '--split train --max-subjects 8' "
                   "to compare with the 8 test subjects. Default: all.")
@click.option("--identity-faces", type=click.IntRange(min=0), default=32, show_default=True,
              help="Faces (with their six edits) given to the dlib identity judge, which is slow on a CPU; "
                   "0 = all.")
@click.option("--device", default="cpu", show_default=True, help="Where the model runs (judges use the CPU).")
@click.option("--no-oracles", is_flag=True, help="Skip the synthetic ground-truth oracles.")
@overwrite_option
def eval_cmd(checkpoint, data, split, out, max_faces, max_subjects, identity_faces, device, no_oracles, overwrite):
    """Judge a trained model's edits with independent networks.

    Every face of the split is edited to each expression at full intensity. The FER2013
    classifier judges the expression, dlib's face-recognition network the identity; on the
    synthetic faces, ground-truth oracles report beside them.

    \b
    Examples:
      facegan eval runs/quick/final.safetensors
      facegan eval runs/exprgan/final.safetensors --data data/oulu --out runs/exprgan/eval

    The output folder must be new or empty (--overwrite replaces it whole).
    """
    from facegan_kit.eval.metrics import REAL_KEYS
    from facegan_kit.eval.report import fmt
    from facegan_kit.eval.suite import evaluate
    from facegan_kit.outputs import claim_folder

    out = out or checkpoint.parent / f"eval-{checkpoint.stem}"
    with claim_folder(out, overwrite, inputs=[checkpoint, *_data_folder(data)]):
        m = evaluate(checkpoint, data=data, split=split, max_faces=max_faces, max_subjects=max_subjects,
                     out=out, device=device,
                     identity_faces=identity_faces or None, oracles=None if no_oracles else "auto")
    click.echo(f"{m['recipe']}: {m['faces']} faces of {m['subjects']} subjects of {m['data']} ({m['split']}) "
               f"in {m['seconds']:.0f}s")
    for key in ("expression_accuracy", "identity_distance_median", "identity_rate_under_0.6", "recon_l1",
                "recon_psnr", "recon_ssim", "intensity_rho_levels", "intensity_rho_continuous", "neutral_rate",
                "fer_feature_frechet", "oracle_expression_accuracy", "oracle_identity_kept_rate",
                "oracle_recon_identity_kept_rate", "oracle_identity_match_rate", "oracle_intensity_rho_levels",
                "oracle_intensity_rho_continuous", "oracle_neutral_rate"):
        click.echo(f"  {key:<40} {fmt(m.get(key))}")
    for key in REAL_KEYS:  # real photos: the judges' ceilings and the edits of neutral photos
        if m.get(key) is not None:
            click.echo(f"  {key:<40} {fmt(m[key])}")
    for name, values in m.get("plugin_metrics", {}).items():  # registered `metric` components
        for key, v in values.items():
            click.echo(f"  {name + ': ' + key:<40} {fmt(v)}")
    for note in m["notes"]:
        click.echo(f"note: {note}", err=True)
    click.echo(f"wrote {out / 'report.md'}")


@click.command("bench")
@click.option("--recipes", default="exprgan,caae", show_default=True,
              help="Comma-separated recipe names (recipes/<name>.toml) or .toml paths.")
@click.option("--data", default=None, metavar="synthetic|DIR", help=DATA_HELP + " The same for every recipe.")
@click.option("--quick", is_flag=True, help="Use recipes/<name>-quick.toml (32x32 synthetic faces, CPU).")
@click.option("--checkpoints", default=None, metavar="NAME=PATH,...",
              help="Evaluate these checkpoints instead of training those recipes.")
@click.option("--max-steps", type=click.IntRange(min=1), default=None,
              help="Training-step budget per recipe, spread over its stages (at least 1 each).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override applied to every recipe.")
@click.option("--split", type=click.Choice(["test", "train"]), default="test", show_default=True)
@click.option("--max-faces", type=click.IntRange(min=1), default=None, help="Faces evaluated per recipe.")
@click.option("--identity-faces", type=click.IntRange(min=0), default=16, show_default=True,
              help="Faces given to the dlib identity judge; 0 = all.")
@click.option("--device", default=None, help="cpu or cuda (default: CUDA when available).")
@click.option("--isolate/--no-isolate", default=True, show_default=True,
              help="Run each recipe in its own process (so peak memory is its own).")
@click.option("--no-oracles", is_flag=True, help="Skip the synthetic ground-truth oracles.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Batch size of every stage of every trained recipe (smoke tests).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads (default: torch's; on a busy machine 1 is often fastest).")
@click.option("--latency-repeats", type=click.IntRange(min=1), default=20, show_default=True,
              help="Timed Editor.edit calls (batch of one) per recipe; the median is reported.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output folder.")
@click.option("--progress", is_flag=True, help="Show training progress bars.")
@overwrite_option
def bench_cmd(recipes, data, quick, checkpoints, max_steps, overrides, split, max_faces, identity_faces, device,
              isolate, no_oracles, batch_size, threads, latency_repeats, out, progress, overwrite):
    """Train (or take checkpoints of) several recipes on the same data; compare quality and speed.

    Writes OUT/report.json, OUT/report.md (side-by-side tables), OUT/metrics.png,
    OUT/losses.png and OUT/edits.png (the same faces edited by each recipe). OUT must be new
    or empty (--overwrite replaces it whole).

    \b
    Examples:
      facegan bench --quick --max-steps 200 --out runs/bench
      facegan bench --checkpoints exprgan=runs/exprgan/final.safetensors,caae=runs/caae/final.safetensors \\
          --recipes "" --out runs/bench-full
    """
    from facegan_kit.bench import BenchOptions, bench, parse_checkpoints
    from facegan_kit.outputs import claim_folder

    names = [r.strip() for r in recipes.split(",") if r.strip()]
    ckpts = parse_checkpoints(checkpoints)
    options = BenchOptions(data=data, quick=quick, checkpoints=ckpts, max_steps=max_steps, overrides=overrides,
                           split=split, max_faces=max_faces, identity_faces=identity_faces or None, device=device,
                           isolate=isolate, oracles=None if no_oracles else "auto", batch_size=batch_size,
                           num_threads=threads, latency_repeats=latency_repeats, progress=progress)
    with claim_folder(out, overwrite, inputs=[*map(Path, ckpts.values()), *_data_folder(data)]):
        report = bench(names, out, options, log=lambda msg: click.echo(msg, err=True))
    click.echo((out / "report.md").read_text().split("## Notes")[0].split("## Plots")[0].rstrip())
    click.echo(f"\nwrote {out / 'report.json'} ({report['seconds']:.0f}s)")
