"""`sessionrec prepare SOURCE --out DIR`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from sessionrec._io import check_output
from sessionrec.cli import _options as o
from sessionrec.cli._app import app, console
from sessionrec.errors import ConfigError
from sessionrec.prepare import PrepareConfig, PreparedData
from sessionrec.prepare import prepare as do_prepare


@app.command()
def prepare(
    source: o.Source,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output directory (written atomically).")
    ],
    session: Annotated[
        str | None, typer.Option(help="'user': a user's whole history is one session.")
    ] = None,
    session_gap: Annotated[
        str | None,
        typer.Option(
            help="New session after this inactivity gap (30m, 1h, ...). With none of "
            "--session, --session-gap, --session-column: the log's own session ids when it "
            "has them (YOOCHOOSE), else a 1h gap."
        ),
    ] = None,
    session_column: o.SessionColumn = None,
    user_column: o.UserColumn = None,
    item_column: o.ItemColumn = None,
    time_column: o.TimeColumn = None,
    rating_column: o.RatingColumn = None,
    event_type_column: o.EventTypeColumn = None,
    time_unit: o.TimeUnit = None,
    separator: o.Separator = None,
    encoding: o.Encoding = None,
    on_bad_time: o.OnBadTime = "drop",
    min_rating: Annotated[float | None, typer.Option(help="Keep ratings >= this.")] = None,
    event_type: Annotated[str | None, typer.Option(help="Keep only this event type.")] = None,
    drop_repeats: Annotated[
        bool, typer.Option(help="Drop consecutive repeats of an item in a session.")
    ] = False,
    drop_duplicates: Annotated[
        bool,
        typer.Option(
            help="Drop events that repeat an earlier row exactly (counted in meta.json and "
            "warned about either way)."
        ),
    ] = False,
    min_session_length: Annotated[int, typer.Option(help="Recursive filter; 0 disables.")] = 2,
    max_session_length: Annotated[int | None, typer.Option(help="Recursive filter.")] = None,
    min_item_support: Annotated[int, typer.Option(help="Recursive filter; 0 disables.")] = 5,
    min_user_events: Annotated[int | None, typer.Option(help="Recursive filter.")] = None,
    max_user_events: Annotated[
        int | None, typer.Option(help="Recursive filter: drop users above this (bots).")
    ] = None,
    split: Annotated[
        str,
        typer.Option(
            help="time | user-time | leave-one-out | random (whole sessions) | random-event "
            "(single events: the rating-level 70/30 split)."
        ),
    ] = "time",
    test_days: Annotated[float, typer.Option(help="time split: test window in days.")] = 1.0,
    valid_days: Annotated[float, typer.Option(help="time split: valid window in days.")] = 1.0,
    test_fraction: Annotated[
        float, typer.Option(help="user-time / random / random-event split.")
    ] = 0.1,
    valid_fraction: Annotated[
        float, typer.Option(help="user-time / random / random-event split.")
    ] = 0.1,
    seed: Annotated[int, typer.Option(help="random / random-event split seed.")] = 0,
    examples: Annotated[
        str | None,
        typer.Option(
            help="tfrs: instead of sessions, the TensorFlow Recommenders tutorial's examples "
            "(ratings >= --min-rating [2], user timelines >= --min-timeline, context <= "
            "--max-context previous items, label = the next one, --test-fraction of examples "
            "at random as test)."
        ),
    ] = None,
    max_context: Annotated[int, typer.Option(help="--examples: context length.")] = 10,
    min_timeline: Annotated[int, typer.Option(help="--examples: shortest timeline.")] = 3,
    overwrite: Annotated[
        bool, typer.Option(help="Replace --out when it holds earlier sessionrec output.")
    ] = False,
) -> None:
    """Sessionize, filter (recursively) and split a log into a PreparedData directory."""
    chosen = [x for x in (session, session_gap, session_column) if x]
    if len(chosen) > 1:
        raise ConfigError("give one of --session user, --session-gap, --session-column")
    if session not in (None, "user"):
        raise ConfigError(f"--session takes 'user', not {session!r} (see --session-gap)")
    if session_column:
        how = "column"
    elif session == "user":
        how = "user"
    else:  # none given: the log's own session ids when it has them, else a 1 h gap
        how = session_gap or "auto"
    check_output(out, overwrite=overwrite, verb="prepare")  # before reading the source
    ds = o.load_source(
        source, session_column, user_column, item_column, time_column, rating_column,
        event_type_column, time_unit, separator, encoding, on_bad_time,
    )  # fmt: skip
    if examples is not None:
        _prepare_examples(ds, out, examples, min_rating, min_timeline, max_context,
                          test_fraction, seed, overwrite)  # fmt: skip
        return
    cfg = PrepareConfig(
        session=how,
        min_rating=min_rating,
        event_type=event_type,
        drop_repeats=drop_repeats,
        drop_duplicates=drop_duplicates,
        min_session_length=min_session_length or None,
        max_session_length=max_session_length,
        min_item_support=min_item_support or None,
        min_user_events=min_user_events,
        max_user_events=max_user_events,
        split=split,
        test_days=test_days,
        valid_days=valid_days,
        test_fraction=test_fraction,
        valid_fraction=valid_fraction,
        seed=seed,
    )
    data = do_prepare(ds, out, cfg, overwrite=overwrite)
    assert isinstance(data, PreparedData)
    print_prepared(data)


def print_prepared(data: PreparedData) -> None:
    table = Table(title=f"prepared: {data.path}")
    for col in ("part", "events", "sessions", "items"):
        table.add_column(col, justify="right" if col != "part" else "left")
    for part, c in data.meta["counts"].items():
        table.add_row(part, f"{c['events']:,}", f"{c['sessions']:,}", f"{c['items']:,}")
    console.print(table)
    how = data.meta.get("params", {}).get("session")
    said = {"user": "a user's whole history", "column": "the log's own session ids"}
    if how:
        console.print(f"sessions: {said.get(how, f'a {how} inactivity gap')}", highlight=False)
    console.print(f"{data.n_items:,} items in the vocabulary (train)")
    for i, r in enumerate(data.meta["dropped"]["support_rounds"], 1):
        if any(r.values()):
            console.print(
                f"filter round {i}: removed " + ", ".join(f"{v:,} by {k}" for k, v in r.items())
            )


def _prepare_examples(
    ds: Any,
    out: Path,
    kind: str,
    min_rating: float | None,
    min_timeline: int,
    max_context: int,
    test_fraction: float,
    seed: int,
    overwrite: bool,
) -> None:
    from sessionrec.prepare.examples import prepare_examples

    if kind != "tfrs":
        raise ConfigError(f"--examples takes 'tfrs', not {kind!r}")
    data = prepare_examples(
        ds,
        out,
        min_rating=2.0 if min_rating is None else min_rating,
        min_timeline=min_timeline,
        max_context=max_context,
        test_fraction=test_fraction,
        seed=seed,
        overwrite=overwrite,
    )
    table = Table(title=f"tfrs examples: {data.path}")
    for col in ("part", "examples", "rows (with context)", "items"):
        table.add_column(col, justify="right" if col != "part" else "left")
    for part, c in data.meta["counts"].items():
        if part != "valid":
            table.add_row(part, f"{c['events']:,}", f"{c['rows']:,}", f"{c['items']:,}")
    console.print(table)
    console.print(
        f"{data.n_items:,} items; one prediction per example: evaluate with --cutoffs 1 5 10 50 "
        "100 for the tutorial's top-k accuracy (= Recall@k)",
        highlight=False,
    )
