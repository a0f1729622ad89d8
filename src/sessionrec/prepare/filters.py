"""Event filters and the recursive support filter (applied until nothing changes)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl

from sessionrec import _schema as S


def filter_events(
    events: pl.LazyFrame,
    *,
    min_rating: float | None = None,
    event_type: str | None = None,
    drop_repeats: bool = False,
) -> pl.LazyFrame:
    """Per-event filters; ``drop_repeats`` expects events sorted by session then time."""
    if min_rating is not None:
        events = events.filter(pl.col(S.RATING) >= min_rating)
    if event_type is not None:
        events = events.filter(pl.col(S.EVENT_TYPE) == event_type)
    if drop_repeats:
        same = (pl.col(S.SESSION) == pl.col(S.SESSION).shift(1)) & (
            pl.col(S.ITEM) == pl.col(S.ITEM).shift(1)
        )
        events = events.filter(~same.fill_null(False))
    return events


@dataclass(frozen=True)
class SupportFilter:
    """Thresholds of the recursive filter. None disables a rule."""

    min_session_length: int | None = 2
    max_session_length: int | None = None
    min_item_support: int | None = 5
    min_user_events: int | None = None
    max_user_events: int | None = None

    def to_dict(self) -> dict[str, int | None]:
        return asdict(self)


def filter_recursive(
    events: pl.DataFrame,
    rules: SupportFilter,
    max_rounds: int = 100,
    *,
    codes: Mapping[str, np.ndarray] | None = None,
) -> tuple[pl.DataFrame, list[dict[str, int]]]:
    """Apply the support rules in rounds until a round removes nothing.

    Within a round the rules apply one after the other (item support, session length, user
    activity), each counting on what the previous one left. The rounds run on compact integer
    codes of the key columns (numpy bincounts, no hashing, no copies of the wide frame); the
    events are gathered once at the end.

    Args:
        codes: dense codes (0..k-1) of key columns when the caller has them already, each
            (n,) aligned with the rows; other keys are coded here.

    Returns the filtered events and, per round, how many events each rule removed.
    """
    steps: list[tuple[str, str, int | None, int | None]] = [
        (name, key, lo, hi)
        for name, key, lo, hi in (
            ("min_item_support", S.ITEM, rules.min_item_support, None),
            ("min_session_length", S.SESSION, rules.min_session_length, None),
            ("max_session_length", S.SESSION, None, rules.max_session_length),
            ("min_user_events", S.USER, rules.min_user_events, None),
            ("max_user_events", S.USER, None, rules.max_user_events),
        )
        if lo or hi
    ]
    # alive_codes[key]: (n,) codes of the key column for the rows still alive, in row order.
    # int32 throughout: a YOOCHOOSE-sized log keeps its working arrays at 4 bytes per event.
    index = np.int32 if events.height < 2**31 else np.int64
    given = codes or {}
    alive_codes = {
        key: (given[key] if key in given else dense_codes(events[key])).astype(index)
        for _, key, _, _ in steps
    }
    n_codes = {key: int(c.max()) + 1 if len(c) else 0 for key, c in alive_codes.items()}
    alive = np.arange(events.height, dtype=index)  # (n,) row numbers still kept
    # A rule removes whole groups of its own key, leaving the other groups' sizes as they
    # were, so it needs checking again only after *another* rule removed events.
    removed_at = dict.fromkeys(range(len(steps)), -1)  # step → last check that removed events
    checked_at = dict.fromkeys(range(len(steps)), -2)  # step → last check
    check = 0
    rounds: list[dict[str, int]] = []
    for _ in range(max_rounds):
        removed: dict[str, int] = {}
        before_round = len(alive)
        for step, (name, key, lo, hi) in enumerate(steps):
            check += 1
            others = [at for s, at in removed_at.items() if s != step]
            if max(others, default=-1) < checked_at[step]:
                removed[name] = 0
                continue
            checked_at[step] = check
            c = alive_codes[key]
            size = np.bincount(c, minlength=n_codes[key]).astype(index)[c]
            keep = (size >= lo) if lo else (size <= (hi or 0))
            removed[name] = len(alive) - int(np.count_nonzero(keep))
            if removed[name]:
                removed_at[step] = check
                alive = alive[keep]
                alive_codes = {k: v[keep] for k, v in alive_codes.items()}
        rounds.append(removed)
        if len(alive) == before_round:
            break
    del alive_codes
    if len(alive) < events.height:
        kept = np.zeros(events.height, dtype=bool)
        kept[alive] = True
        events = events.filter(pl.Series(kept))
    return events, rounds


def dense_codes(column: pl.Series) -> np.ndarray:
    """(n,) codes 0..k-1 of a column's k distinct values (nulls included), in any order.

    A sorted column (sessions after sessionizing) is coded by its runs in one pass; otherwise
    the distinct values are hashed.
    """
    if column.null_count() == 0 and column.is_sorted():
        return column.rle_id().to_numpy()
    uniques = column.unique().to_frame().with_row_index("_code")
    coded = column.to_frame().join(
        uniques, on=column.name, how="left", nulls_equal=True, maintain_order="left"
    )
    return coded["_code"].to_numpy()
