"""Where benchmarks find the real data that the project may not ship.

Real data that the project may redistribute lives in ``tests/data/`` (each folder with
its LICENSE and PROVENANCE.md). Everything else is used only by benchmarks, from the
shared data folder: ``$GDM_SHARED_DATA`` if set, else ``../shared/data`` beside the
repository. A benchmark whose data is absent says where to put it and exits 0.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path:
    """The shared data folder (it may not exist)."""
    env = os.environ.get("GDM_SHARED_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def shared_data(*parts: str) -> Path | None:
    """``shared_data_root()/parts`` if it exists, else None."""
    path = shared_data_root().joinpath(*parts)
    return path if path.exists() else None


def require_shared_data(*parts: str) -> Path:
    """Like :func:`shared_data`, but a missing folder ends the benchmark cleanly (exit 0)."""
    path = shared_data(*parts)
    if path is None:
        wanted = shared_data_root().joinpath(*parts)
        print(f"skipped: {wanted} is absent (set GDM_SHARED_DATA to the folder that holds "
              f"{'/'.join(parts)})")
        sys.exit(0)
    return path
