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


def sort_events(events: pl.DataFrame | pl.LazyFrame, by: str) -> pl.LazyFrame:
    """Stable time order within ``by``: ties in time keep source-row order.

    An in-memory frame that is already in that order (YOOCHOOSE's log comes grouped by session
    in time order) is not sorted again; either way ``by`` is flagged sorted for later steps.
    """
    if isinstance(events, pl.DataFrame) and in_order(events, by):
        return events.lazy().with_columns(pl.col(by).set_sorted())
    return events.lazy().sort([by, *S.TIME_ORDER])


def in_order(events: pl.DataFrame, by: str) -> bool:
    """Whether rows are sorted by ``by``, then time, then source row (one pass, no sort)."""
    if events.height == 0 or events[by].null_count():
        return events.height == 0
    key, time, row = pl.col(by), pl.col(S.TIME), pl.col(S.ROW)
    later = (key > key.shift(1)) | (
        (key == key.shift(1))
        & ((time > time.shift(1)) | ((time == time.shift(1)) & (row > row.shift(1))))
    )
    return bool(events.select(later.slice(1).all()).item())


def sessionize_by_user(events: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """Each user's whole history becomes one session (session_id = user_id)."""
    return sort_events(events, S.USER).with_columns(pl.col(S.USER).alias(S.SESSION).set_sorted())


def sessionize_by_gap(events: pl.DataFrame | pl.LazyFrame, gap: str | timedelta) -> pl.LazyFrame:
    """A new session starts for a user after more than ``gap`` of inactivity.

    Session ids are 0, 1, ... in (user, time) order.
    """
    gap_td = parse_duration(gap)
    ev = sort_events(events, S.USER)
    new = (pl.col(S.USER) != pl.col(S.USER).shift(1)) | (
        (pl.col(S.TIME) - pl.col(S.TIME).shift(1)) > gap_td
    )
    session = new.fill_null(True).cast(pl.Int64).cum_sum() - 1
    return ev.with_columns(session.set_sorted().alias(S.SESSION))


def sessionize_by_column(events: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """Keep the log's own session ids (e.g. YOOCHOOSE), ordered by session then time."""
    return sort_events(events, S.SESSION)


def sessionize(
    events: pl.DataFrame | pl.LazyFrame, session: str, source: str = "<events>"
) -> pl.LazyFrame:
    """Dispatch on a session definition: ``"user"``, ``"column"`` or a gap such as ``"30m"``.

    The result is sorted by session, time and source row, with ``session_id`` flagged sorted.
    """
    schema = events.collect_schema()
    if session == "user":
        _need_values(events, S.USER, source, "a user column for --session user")
        return sessionize_by_user(events)
    if session == "column":
        _need_values(events, S.SESSION, source, "a session column for --session-column")
        return sessionize_by_column(events)
    own_ids = S.SESSION in schema and not _all_null(events, S.SESSION)
    hint = (
        " (the log has its own session ids: --session-column / session='column' uses them)"
        if own_ids
        else ""
    )
    if S.USER not in schema:
        raise DataError(source, column=S.USER, expected="a user column" + hint, found="none")
    _need_values(events, S.USER, source, "a user column to cut sessions by inactivity gap" + hint)
    return sessionize_by_gap(events, session)


def _all_null(events: pl.DataFrame | pl.LazyFrame, col: str) -> bool:
    if isinstance(events, pl.DataFrame):
        return col not in events.columns or events[col].null_count() == events.height
    return bool(events.select(pl.col(col).is_null().all()).collect().item())


def _need_values(events: pl.DataFrame | pl.LazyFrame, col: str, source: str, what: str) -> None:
    if _all_null(events, col):
        raise DataError(source, column=col, expected=what, found="no values")
