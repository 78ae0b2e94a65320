"""What ``facegan serve`` prints and tells the page, seen through real HTTP connections."""
from __future__ import annotations

import http.client
import json
import socket
import time

from facegan_kit.serve.app import ServeLimits, make_server


def _read_response(sock: socket.socket) -> bytes:
    """One whole HTTP/1.1 response (headers + Content-Length body) from a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(next(ln.split(b":", 1)[1] for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_idle_keepalive_connection_leaves_no_log_line(tiny_checkpoint, serving, capfd):
    srv = make_server(tiny_checkpoint, host="127.0.0.1", port=0, limits=ServeLimits(request_timeout=0.3))
    with serving(srv):
        host, port = srv.server_address[:2]
        with socket.create_connection((host, port), timeout=5) as sock:
            # a browser's keep-alive connection: one request, then silence past the timeout
            sock.sendall(b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert b" 200 " in _read_response(sock).split(b"\r\n", 1)[0]
            time.sleep(1.0)
            assert sock.recv(1) == b""  # the server closed the idle connection
        conn = http.client.HTTPConnection(host, port, timeout=5)
        conn.request("GET", "/no/such/page")
        assert conn.getresponse().status == 404
        conn.close()
        time.sleep(0.1)
    err = capfd.readouterr().err
    assert "timed out" not in err.lower()
    assert "/no/such/page" in err and "404" in err  # real errors are still logged


def test_info_says_what_the_model_was_trained_on(tiny_checkpoint, serving):
    with serving(make_server(tiny_checkpoint, host="127.0.0.1", port=0, quiet=True)) as srv:
        conn = http.client.HTTPConnection(*srv.server_address[:2], timeout=5)
        conn.request("GET", "/api/info")
        info = json.loads(conn.getresponse().read())
        conn.close()
    assert info["trained_on"] == "synthetic"
    assert "cartoon" in info["photo_warning"] and "exprgan-real-quick.toml" in info["photo_warning"]
