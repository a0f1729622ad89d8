"""The fast paths of preparation agree with the plain definitions, and the YOOCHOOSE path works."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sessionrec as sr
from sessionrec import _schema as S
from sessionrec.datasets import load
from sessionrec.errors import DataError
from sessionrec.prepare import split as sp
from sessionrec.prepare.filters import SupportFilter, dense_codes, filter_recursive
from sessionrec.prepare.sessionize import in_order, sessionize_by_column

T0 = datetime(2014, 4, 1, tzinfo=UTC)


def clicks(rows: list[tuple[int, int, float]]) -> pl.DataFrame:
    """(session, item, seconds after T0) rows → Events with the log's own sessions."""
    return pl.DataFrame(
        {
            S.USER: [None] * len(rows),
            S.SESSION: [r[0] for r in rows],
            S.ITEM: [r[1] for r in rows],
            S.TIME: [T0 + timedelta(seconds=r[2]) for r in rows],
            S.ROW: list(range(len(rows))),
        },
        schema={S.USER: pl.Int64, S.SESSION: pl.Int64, S.ITEM: pl.Int64,
                S.TIME: S.TIME_DTYPE, S.ROW: pl.Int64},
    )  # fmt: skip


def filter_by_definition(ev: pl.DataFrame, rules: SupportFilter) -> pl.DataFrame:
    """The recursive filter written plainly: window counts on the whole frame, until stable."""
    while True:
        before = ev.height
        ev = ev.filter(pl.len().over(S.ITEM) >= rules.min_item_support)
        ev = ev.filter(pl.len().over(S.SESSION) >= rules.min_session_length)
        if ev.height == before:
            return ev


rows_st = st.lists(
    st.tuples(st.integers(1, 8), st.integers(1, 6), st.integers(0, 30)), min_size=1, max_size=80
)


@settings(max_examples=40, deadline=None)
@given(rows_st, st.integers(1, 3), st.integers(1, 3))
def test_recursive_filter_on_codes_matches_the_definition(
    rows: list[tuple[int, int, int]], min_support: int, min_length: int
) -> None:
    ev = clicks([(s, i, t * 60.0) for s, i, t in rows])
    rules = SupportFilter(min_session_length=min_length, min_item_support=min_support)
    expected = filter_by_definition(ev, rules)
    for frame in (ev, sessionize_by_column(ev).collect()):  # unsorted and grouped sessions
        got, _ = filter_recursive(frame, rules)
        assert sorted(got[S.ROW].to_list()) == sorted(expected[S.ROW].to_list())


def test_dense_codes_number_distinct_values_sorted_or_not() -> None:
    for values in ([5, 5, 7, 9, 9, 9], [9, 5, 9, 7, 5, None]):
        codes = dense_codes(pl.Series("k", values))
        pairs = set(zip(values, codes.tolist(), strict=True))
        assert len(pairs) == len(set(values)) == len(set(codes.tolist()))
        assert set(codes.tolist()) == set(range(len(set(values))))


@settings(max_examples=40, deadline=None)
@given(rows_st, st.randoms(use_true_random=False))
def test_time_split_same_on_grouped_and_shuffled_events(
    rows: list[tuple[int, int, int]], rnd: object
) -> None:
    ev = sessionize_by_column(clicks([(s, i, t * 3600.0) for s, i, t in rows])).collect()
    order = list(range(ev.height))
    rnd.shuffle(order)  # type: ignore[attr-defined]
    shuffled = ev[order]
    grouped = ev.with_columns(sp.label_time(ev, 0.3, 0.3).alias("p"))
    plain = shuffled.with_columns(sp.label_time(shuffled, 0.3, 0.3).alias("p"))
    assert grouped.sort(S.ROW)["p"].to_list() == plain.sort(S.ROW)["p"].to_list()


def test_sort_is_skipped_only_when_already_in_order() -> None:
    ordered = clicks([(1, 1, 0), (1, 2, 0), (1, 3, 5), (2, 1, 1), (3, 1, 0)])
    assert in_order(ordered, S.SESSION)
    ties_reversed = ordered.with_columns(pl.Series(S.ROW, [1, 0, 2, 3, 4]))
    late = clicks([(1, 1, 5), (1, 2, 0), (2, 1, 0)])
    back = clicks([(2, 1, 0), (1, 1, 0)])
    for frame in (ties_reversed, late, back):
        assert not in_order(frame, S.SESSION)
        out = sessionize_by_column(frame).collect()
        assert out.equals(frame.sort([S.SESSION, S.TIME, S.ROW]))


YOOCHOOSE = """\
1,2014-04-07T10:51:09.277Z,214536502,0
1,2014-04-07T10:54:09.317Z,214536500,0
1,2014-04-07T10:54:46.998Z,214536506,0
2,2014-04-07T13:56:37.614Z,214662742,0
2,2014-04-07T13:57:19.373Z,214536500,S
3,2014-04-08T09:11:00.000Z,214536502,0
3,2014-04-08T09:12:00.000Z,214536500,0
4,2014-04-08T09:10:00.000Z,214536502,3
4,2014-04-08T09:13:00.000Z,214536506,0
5,2014-04-09T12:00:00.000Z,214536502,0
5,2014-04-09T12:01:00.000Z,214536500,0
5,2014-04-09T12:01:00.000Z,214536506,0
"""


def test_yoochoose_clicks_load_as_events(tmp_path: Path) -> None:
    path = tmp_path / "yoochoose-clicks.dat"
    path.write_text(YOOCHOOSE)
    ev = load(path).events
    assert ev.height == 12 and ev[S.USER].null_count() == 12
    assert ev[S.SESSION].to_list()[:4] == [1, 1, 1, 2]
    assert ev[S.TIME][0] == datetime(2014, 4, 7, 10, 51, 9, 277000, tzinfo=UTC)
    assert ev.schema[S.TIME] == S.TIME_DTYPE
    assert set(ev[S.EVENT_TYPE]) == {"click"}
    assert load(tmp_path).events.equals(ev)  # the folder works as well


def test_yoochoose_bad_time_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "yoochoose-clicks.dat"
    path.write_text(YOOCHOOSE.replace("2014-04-07T13:56:37.614Z", "yesterday"))
    with pytest.raises(DataError, match=r"yoochoose-clicks.dat:4: column 'time'.*'yesterday'"):
        load(path).events  # noqa: B018


def test_prepare_yoochoose_by_its_session_column(tmp_path: Path) -> None:
    path = tmp_path / "yoochoose-clicks.dat"
    path.write_text(YOOCHOOSE)
    data = sr.prepare(
        path, tmp_path / "p", session="column", min_session_length=2, min_item_support=2,
        split="time", test_days=0.5, valid_days=0.5,
    )  # fmt: skip
    assert isinstance(data, sr.PreparedData)
    # item 214662742 has support 1 → session 2 shrinks to 1 event → dropped. Test: session 5
    # (last day); valid: sessions 3 and 4 end within 12 h of the rest's end (09:13 on day 2).
    c = data.meta["counts"]
    assert (c["train"]["events"], c["train"]["sessions"]) == (3, 1)
    assert (c["valid"]["events"], c["valid"]["sessions"]) == (4, 2)
    assert (c["test"]["events"], c["test"]["sessions"]) == (3, 1)
    assert data.meta["has_users"] is False
    for part in ("train", "valid", "test"):
        frame = data.frame(part)
        assert S.USER not in frame.columns and S.EVENT_TYPE not in frame.columns
        assert frame.equals(frame.sort([S.SESSION, S.TIME], maintain_order=True))
    assert data.frame("test")[S.ITEM].to_list() == [214536502, 214536500, 214536506]


@pytest.mark.parametrize("split", ["time", "user-time", "leave-one-out", "random", "random-event"])
def test_every_split_gives_sorted_parts_and_item_indices_from_train(
    tmp_path: Path, split: str
) -> None:
    rows = [(u, (u * 7 + k * 3) % 9, 1000 * u + 600 * k + (k % 2)) for u in range(1, 13)
            for k in range(6)]  # fmt: skip
    log = tmp_path / "log.csv"
    pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row").write_csv(log)
    out = sr.prepare(
        log, None, session="user", min_item_support=2, split=split,
        test_days=0.05, valid_days=0.05, test_fraction=0.25, valid_fraction=0.25,
    )  # fmt: skip
    assert isinstance(out, dict)
    items = out["items"]
    assert items[S.ITEM_IDX].to_list() == list(range(items.height))
    assert items[S.ITEM].is_sorted()
    for part in ("train", "valid", "test"):
        frame = out[part]
        assert frame.equals(frame.sort([S.SESSION, S.TIME], maintain_order=True))
        joined = frame.join(items, on=S.ITEM_IDX, how="left")
        assert joined[S.ITEM].to_list() == joined[f"{S.ITEM}_right"].to_list()
    train_items = set(out["train"][S.ITEM].to_list())
    assert set(items[S.ITEM].to_list()) == train_items
