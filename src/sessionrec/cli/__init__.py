"""The ``sessionrec`` command line: thin verbs over the library; errors as one line, exit 2."""

from __future__ import annotations

import sys

from rich.text import Text

from sessionrec.cli._app import app, console, err_console
from sessionrec.errors import SessionrecError

# Each module registers its verbs on `app` when imported.
from sessionrec.cli import data as _data  # noqa: F401  isort: skip
from sessionrec.cli import explore as _explore  # noqa: F401  isort: skip
from sessionrec.cli import prepare as _prepare  # noqa: F401  isort: skip
from sessionrec.cli import demo as _demo  # noqa: F401  isort: skip
from sessionrec.cli import evaluate as _evaluate  # noqa: F401  isort: skip
from sessionrec.cli import crossval as _crossval  # noqa: F401  isort: skip
from sessionrec.cli import train as _train  # noqa: F401  isort: skip
from sessionrec.cli import index as _index  # noqa: F401  isort: skip
from sessionrec.cli import compare as _compare  # noqa: F401  isort: skip
from sessionrec.cli import sweep as _sweep  # noqa: F401  isort: skip
from sessionrec.cli import tune as _tune  # noqa: F401  isort: skip
from sessionrec.cli import experiment as _experiment  # noqa: F401  isort: skip
from sessionrec.cli import models as _models  # noqa: F401  isort: skip
from sessionrec.cli import serve as _serve  # noqa: F401  isort: skip

__all__ = ["app", "console", "main"]


def main(argv: list[str] | None = None) -> None:
    """Entry point: runs the app; a SessionrecError becomes one line on stderr and exit code 2."""
    try:
        app(args=argv, standalone_mode=False)
    except SessionrecError as exc:
        print_error(str(exc))
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # click's usage errors (typer >= 0.2x vendors click as typer._click)
        import typer

        if isinstance(exc, typer.Exit):
            sys.exit(exc.exit_code)
        if isinstance(exc, typer.Abort):
            sys.exit(1)
        code = getattr(exc, "exit_code", None)
        message = getattr(exc, "format_message", None)
        if callable(message) and isinstance(code, int):
            # click's usage errors, in the same "error: ..." form as every other error
            ctx = getattr(exc, "ctx", None)
            if ctx is not None:
                err_console.print(ctx.get_usage(), highlight=False, soft_wrap=True)
                err_console.print(
                    f"Try '{ctx.command_path} {ctx.help_option_names[0]}' for help.",
                    highlight=False,
                    soft_wrap=True,
                )
            print_error(str(message()))
            sys.exit(code)
        raise


def print_error(message: str) -> None:
    """``error: <message>`` on stderr, the message printed literally (no markup, no emoji:
    a path like ``in/[red]dir`` or a value like ``:100:`` shows as it is)."""
    err_console.print(
        Text.assemble(("error:", "bold red"), " ", message), highlight=False, soft_wrap=True
    )
