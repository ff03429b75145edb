"""All-or-nothing product folders.

``with ProductDir(out) as stage:`` hands out a hidden staging folder inside ``out``
(same file system, so moves are atomic renames). When the block succeeds, every file
written there is moved to the same relative place in ``out`` (metadata such as STAC
items and reports last, so a watcher that sees ``item.json`` sees complete products);
when it fails, the staging folder is deleted and ``out`` is left as it was.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from gdmcore import InputError
from gdmio.atomic import replace

__all__ = ["ProductDir", "STAGING_PREFIX"]

STAGING_PREFIX = ".partial-"


class ProductDir:
    """Context manager that publishes a product folder only when it is complete.

    Parameters
    ----------
    out_dir : str or PathLike
        Final product folder (created if needed; existing unrelated files are kept,
        files with the same relative path are replaced).
    last : sequence of str
        Glob patterns (on file names) of files moved after all others.

    Attributes
    ----------
    staging : pathlib.Path
        The staging folder (valid inside the ``with`` block).
    moved : list of pathlib.Path
        Final paths of the files published, after a successful exit.

    """

    def __init__(self, out_dir: str | os.PathLike[str], last: Sequence[str] = ("*.json",)):
        self.out_dir = Path(out_dir)
        self.last = tuple(last)
        self.staging: Path | None = None
        self.moved: list[Path] = []
        self._created: list[Path] = []

    def __enter__(self) -> Path:
        missing: list[Path] = []
        p = self.out_dir.absolute()
        while not p.exists():
            missing.append(p)
            p = p.parent
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise InputError(f"output folder {self.out_dir} exists and is not a folder")
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._created = missing  # deepest first: removed in this order on failure
            self.staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.out_dir))
        except OSError as exc:
            self._cleanup(failed=True)
            raise InputError(
                f"cannot write to output folder {self.out_dir}: {exc.strerror or exc}"
            ) from exc
        return self.staging

    def _files(self, staging: Path) -> list[Path]:
        files = [p for p in staging.rglob("*") if p.is_file() or p.is_symlink()]
        return sorted(files, key=lambda p: (
            any(fnmatch.fnmatch(p.name, pat) for pat in self.last),
            len(p.relative_to(staging).parts),
            str(p),
        ))

    def _publish(self) -> None:
        assert self.staging is not None
        for src in self._files(self.staging):
            dest = self.out_dir / src.relative_to(self.staging)
            dest.parent.mkdir(parents=True, exist_ok=True)
            replace(src, dest)
            self.moved.append(dest)

    def _cleanup(self, failed: bool) -> None:
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
        if failed:
            for folder in self._created:
                try:
                    folder.rmdir()  # only if still empty
                except OSError:
                    break

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        failed = exc_type is not None
        try:
            if not failed:
                self._publish()
        except BaseException:
            failed = True
            raise
        finally:
            self._cleanup(failed)
