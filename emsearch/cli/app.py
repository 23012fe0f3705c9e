"""The typer application and its entry point: every user error becomes one line on stderr and exit code 2."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

from emsearch.errors import EmsearchError

app = typer.Typer(
    help="emsearch: train EMS sentence encoders, build multilingual indexes, mine bitext and search.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True, soft_wrap=True)  # a message or hint is never broken mid-command


def print_error(message: object) -> None:
    """One line on stderr. The message is escaped: a path or code like `[/x]` is text, not rich markup."""
    console.print(f"[bold red]error:[/] {escape(' '.join(str(message).splitlines()))}", highlight=False,
                  soft_wrap=True)


def fail(message: str) -> None:
    """Print a one-line error and exit non-zero."""
    print_error(message)
    raise typer.Exit(2)


def user_facing(e: BaseException) -> bool:
    """An error the user can fix (its message says how); anything else is a bug, and shows its traceback."""
    return isinstance(e, (EmsearchError, OSError))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)
    except Exception as e:
        if not user_facing(e):
            raise
        print_error(e)
        sys.exit(2)
