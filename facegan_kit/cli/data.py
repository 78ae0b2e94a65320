"""``facegan data synthetic | prepare``: make a dataset folder (aligned crops + index.csv)."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from facegan_kit.cli import overwrite_option


@click.group("data")
def data_group():
    """Make training data: the embedded synthetic faces, or a prepared real-face dataset.

    \b
    Examples:
      facegan data synthetic --out data/synthetic --subjects 80
      facegan data prepare ~/datasets/Oulu-CASIA data/oulu --layout oulu-casia
    """


@data_group.command("synthetic")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output folder.")
@click.option("--subjects", type=click.IntRange(min=1), default=80, show_default=True)
@click.option("--size", type=click.IntRange(min=16), default=128, show_default=True, help="Image side in pixels.")
@click.option("--frames", type=click.IntRange(min=1), default=3, show_default=True,
              help="Frames per subject and expression (near peak intensity).")
@click.option("--test-subjects", type=click.IntRange(min=0), default=None,
              help="Subjects held out for the test split (default: 10%, at least 1).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--background", type=click.Choice(["random", "plain"]), default="random", show_default=True,
              help="random: a muted colour gradient per image; plain: one lab grey (like Oulu-CASIA).")
@click.option("--neutral-frames", type=click.IntRange(min=0), default=0, show_default=True,
              help="Neutral faces per subject (label 6; the quick recipes use 6). 0: none, as the paper.")
@overwrite_option
def synthetic_cmd(out, subjects, size, frames, test_subjects, seed, background, neutral_frames, overwrite):
    """Write the procedural synthetic faces: PNGs, index.csv and contact_sheet.png.

    \b
    Example:
      facegan data synthetic --out data/synthetic --subjects 20 --size 64

    Like the paper's Oulu-CASIA protocol: per subject 6 expressions x FRAMES frames (and
    NEUTRAL_FRAMES neutral faces, none by default), split by subject. index.csv columns: path, subject, expression,
    expression_name, intensity, split and the identity attributes. OUT must be new or empty
    (--overwrite replaces it whole).
    """
    from facegan_kit.data.synthetic import SyntheticConfig, write_dataset
    from facegan_kit.outputs import claim_folder

    cfg = SyntheticConfig(subjects=subjects, size=size, frames=frames, seed=seed, test_subjects=test_subjects,
                          background=background, include_neutral=neutral_frames > 0,
                          neutral_frames=neutral_frames or None)
    cfg.validate()
    with claim_folder(out, overwrite):
        root = write_dataset(out, cfg)
    per_subject = 6 * frames + neutral_frames
    n = subjects * per_subject
    n_test_subj = cfg.n_test()
    n_test = n_test_subj * per_subject
    click.echo(f"wrote {n} faces ({size}x{size}) of {subjects} subjects to {root}: "
               f"{n - n_test} train / {n_test} test ({subjects - n_test_subj} / {n_test_subj} subjects)")
    click.echo(f"index: {Path(root) / 'index.csv'}")
    click.echo(f"contact sheet: {Path(root) / 'contact_sheet.png'}")


@data_group.command("prepare")
@click.argument("src", type=click.Path(exists=True, path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--layout", type=click.Choice(["oulu-casia", "ckplus", "jaffe", "folder", "regex", "csv"]),
              required=True, help="How SRC is organised (see facegan_kit.data.layouts).")
@click.option("--pattern", default=None, metavar="REGEX",
              help="regex layout: a regular expression with (?P<subject>...) and (?P<expression>...) "
                   "groups, matched against each file's path under SRC without its suffix.")
@click.option("--map", "codes", default=None, metavar="CODE=EXPR,...",
              help="regex layout: what the expression codes mean, e.g. 'b=happy,c=sad'; '=neutral' "
                   "maps an empty code. Without it the code must be a name (happy, HA) or 0..6.")
@click.option("--size", type=click.IntRange(min=16), default=128, show_default=True, help="Crop side in pixels.")
@click.option("--frames", type=click.Choice(["last3", "peak", "all"]), default="last3", show_default=True,
              help="Which frames of each sequence (the paper: the last three).")
@click.option("--test-ratio", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.1, show_default=True,
              help="Fraction of subjects in the test split.")
@click.option("--seed", type=int, default=0, show_default=True, help="Split seed.")
@click.option("--no-align", is_flag=True, help="Centre-crop and resize instead of detecting and aligning.")
@click.option("--policy", type=click.Choice(["single", "largest"]), default="single", show_default=True,
              help="Photos with several faces: skip them (single) or keep the largest face.")
@click.option("--include-neutral", is_flag=True, help="Keep images labelled neutral (label 6).")
@click.option("--neutral-first", is_flag=True,
              help="oulu-casia, ckplus: add each sequence's first frame as a neutral face (the recipes "
                   "train the neutral code on them).")
@click.option("--device", default="cpu", show_default=True, help="Device for the face detector.")
@overwrite_option
def prepare_cmd(src, out, layout, pattern, codes, size, frames, test_ratio, seed, no_align, policy,
                include_neutral, neutral_first, device, overwrite):
    """Detect, align and index a real-face dataset from SRC into OUT.

    \b
    Examples:
      facegan data prepare ~/datasets/Oulu-CASIA/VL data/oulu --layout oulu-casia --neutral-first
      facegan data prepare photos/ data/mine --layout folder --frames all --size 64
      facegan data prepare Taiwanese/faces_256x256 data/tw --layout regex --include-neutral \\
        --pattern '(?P<subject>\\d\\d)\\d\\d(?P<expression>[a-g]?)\\d+' \\
        --map 'a=neutral,=neutral,b=happy,c=sad,d=angry,e=disgust,f=fear,g=surprise'

    OUT gets images/<subject>/*.png, index.csv (path, subject, expression, ..., split) and
    report.txt/report.json listing every skipped file with its reason. One bad file never
    stops the run; the exit status is non-zero only when nothing could be prepared. OUT must
    be new or empty (--overwrite replaces it whole, never mixing two prepared sets).
    """
    from facegan_kit.apps import check_outputs
    from facegan_kit.data.prepare import PrepareOptions, prepare, prepare_cli_summary
    from facegan_kit.outputs import claim_folder

    check_outputs([out], [src])
    claim = claim_folder(out, overwrite, inputs=[src])

    def progress(done, total):
        if total and (done == total or done % 50 == 0):
            click.echo(f"  {done}/{total}", err=True)

    with claim:
        options = PrepareOptions(size=size, frames=frames, test_ratio=test_ratio, seed=seed, align=not no_align,
                                 policy=policy, include_neutral=include_neutral, neutral_first=neutral_first,
                                 device=device, pattern=pattern, codes=codes)
        rep = prepare(src, out, layout, options, progress=progress)
    click.echo(prepare_cli_summary(rep))
    if rep.n_written == 0:
        click.echo(f"facegan: error: nothing could be prepared from {src} (see {out / 'report.txt'})", err=True)
        sys.exit(1)
