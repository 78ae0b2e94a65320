"""Where converted weights and trained oracles are cached (never downloaded)."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

CACHE_ENV = "FACEGAN_CACHE"


def cache_dir(*parts: str) -> Path:
    """``$FACEGAN_CACHE`` (default ``~/.cache/facegan_kit``) joined with ``parts``, created."""
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "facegan_kit")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def file_lock(path):
    """Exclusive advisory lock (POSIX) on ``path``, so that concurrent first uses of a cached
    asset (oracles, the synthetic identity backbone) train it only once."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    try:
        fh = open(path, "a+")
    except OSError:  # read-only cache: no lock, no harm
        yield
        return
    with fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
