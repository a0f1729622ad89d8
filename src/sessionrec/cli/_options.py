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
    str | None,
    typer.Option(help="s | ms | us | ns | iso; detected from the whole column when not given."),
]
Encoding = Annotated[
    str | None,
    typer.Option(help="Text encoding of a CSV/TSV log (latin-1, cp1252, ...); UTF-8 by default."),
]
OnBadTime = Annotated[
    str,
    typer.Option(
        help="drop | error: what to do with times before 1990 or after next year (warned and "
        "counted in meta.json when dropped)."
    ),
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
    encoding: str | None = None,
    on_bad_time: str = "drop",
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
        encoding=encoding,
        on_bad_time=on_bad_time,
    )
    return load(source, mapping)


#: One flag pair for every verb that ranks (evaluate, compare, sweep, tune, train's valid
#: metric, data ceiling, recommend). Verbs that measure default to --include-seen, the
#: published session-based protocol (GRU4Rec, session-rec), so figures compare with the
#: literature; verbs that serve a list to a person (recommend, serve) default to
#: --exclude-seen. Every output says which it used.
_SEEN_HELP = (
    "--exclude-seen ranks as the served list does, without the session's items (a target that "
    "repeats one is a miss); --include-seen keeps them rankable."
)
SeenMeasure = Annotated[
    bool,
    typer.Option(
        "--exclude-seen/--include-seen", help=_SEEN_HELP + " [measuring default: include]"
    ),
]
SeenServe = Annotated[
    bool,
    typer.Option("--exclude-seen/--include-seen", help=_SEEN_HELP + " [serving default: exclude]"),
]
