"""Small private helpers shared by the gdmio modules."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

from rasterio.errors import NotGeoreferencedWarning


@contextlib.contextmanager
def quiet_rasterio() -> Iterator[None]:
    """Silence the warnings rasterio emits for conditions we check ourselves.

    - ``NotGeoreferencedWarning``: we test the CRS and transform explicitly.
    - affine >= 3 ``PendingDeprecationWarning`` ("Use `@` matmul"): raised from inside
      rasterio itself (``from_origin``, ``windows.transform``,
      ``calculate_default_transform``...), not from our code.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        warnings.filterwarnings(
            "ignore", message=r".*matmul.*", category=PendingDeprecationWarning
        )
        yield


def first_line(exc: BaseException) -> str:
    """Return the first non-empty line of an exception's message (for one-line errors)."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


def remove_quietly(*paths: Path) -> None:
    """Remove files that may or may not exist (cleanup after a failure)."""
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            os.remove(p)
