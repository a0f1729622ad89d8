"""Session definitions: a user's whole history, an inactivity gap, or the log's own column."""

from __future__ import annotations

import re
from datetime import timedelta

import polars as pl

from sessionrec import _schema as S
from sessionrec.errors import ConfigError, DataError

_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_duration(text: str | int | float | timedelta) -> timedelta:
    """``"30m"``, ``"1h"``, ``"90s"``, ``"1d"``, ``"1h30m"`` or seconds → timedelta."""
    if isinstance(text, timedelta):
        return text
    if isinstance(text, int | float):
        return timedelta(seconds=float(text))
    s = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return timedelta(seconds=float(s))
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(min|s|m|h|d)", s)
    if not parts or "".join(f"{n}{u}" for n, u in parts) != s.replace(" ", ""):
        raise ConfigError(f"cannot read duration {text!r}: expected e.g. 30m, 1h, 90s, 1d")
    return timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in parts))


def sort_events(events: pl.LazyFrame, by: str) -> pl.LazyFrame:
    """Stable time order within ``by``: ties in time keep source-row order."""
    return events.sort([by, *S.TIME_ORDER])


def sessionize_by_user(events: pl.LazyFrame) -> pl.LazyFrame:
    """Each user's whole history becomes one session (session_id = user_id)."""
    return sort_events(events, S.USER).with_columns(pl.col(S.USER).alias(S.SESSION))


def sessionize_by_gap(events: pl.LazyFrame, gap: str | timedelta) -> pl.LazyFrame:
    """A new session starts for a user after more than ``gap`` of inactivity.

    Session ids are 0, 1, ... in (user, time) order.
    """
    gap_td = parse_duration(gap)
    ev = sort_events(events, S.USER)
    new = (pl.col(S.USER) != pl.col(S.USER).shift(1)) | (
        (pl.col(S.TIME) - pl.col(S.TIME).shift(1)) > gap_td
    )
    return ev.with_columns((new.fill_null(True).cast(pl.Int64).cum_sum() - 1).alias(S.SESSION))


def sessionize_by_column(events: pl.LazyFrame) -> pl.LazyFrame:
    """Keep the log's own session ids (e.g. YOOCHOOSE), ordered by session then time."""
    return sort_events(events, S.SESSION)


def sessionize(events: pl.LazyFrame, session: str, source: str = "<events>") -> pl.LazyFrame:
    """Dispatch on a session definition: ``"user"``, ``"column"`` or a gap such as ``"30m"``."""
    schema = events.collect_schema()
    if session == "user":
        _need_values(events, S.USER, source, "a user column for --session user")
        return sessionize_by_user(events)
    if session == "column":
        _need_values(events, S.SESSION, source, "a session column for --session-column")
        return sessionize_by_column(events)
    if S.USER not in schema:
        raise DataError(source, column=S.USER, expected="a user column", found="none")
    _need_values(events, S.USER, source, "a user column to cut sessions by inactivity gap")
    return sessionize_by_gap(events, session)


def _need_values(events: pl.LazyFrame, col: str, source: str, what: str) -> None:
    nulls = events.select(pl.col(col).is_null().all()).collect().item()
    if nulls:
        raise DataError(source, column=col, expected=what, found="no values")
