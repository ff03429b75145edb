"""Advisory file locks shared by processes on one machine or a shared file system."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["file_lock"]


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str], mode: int = fcntl.LOCK_EX) -> Iterator[None]:
    """Hold an ``flock`` on ``path`` (created, with its folder) for the ``with`` block.

    ``mode``: ``fcntl.LOCK_EX`` (one holder) or ``fcntl.LOCK_SH`` (readers).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o664)
    try:
        fcntl.flock(fd, mode)
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
