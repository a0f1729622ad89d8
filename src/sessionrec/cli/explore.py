"""`sessionrec explore SOURCE --out DIR`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from sessionrec._io import check_output
from sessionrec.cli import _options as o
from sessionrec.cli._app import app, console
from sessionrec.explore import Exploration
from sessionrec.explore import explore as do_explore


@app.command()
def explore(
    source: o.Source,
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Report directory: PNG plots, report.md/.html, summary.json."
        ),
    ],
    session_gap: Annotated[
        str | None,
        typer.Option(
            help="Cut sessions at this inactivity gap (default: the log's session ids, else the suggested gap)."
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
    overwrite: Annotated[
        bool, typer.Option(help="Replace --out when it holds an earlier sessionrec report.")
    ] = False,
    encoding: o.Encoding = None,
    on_bad_time: o.OnBadTime = "drop",
) -> None:
    """Describe a log (counts, lengths, gaps and a suggested session gap, activity, long tail,
    bursty and heavy users, ratings) and write the report."""
    check_output(out, overwrite=overwrite, verb="explore")  # before reading the source
    ds = o.load_source(
        source, session_column, user_column, item_column, time_column, rating_column,
        event_type_column, time_unit, separator, encoding, on_bad_time,
    )  # fmt: skip
    ex = do_explore(ds, session_gap=session_gap)
    ex.save(out, overwrite=overwrite)
    print_exploration(ex)
    console.print(f"report: {out / 'report.html'} (and report.md, summary.json, PNG plots)")


def print_exploration(ex: Exploration) -> None:
    """The key numbers as a table."""
    s = ex.summary
    c, sess, g, p = s["counts"], s["sessions"], s["gaps"], s["popularity"]
    table = Table(title=f"explore: {ex.name}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    how = "the log's ids" if sess["by"] == "column" else f"gap {sess['gap']}"
    rows = [
        ("events", f"{c['events']:,}"),
        ("users", "-" if c["users"] is None else f"{c['users']:,}"),
        ("sessions", f"{c['sessions']:,} ({how})"),
        ("items", f"{c['items']:,}"),
        ("time span", f"{c['first'][:10]} … {c['last'][:10]} ({c['days']:.0f} days)"),
    ]
    if s["user_length"]:
        u = s["user_length"]
        rows.append(("events per user", f"median {u['p50']:g}, max {u['max']:,}"))
    sl = s["session_length"]
    rows.append(("events per session", f"median {sl['p50']:g}, max {sl['max']:,}"))
    if g["count"]:
        rows.append(("0-second gaps", f"{g['zero_share']:.1%}"))
    rows += [
        ("suggested session gap", sess["suggested_gap"]),
        ("events on top 1 % / 10 % items", f"{p['top1pct_share']:.1%} / {p['top10pct_share']:.1%}"),
        (
            "bursty (≥{threshold} events in 1 s)".format(**s["bursts"]["second"]),
            f"{s['bursts']['second']['actors']:,} ({s['bursts']['second']['actors_share']:.1%})",
        ),
    ]
    h = s["heavy_users"]
    if h["users"] is not None:
        rows.append(
            (
                f"heavy users (> {h['days_in_log']:,} events)",
                f"{h['users']:,} ({h['users_share']:.1%})",
            )
        )
    d = s["duplicates"]
    rows.append(("exact duplicate rows", f"{d['events']:,} ({d['share']:.1%})"))
    if s["ratings"]:
        rows.append(("mean rating", f"{s['ratings']['mean']:.2f}"))
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)
