"""`facegan serve` on awkward uploads, over real HTTP: tiny or thin photos, over-sized images."""
from __future__ import annotations

import http.client
import io
import json

import pytest
from PIL import Image

from facegan_kit.serve.app import ServeLimits, make_server

PIXEL_CAP = 1_000_000


@pytest.fixture(scope="module")
def server(tiny_checkpoint, serving):
    limits = ServeLimits(max_upload_bytes=512 * 1024, max_pixels=PIXEL_CAP, max_sessions=8)
    with serving(make_server(tiny_checkpoint, host="127.0.0.1", port=0, quiet=True, limits=limits)) as srv:
        yield srv


def upload(srv, png: bytes, aligned: bool) -> tuple[int, dict]:
    host, port = srv.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=60)
    try:
        conn.request("POST", f"/api/upload?aligned={int(aligned)}", body=png, headers={"Content-Type": "image/png"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def png(w: int, h: int, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (w, h), 128 if mode != "1" else 0).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("w, h", [(3, 3), (12, 12), (200, 5), (10000, 1)])
def test_tiny_or_thin_photo_is_a_400_naming_its_size(server, w, h, capfd):
    pytest.importorskip("facenet_pytorch")
    status, body = upload(server, png(w, h), aligned=False)
    assert status == 400, body
    assert body["error"].startswith(f"no face found (image is {w}x{h} pixels)"), body
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.parametrize("side", [1100, 1500])  # over the cap; over twice the cap (Pillow's own error)
def test_oversize_upload_names_the_configured_cap(server, side):
    status, body = upload(server, png(side, 1000, mode="1"), aligned=True)
    assert status == 413, body
    assert "cap of 1,000,000 pixels" in body["error"] and "2000000" not in body["error"], body
