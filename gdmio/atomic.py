"""Atomic writes: a file appears complete under its name, or not at all.

Every file the service writes for others to read (products, reports, JSON documents,
quicklooks, markers, uploads) is written under a hidden temporary name in the same
folder (same file system) and renamed onto its name with :func:`os.replace` only once
complete; a failure removes the temporary file. Use :func:`atomic_path` for writers that
take a path (rasterio, matplotlib, a download), :func:`write_text` and
:func:`write_bytes` for content in memory. Writers that must keep their temporary file
past one block (a resumable download, a NetCDF file open across calls, a staging folder)
publish it with :func:`replace`; finished folders are published with
:func:`publish_dir` (first writer wins). Whole product folders are staged by
:class:`gdmio.products.ProductDir`, which publishes each file with :func:`replace`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "write_text", "write_bytes", "temp_sibling", "replace", "publish_dir"]


def temp_sibling(path: Path, suffix: str = ".tmp") -> Path:
    """A hidden, unique temporary name in the same folder as ``path``, ending in ``suffix``.

    Same folder means same file system, so ``os.replace`` onto ``path`` is atomic.
    """
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}{suffix}")


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; when the block ends, it becomes ``dest``.

    The temporary name keeps ``dest``'s extension (writers that infer the format from it
    still work). The parent folder is created. If the block raises, the temporary file is
    removed and ``dest`` is left as it was.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(dest, ".part" + dest.suffix)
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def write_text(dest: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``dest`` atomically; returns ``dest`` as a Path."""
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(dest)


def write_bytes(dest: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``dest`` atomically; returns ``dest`` as a Path."""
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
    return Path(dest)


def replace(tmp: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Publish a complete temporary file ``tmp`` (same folder or file system) as ``dest``.

    The one rename of every atomic write whose temporary file outlives a block; returns
    ``dest`` as a Path.
    """
    os.replace(tmp, dest)
    return Path(dest)


def publish_dir(tmp: str | os.PathLike[str], final: str | os.PathLike[str]) -> bool:
    """Rename a finished temporary folder onto ``final``; the first writer wins.

    Returns True when ``tmp`` became ``final``. When another attempt already published
    ``final`` (a duplicate of an idempotent step), ``tmp`` is removed and False returned.
    Any other failure is raised.
    """
    tmp, final = Path(tmp), Path(final)
    try:
        os.rename(tmp, final)
        return True
    except OSError:
        if final.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
            return False
        raise
