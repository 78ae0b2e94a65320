"""The HTTP side of ``facegan serve``: the request handler (parsing, security checks,
JSON errors) and the routing table onto :class:`~facegan_kit.serve.service.EditService`."""
from __future__ import annotations

import json
import math
import socket
import sys
import time
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Callable
from urllib.parse import parse_qs, urlsplit

from facegan_kit import NEUTRAL
from facegan_kit.errors import CheckpointError, FaceganError, InputError
from facegan_kit.serve.images import png_bytes
from facegan_kit.serve.limits import HTTPError, is_loopback, one_line

if TYPE_CHECKING:
    from facegan_kit.serve.app import FaceganHTTPServer
    from facegan_kit.serve.service import EditService

__all__ = ["Handler", "ROUTES", "CSP", "STATIC_FILES"]

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
       "connect-src 'self' blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

STATIC_FILES = {  # URL path -> (package file, content type); nothing else is served
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}


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

    server: FaceganHTTPServer
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

    def log_error(self, format, *args) -> None:  # noqa: A002 - stdlib signature
        # A browser keeps idle keep-alive connections open; when one reaches the socket timeout
        # the stdlib logs "Request timed out" although nothing went wrong. Only --verbose shows it.
        if str(format).startswith("Request timed out") and not self.server.verbose:
            return
        super().log_error(format, *args)

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
            self._error(501, one_line(exc))
        except (InputError, FaceganError) as exc:
            self._error(400, one_line(exc))
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
