"""The typer application and its entry point: every user error becomes one line on stderr and exit code 2."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(
    help="emsearch: train EMS sentence encoders, build multilingual indexes, mine bitext and search.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True)


def print_error(message: object) -> None:
    """One line on stderr. The message is escaped: a path or code like `[/x]` is text, not rich markup."""
    console.print(f"[bold red]error:[/] {escape(' '.join(str(message).splitlines()))}", highlight=False,
                  soft_wrap=True)


def fail(message: str) -> None:
    """Print a one-line error and exit non-zero."""
    print_error(message)
    raise typer.Exit(2)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)
    except (ValueError, OSError) as e:  # typed user-facing errors subclass these
        print_error(e)
        sys.exit(2)
