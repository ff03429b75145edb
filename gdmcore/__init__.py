"""The base every layer may import: no dependency beyond the standard library.

- :class:`InputError`: bad input from a user (the CLI exits with status 2, a job fails
  with the message, the web front ends answer 400).
- :data:`Progress`: the progress callback every service takes.
- :func:`validation_message`: a pydantic validation error as one line.
- :func:`user_uploads` and :func:`check_file_name`: the per-user uploads folder and the
  names allowed in it (the OGC API stores uploads there; a job reads its owner's).

Kernels do not use it: they raise :class:`ValueError` (of which :class:`InputError` is a
subclass).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["InputError", "Progress", "validation_message", "SAFE_NAME", "check_file_name",
           "user_uploads"]


class InputError(ValueError):
    """Bad input from the user: the message is one line that names the problem.

    The command line prints it and exits with status 2; the services record it as the
    job's failure reason. Never raise it for a bug in our own code.
    """


Progress = Callable[[float, str], None]
"""Progress callback: fraction done in [0, 1] and a short message."""


def validation_message(exc: Any, whole: str = "input") -> str:
    """A pydantic ``ValidationError`` as one line: ``field: message; field: message``.

    ``whole`` names the location of errors about the whole model (a model validator's).
    """
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err.get("loc", ())) or whole
        msg = str(err.get("msg", "invalid"))
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+@-]{0,199}$")
"""Names allowed for uploaded files and the users' folders: letters, digits and ._+@-,
not starting with a dot, at most 200 characters."""


def check_file_name(name: str | None, what: str = "file name") -> str:
    """``name`` if it may name a file of an uploads folder, else :class:`InputError`."""
    if not name or not SAFE_NAME.match(name) or ".." in name:
        raise InputError(f"refused {what} {name!r}: letters, digits and ._+@- only, not "
                         "starting with a dot, no '..' or '/', at most 200 characters")
    return name


def user_uploads(uploads_dir: Path, owner: str) -> Path:
    """The folder of ``owner``'s uploaded files: ``uploads_dir / owner``.

    The OGC API stores a user's uploads there and the runner gives the same folder to
    the jobs of that user, so a job only sees its owner's uploads. A user name that
    cannot name a folder safely is an :class:`InputError`.
    """
    if not owner or not SAFE_NAME.match(owner) or ".." in owner:
        raise InputError(f"user name {owner!r} cannot name an uploads folder")
    return Path(uploads_dir) / owner
