from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sessionrec as sr
from sessionrec import _schema as S
from sessionrec.errors import ConfigError
from sessionrec.prepare import split as sp
from sessionrec.prepare.filters import SupportFilter, filter_recursive
from sessionrec.prepare.sessionize import parse_duration, sessionize_by_gap

T0 = datetime(2020, 1, 1, tzinfo=UTC)


def events(rows: list[tuple[int, int, float]]) -> pl.DataFrame:
    """(user, item, seconds after T0) rows → an Events frame in source order."""
    return pl.DataFrame(
        {
            S.USER: [r[0] for r in rows],
            S.SESSION: [None] * len(rows),
            S.ITEM: [r[1] for r in rows],
            S.TIME: [T0 + timedelta(seconds=r[2]) for r in rows],
            S.ROW: list(range(len(rows))),
        },
        schema={S.USER: pl.Int64, S.SESSION: pl.Int64, S.ITEM: pl.Int64,
                S.TIME: S.TIME_DTYPE, S.ROW: pl.Int64},
    )  # fmt: skip


def test_parse_duration() -> None:
    assert parse_duration("30m").total_seconds() == 1800
    assert parse_duration("1h30m").total_seconds() == 5400
    assert parse_duration("90").total_seconds() == 90
    assert parse_duration("1d").total_seconds() == 86400
    with pytest.raises(ConfigError):
        parse_duration("soon")


def test_gap_sessions_cut_after_more_than_gap_and_keep_row_order_on_ties() -> None:
    ev = events([(1, 10, 0), (1, 11, 0), (1, 12, 3600), (1, 13, 7201), (2, 14, 0), (1, 9, 0)])
    out = sessionize_by_gap(ev.lazy(), "1h").collect()
    # user 1: items 10, 11, 9 at t=0 keep row order; 12 at exactly 1h stays; 13 after >1h is new
    assert out.filter(pl.col(S.USER) == 1)[S.ITEM].to_list() == [10, 11, 9, 12, 13]
    assert out.filter(pl.col(S.USER) == 1)[S.SESSION].to_list() == [0, 0, 0, 0, 1]
    assert out.filter(pl.col(S.USER) == 2)[S.SESSION].to_list() == [2]


def test_recursive_filter_runs_until_stable() -> None:
    # item 3 has support 1 → removed; then session of (1, 3) becomes length 1 → removed;
    # then item 1 drops to support 1 → removed in round 2.
    ev = events([(1, 1, 0), (1, 3, 1), (2, 2, 0), (2, 2, 1), (3, 2, 0), (3, 1, 1)]).with_columns(
        pl.col(S.USER).alias(S.SESSION)
    )
    out, rounds = filter_recursive(ev, SupportFilter(min_session_length=2, min_item_support=2))
    assert out[S.ITEM].to_list() == [2, 2]
    assert len(rounds) >= 2 and rounds[-1] == {"min_item_support": 0, "min_session_length": 0}
    assert sum(sum(r.values()) for r in rounds) == 4


def test_time_split_applies_the_same_cut_twice() -> None:
    day = 86400.0
    ev = events([(1, 1, 0), (1, 2, 1), (2, 1, 5 * day), (2, 2, 5 * day + 1),
                 (3, 1, 9 * day), (3, 2, 9 * day + 1), (4, 1, 10 * day), (4, 2, 10 * day + 1)])  # fmt: skip
    ev = ev.with_columns(pl.col(S.USER).alias(S.SESSION))
    label = sp.label_time(ev, test_days=1, valid_days=2)
    # test: sessions ending at or after 10d+1 - 1d → users 3 and 4. Valid is measured from the
    # remainder's last event (5d+1), not from the test cut (9d+1), so user 2 is valid.
    assert label.to_list() == [0, 0, 1, 1, 2, 2, 2, 2]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 5), st.integers(1, 6), st.integers(0, 50)), min_size=1, max_size=60
    ),
    st.sampled_from(["time", "random", "user-time", "leave-one-out", "random-event"]),
)
def test_every_event_is_a_target_exactly_once(rows: list[tuple[int, int, int]], split: str) -> None:
    ev = events([(u, i, t * 3600.0) for u, i, t in rows])
    ev = sessionize_by_gap(ev.lazy(), "5h").collect()
    if split == "time":
        label = sp.label_time(ev, 0.5, 0.5)
    elif split == "random":
        label = sp.label_random(ev, 0.3, 0.2, seed=1)
    elif split == "user-time":
        label = sp.label_user_time(ev, 0.3, 0.2)
    elif split == "random-event":
        label = sp.label_random_event(ev, 0.3, 0.2, seed=1)
    else:
        label = sp.label_leave_one_out(ev)
    parts = sp.assemble(ev, label)
    targets = pl.concat([p.filter(pl.col(sp.TARGET)) for p in parts.values()])
    assert sorted(targets[S.ROW].to_list()) == sorted(ev[S.ROW].to_list())
    for p in parts.values():
        for _, g in p.group_by(S.SESSION, maintain_order=True):
            t = g[sp.TARGET].to_list()
            assert t[-1]  # no context row after a session's last target
            if split != "random-event":  # a suffix split: context rows precede every target
                assert t == sorted(t)


def test_random_event_split_holds_out_exact_shares_with_full_history() -> None:
    rows = [(u, (u * 5 + k) % 11, 1000.0 * u + 10 * k) for u in range(1, 9) for k in range(10)]
    ev = events(rows).with_columns(pl.col(S.USER).alias(S.SESSION))
    label = sp.label_random_event(ev, 0.3, 0.1, seed=3)
    assert (label == 2).sum() == 24 and (label == 1).sum() == 8  # round(80 * share)
    assert label.to_list() != sp.label_random_event(ev, 0.3, 0.1, seed=4).to_list()
    parts = sp.assemble(ev, label)
    for code, name in ((1, "valid"), (2, "test")):
        for sid, g in parts[name].group_by(S.SESSION):
            session = ev.filter(pl.col(S.SESSION) == sid[0])
            held = [i for i, c in enumerate(label.filter(ev[S.SESSION] == sid[0])) if c == code]
            # the part holds the session up to its last held-out event, less higher parts
            upto = session.with_columns(label.filter(ev[S.SESSION] == sid[0]).alias("c"))
            upto = upto.head(held[-1] + 1).filter(pl.col("c") <= code)
            assert g[S.ROW].to_list() == upto[S.ROW].to_list()
            assert (
                g.filter(pl.col(sp.TARGET))[S.ROW].to_list()
                == session[S.ROW].gather(held).to_list()
            )


@pytest.mark.e2e
def test_acceptance_counts_ml100k(ml100k: Path, tmp_path: Path) -> None:
    data = sr.prepare(
        ml100k, tmp_path / "p", session="1h", min_session_length=2, min_item_support=5,
        split="time", test_days=21, valid_days=21,
    )  # fmt: skip
    assert isinstance(data, sr.PreparedData)
    c = data.meta["counts"]
    assert (c["train"]["events"], c["train"]["sessions"]) == (80_233, 1_746)
    assert (c["valid"]["events"], c["valid"]["sessions"]) == (11_173, 249)
    assert (c["test"]["events"], c["test"]["sessions"]) == (7_312, 195)
    both = pl.concat([data.frame("train"), data.frame("valid")])[S.ITEM].n_unique()
    assert both == 1_339 == data.n_items
    assert data.meta["source"]["sha256"]
    assert data.test.n_predictions == 7_312 - 195


def test_prepare_leaves_no_partial_output_on_error(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text("user_id,item_id,timestamp\n1,1,10\n1,2,20\n")
    out = tmp_path / "out"
    with pytest.raises(sr.errors.DataError, match="none of 2 events pass"):  # type: ignore[attr-defined]
        sr.prepare(log, out, min_item_support=5)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["log.csv"]


def test_atomic_writes_get_ordinary_permissions(tmp_path: Path) -> None:
    import os

    from sessionrec._io import atomic_dir, write_json

    write_json(tmp_path / "a.json", {"x": 1})
    with atomic_dir(tmp_path / "d") as d:
        (d / "f").write_text("x")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~mask
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o777 & ~mask
