"""``facegan augment-experiment``: the paper's Table 1 (data augmentation with generated faces)."""
from __future__ import annotations

from pathlib import Path

import click

from facegan_kit.cli import overwrite_option


@click.command("augment-experiment")
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--data", required=True,
              help="'synthetic' (the faces of the checkpoint's recipe) or a folder with index.csv "
                   "(path, expression, split columns: `facegan data prepare` / `data synthetic` output).")
@click.option("--sizes", default="0,3000,6000,30000,60000", show_default=True,
              help="Numbers of generated faces to add, comma-separated (3K style allowed).")
@click.option("--epochs", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Adam learning rate.")
@click.option("--subjects", type=click.IntRange(min=2), default=None,
              help="With --data synthetic: number of subjects (default: the recipe's, else 80).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/augment"),
              show_default=True, help="results.json, results.md and classifier_<N>.safetensors (+ .json).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
@overwrite_option
def augment_cmd(checkpoint, data, sizes, epochs, batch_size, lr, subjects, seed, out, device, overwrite):
    """Expression-recognition accuracy vs. number of generated training faces (Table 1).

    \b
    Examples:
      facegan augment-experiment runs/exprgan/final.safetensors --data data/oulu --device cuda
      facegan augment-experiment ckpt.safetensors --data synthetic --sizes 0,60 --epochs 1

    For each size N a classifier (the encoder's architecture + one FC layer with 6 outputs,
    trained from scratch with the same seed and epochs) learns from the real training split
    plus N generated faces (N/6 per expression, new random identities, intensities sampled as
    in training) and is tested on the real test split. Prints a Markdown table. The saved
    classifiers label faces for `facegan transfer/retrieve --classifier`. OUT must be new or
    empty (--overwrite replaces it whole).
    """
    from facegan_kit.apps import check_outputs, load_editor
    from facegan_kit.devices import resolve_device
    from facegan_kit.apps.augment import load_data, markdown_table, parse_sizes, run_augment, write_results
    from facegan_kit.outputs import claim_folder

    size_list = parse_sizes(sizes)
    check_outputs([out / "results.json", out / "results.md"], [checkpoint])
    claim = claim_folder(out, overwrite, inputs=[checkpoint] + ([] if data == "synthetic" else [Path(data)]))
    dev = str(resolve_device(device))
    ed = load_editor(checkpoint, dev)
    split = load_data(ed, data, subjects=subjects)
    click.echo(f"data: {split.name}: {len(split.train_y)} train / {len(split.test_y)} test faces; "
               f"model {ed.image_size}x{ed.image_size}", err=True)
    settings = {"checkpoint": str(checkpoint), "data": split.name, "sizes": size_list, "epochs": epochs,
                "batch_size": batch_size, "lr": lr, "seed": seed, "image_size": ed.image_size,
                "real_train": int(len(split.train_y)), "real_test": int(len(split.test_y))}
    with claim:
        rows = run_augment(ed, split, size_list, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                           device=dev, save_dir=out, log=lambda m: click.echo(m, err=True))
        js, md = write_results(rows, out, settings)
    click.echo(markdown_table(rows))
    click.echo(f"wrote {js}, {md} and {len(rows)} classifiers in {out}", err=True)
