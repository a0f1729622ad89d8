"""Options shared by verbs that read a raw source (explore, prepare)."""

from __future__ import annotations

from typing import Annotated

import typer

from sessionrec.datasets import ColumnMapping, Dataset, load

SessionColumn = Annotated[
    str | None, typer.Option(help="Column holding the log's own session ids.")
]
UserColumn = Annotated[str | None, typer.Option(help="Column holding user ids.")]
ItemColumn = Annotated[str | None, typer.Option(help="Column holding item ids.")]
TimeColumn = Annotated[str | None, typer.Option(help="Column holding event times.")]
RatingColumn = Annotated[str | None, typer.Option(help="Column holding ratings.")]
EventTypeColumn = Annotated[str | None, typer.Option(help="Column holding event types.")]
TimeUnit = Annotated[
    str | None, typer.Option(help="s | ms | us | iso; detected from the values when not given.")
]
Separator = Annotated[
    str | None, typer.Option(help="Field separator of a text log; detected when not given.")
]
Source = Annotated[
    str, typer.Argument(help="A dataset name (ml-100k, ...) or a path to a folder or file.")
]


def load_source(
    source: str,
    session_column: str | None = None,
    user_column: str | None = None,
    item_column: str | None = None,
    time_column: str | None = None,
    rating_column: str | None = None,
    event_type_column: str | None = None,
    time_unit: str | None = None,
    separator: str | None = None,
) -> Dataset:
    sep = separator.encode().decode("unicode_escape") if separator else None
    mapping = ColumnMapping(
        session=session_column,
        user=user_column,
        item=item_column,
        time=time_column,
        rating=rating_column,
        event_type=event_type_column,
        time_unit=time_unit,
        separator=sep,
    )
    return load(source, mapping)
