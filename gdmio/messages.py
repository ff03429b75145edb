"""Messages shown to users without the server's file-system layout.

Job messages and activation log entries are written by workers and may quote a path
(``cannot read /srv/gdm/products/<id>/stage/x.tif``); pages, bulletins and API answers
show them through :func:`public_message`, which keeps only the file name.
"""

from __future__ import annotations

import re

__all__ = ["public_message"]

# An absolute POSIX path of two components or more (not a URL: no "//" or ":" before it).
_PATH = re.compile(r"(?<![\w.:/~-])/(?:[\w.@+%=,-]+/)+([\w.@+%=,-]+)")


def public_message(text: str | None) -> str:
    """``text`` with every absolute file path replaced by its last component."""
    if not text:
        return text or ""
    return _PATH.sub(lambda m: m.group(1), str(text))
