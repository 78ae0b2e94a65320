"""`facegan serve`'s JSON API, against a real server on an ephemeral port (tiny model)."""
from __future__ import annotations

import http.client
import io
import json
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from facegan_kit.edit import Editor
from facegan_kit.serve.app import HTTPError, ServeLimits, Session, SessionStore, make_server

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
UPLOAD_CAP = 256 * 1024
PIXEL_CAP = 1_000_000


# -- fixtures ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tiny_checkpoint, serving):
    with serving(make_server(tiny_checkpoint, host="127.0.0.1", port=0, quiet=True,
                             limits=ServeLimits(max_upload_bytes=UPLOAD_CAP, max_pixels=PIXEL_CAP,
                                                max_sessions=16))) as srv:
        yield srv


def face_png(subject: int = 3, expression: int = 6, intensity: float = 0.0, size: int = 64) -> bytes:
    from facegan_kit.data.synthetic import render_face, subject_attributes

    img = render_face(subject_attributes(subject), expression, intensity, size, None, subject)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def request(srv, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    host, port = srv.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def upload(srv, png: bytes, aligned: bool = True) -> dict:
    status, headers, body = request(srv, "POST", f"/api/upload?aligned={int(aligned)}", png,
                                    {"Content-Type": "image/png"})
    assert status == 200, body
    return json.loads(body)


def decode_png(body: bytes) -> np.ndarray:
    assert body[:8] == PNG_SIGNATURE
    with Image.open(io.BytesIO(body)) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB"))


def assert_json_error(srv, status_body_headers, expected_status):
    status, headers, body = status_body_headers
    assert status == expected_status, body
    assert headers["content-type"].startswith("application/json")
    assert headers["x-content-type-options"] == "nosniff"
    msg = json.loads(body)["error"]
    assert isinstance(msg, str) and msg and "\n" not in msg
    assert srv.service._tmpdir not in msg
    assert not re.search(r"(/tmp|/home|/root|/work|/usr|[A-Za-z]:\\)", msg), msg
    assert "Traceback" not in msg
    return msg


# -- happy paths ---------------------------------------------------------------------------------

def test_upload_then_edit_returns_png(server):
    info = upload(server, face_png())
    assert set(info) >= {"token", "width", "height", "aligned"}
    assert (info["width"], info["height"], info["aligned"]) == (64, 64, True)
    status, headers, body = request(server, "GET", f"/api/edit?token={info['token']}&expression=happy&intensity=0.7")
    assert status == 200
    assert headers["content-type"] == "image/png"
    assert headers["x-content-type-options"] == "nosniff"
    assert "default-src 'none'" in headers["content-security-policy"]
    arr = decode_png(body)
    size = server.service.size
    assert arr.shape == (size, size, 3)


def test_intensity_changes_the_image(server):
    tok = upload(server, face_png(subject=4))["token"]
    imgs = []
    for t in (0.0, 0.5, 1.0):
        status, _, body = request(server, "GET", f"/api/edit?token={tok}&expression=happy&intensity={t}")
        assert status == 200
        imgs.append(decode_png(body).astype(int))
    assert np.abs(imgs[0] - imgs[2]).sum() > 0
    assert np.abs(imgs[0] - imgs[1]).sum() > 0
    # the same request twice gives the same bytes (deterministic decode)
    a = request(server, "GET", f"/api/edit?token={tok}&expression=happy&intensity=0.5")[2]
    b = request(server, "GET", f"/api/edit?token={tok}&expression=happy&intensity=0.5")[2]
    assert a == b


def test_multipart_upload(server):
    boundary = "facegan-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"aligned\"\r\n\r\n1\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"face.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + face_png() + f"\r\n--{boundary}--\r\n".encode()
    status, _, resp = request(server, "POST", "/api/upload", body,
                              {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 200, resp
    info = json.loads(resp)
    assert info["aligned"] is True and info["width"] == 64


def test_grid_sample_transfer_download(server):
    levels = server.service.editor.controller.levels
    s = server.service.size
    tok = upload(server, face_png(subject=5))["token"]
    status, _, body = request(server, "GET", f"/api/grid?token={tok}")
    assert status == 200
    grid = decode_png(body)
    from facegan_kit.figures import GAP, HEADER, cell_size

    cell = cell_size(s)
    assert cell >= 128  # small model faces are enlarged for the eye
    # levels rows under a row of expression names, a level-name column, a footer naming the size
    assert grid.shape[0] > HEADER + levels * cell + (levels - 1) * GAP
    assert 7 * cell + 6 * GAP < grid.shape[1] <= 8 * cell + 7 * GAP
    assert (grid[:HEADER] < 200).any()

    status, _, body = request(server, "GET", "/api/sample.png?subject=2&expression=happy")
    assert status == 200 and decode_png(body).ndim == 3
    status, _, body = request(server, "POST", "/api/sample", json.dumps({"subject": 2, "expression": "happy"}).encode(),
                              {"Content-Type": "application/json"})
    assert status == 200, body
    src = json.loads(body)["token"]

    status, _, body = request(server, "POST", "/api/transfer",
                              json.dumps({"target": tok, "source": src, "label": "happy"}).encode(),
                              {"Content-Type": "application/json"})
    assert status == 200, body
    assert decode_png(body).shape == (s, s, 3)
    assert_json_error(server, request(server, "POST", f"/api/transfer?target={tok}&source={src}&label=neutral", b""),
                      400)

    status, headers, body = request(server, "GET", f"/api/download?token={tok}&expression=sad&intensity=0.4")
    assert status == 200
    assert headers["content-disposition"].startswith("attachment;")
    assert decode_png(body).shape == (s, s, 3)  # a pre-aligned upload downloads as the crop
    status, headers, body = request(server, "GET", f"/api/download?token={tok}&source={src}&label=happy")
    assert status == 200 and "transfer" in headers["content-disposition"]


def test_full_photo_is_pasted_back(server):
    pytest.importorskip("facenet_pytorch")
    from facegan_kit.data.synthetic import render_face, subject_attributes

    for subject in (0, 3, 2):  # synthetic faces MTCNN is known to find
        face = render_face(subject_attributes(subject), 6, 0.0, 128, None, subject)
        photo = np.pad(face, ((30, 50), (70, 60), (0, 0)), mode="edge")  # 208 x 258
        buf = io.BytesIO()
        Image.fromarray(photo).save(buf, format="PNG")
        status, _, body = request(server, "POST", "/api/upload", buf.getvalue(), {"Content-Type": "image/png"})
        if status == 200:
            break
        assert status == 400 and b"no face" in body, body
    else:
        pytest.skip("MTCNN finds no face in these synthetic photos")
    info = json.loads(body)
    assert (info["width"], info["height"], info["aligned"]) == (258, 208, False)
    status, headers, body = request(server, "GET", f"/api/download?token={info['token']}&expression=happy&intensity=1")
    assert status == 200 and "photo" in headers["content-disposition"]
    out = decode_png(body)
    assert out.shape == photo.shape
    assert (out[:10] == photo[:10]).all() and (out[:, :30] == photo[:, :30]).all()  # far from the face: untouched
    assert (out != photo).any()


# -- errors --------------------------------------------------------------------------------------

@pytest.mark.parametrize("query, status", [
    ("expression=happy&intensity=1.5", 400),
    ("expression=happy&intensity=-0.1", 400),
    ("expression=happy&intensity=nan", 400),
    ("expression=happy&intensity=abc", 400),
    ("expression=smug&intensity=0.5", 400),
])
def test_bad_edit_parameters(server, query, status):
    tok = upload(server, face_png())["token"]
    msg = assert_json_error(server, request(server, "GET", f"/api/edit?token={tok}&{query}"), status)
    assert "intensity" in msg or "expression" in msg


@pytest.mark.parametrize("token", ["", "nope", "A" * 24, "../../etc/passwd"])
def test_unknown_token_is_404(server, token):
    assert_json_error(server, request(server, "GET", f"/api/edit?token={token}&expression=happy&intensity=0.5"), 404)
    assert_json_error(server, request(server, "GET", f"/api/grid?token={token}"), 404)


@pytest.mark.parametrize("body", [b"definitely not an image", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, b"GIF89a"])
def test_non_image_is_400(server, body):
    msg = assert_json_error(server, request(server, "POST", "/api/upload?aligned=1", body,
                                            {"Content-Type": "image/png"}), 400)
    assert "image" in msg or "truncated" in msg


def test_truncated_png_is_400(server):
    png = face_png()
    assert_json_error(server, request(server, "POST", "/api/upload?aligned=1", png[: len(png) // 2]), 400)


def test_empty_upload_is_400(server):
    assert_json_error(server, request(server, "POST", "/api/upload?aligned=1", b""), 400)


def test_oversize_body_is_413(server):
    big = bytes(UPLOAD_CAP + 1)
    msg = assert_json_error(server, request(server, "POST", "/api/upload?aligned=1", big), 413)
    assert str(UPLOAD_CAP) in msg


def test_oversize_is_refused_from_the_header_alone(server):
    """Content-Length is checked before the body is read: announce 1 GB, send nothing."""
    host, port = server.server_address[:2]
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(b"POST /api/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                     b"Content-Length: 1000000000\r\n\r\n")
        t0 = time.monotonic()
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 413"), data[:100]
    assert time.monotonic() - t0 < 5


def test_pixel_cap_is_413(server):
    buf = io.BytesIO()
    Image.new("RGB", (1100, 1000), (128, 128, 128)).save(buf, format="PNG")  # 1.1 MP, a few KB
    assert len(buf.getvalue()) < UPLOAD_CAP
    msg = assert_json_error(server, request(server, "POST", "/api/upload?aligned=1", buf.getvalue()), 413)
    assert "too large" in msg


def test_missing_length_is_411(server):
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.putrequest("POST", "/api/upload")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        conn.send(b"5\r\nhello\r\n0\r\n\r\n")
        resp = conn.getresponse()
        assert resp.status == 411
        assert "error" in json.loads(resp.read())
    finally:
        conn.close()


def test_keep_alive_connection_survives_errors(server):
    """The page reuses one connection for many slider steps; errors must not break framing."""
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("POST", "/api/upload?aligned=1", body=face_png(), headers={"Content-Type": "image/png"})
        resp = conn.getresponse()
        tok = json.loads(resp.read())["token"]
        for path, status in [(f"/api/edit?token={tok}&expression=happy&intensity=0.2", 200),
                             ("/api/edit?token=unknown&expression=happy", 404),
                             (f"/api/edit?token={tok}&expression=happy&intensity=7", 400),
                             ("/api/info", 200),
                             (f"/api/edit?token={tok}&expression=sad&intensity=0.9", 200)]:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            assert resp.status == status, (path, body)
            assert resp.getheader("Connection", "").lower() != "close"
    finally:
        conn.close()


def test_foreign_host_and_origin_are_refused(server):
    assert_json_error(server, request(server, "GET", "/api/info", headers={"Host": "attacker.example"}), 403)
    assert_json_error(server, request(server, "POST", "/api/upload?aligned=1", face_png(),
                                      {"Origin": "http://attacker.example"}), 403)
    host, port = server.server_address[:2]
    assert request(server, "POST", "/api/upload?aligned=1", face_png(),
                   {"Origin": f"http://{host}:{port}"})[0] == 200


def test_unknown_route_and_method(server):
    assert_json_error(server, request(server, "GET", "/api/nothing"), 404)
    assert_json_error(server, request(server, "GET", "/static/../app.py"), 404)
    assert_json_error(server, request(server, "GET", "/api/upload"), 405)
    assert_json_error(server, request(server, "DELETE", "/api/info"), 501)


def test_static_page_and_headers(server):
    status, headers, body = request(server, "GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b'id="intensity"' in body and b"<script" in body
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    status, headers, body = request(server, "GET", "/static/app.js")
    assert status == 200 and headers["content-type"].startswith("text/javascript")
    status, headers, body = request(server, "GET", "/api/info")
    info = json.loads(body)
    assert info["image_size"] == server.service.size and "happy" in info["expressions"]


# -- concurrency and sessions ---------------------------------------------------------------------

class EchoEditor(Editor):
    """The tiny model's decoder barely depends on the identity code at 16x16, so mixing
    two users' faces could go unnoticed with it. This stand-in keeps the whole server
    path (sessions, locks, threads, PNG) but makes identity visible: the "identity
    code" is the face itself and decoding draws it back, shaded by the expression code."""

    def encode(self, x):
        return self._check_images(x).flatten(1).clone()

    def decode(self, g, c):
        s = self.image_size
        shade = c.reshape(-1, c.shape[-1]).mean(1).reshape(-1, 1, 1, 1)
        return (0.5 * g.reshape(-1, 3, s, s) + 0.5 * shade).clamp(-1, 1)


@pytest.fixture(scope="module")
def echo_server(server, serving):
    base = server.service.editor
    with serving(make_server(EchoEditor(models=base.models, recipe=base.recipe, device=base.device, meta=base.meta),
                             host="127.0.0.1", port=0, quiet=True)) as srv:
        yield srv


@pytest.mark.parametrize("which", ["tiny", "echo"])
def test_concurrent_sessions_do_not_mix(server, echo_server, which):
    srv = server if which == "tiny" else echo_server
    tokens = [upload(srv, face_png(subject=s))["token"] for s in (1, 8)]
    intensities = (0.0, 0.3, 0.6, 1.0)

    def edit(tok, t):
        status, _, body = request(srv, "GET", f"/api/edit?token={tok}&expression=surprise&intensity={t}")
        assert status == 200
        return body

    reference = {(tok, t): edit(tok, t) for tok in tokens for t in intensities}
    if which == "echo":  # here the two faces' edits differ, and so do the intensities
        assert all(reference[(tokens[0], t)] != reference[(tokens[1], t)] for t in intensities)
        assert len({reference[(tokens[0], t)] for t in intensities}) == len(intensities)
    jobs = [(tok, t) for _ in range(6) for tok in tokens for t in intensities]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda job: edit(*job), jobs))
    for job, body in zip(jobs, results):
        assert body == reference[job], f"response for {job} does not match its own face"


def test_concurrent_uploads_get_their_own_faces(server):
    subjects = [0, 2, 4, 6, 9, 11]
    with ThreadPoolExecutor(max_workers=6) as pool:
        infos = list(pool.map(lambda s: upload(server, face_png(subject=s)), subjects))
    assert len({i["token"] for i in infos}) == len(subjects)
    for s, info in zip(subjects, infos):
        mine = upload(server, face_png(subject=s))
        a = request(server, "GET", f"/api/original?token={info['token']}")[2]
        b = request(server, "GET", f"/api/original?token={mine['token']}")[2]
        assert a == b


def test_session_store_is_an_lru():
    def sess(tok):
        return Session(token=tok, crop=np.zeros((4, 4, 3), np.uint8), code=None, width=4, height=4, pre_aligned=True)

    store = SessionStore(max_sessions=2, max_bytes=1 << 30)
    a, b, c = ("a" * 20, "b" * 20, "c" * 20)
    store.add(sess(a))
    store.add(sess(b))
    store.get(a)  # a is now the most recently used
    store.add(sess(c))
    assert len(store) == 2
    store.get(a)
    store.get(c)
    with pytest.raises(HTTPError) as err:
        store.get(b)
    assert err.value.status == 404


# -- CLI -----------------------------------------------------------------------------------------

def test_cli_warns_on_non_loopback(monkeypatch):
    from click.testing import CliRunner

    import facegan_kit.serve.app as app
    from facegan_kit.cli.serve import serve_cmd

    class FakeServer:
        url = "http://0.0.0.0:1/"

        class service:  # noqa: N801 - a stand-in attribute holder
            size = 16

        def serve_forever(self):
            raise KeyboardInterrupt

        def server_close(self):
            pass

    seen = {}

    def fake_make_server(checkpoint, **kw):
        seen.update(kw)
        return FakeServer()

    monkeypatch.setattr(app, "make_server", fake_make_server)
    runner = CliRunner()
    result = runner.invoke(serve_cmd, ["ckpt.safetensors", "--host", "0.0.0.0", "--port", "0"])
    assert result.exit_code == 0, result.output
    assert "warning" in result.output and "0.0.0.0" in result.output
    assert seen["host"] == "0.0.0.0"
    result = runner.invoke(serve_cmd, ["ckpt.safetensors"])
    assert "warning" not in result.output and seen["host"] == "127.0.0.1" and seen["port"] == 8000
