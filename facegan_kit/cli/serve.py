"""``facegan serve``: the interactive expression editor in the browser."""
from __future__ import annotations

from pathlib import Path

import click

from facegan_kit.errors import InputError


@click.command("serve")
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Anything but a loopback address exposes your photos to the network.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="TCP port (0: pick a free one).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--max-upload-mb", type=click.FloatRange(min=0.01), default=10.0, show_default=True,
              help="Largest upload accepted.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=25_000_000, show_default=True,
              help="Largest image (width x height) decoded.")
@click.option("--max-sessions", type=click.IntRange(min=1), default=64, show_default=True,
              help="Uploaded faces kept in memory (least recently used ones are dropped).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads per decode (torch.set_num_threads); 1 is often fastest on a busy machine.")
@click.option("--verbose", is_flag=True, help="Log every request (default: errors only).")
def serve_cmd(checkpoint, host, port, device, max_upload_mb, max_pixels, max_sessions, threads, verbose):
    """Serve a local web app to edit faces with CHECKPOINT.

    Upload a photo (or pick a built-in synthetic face), choose an expression, drag the
    intensity slider and watch the face change; see the paper's grid; transfer an
    expression between two faces; download the result (pasted back into the photo).

    \b
    Example:
      facegan serve runs/quick/final.safetensors            # then open http://127.0.0.1:8000/
    """
    from facegan_kit.serve.app import ServeLimits, is_loopback, make_server

    if threads:
        import torch

        torch.set_num_threads(threads)
    limits = ServeLimits(max_upload_bytes=int(max_upload_mb * 1024 * 1024), max_pixels=max_pixels,
                         max_sessions=max_sessions)
    if not is_loopback(host):
        click.echo(f"warning: binding to {host}: anyone who can reach this address can upload photos and see "
                   "the edits (there is no authentication); use --host 127.0.0.1 for local use", err=True)
    try:
        server = make_server(checkpoint, host=host, port=port, limits=limits, device=device, verbose=verbose)
    except OSError as exc:  # port in use, unknown host, no permission
        raise InputError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    click.echo(f"facegan serve: {server.url}  (model {server.service.size}x{server.service.size}; Ctrl+C to stop)",
               err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("facegan serve: stopped", err=True)
    finally:
        server.server_close()
