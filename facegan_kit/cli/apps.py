"""``facegan edit | grid | transfer | generate | retrieve | tsne``: the paper's applications.

Thin wrappers over :mod:`facegan_kit.edit` and :mod:`facegan_kit.apps`. Every command checks its
arguments and output paths (never an input file) before it writes anything.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import click
import torch

from facegan_kit import EXPRESSIONS, NEUTRAL
from facegan_kit.cli import overwrite_option
from facegan_kit.errors import InputError
from facegan_kit.outputs import check_new_files

FILE = click.Path(dir_okay=False, path_type=Path)
DIR = click.Path(file_okay=False, path_type=Path)
NAMES = ", ".join(EXPRESSIONS + (NEUTRAL,))


def _common(f):
    f = click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")(f)
    return click.option("--no-align", is_flag=True,
                        help="Inputs are already aligned face crops (just resized); default: detect + align.")(f)


def _echo_written(paths):
    for p in paths:
        click.echo(f"wrote {p}")


def _warn_photo(editor) -> None:
    """Once per command: a synthetic-face model is about to edit the user's own image files."""
    if editor.photo_warning:
        click.echo(f"facegan: warning: {editor.photo_warning}", err=True)


def _png(path: Path) -> Path:
    if path.suffix.lower() != ".png":
        raise InputError(f"{path}: the output is a PNG; give a path ending in .png")
    return path


@click.command("edit")
@click.argument("checkpoint", type=FILE)
@click.argument("images", nargs=-1, required=True, type=FILE)
@click.option("--expression", "-e", required=True, help=f"Target expression: {NAMES}.")
@click.option("--intensity", type=float, default=None,
              help="Continuous intensity in [0,1]: 0 = the neutral code, 1 = the strongest code.")
@click.option("--level", type=int, default=None, help="The paper's discrete level 1 (weak) .. 5 (strong).")
@click.option("--level-codes", type=click.Choice(["single", "cumulative"]), default=None,
              help="How --level builds its code (default: the checkpoint's recipe): single = the paper's "
                   "(element L of the block +1), cumulative = elements 1..L +1.")
@click.option("--out", type=DIR, default=Path("edits"), show_default=True, help="Output folder.")
@click.option("--paste-back/--no-paste-back", default=True, show_default=True,
              help="Paste the edited face back into the photo (aligned inputs only).")
@overwrite_option
@_common
def edit_cmd(checkpoint, images, expression, intensity, level, level_codes, out, paste_back, overwrite, no_align,
             device):
    """Re-render the faces in IMAGES with a new EXPRESSION and intensity.

    \b
    Examples:
      facegan edit runs/quick/final.safetensors photo.jpg --expression happy --intensity 0.7
      facegan edit ckpt.safetensors crops/*.png --no-align -e surprise --level 5 --out edits

    \b
    Intensity is a straight path in code space (controller.intensity_code): the target
    expression's block of the code is 2t-1 everywhere and every other block -1, so t=0 is
    exactly the neutral code and t=1 the strongest; --level L sets only element L of the
    block to +1 (the paper's Fig. 3; with --level-codes cumulative, elements 1..L, the
    shipped recipes' choice). Neither given: intensity 1.
    Outputs: OUT/<stem>_<expression>[_i0.70|_l3].png. For photos (no --no-align) that is the
    photo with the edited face pasted back, and <...>_face.png is the edited aligned crop.
    An output file that exists is refused (--overwrite replaces it).
    """
    from facegan_kit.apps import check_outputs, edit_name, load_editor
    from facegan_kit.apps.images import load_faces, paste_face
    from facegan_kit.data.io import write_png_atomic

    ed = load_editor(checkpoint, device)
    ed.set_level_codes(level_codes)
    code = ed.code(expression, intensity=intensity, level=level)  # validates (one-line errors)
    expr = expression.strip().lower()
    paste = paste_back and not no_align
    names = [out / edit_name(p.stem, expr, intensity, level) for p in images]
    faces_out = [out / edit_name(p.stem, expr, intensity, level, "_face") for p in images] if paste else []
    check_outputs(names + faces_out, [checkpoint, *images])
    check_new_files(names + faces_out, overwrite)
    faces = load_faces(images, ed.image_size, align=not no_align, device=str(ed.device))
    _warn_photo(ed)
    x = torch.stack([f.face for f in faces])
    edited = torch.cat([ed.decode(ed.encode(x[i:i + 64]), code, source=x[i:i + 64]).cpu() for i in range(0, len(x), 64)])
    written = []
    for i, f in enumerate(faces):
        if paste:
            written.append(write_png_atomic(faces_out[i], edited[i]))
            written.append(write_png_atomic(names[i], paste_face(f, edited[i])))
        else:
            written.append(write_png_atomic(names[i], edited[i]))
    _echo_written(written)


@click.command("grid")
@click.argument("checkpoint", type=FILE)
@click.argument("image", type=FILE)
@click.option("--out", type=FILE, required=True, help="Output PNG.")
@click.option("--labels/--no-labels", default=True, show_default=True,
              help="Column names, level names and the face size in a footer (no text: exactly 5 x 8 cells).")
@click.option("--level-codes", type=click.Choice(["single", "cumulative"]), default=None,
              help="How the level rows are coded (default: the checkpoint's recipe; see facegan edit --help).")
@_common
@overwrite_option
def grid_cmd(checkpoint, image, out, labels, level_codes, overwrite, no_align, device):
    """Every expression at every intensity level for one face (the paper's Figure 3).

    \b
    Example:
      facegan grid runs/quick/final.safetensors face.png --out grid.png

    Columns: the input (top row), the six expressions and neutral (all -1 code); rows: the
    levels 1 (weak, top) to 5 (strong, bottom). Faces smaller than 128 px are enlarged to 128.
    """
    from facegan_kit.apps import check_outputs, load_editor
    from facegan_kit.apps.images import load_faces, save_sheet

    check_outputs([_png(out)], [checkpoint, image])
    check_new_files([out], overwrite)
    ed = load_editor(checkpoint, device)
    ed.set_level_codes(level_codes)
    face = load_faces([image], ed.image_size, align=not no_align, device=str(ed.device))[0]
    _warn_photo(ed)
    g = ed.grid(face.face[None]).cpu()  # (levels, 7, 3, S, S)
    cells = [[face.face if i == 0 else None, *g[i]] for i in range(g.shape[0])]
    rows = [f"level {i + 1}" for i in range(g.shape[0])] if labels else None
    cols = ["input", *EXPRESSIONS, NEUTRAL] if labels else None
    _echo_written([save_sheet(out, cells, col_labels=cols, row_labels=rows, note=labels)])


@click.command("transfer")
@click.argument("checkpoint", type=FILE)
@click.option("--identity", "identity", type=FILE, required=True, help="Face A: whose identity is kept.")
@click.option("--expression", "expression", type=FILE, required=True, help="Face B: whose expression is used.")
@click.option("--classifier", type=FILE, default=None,
              help="Expression classifier (.safetensors from `facegan augment-experiment`) to label B.")
@click.option("--label", default=None, help="B's expression, if you know it (instead of --classifier).")
@click.option("--out", type=FILE, default=None, help="Output PNG (default: <A>_with_<B>.png).")
@_common
@overwrite_option
def transfer_cmd(checkpoint, identity, expression, classifier, label, out, overwrite, no_align, device):
    """Give face A the expression of face B (the paper's Figure 4).

    \b
    Examples:
      facegan transfer ckpt.safetensors --identity a.jpg --expression b.jpg --label happy
      facegan transfer ckpt.safetensors --identity a.jpg --expression b.jpg \\
          --classifier runs/augment/classifier_0.safetensors

    B's code is Q's estimate from B and its label, so B's intensity/style carries over; the
    output shows A, B and the result side by side.
    """
    from facegan_kit.apps import check_outputs, load_editor
    from facegan_kit.apps.classifier import resolve_labels
    from facegan_kit.apps.images import load_faces, save_sheet
    from facegan_kit.apps.transfer import transfer

    if label is None and classifier is None:
        resolve_labels(torch.zeros(1), None, None, what="face B")  # the one-line error
    out = out or Path(f"{identity.stem}_with_{expression.stem}.png")
    check_outputs([_png(out)], [checkpoint, identity, expression])
    check_new_files([out], overwrite)
    ed = load_editor(checkpoint, device)
    a, b = load_faces([identity, expression], ed.image_size, align=not no_align, device=str(ed.device))
    _warn_photo(ed)
    y = resolve_labels(b.face[None], label, classifier, what="face B")
    res = transfer(ed, a.face[None], b.face[None], y)
    name = EXPRESSIONS[int(y[0])]
    how = "given" if label is not None else "classifier"
    click.echo(f"expression of {expression.name}: {name} ({how})")
    _echo_written([save_sheet(out, [[a.face, b.face, res.result[0]]],
                              col_labels=["identity A", f"B: {name}", "A + expr. B"])])


@click.command("generate")
@click.argument("checkpoint", type=FILE)
@click.option("--n", "n", type=click.IntRange(min=1), required=True, help="Number of faces.")
@click.option("--expression", "-e", default=None, help=f"One of {NAMES} (default: a random one per face).")
@click.option("--intensity", type=float, default=None,
              help="Fixed intensity in [0,1] (default: sampled like in training, as in the paper).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=DIR, required=True, help="Output folder: gen_NNNNN.png, index.csv, sheet.png.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
@overwrite_option
def generate_cmd(checkpoint, n, expression, intensity, seed, out, device, overwrite):
    """Faces of new identities (random identity codes) with chosen or random expressions.

    \b
    Examples:
      facegan generate runs/quick/final.safetensors --n 60 --out gen
      facegan generate ckpt.safetensors --n 8 --expression happy --intensity 0.5 --out gen-happy

    index.csv has columns path, subject (one per face), expression (0..5, 6 = neutral),
    expression_name and intensity ('sampled' when drawn from the controller), so the folder
    works as a gallery for `facegan retrieve` and `facegan tsne`. OUT must be new or empty
    (--overwrite replaces it whole).
    """
    from facegan_kit.apps import check_outputs, load_editor
    from facegan_kit.edit import expression_index
    from facegan_kit.outputs import claim_folder

    if expression is not None:
        expression_index(expression)  # validates the name
    names = [f"gen_{i:05d}.png" for i in range(n)]
    check_outputs([out / p for p in names] + [out / "index.csv", out / "sheet.png"], [checkpoint])
    claim = claim_folder(out, overwrite, inputs=[checkpoint])
    ed = load_editor(checkpoint, device)
    if intensity is not None:  # validates the range (a neutral target ignores it)
        ed.code(EXPRESSIONS[0], intensity=intensity)
    with claim:
        _generate_into(out, ed, names, n, expression, intensity, seed)
    click.echo(f"wrote {n} faces, {out / 'index.csv'} and {out / 'sheet.png'}")


def _generate_into(out, ed, names, n, expression, intensity, seed):
    """The faces, index.csv and sheet.png of `facegan generate`, into the claimed folder ``out``."""
    from facegan_kit.apps.images import save_sheet
    from facegan_kit.data.io import write_png_atomic
    from facegan_kit.outputs import atomic_write

    gen = torch.Generator().manual_seed(seed)
    rows, first = [], []
    for i in range(0, n, 256):
        imgs, labels = ed.generate(min(256, n - i), expression=expression, intensity=intensity, generator=gen)
        for j, (img, lab) in enumerate(zip(imgs.cpu(), labels.tolist())):
            write_png_atomic(out / names[i + j], img)
            lab = 6 if lab < 0 else int(lab)
            it = 0.0 if lab == 6 else intensity
            rows.append([names[i + j], i + j, lab, (EXPRESSIONS + (NEUTRAL,))[lab],
                         "sampled" if it is None else f"{it:.4f}"])
            if len(first) < 48:
                first.append(img)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "subject", "expression", "expression_name", "intensity"])
    w.writerows(rows)
    atomic_write(out / "index.csv", buf.getvalue())
    save_sheet(out / "sheet.png", [first[r:r + 8] for r in range(0, len(first), 8)])


@click.command("retrieve")
@click.argument("checkpoint", type=FILE)
@click.option("--query", type=FILE, required=True, help="Query face.")
@click.option("--gallery", type=DIR, required=True,
              help="Folder of aligned faces; its index.csv (if any) gives their expression labels.")
@click.option("--by", type=click.Choice(["code", "label", "pixel"]), default="code", show_default=True,
              help="code: distance of Q's expression codes; label: same label; pixel: image L2.")
@click.option("--k", type=click.IntRange(min=1), default=5, show_default=True, help="How many to show.")
@click.option("--label", default=None, help="The query's expression (else --classifier predicts it).")
@click.option("--classifier", type=FILE, default=None,
              help="Expression classifier labelling the query (and gallery faces without index labels).")
@click.option("--out", type=FILE, required=True, help="Output PNG: query + top k.")
@overwrite_option
@_common
def retrieve_cmd(checkpoint, query, gallery, by, k, label, classifier, out, overwrite, no_align, device):
    """Rank a gallery by similarity to a query face (the paper's Figure 7).

    \b
    Examples:
      facegan data synthetic --out faces --subjects 20
      facegan retrieve ckpt.safetensors --query faces/test/018_3_2.png --no-align \\
          --gallery faces/train --by code --label happy --out happy.png

    Prints the ranked files (rank, distance, label, path). --no-align applies to the query;
    gallery images are always taken as aligned crops.
    """
    from facegan_kit.apps import check_outputs, load_editor
    from facegan_kit.apps.classifier import load_classifier, predict, resolve_labels
    from facegan_kit.apps.images import load_crops, load_faces, read_folder, save_sheet
    from facegan_kit.apps.retrieve import features, rank

    check_outputs([_png(out)], [checkpoint, query])
    check_new_files([out], overwrite)
    rows = [r for r in read_folder(gallery) if r["file"].resolve() != out.resolve()]
    check_outputs([out], [r["file"] for r in rows])
    known = [r["label"] for r in rows if r["file"].resolve() == query.resolve() and r["label"] is not None]
    if label is None and classifier is None and known:
        label = EXPRESSIONS[known[0]]  # the query is in the gallery: its index label
    if by != "pixel" and label is None and classifier is None:
        resolve_labels(torch.zeros(1), None, None, what="query")  # the one-line error
    ed = load_editor(checkpoint, device)
    q = load_faces([query], ed.image_size, align=not no_align, device=str(ed.device))[0].face[None]
    gal = load_crops([r["file"] for r in rows], ed.image_size)
    gl = torch.tensor([-1 if r["label"] is None else r["label"] for r in rows], dtype=torch.long)
    ql = None
    if by != "pixel":
        clf = load_classifier(classifier, str(ed.device)) if classifier is not None else None
        ql = resolve_labels(q, label, clf, what="query")
        if (gl < 0).any() and clf is not None:
            gl = torch.where(gl < 0, predict(clf, gal), gl)
        keep = gl >= 0
        if not keep.any():
            raise InputError(f"{gallery}: no gallery labels (add an index.csv with an expression column "
                             "or pass --classifier)")
        if not keep.all():
            click.echo(f"note: {int((~keep).sum())} gallery faces without a label (neutral?) are left out", err=True)
        rows, gal, gl = [r for r, m in zip(rows, keep.tolist()) if m], gal[keep], gl[keep]
    order, dist = rank(features(ed, q, by, ql)[0], features(ed, gal, by, gl), by)
    top = order[:k]
    name = lambda lab: EXPRESSIONS[lab] if lab >= 0 else "-"  # noqa: E731
    for r, (i, d) in enumerate(zip(top, dist[:k]), 1):
        click.echo(f"{r}\t{d:.6g}\t{name(int(gl[i]))}\t{rows[i]['file']}")
    qname = name(int(ql[0])) if ql is not None else "query"
    caps = [[qname] + [f"{name(int(gl[i]))} {d:.2f}" for i, d in zip(top, dist[:k])]]
    cells = [[q[0]] + [gal[i] for i in top]]  # float [-1,1] and uint8 tensors both work
    cols = ["query"] + [f"#{r} by {by}" for r in range(1, len(top) + 1)]
    _echo_written([save_sheet(out, cells, col_labels=cols, captions=caps)])


@click.command("tsne")
@click.argument("checkpoint", type=FILE)
@click.option("--data", type=DIR, required=True, help="Folder of aligned faces with an index.csv naming subjects.")
@click.option("--out", type=FILE, required=True, help="Output PNG.")
@click.option("--subjects", type=click.IntRange(min=1), default=None, help="Only the first N subjects.")
@click.option("--split", type=click.Choice(["all", "train", "test"]), default="all", show_default=True)
@click.option("--perplexity", type=float, default=30.0, show_default=True)
@click.option("--max-images", type=click.IntRange(min=3), default=3000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
@overwrite_option
def tsne_cmd(checkpoint, data, out, subjects, split, perplexity, max_images, seed, device, overwrite):
    """t-SNE of the identity codes g(x) of a folder of faces, coloured by subject (Figure 6).

    \b
    Example:
      facegan data synthetic --out faces --subjects 12
      facegan tsne runs/quick/final.safetensors --data faces --out tsne.png

    Well separated subjects mean g(x) keeps identity and drops expression.
    """
    from facegan_kit.apps import check_outputs, load_editor
    from facegan_kit.apps.images import load_crops, read_folder
    from facegan_kit.apps.retrieve import encode_batches, plot_embedding, tsne

    check_outputs([_png(out)], [checkpoint])
    check_new_files([out], overwrite)
    rows = [r for r in read_folder(data, require_index=True) if split == "all" or r["split"] == split]
    if any(r["subject"] is None for r in rows):
        raise InputError(f"{data / 'index.csv'}: needs a 'subject' column")
    names = list(dict.fromkeys(r["subject"] for r in rows))[:subjects]
    rows = [r for r in rows if r["subject"] in set(names)][:max_images]
    if len(rows) < 3:
        raise InputError(f"{data}: t-SNE needs at least 3 faces, found {len(rows)}")
    check_outputs([out], [r["file"] for r in rows])
    ed = load_editor(checkpoint, device)
    g = encode_batches(ed.encode, load_crops([r["file"] for r in rows], ed.image_size))
    y = tsne(g.numpy(), perplexity=perplexity, seed=seed)
    plot_embedding(y, [r["subject"] for r in rows], out,
                   title=f"identity codes g(x): {len(rows)} faces, {len(names)} subjects")
    _echo_written([out])
