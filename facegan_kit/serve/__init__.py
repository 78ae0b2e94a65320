"""``facegan serve``: a local, single-machine web app for interactive expression editing.

    from facegan_kit.serve import make_server
    server = make_server("runs/quick/final.safetensors", host="127.0.0.1", port=8000)
    server.serve_forever()

See :mod:`facegan_kit.serve.app` for the JSON API.
"""
from facegan_kit.serve.app import EditService, FaceganHTTPServer, ServeLimits, is_loopback, make_server

__all__ = ["EditService", "FaceganHTTPServer", "ServeLimits", "is_loopback", "make_server"]
