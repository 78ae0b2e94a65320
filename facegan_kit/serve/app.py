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

import contextlib
import io
import ipaddress
import json
import math
import os
import re
import secrets
import shutil
import socket
import sys
import tempfile
import threading
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import numpy as np
import torch
from PIL import Image

from facegan_kit import EXPRESSIONS, NEUTRAL
from facegan_kit.errors import CheckpointError, FaceganError, InputError

__all__ = ["ServeLimits", "HTTPError", "EditService", "FaceganHTTPServer", "make_server", "is_loopback"]

#: Number of built-in synthetic faces offered by the page.
SAMPLE_COUNT = 12
#: Side at which built-in synthetic faces are rendered before resizing to the model's size.
SAMPLE_RENDER_SIZE = 128
#: Photos whose longer side exceeds this are detected on a downscaled copy (alignment
#: itself always samples the full-resolution photo).
DETECT_MAX_SIDE = 1280

_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
       "connect-src 'self' blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

STATIC_FILES = {  # URL path -> (package file, content type); nothing else is served
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}


@dataclass(frozen=True)
class ServeLimits:
    """Resource caps of one server.

    Attributes:
        max_upload_bytes: Largest request body accepted (checked from Content-Length).
        max_pixels: Largest image (width * height) decoded (checked from the header).
        max_sessions: Uploaded faces kept (least recently used ones are dropped).
        max_session_bytes: Total bytes of kept full photos (for paste-back) before
            least recently used sessions are dropped.
        request_timeout: Socket timeout per connection, seconds (slow clients).
    """

    max_upload_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 25_000_000
    max_sessions: int = 64
    max_session_bytes: int = 256 * 1024 * 1024
    request_timeout: float = 30.0


class HTTPError(Exception):
    """An error answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = int(status)
        self.message = " ".join(str(message).split())


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) only accepts local connections."""
    h = host.strip().strip("[]").lower()
    if h in ("localhost", "localhost.", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


# -- sessions -------------------------------------------------------------------------------------

@dataclass
class Session:
    """One uploaded face. Immutable after creation, so readers need no lock."""

    token: str
    crop: np.ndarray  # (S, S, 3) uint8: what the model sees
    code: torch.Tensor  # (1, Z) identity code
    width: int
    height: int
    pre_aligned: bool
    photo_bytes: bytes | None = None  # the uploaded file, kept for paste-back (photos only)
    aligned_face: Any = None  # facegan_kit.data.align.AlignedFace (photos only)
    created: float = field(default_factory=time.time)

    @property
    def nbytes(self) -> int:
        return len(self.photo_bytes or b"") + int(self.crop.nbytes) + 1024


class SessionStore:
    """A thread-safe LRU map token -> :class:`Session`, capped by count and bytes."""

    def __init__(self, max_sessions: int, max_bytes: int):
        self.max_sessions = max(1, int(max_sessions))
        self.max_bytes = max(1, int(max_bytes))
        self._items: OrderedDict[str, Session] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def add(self, session: Session) -> None:
        with self._lock:
            old = self._items.pop(session.token, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._items[session.token] = session
            self._bytes += session.nbytes
            while len(self._items) > self.max_sessions or (self._bytes > self.max_bytes and len(self._items) > 1):
                _, old = self._items.popitem(last=False)
                self._bytes -= old.nbytes

    def get(self, token: str) -> Session:
        if not isinstance(token, str) or not _TOKEN_RE.match(token):
            raise HTTPError(404, "unknown or expired token (upload the face again)")
        with self._lock:
            s = self._items.get(token)
            if s is None:
                raise HTTPError(404, "unknown or expired token (upload the face again)")
            self._items.move_to_end(token)
            return s

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


# -- image helpers --------------------------------------------------------------------------------

def png_bytes(arr: np.ndarray, compress_level: int = 1) -> bytes:
    """``(H, W, 3)`` uint8 -> PNG bytes (fast compression by default: the images are small)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def _tensor_to_uint8(t: torch.Tensor) -> np.ndarray:
    from facegan_kit.data.io import to_uint8

    return to_uint8(t)


def _square_resize(arr: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop ``(H, W, 3)`` uint8 to a square and resize it to ``size`` (antialiased)."""
    h, w = arr.shape[:2]
    side = min(h, w)
    y0, x0 = (h - side) // 2, (w - side) // 2
    sq = arr[y0:y0 + side, x0:x0 + side]
    if side == size:
        return np.ascontiguousarray(sq)
    t = torch.from_numpy(np.ascontiguousarray(sq)).permute(2, 0, 1)[None].float()
    t = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return t[0].round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def _crop_tensor(crop: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(crop).permute(2, 0, 1)[None].float().div(127.5).sub(1.0)


def _tile(images: torch.Tensor, gap: int = 2) -> np.ndarray:
    """``(R, C, 3, S, S)`` in [-1, 1] -> one white-separated uint8 sheet."""
    r, c, _, s, _ = images.shape
    u8 = _tensor_to_uint8(images.reshape(r * c, 3, s, s)).reshape(r, c, s, s, 3)
    out = np.full((r * s + (r - 1) * gap, c * s + (c - 1) * gap, 3), 255, np.uint8)
    for i in range(r):
        for j in range(c):
            out[i * (s + gap):i * (s + gap) + s, j * (s + gap):j * (s + gap) + s] = u8[i, j]
    return out


def _one_line(exc: BaseException) -> str:
    """A user-facing message for an input error, without file-system paths."""
    detail = getattr(exc, "detail", None)  # ImageReadError: the message minus its path
    text = " ".join(str(detail if detail is not None else exc).split())
    # belt and braces: drop anything that looks like an absolute path
    return re.sub(r"(?:[A-Za-z]:)?[/\\][^\s:'\"]*[/\\][^\s:'\"]*", "<path>", text) or type(exc).__name__


# -- the service (no HTTP in here) -----------------------------------------------------------------

class EditService:
    """Everything the routes do, on top of an :class:`~facegan_kit.edit.Editor`.

    Args:
        editor: The loaded model.
        limits: Resource caps.
        aligner: A :class:`~facegan_kit.data.align.FaceAligner` for full photos (created
            on first use when None; needs ``facenet-pytorch``).
    """

    def __init__(self, editor, limits: ServeLimits = ServeLimits(), aligner=None):
        self.editor = editor
        self.limits = limits
        self.sessions = SessionStore(limits.max_sessions, limits.max_session_bytes)
        self._aligner = aligner
        self._aligner_lock = threading.Lock()
        self._model_lock = threading.Lock()  # one forward pass at a time
        self._tmpdir = tempfile.mkdtemp(prefix="facegan-serve-")
        self._sample_cache: dict[tuple, np.ndarray] = {}

    def close(self) -> None:
        shutil.rmtree(self._tmpdir, ignore_errors=True)

    # -- info -----------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return self.editor.image_size

    @property
    def can_transfer(self) -> bool:
        return "d_img" in self.editor.models and "q" in self.editor.models

    @staticmethod
    def can_align() -> bool:
        import importlib.util

        return importlib.util.find_spec("facenet_pytorch") is not None

    def info(self) -> dict:
        return {
            "expressions": list(EXPRESSIONS),
            "neutral": NEUTRAL,
            "image_size": self.size,
            "levels": int(self.editor.controller.levels),
            "max_upload_bytes": self.limits.max_upload_bytes,
            "max_pixels": self.limits.max_pixels,
            "samples": SAMPLE_COUNT,
            "transfer": self.can_transfer,
            "face_detection": self.can_align(),
        }

    # -- decoding uploads -------------------------------------------------------------------------
    def decode_image(self, data: bytes) -> np.ndarray:
        """Bytes -> ``(H, W, 3)`` uint8 through the toolkit's safe reader."""
        from facegan_kit.data.io import ImageReadError, read_image

        if not data:
            raise HTTPError(400, "empty upload (no image data)")
        fd, tmp = tempfile.mkstemp(prefix="upload-", dir=self._tmpdir)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            return read_image(tmp, max_pixels=self.limits.max_pixels)
        except ImageReadError as exc:
            status = 413 if exc.reason == "too_large" else 400
            raise HTTPError(status, _one_line(exc)) from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def _get_aligner(self):
        with self._aligner_lock:
            if self._aligner is None:
                if not self.can_align():
                    raise HTTPError(501, "face detection needs facenet-pytorch (pip install 'facegan-kit[faces]'); "
                                         "tick 'pre-aligned crop' to upload an aligned face instead")
                from facegan_kit.data.align import FaceAligner

                self._aligner = FaceAligner(size=self.size)
            return self._aligner

    def _align_photo(self, arr: np.ndarray):
        """Detect (on a downscaled copy of big photos) and align the largest face."""
        from facegan_kit.data.align import FaceCountError

        aligner = self._get_aligner()
        h, w = arr.shape[:2]
        scale = max(h, w) / DETECT_MAX_SIDE
        small = arr if scale <= 1 else _resize(arr, int(round(h / scale)), int(round(w / scale)))
        dets = aligner.detect(small)
        if not dets:
            raise FaceCountError("no face found (tick 'pre-aligned crop' if the image is already an aligned face)",
                                 "no_face", 0)
        pts = dets[0].landmarks.astype(np.float64)
        if small is not arr:  # pixel-index coordinates: (x + 0.5) * ratio - 0.5
            pts = (pts + 0.5) * np.array([w / small.shape[1], h / small.shape[0]]) - 0.5
        return aligner.align(arr, pts.astype(np.float32))

    # -- sessions ---------------------------------------------------------------------------------
    def _new_session(self, crop: np.ndarray, width: int, height: int, pre_aligned: bool,
                     photo_bytes: bytes | None = None, aligned_face=None) -> Session:
        crop = _square_resize(crop, self.size)
        with self._model_lock:
            code = self.editor.encode(_crop_tensor(crop)).detach().cpu().clone()
        s = Session(token=secrets.token_urlsafe(18), crop=crop, code=code, width=width, height=height,
                    pre_aligned=pre_aligned, photo_bytes=photo_bytes, aligned_face=aligned_face)
        self.sessions.add(s)
        return s

    @staticmethod
    def _describe(s: Session) -> dict:
        return {"token": s.token, "width": s.width, "height": s.height, "aligned": s.pre_aligned,
                "size": int(s.crop.shape[0])}

    def upload(self, data: bytes, pre_aligned: bool) -> dict:
        """Decode, (align,) encode and store one face; returns the session description."""
        arr = self.decode_image(data)
        h, w = arr.shape[:2]
        if pre_aligned:
            s = self._new_session(arr, w, h, True)
        else:
            af = self._align_photo(arr)
            s = self._new_session(af.crop, w, h, False, photo_bytes=bytes(data), aligned_face=af)
        return self._describe(s)

    def sample_image(self, subject: int, expression: str = NEUTRAL, intensity: float = 1.0) -> np.ndarray:
        """A built-in synthetic face (``SAMPLE_RENDER_SIZE`` square, uint8)."""
        from facegan_kit.data.synthetic import render_face, subject_attributes
        from facegan_kit.edit import expression_index

        if not 0 <= subject < SAMPLE_COUNT:
            raise HTTPError(400, f"subject must be 0..{SAMPLE_COUNT - 1}")
        k = expression_index(expression)
        label = 6 if k is None else k
        t = 0.0 if k is None else intensity
        key = (subject, label, round(t, 4))
        img = self._sample_cache.get(key)
        if img is None:
            img = render_face(subject_attributes(subject), label, t, SAMPLE_RENDER_SIZE, None, subject)
            if len(self._sample_cache) < 256:
                self._sample_cache[key] = img
        return img

    def sample(self, subject: int, expression: str = NEUTRAL, intensity: float = 1.0) -> dict:
        img = self.sample_image(subject, expression, intensity)
        return self._describe(self._new_session(img, img.shape[1], img.shape[0], True))

    # -- edits ------------------------------------------------------------------------------------
    def _edited(self, s: Session, expression: str, intensity: float) -> np.ndarray:
        c = self.editor.code(expression, intensity=intensity)  # InputError for bad values
        with self._model_lock:
            out = self.editor.decode(s.code, c)
        return _tensor_to_uint8(out[0])

    def _transferred(self, target: Session, source: Session, label: str) -> np.ndarray:
        from facegan_kit.edit import expression_index

        k = expression_index(label)
        if k is None:
            raise HTTPError(400, f"label: the source face's expression, one of: {', '.join(EXPRESSIONS)}")
        if not self.can_transfer:
            raise HTTPError(501, "this checkpoint has no D_img/Q, which expression transfer needs")
        with self._model_lock:
            c = self.editor.code_from_image(_crop_tensor(source.crop), k)
            out = self.editor.decode(target.code, c)
        return _tensor_to_uint8(out[0])

    def original_png(self, token: str) -> bytes:
        return png_bytes(self.sessions.get(token).crop)

    def edit_png(self, token: str, expression: str, intensity: float) -> bytes:
        return png_bytes(self._edited(self.sessions.get(token), expression, intensity))

    def transfer_png(self, target: str, source: str, label: str) -> bytes:
        return png_bytes(self._transferred(self.sessions.get(target), self.sessions.get(source), label))

    def grid_png(self, token: str) -> bytes:
        s = self.sessions.get(token)
        with self._model_lock:
            g = self.editor.grid(_crop_tensor(s.crop))
        return png_bytes(_tile(g))

    def download_png(self, token: str, expression: str | None = None, intensity: float = 1.0,
                     source: str | None = None, label: str | None = None) -> tuple[bytes, str]:
        """The edit (or transfer) as a full photo (pasted back) or as the crop.
        Returns ``(png, filename)``."""
        s = self.sessions.get(token)
        if source:
            crop = self._transferred(s, self.sessions.get(source), label or "")
            name = f"facegan-transfer-{(label or '').strip().lower()}"
        else:
            expression = expression or NEUTRAL
            crop = self._edited(s, expression, intensity)
            name = f"facegan-{expression.strip().lower()}-{intensity:.2f}"
        if s.photo_bytes is None or s.aligned_face is None:
            return png_bytes(crop, compress_level=6), name + ".png"
        from facegan_kit.data.align import paste_back

        photo = self.decode_image(s.photo_bytes)
        return png_bytes(paste_back(photo, crop, s.aligned_face), compress_level=6), name + "-photo.png"


def _resize(arr: np.ndarray, h: int, w: int) -> np.ndarray:
    return np.asarray(Image.fromarray(arr).resize((max(1, w), max(1, h)), Image.BILINEAR, reducing_gap=2.0))


# -- HTTP -----------------------------------------------------------------------------------------

def _parse_bool(v: str | None) -> bool:
    return (v or "").strip().lower() in ("1", "true", "yes", "on")


def _parse_float(name: str, v: str | None, default: float) -> float:
    if v is None or v == "":
        return default
    try:
        x = float(v)
    except ValueError:
        raise HTTPError(400, f"{name}: expected a number, got {v[:40]!r}") from None
    if not math.isfinite(x):
        raise HTTPError(400, f"{name}: expected a finite number")
    return x


def _parse_int(name: str, v: str | None, default: int) -> int:
    if v is None or v == "":
        return default
    try:
        return int(v)
    except ValueError:
        raise HTTPError(400, f"{name}: expected an integer, got {v[:40]!r}") from None


class Handler(BaseHTTPRequestHandler):
    """Routes requests to the server's :class:`EditService`."""

    server: "FaceganHTTPServer"
    server_version = "facegan-serve"
    sys_version = ""
    protocol_version = "HTTP/1.1"  # keep-alive: the slider sends many small requests
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

    def setup(self) -> None:
        self.timeout = self.server.service.limits.request_timeout
        super().setup()

    # -- plumbing ---------------------------------------------------------------------------------
    def end_headers(self) -> None:
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        super().end_headers()

    def log_request(self, code="-", size="-") -> None:
        if self.server.verbose or (isinstance(code, int) and code >= 400):
            path = urlsplit(self.path).path  # tokens stay out of the log
            self.log_message('"%s %s" %s', self.command, path, str(code))

    def log_message(self, format, *args) -> None:  # noqa: A002 - stdlib signature
        if not self.server.quiet:
            super().log_message(format, *args)

    def _send(self, status: int, body: bytes, ctype: str, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: dict) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _png(self, body: bytes, filename: str | None = None) -> None:
        extra = {"Content-Disposition": f'attachment; filename="{filename}"'} if filename else None
        self._send(200, body, "image/png", extra)

    def send_error(self, code, message=None, explain=None) -> None:
        """Stdlib-level errors (bad request line, unsupported method) as JSON too."""
        self.close_connection = True
        try:
            self._json(int(code), {"error": " ".join(str(message or HTTPStatus(code).phrase).split())})
        except OSError:
            pass

    def _lingering_close(self) -> None:
        """After refusing a body: stop reading soon, but drain what the client is already
        sending (bounded in time and bytes, nothing kept) so that it sees our answer
        instead of a connection reset."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(1.0)
            budget, deadline = 4 * self.server.service.limits.max_upload_bytes + (1 << 20), time.monotonic() + 3.0
            while budget > 0 and time.monotonic() < deadline:
                chunk = self.connection.recv(65536)
                if not chunk:
                    break
                budget -= len(chunk)
        except OSError:
            pass

    def _check_host(self) -> None:
        if not self.server.loopback_only:
            return
        host = self.headers.get("Host")
        if host is not None:
            name = host.strip().lower()
            name = name[1:name.index("]")] if name.startswith("[") and "]" in name else name.rsplit(":", 1)[0]
            if not is_loopback(name):
                raise HTTPError(403, "this server only answers requests for localhost")

    def _check_origin(self) -> None:
        origin = self.headers.get("Origin")
        if origin is None:  # same-origin GETs and non-browser clients
            return
        host = self.headers.get("Host", "")
        if urlsplit(origin).netloc.lower() != host.lower():
            raise HTTPError(403, "cross-origin requests are not allowed")

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise HTTPError(411, "send the upload with a Content-Length (chunked bodies are not accepted)")
        raw = self.headers.get("Content-Length")
        if raw is None:
            self.close_connection = True
            raise HTTPError(411, "missing Content-Length")
        try:
            n = int(raw)
        except ValueError:
            n = -1
        if n < 0:
            self.close_connection = True
            raise HTTPError(400, "invalid Content-Length")
        cap = self.server.service.limits.max_upload_bytes
        if n > cap:
            self._refused_body = True
            raise HTTPError(413, f"upload too large ({n} bytes; the limit is {cap} bytes)")
        data = self.rfile.read(n)
        self._body_read = True
        if len(data) != n:
            self.close_connection = True
            raise HTTPError(400, "incomplete request body")
        return data

    def _query(self) -> dict[str, str]:
        try:
            qs = parse_qs(urlsplit(self.path).query, keep_blank_values=True, max_num_fields=32)
        except ValueError:
            raise HTTPError(400, "too many query parameters") from None
        return {k: v[0] for k, v in qs.items()}

    def _form(self, body: bytes) -> tuple[dict[str, str], bytes | None]:
        """Fields and the first file of a JSON or multipart body (anything else: raw file)."""
        ctype = self.headers.get("Content-Type", "").lower()
        if ctype.startswith("application/json"):
            try:
                obj = json.loads(body.decode("utf-8") or "{}")
            except (UnicodeDecodeError, json.JSONDecodeError):
                raise HTTPError(400, "invalid JSON body") from None
            if not isinstance(obj, dict):
                raise HTTPError(400, "the JSON body must be an object")
            return {str(k): ("" if v is None else str(v).lower() if isinstance(v, bool) else str(v))
                    for k, v in obj.items()}, None
        if ctype.startswith("multipart/form-data"):
            return self._multipart(body)
        return {}, body

    def _multipart(self, body: bytes) -> tuple[dict[str, str], bytes | None]:
        from email import policy
        from email.parser import BytesParser

        head = f"Content-Type: {self.headers.get('Content-Type')}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
        try:
            msg = BytesParser(policy=policy.HTTP).parsebytes(head + body)
        except Exception:  # noqa: BLE001 - malformed multipart
            raise HTTPError(400, "malformed multipart body") from None
        if not msg.is_multipart():
            raise HTTPError(400, "malformed multipart body")
        fields: dict[str, str] = {}
        file_data = None
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True) or b""
            if part.get_filename() is not None or name in ("file", "image"):
                if file_data is None:
                    file_data = payload
            elif name:
                fields[str(name)] = payload.decode("utf-8", "replace")
        return fields, file_data

    # -- dispatch ---------------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        self._refused_body = False
        self._body_read = False
        try:
            self._check_host()
            path = urlsplit(self.path).path
            if method == "POST":
                self._check_origin()
            if method == "GET" and path in STATIC_FILES:
                return self._static(path)
            routes = ROUTES.get(path)
            if routes is None:
                raise HTTPError(404, "not found")
            fn = routes.get(method)
            if fn is None:
                raise HTTPError(405, f"method {method} not allowed here")
            fn(self)
        except HTTPError as exc:
            self._error(exc.status, exc.message)
        except CheckpointError as exc:
            self._error(501, _one_line(exc))
        except (InputError, FaceganError) as exc:
            self._error(400, _one_line(exc))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:  # noqa: BLE001 - never leak a traceback to the client
            traceback.print_exc(file=sys.stderr)
            self._error(500, "internal server error (see the server's log)")

    def _error(self, status: int, message: str) -> None:
        try:
            self._json(status, {"error": message})
        except OSError:
            self.close_connection = True
            return
        if self._refused_body or (self.command == "POST" and not self._body_read):
            self._lingering_close()  # the unread body must not be parsed as the next request

    def _static(self, path: str) -> None:
        name, ctype = STATIC_FILES[path]
        self._send(200, self.server.static(name), ctype)

    # -- routes -----------------------------------------------------------------------------------
    @property
    def svc(self) -> EditService:
        return self.server.service

    def r_info(self) -> None:
        self._json(200, self.svc.info())

    def r_upload(self) -> None:
        body = self._read_body()
        fields, data = self._form(body)
        q = self._query()
        if data is None:
            raise HTTPError(400, "no image in the upload (send the file as the body or as multipart field 'file')")
        pre_aligned = _parse_bool(fields.get("aligned", q.get("aligned")))
        self._json(200, self.svc.upload(data, pre_aligned))

    def r_sample_png(self) -> None:
        q = self._query()
        img = self.svc.sample_image(_parse_int("subject", q.get("subject"), 0), q.get("expression") or NEUTRAL,
                                    _parse_float("intensity", q.get("intensity"), 1.0))
        self._png(png_bytes(img))

    def r_sample(self) -> None:
        body = self._read_body()
        fields, _ = self._form(body) if body else ({}, None)
        q = {**self._query(), **fields}
        self._json(200, self.svc.sample(_parse_int("subject", q.get("subject"), 0), q.get("expression") or NEUTRAL,
                                        _parse_float("intensity", q.get("intensity"), 1.0)))

    def r_original(self) -> None:
        self._png(self.svc.original_png(self._query().get("token", "")))

    def r_edit(self) -> None:
        q = self._query()
        self._png(self.svc.edit_png(q.get("token", ""), q.get("expression") or NEUTRAL,
                                    _parse_float("intensity", q.get("intensity"), 1.0)))

    def r_grid(self) -> None:
        self._png(self.svc.grid_png(self._query().get("token", "")))

    def r_transfer(self) -> None:
        q = self._query()
        if self.command == "POST":
            body = self._read_body()
            if body:
                q.update(self._form(body)[0])
        self._png(self.svc.transfer_png(q.get("target", q.get("token", "")), q.get("source", ""),
                                        q.get("label", "")))

    def r_download(self) -> None:
        q = self._query()
        png, name = self.svc.download_png(q.get("token", ""), q.get("expression") or None,
                                          _parse_float("intensity", q.get("intensity"), 1.0),
                                          q.get("source") or None, q.get("label"))
        self._png(png, filename=name)

    def r_favicon(self) -> None:
        self._send(204, b"", "image/x-icon")


ROUTES: dict[str, dict[str, Callable[[Handler], None]]] = {
    "/api/info": {"GET": Handler.r_info},
    "/api/upload": {"POST": Handler.r_upload},
    "/api/sample.png": {"GET": Handler.r_sample_png},
    "/api/sample": {"POST": Handler.r_sample},
    "/api/original": {"GET": Handler.r_original},
    "/api/edit": {"GET": Handler.r_edit},
    "/api/grid": {"GET": Handler.r_grid},
    "/api/transfer": {"GET": Handler.r_transfer, "POST": Handler.r_transfer},
    "/api/download": {"GET": Handler.r_download},
    "/favicon.ico": {"GET": Handler.r_favicon},
}


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
