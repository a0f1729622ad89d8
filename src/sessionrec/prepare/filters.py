"""Event filters and the recursive support filter (applied until nothing changes)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

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
    events: pl.DataFrame, rules: SupportFilter, max_rounds: int = 100
) -> tuple[pl.DataFrame, list[dict[str, int]]]:
    """Apply the support rules in rounds until a round removes nothing.

    Returns the filtered events and, per round, how many events each rule removed.
    """
    rounds: list[dict[str, int]] = []
    for _ in range(max_rounds):
        removed: dict[str, int] = {}
        before_round = events.height
        steps: list[tuple[str, pl.Expr]] = []
        if rules.min_item_support:
            steps.append(("min_item_support", pl.len().over(S.ITEM) >= rules.min_item_support))
        if rules.min_session_length:
            steps.append(
                ("min_session_length", pl.len().over(S.SESSION) >= rules.min_session_length)
            )
        if rules.max_session_length:
            steps.append(
                ("max_session_length", pl.len().over(S.SESSION) <= rules.max_session_length)
            )
        if rules.min_user_events:
            steps.append(("min_user_events", pl.len().over(S.USER) >= rules.min_user_events))
        if rules.max_user_events:
            steps.append(("max_user_events", pl.len().over(S.USER) <= rules.max_user_events))
        for name, keep in steps:
            n = events.height
            events = events.filter(keep)
            removed[name] = n - events.height
        rounds.append(removed)
        if events.height == before_round:
            break
    return events, rounds
