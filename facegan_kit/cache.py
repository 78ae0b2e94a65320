"""Where converted weights and trained oracles are cached (never downloaded)."""
from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "FACEGAN_CACHE"


def cache_dir(*parts: str) -> Path:
    """``$FACEGAN_CACHE`` (default ``~/.cache/facegan_kit``) joined with ``parts``, created."""
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "facegan_kit")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
