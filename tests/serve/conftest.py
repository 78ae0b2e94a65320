"""Shared fixtures of the ``facegan serve`` tests."""
from __future__ import annotations

import contextlib
import threading

import pytest


@contextlib.contextmanager
def _serving(srv):
    """Run ``srv.serve_forever()`` in a daemon thread; shut it down and close it on exit."""
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


@pytest.fixture(scope="session")
def serving():
    """``with serving(make_server(...)) as srv:`` -- the server answers inside the block."""
    return _serving
