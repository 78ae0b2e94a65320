"""The ``facegan serve`` web app: an HTTP server, a JSON API and a static page.

Why the standard library: the app has a dozen small routes, no templating and no
database, and it must run wherever the toolkit runs (offline, CPU-only). The
stdlib :class:`http.server.ThreadingHTTPServer` plus plain HTML/JS keeps it free of
new dependencies; the parts a framework would bring (body-size limits, multipart
parsing, security headers) are a few lines each here and are tested.

Speed: a face is aligned and encoded **once** per upload; its identity code is kept
in a server-side session (an LRU map keyed by a random token that the client
holds). Moving the intensity slider only decodes ``(identity, expression code)`` and
PNG-encodes the small aligned crop.

Safety: binds to 127.0.0.1 by default; when bound to a loopback address, requests
whose ``Host`` is not a loopback name are refused (DNS rebinding) and cross-origin
POSTs are refused. Upload size is checked from ``Content-Length`` before the body is
read, the pixel count from the image header before decoding. Error bodies are
``{"error": "<one line>"}`` and never contain file-system paths. Every response
carries ``X-Content-Type-Options: nosniff`` and a restrictive Content-Security-Policy.

Layout: this module holds the server (:class:`FaceganHTTPServer`, :func:`make_server`);
:mod:`~facegan_kit.serve.handlers` the request handler and routes,
:mod:`~facegan_kit.serve.service` the model work (:class:`EditService`),
:mod:`~facegan_kit.serve.sessions` the LRU session store, :mod:`~facegan_kit.serve.images`
the image helpers and :mod:`~facegan_kit.serve.limits` the caps and the error type. The
public names stay importable from here.

API (all images are PNG; ``token`` comes from an upload):

=======  ===============================================  ===========================================
GET      ``/api/info``                                    expressions, image size, levels, limits
POST     ``/api/upload[?aligned=1]``                      raw image body, or multipart with ``file``
                                                          (+ optional field ``aligned``) ->
                                                          ``{token, width, height, aligned, size}``
GET      ``/api/sample.png?subject=&expression=``         a built-in synthetic face
POST     ``/api/sample``                                  JSON ``{subject, expression?, intensity?}``
                                                          -> same as upload (a pre-aligned crop)
GET      ``/api/original?token=``                         the aligned crop the model sees
GET      ``/api/edit?token=&expression=&intensity=``      the edited aligned crop
GET      ``/api/grid?token=``                             the paper's levels x 7 grid
GET|POST ``/api/transfer?target=&source=&label=``         ``target``'s face with the expression of
                                                          ``source`` (whose expression is ``label``)
GET      ``/api/download?token=&expression=&intensity=``  the edit pasted back into the full photo
         ``/api/download?token=&source=&label=``          (or the crop, for pre-aligned uploads)
=======  ===============================================  ===========================================
"""
from __future__ import annotations

import socket
from http.server import ThreadingHTTPServer
from importlib import resources
from pathlib import Path

from facegan_kit.errors import CheckpointError
from facegan_kit.serve.handlers import CSP, ROUTES, STATIC_FILES, Handler  # noqa: F401 - re-exported
from facegan_kit.serve.images import png_bytes  # noqa: F401 - re-exported
from facegan_kit.serve.limits import HTTPError, ServeLimits, is_loopback
from facegan_kit.serve.service import DETECT_MAX_SIDE, SAMPLE_COUNT, SAMPLE_RENDER_SIZE, EditService  # noqa: F401
from facegan_kit.serve.sessions import Session, SessionStore  # noqa: F401 - re-exported

__all__ = ["ServeLimits", "HTTPError", "EditService", "FaceganHTTPServer", "make_server", "is_loopback"]


class FaceganHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server holding one :class:`EditService`."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], service: EditService, quiet: bool = False, verbose: bool = False):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.service = service
        self.quiet = quiet
        self.verbose = verbose
        self.loopback_only = is_loopback(address[0])
        self._static: dict[str, bytes] = {}
        super().__init__(address, Handler)

    def static(self, name: str) -> bytes:
        data = self._static.get(name)
        if data is None:
            data = self._static[name] = resources.files("facegan_kit.serve").joinpath("static", name).read_bytes()
        return data

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}/"

    def server_close(self) -> None:
        super().server_close()
        self.service.close()


def make_server(checkpoint, host: str = "127.0.0.1", port: int = 8000, limits: ServeLimits = ServeLimits(),
                device: str = "cpu", quiet: bool = False, verbose: bool = False, aligner=None) -> FaceganHTTPServer:
    """Load a checkpoint (path or :class:`~facegan_kit.edit.Editor`) and bind a server
    (``port=0``: an ephemeral port, see ``server.server_address``). Call ``serve_forever()``."""
    from facegan_kit.edit import Editor

    if isinstance(checkpoint, Editor):
        editor = checkpoint
    else:
        path = Path(checkpoint)
        if not path.is_file():
            raise CheckpointError(f"{path}: checkpoint file not found")
        editor = Editor.from_checkpoint(path, device=device)
    if not editor.has_encoder:
        raise CheckpointError("this checkpoint has no encoder (a stage-1-only model?); serve needs one")
    return FaceganHTTPServer((host, int(port)), EditService(editor, limits, aligner=aligner),
                             quiet=quiet, verbose=verbose)
