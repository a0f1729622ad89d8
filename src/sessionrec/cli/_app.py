from __future__ import annotations

import logging

import typer
from rich.console import Console

app = typer.Typer(
    name="sessionrec",
    help="Session-based recommendation: data, explore, prepare, train, evaluate, recommend.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: no rich panels, no `<bool>` type beside every flag
)
# No markup and no emoji codes: paths, ids and error text print literally ("[bold]x" and
# "line :100:" stay as they are). Styles are given as arguments, never inside the text.
console = Console(markup=False, emoji=False)
err_console = Console(stderr=True, markup=False, emoji=False)


def _version(value: bool) -> None:
    if value:
        from sessionrec._version import __version__

        console.print(f"sessionrec {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details."),
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_version, help="Print the version and exit."
    ),
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")
