"""What every ``gdm`` sub-command shares: exit statuses, the error guard, the progress bar.

Exit status: 0 on success, 2 on bad input (one line on stderr naming the problem),
1 on an internal failure.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from typing import Any, Literal, get_args, get_origin

import click
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticUndefined

from gdmcore import InputError, validation_message

__all__ = ["EXIT_BAD_INPUT", "EXIT_INTERNAL", "guarded", "ProgressBar", "config_option"]

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


def config_option(model: type[BaseModel], field: str, *decls: str,
                  **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A click option made from a field of a service's config model.

    The help text, the default, the type and the choices (``Literal``, shown) come from the
    model, so the CLI and the service cannot drift apart (bounds and validators are the
    model's, checked when the command builds its config: one line, exit status 2);
    ``decls`` are the option names (default ``--field-name``) and ``kwargs`` override.
    A field without a default gets None (the model's default applies).
    """
    info = model.model_fields[field]
    opts: dict[str, Any] = {"help": info.description}
    if info.default is not PydanticUndefined and info.default is not None:
        opts.update(default=info.default, show_default=True)
    annotation = info.annotation
    args = [a for a in get_args(annotation) if a is not type(None)] or [annotation]
    base = args[0] if len(args) == 1 else annotation
    if get_origin(base) is Literal:  # checked by the model too (one line, not click's usage)
        choices = [str(v) for v in get_args(base)]
        opts.update(type=str, metavar="[" + "|".join(choices) + "]")
    elif base in (int, float, str):
        opts["type"] = base  # bounds are checked by the model: one line, exit status 2
    opts.update(kwargs)
    return click.option(*(decls or ("--" + field.replace("_", "-"),)), field, **opts)
