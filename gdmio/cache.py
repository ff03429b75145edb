"""The scene cache shared by every worker: one folder, safe under concurrency.

Layout: ``ROOT/ab/abcdef…/NAME`` where ``abcdef…`` is the SHA-256 of the scene key
(content addressing by key: the same scene always lands in the same place), plus a
``.lock`` file beside each entry. Guarantees:

- **Fetched once.** :meth:`SceneCache.get` takes an exclusive ``flock`` on the entry's
  lock file while it checks and fills the entry, so two workers (processes or threads)
  asking for the same scene at once download it once; the second one waits and then
  reuses the file.
- **Never half-written.** The fetcher writes to a temporary name that is renamed into
  place only when complete (see :mod:`gdmio.download`).
- **Bounded size, least recently used evicted first.** Each use touches the entry's
  ``.used`` stamp; :meth:`SceneCache.evict` removes the least recently used entries
  until the cache fits ``max_bytes``, skipping entries in use: a reader holds a shared
  ``flock`` while it uses an entry (:meth:`SceneCache.use`), and eviction only removes
  an entry whose lock it can take exclusively without waiting.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from gdmio.locks import file_lock

__all__ = ["SceneCache", "CacheEntry"]


@dataclass(frozen=True)
class CacheEntry:
    """One cached scene: its folder, size and last use."""

    key: str
    folder: Path
    size: int
    last_used: float


def _key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class SceneCache:
    """A folder of scenes shared by workers, with per-entry locks and LRU eviction.

    Parameters
    ----------
    root
        Cache folder (on a file system with working ``flock``: local disk or NFSv4).
    max_bytes
        Size above which :meth:`evict` (also run after each fill) removes least recently
        used entries; ``None`` for no limit.

    """

    def __init__(self, root: str | os.PathLike[str], max_bytes: int | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes

    def folder(self, key: str) -> Path:
        """Folder of the entry for ``key`` (may not exist yet)."""
        h = _key_digest(key)
        return self.root / h[:2] / h

    def _lock(self, key: str) -> Path:
        f = self.folder(key)
        return f.parent / f"{f.name}.lock"

    def _used(self, key: str) -> Path:
        f = self.folder(key)
        return f.parent / f"{f.name}.used"

    def get(self, key: str, name: str, fetch: Callable[[Path], None],
            valid: Callable[[Path], bool] | None = None) -> Path:
        """Path of ``name`` in the entry for ``key``, fetching it once if missing.

        Parameters
        ----------
        key
            Scene identifier (e.g. the archive's product id).
        name
            File name inside the entry.
        fetch
            ``fetch(dest)`` writes the file at ``dest`` (atomically: a temporary name,
            then a rename) or raises.
        valid
            Optional check of an existing file (e.g. its size); an invalid one is
            fetched again.

        """
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"bad cache file name {name!r}")
        folder = self.folder(key)
        dest = folder / name
        with file_lock(self._lock(key), fcntl.LOCK_EX):
            if dest.exists() and (valid is None or valid(dest)):
                self._touch(key)
                return dest
            folder.mkdir(parents=True, exist_ok=True)
            (folder / ".key").write_text(key)
            fetch(dest)
            if not dest.exists():
                raise RuntimeError(f"fetcher did not write {dest}")
            self._touch(key)
        if self.max_bytes is not None:
            self.evict()
        return dest

    @contextlib.contextmanager
    def use(self, key: str) -> Iterator[Path]:
        """Hold the entry for ``key`` in use (not evictable) for the ``with`` block."""
        with file_lock(self._lock(key), fcntl.LOCK_SH):
            self._touch(key)
            yield self.folder(key)

    def _touch(self, key: str) -> None:
        used = self._used(key)
        used.parent.mkdir(parents=True, exist_ok=True)
        used.touch()
        now = time.time()
        os.utime(used, (now, now))

    def entries(self) -> list[CacheEntry]:
        """Every entry, least recently used first."""
        out = []
        for folder in self.root.glob("??/*"):
            if not folder.is_dir():
                continue
            key_file = folder / ".key"
            key = key_file.read_text() if key_file.exists() else folder.name
            size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
            used = folder.parent / f"{folder.name}.used"
            last = used.stat().st_mtime if used.exists() else folder.stat().st_mtime
            out.append(CacheEntry(key, folder, size, last))
        return sorted(out, key=lambda e: e.last_used)

    def size(self) -> int:
        """Total bytes in the cache."""
        return sum(e.size for e in self.entries())

    def evict(self, max_bytes: int | None = None) -> list[str]:
        """Remove least recently used entries not in use until the cache fits.

        Returns the keys removed.
        """
        limit = self.max_bytes if max_bytes is None else max_bytes
        if limit is None:
            return []
        entries = self.entries()
        total = sum(e.size for e in entries)
        removed = []
        for e in entries:
            if total <= limit:
                break
            lock = e.folder.parent / f"{e.folder.name}.lock"
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o664)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # in use (or being filled): never evicted
                shutil.rmtree(e.folder, ignore_errors=True)
                (e.folder.parent / f"{e.folder.name}.used").unlink(missing_ok=True)
                total -= e.size
                removed.append(e.key)
            finally:
                with contextlib.suppress(OSError):
                    fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
        return removed
