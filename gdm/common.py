"""What every ``gdm`` sub-command shares: exit statuses, the error guard, the progress bar.

Exit status: 0 on success, 2 on bad input (one line on stderr naming the problem),
1 on an internal failure.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from typing import Any

import click
from pydantic import ValidationError

from gdmcore import InputError, validation_message

__all__ = ["EXIT_BAD_INPUT", "EXIT_INTERNAL", "guarded", "ProgressBar"]

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 1


def guarded(func: Callable[[], Any], debug: bool) -> Any:
    """Run ``func``, turning bad input into exit 2 and bugs into exit 1 (one line each)."""
    try:
        return func()
    except InputError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    except ValidationError as exc:
        click.echo(f"error: {validation_message(exc)}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    except Exception as exc:  # noqa: BLE001 - the last line of defence of the CLI
        if debug:
            traceback.print_exc()
        click.echo(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug)",
                   err=True)
        sys.exit(EXIT_INTERNAL)


class ProgressBar:
    """A tqdm bar fed by the services' ``progress(fraction, message)`` callbacks."""

    def __init__(self, enabled: bool, desc: str) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=1000, desc=desc, disable=not enabled, unit="‰",
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}",
                        file=sys.stderr)

    def __call__(self, fraction: float, message: str) -> None:
        """Show ``message`` and move the bar to ``fraction`` (in [0, 1])."""
        self.bar.set_description_str(message, refresh=False)
        self.bar.update(max(0, int(fraction * 1000) - self.bar.n))

    def close(self) -> None:
        """Close the bar (leaves it printed)."""
        self.bar.close()
