"""`explore(events)`: the numbers, tables and plots that describe a log before it is prepared."""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from sessionrec import _schema as S
from sessionrec._io import output_dir
from sessionrec.datasets import Dataset, load
from sessionrec.datasets._events import repeated_events
from sessionrec.explore import stats as st
from sessionrec.explore.plots import draw_all
from sessionrec.explore.report import render_html, render_markdown
from sessionrec.prepare.sessionize import parse_duration

log = logging.getLogger(__name__)

#: How many rows the top-N tables (items, bursty users, heavy users) keep.
TOP_N = 10


@dataclass(frozen=True)
class Exploration:
    """What :func:`explore` found: key numbers, small tables, and plots drawn on demand.

    Attributes:
        name: the dataset's name (or ``"events"``).
        summary: JSON-ready numbers, grouped by topic (``counts``, ``sessions``,
            ``user_length``, ``session_length``, ``gaps``, ``activity``, ``popularity``,
            ``bursts``, ``heavy_users``, ``ratings``, ``repeats``).
        tables: small polars frames behind the report's tables and plots (candidate gaps,
            histograms, activity, rank-frequency, top items, bursty and heavy users, ratings).
    """

    name: str
    summary: dict[str, Any]
    tables: dict[str, pl.DataFrame] = field(repr=False)

    @functools.cached_property
    def figures(self) -> dict[str, bytes]:
        """PNG bytes per plot name (``lengths``, ``gaps``, ``activity``, ``popularity``,
        ``ratings``), drawn once on first use."""
        return draw_all(self.summary, self.tables)

    def to_dict(self) -> dict[str, Any]:
        """The summary and every table as JSON-ready records (what ``summary.json`` holds)."""
        return {
            "name": self.name,
            **self.summary,
            "tables": {k: _records(v) for k, v in self.tables.items()},
        }

    def to_markdown(self, images: str = "inline") -> str:
        """The report as Markdown; ``images``: ``"inline"`` (data URIs) or ``"files"``
        (links to ``NAME.png`` beside the report)."""
        return render_markdown(self.name, self.summary, self.tables, self.figures, images)

    def to_html(self) -> str:
        """The report as one self-contained HTML page (images embedded as base64)."""
        return render_html(self.name, self.summary, self.tables, self.figures)

    def save(self, out_dir: str | Path, *, overwrite: bool = False) -> Path:
        """Write ``NAME.png`` plots, ``summary.json``, ``report.md`` and ``report.html``.

        The folder is written whole, then renamed into place. ``out_dir`` must be new or empty,
        or (with ``overwrite``) an earlier report sessionrec wrote; anything else is refused
        (``sessionrec._io.output_dir``). Returns ``out_dir``.
        """
        out_dir = Path(out_dir)
        with output_dir(out_dir, overwrite=overwrite, verb="explore") as tmp:
            for name, png in self.figures.items():
                (tmp / f"{name}.png").write_bytes(png)
            texts = {
                "summary.json": json.dumps(self.to_dict(), indent=2, default=str) + "\n",
                "report.md": self.to_markdown(images="files"),
                "report.html": self.to_html(),
            }
            for fname, text in texts.items():
                (tmp / fname).write_text(text, encoding="utf-8")
        return out_dir

    def _repr_html_(self) -> str:
        return render_html(self.name, self.summary, self.tables, self.figures, full_page=False)

    def _repr_markdown_(self) -> str:
        return self.to_markdown(images="inline")


def _records(df: pl.DataFrame) -> list[dict[str, Any]]:
    out = df.with_columns(
        pl.col(pl.Date, pl.Datetime).dt.to_string("%Y-%m-%d"),
        pl.col(pl.List(pl.Utf8)).list.join("|"),
    )
    return out.to_dicts()


def explore(
    source: Dataset | pl.DataFrame | pl.LazyFrame | str | Path,
    *,
    session_gap: str | timedelta | None = None,
    burst_second: int = 5,
    burst_minute: int = 20,
    name: str | None = None,
) -> Exploration:
    """Describe an Events log: counts, lengths, gaps and candidate session gaps, activity,
    popularity long tail, bursty and heavy users, ratings.

    Sessions are the log's own session ids when it has them; otherwise they are cut per user
    at ``session_gap``, or at the suggested gap when none is given. A ``session_gap`` given
    explicitly wins over the log's own ids (cut within each user, or within each of the log's
    sessions when it has no users).

    Args:
        source: a :class:`Dataset`, an Events frame (eager or lazy), or a name/path to load.
        session_gap: inactivity gap (``"30m"``, ``"1h"``, a timedelta) that cuts sessions.
        burst_second: events one actor must have in one calendar second to count as a burst.
        burst_minute: the same, for one calendar minute.
        name: the name shown in the report (default: the dataset's name, else ``"events"``).

    Returns:
        An :class:`Exploration`: ``.summary`` (numbers), ``.tables``, ``.figures``,
        ``.save(dir)``; it renders itself in a notebook.
    """
    t0 = time.perf_counter()
    items_meta: pl.DataFrame | None = None
    if isinstance(source, str | Path):
        source = load(source)
    if isinstance(source, Dataset):
        # collected through the Dataset: a bad value is explained by file, line and column
        keep = [c for c in source.lazy_events.collect_schema().names() if c != S.EVENT_TYPE]
        lf, items_meta = source.collect(keep).lazy(), source.items
        where = str(source.files[0]) if source.files else source.name
        name = name or source.name
    else:
        lf, where = source.lazy(), "<events>"
        name = name or "events"
    gap_given = None if session_gap is None else parse_duration(session_gap).total_seconds()

    o = st.order_events(lf, where)
    frame = o.frame
    log.info("explore: %d events sorted in %.1fs", o.n_events, time.perf_counter() - t0)
    has_users = o.actor == S.USER
    has_sessions = st.has_values(frame, S.SESSION)
    span = st.time_span(o.t_us)
    days = float(span["days"])

    # per-actor lengths, gaps and what each candidate gap would cut
    actor_lengths = st.run_lengths(o.starts)
    gap_numbers = st.gap_summary(o.gaps)
    candidates = st.candidate_gaps(o.gaps)
    suggested = st.suggest_gap(candidates)

    if gap_given is not None:
        definition = {"by": "gap", "gap": st.format_duration(gap_given), "given": True}
        session_lengths = st.run_lengths(st.gap_breaks(o.gaps, gap_given))
    elif has_sessions:
        definition = {"by": "column", "column": S.SESSION}
        session_lengths = st.column_session_lengths(frame)
    else:
        definition = {"by": "gap", "gap": suggested, "given": False}
        gap_s = parse_duration(suggested).total_seconds()
        session_lengths = st.run_lengths(st.gap_breaks(o.gaps, gap_s))
    log.info("explore: gaps and sessions in %.1fs", time.perf_counter() - t0)

    counts = st.item_counts(frame)
    n_repeated = int(repeated_events(frame, o.actor).sum())
    unit = st.activity_unit(days)
    per_period = st.activity(frame, unit)
    hours = st.hour_of_day(frame)
    weekdays = st.weekday(frame)

    # bursts and heavy users, per actor
    actor_ids = o.actor_ids().alias(o.actor or "actor")
    per_s, burst_s = st.bursts(o, 1, burst_second)
    per_m, burst_m = st.bursts(o, 60, burst_minute)
    per_actor = pl.DataFrame(
        {
            actor_ids.name: actor_ids,
            "events": actor_lengths,
            "max_in_second": per_s["max_in_window"],
            "max_in_minute": per_m["max_in_window"],
            "burst_second_events": per_s["burst_events"],
            "burst_minute_events": per_m["burst_events"],
        }
    )
    bursty = (
        per_actor.filter((pl.col("burst_second_events") > 0) | (pl.col("burst_minute_events") > 0))
        .sort(["max_in_second", "max_in_minute", "events"], descending=True)
        .head(TOP_N)
    )
    heavy_days = max(1, math.ceil(days))
    heavy_mask = actor_lengths > heavy_days
    heavy = {
        "days_in_log": heavy_days,
        "rule": "more events than there are days in the log",
        "users": int(heavy_mask.sum()) if has_users else None,
        "users_share": float(heavy_mask.mean()) if has_users else None,
        "events_share": float(actor_lengths[heavy_mask].sum() / o.n_events) if has_users else None,
    }
    heavy_top = (
        per_actor.select(actor_ids.name, "events")
        .with_columns((pl.col("events") / days if days > 0 else pl.lit(None)).alias("per_day"))
        .filter(pl.col("events") > heavy_days)
        .sort("events", descending=True)
        .head(TOP_N)
        if has_users
        else None
    )
    ratings = st.rating_distribution(frame)
    log.info("explore: all statistics in %.1fs", time.perf_counter() - t0)

    top_items = counts.head(TOP_N).with_columns((pl.col("events") / o.n_events).alias("share"))
    if items_meta is not None and S.TITLE in items_meta.columns:
        meta = items_meta.select(S.ITEM, S.TITLE).unique(S.ITEM, keep="first")
        if meta[S.ITEM].dtype == top_items[S.ITEM].dtype:
            top_items = top_items.join(meta, on=S.ITEM, how="left").select(
                S.ITEM, S.TITLE, "events", "share"
            )

    summary: dict[str, Any] = {
        "counts": {
            "events": o.n_events,
            "users": int(frame[S.USER].n_unique()) if has_users else None,
            "sessions": int(session_lengths.size),
            "items": int(counts.height),
            **span,
        },
        "sessions": {
            **definition,
            "suggested_gap": suggested,
            "suggestion_rule": st.SUGGEST_RULE,
        },
        "actor": o.actor,
        "user_length": st.length_summary(actor_lengths) if has_users else None,
        "session_length": st.length_summary(session_lengths),
        "gaps": {"within": o.actor, **gap_numbers},
        "activity": {
            "unit": unit,
            "busiest_period": _busiest(per_period, "period"),
            "busiest_hour_utc": _busiest(hours, "hour"),
            "busiest_weekday": _busiest(weekdays, "weekday"),
        },
        "popularity": st.popularity(counts),
        "bursts": {"within": o.actor, "second": burst_s, "minute": burst_m},
        "heavy_users": heavy,
        "ratings": None
        if ratings is None
        else {
            "mean": float(frame[S.RATING].cast(pl.Float64).mean()),  # type: ignore[arg-type]
            "values": int(ratings.height),
        },
        "repeats": {"consecutive_repeat_share": st.repeat_share(o)},
        # rows equal to an earlier row in every column (actor, session, item, time, rating)
        "duplicates": {"events": n_repeated, "share": n_repeated / o.n_events},
    }
    tables: dict[str, pl.DataFrame] = {
        "candidate_gaps": candidates,
        "user_length_hist": st.log_histogram(actor_lengths, integer=True)
        if has_users
        else pl.DataFrame(),
        "session_length_hist": st.log_histogram(session_lengths, integer=True),
        "gap_hist": st.log_histogram(o.gaps[~np.isnan(o.gaps)]),
        "activity": per_period,
        "hour_of_day": hours,
        "weekday": weekdays,
        "rank_frequency": st.rank_frequency(counts),
        "top_items": top_items,
        "bursty": bursty,
    }
    if heavy_top is not None:
        tables["heavy_users"] = heavy_top
    if ratings is not None:
        tables["ratings"] = ratings
    tables = {k: v for k, v in tables.items() if v.width}
    log.info("explore: done in %.1fs", time.perf_counter() - t0)
    return Exploration(name=name, summary=summary, tables=tables)


def _busiest(df: pl.DataFrame, key: str) -> Any:
    row = df.sort(["events", key], descending=[True, False]).row(0, named=True)
    value = row[key]
    return value.isoformat() if hasattr(value, "isoformat") else value
