"""The command line's one error handler.

Every command is wrapped in :func:`handle_errors`: a :class:`~tessera.errors.TesseraError`
it raises is printed as one line on stderr and the process exits with the class's
code from :data:`tessera.errors.EXIT_CODES`. A command reports a bad argument (a
``ValueError`` of its own parsing) with :func:`fail`, exit code 2, as Click does for
a usage error.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import NoReturn, ParamSpec, TypeVar

import typer
import typer.rich_utils
from rich.console import Console

from tessera.errors import TesseraError, exit_code

#: Exit code of a bad argument (the same as a command-line usage error).
EXIT_BAD_ARGUMENT = 2

P = ParamSpec("P")
R = TypeVar("R")


def _colour() -> bool:
    """Whether stderr gets colour: a terminal, or ``FORCE_COLOR`` set (``NO_COLOR`` wins)."""
    if os.environ.get("NO_COLOR"):
        return False
    return bool(os.environ.get("FORCE_COLOR")) or sys.stderr.isatty()


# typer's usage errors (a missing argument, an unknown option) use this console setting.
typer.rich_utils.FORCE_TERMINAL = _colour()
_err = Console(stderr=True, force_terminal=_colour(), no_color=not _colour())


def report_error(exc: Exception) -> int:
    """Print ``exc`` as one line on stderr; the exit code it calls for."""
    if isinstance(exc, TesseraError):
        code = exit_code(exc)
        reason = getattr(exc, "reason", None)
        label = f"the ledger refused: {reason}" if reason else f"{type(exc).__name__}: {exc}"
    else:
        code, label = EXIT_BAD_ARGUMENT, f"bad argument: {exc}"
    _err.print(f"[red]error:[/red] {label}", soft_wrap=True, highlight=False)
    return code


def fail(exc: Exception) -> NoReturn:
    """Print one line on stderr and exit with the error's code."""
    raise typer.Exit(report_error(exc))


def handle_errors(command: Callable[P, R]) -> Callable[P, R]:
    """``command`` with every :class:`~tessera.errors.TesseraError` it raises reported by
    :func:`fail` (put it under ``@app.command()``)."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except TesseraError as exc:
            fail(exc)

    return run
