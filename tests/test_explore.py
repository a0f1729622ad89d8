import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import sessionrec as sr
from sessionrec import _schema as S
from sessionrec.cli import main
from sessionrec.errors import ConfigError, DataError
from sessionrec.explore import Exploration, explore
from sessionrec.explore import stats as st

T0 = datetime(2020, 1, 1, tzinfo=UTC)  # a whole minute, so calendar windows start at T0


def events(
    rows: list[tuple[int | None, int, float]], sessions: list[int] | None = None
) -> pl.DataFrame:
    """Events from (user, item, seconds after T0) in source order."""
    users, items, secs = zip(*rows, strict=True)
    return pl.DataFrame(
        {
            S.USER: pl.Series(users, dtype=pl.Int64),
            S.SESSION: pl.Series(sessions or [None] * len(rows), dtype=pl.Int64),
            S.ITEM: pl.Series(items, dtype=pl.Int64),
            S.TIME: [T0 + timedelta(seconds=s) for s in secs],
            S.ROW: range(len(rows)),
        }
    ).with_columns(pl.col(S.TIME).cast(S.TIME_DTYPE))


# user 1: 0, 0, 10, 700, 4700 s  → gaps 0, 10, 690, 4000
# user 2: 100, 100, 100, 200 s    → gaps 0, 0, 100
# user 3: 50 s                    → no gap
# Rows are shuffled in source order; equal times keep source-row order.
SMALL = [
    (2, 1, 100),
    (1, 1, 0),
    (1, 2, 0),
    (2, 1, 100),
    (1, 1, 10),
    (3, 5, 50),
    (2, 2, 100),
    (1, 3, 700),
    (2, 4, 200),
    (1, 1, 4700),
]


def test_order_and_gaps_are_per_user_in_stable_time_order() -> None:
    o = st.order_events(events(SMALL))
    assert o.actor == S.USER
    assert o.frame[S.USER].to_list() == [1] * 5 + [2] * 4 + [3]
    assert o.frame[S.ITEM].to_list() == [1, 2, 1, 3, 1, 1, 1, 2, 4, 5]
    expected = [np.nan, 0, 10, 690, 4000, np.nan, 0, 0, 100, np.nan]
    np.testing.assert_array_equal(o.gaps, expected)
    assert st.run_lengths(o.starts).tolist() == [5, 4, 1]


def test_counts_lengths_and_gap_numbers() -> None:
    ex = explore(events(SMALL), burst_second=3, burst_minute=3)
    s = ex.summary
    assert s["counts"]["events"] == 10
    assert s["counts"]["users"] == 3
    assert s["counts"]["items"] == 5
    assert s["counts"]["days"] == pytest.approx(4700 / 86400)
    u = s["user_length"]  # [1, 4, 5]
    assert (u["min"], u["p50"], u["max"]) == (1, 4, 5)
    assert u["p90"] == pytest.approx(4.8)  # linear: 4 + 0.8 * (5 - 4)
    assert u["mean"] == pytest.approx(10 / 3)
    g = s["gaps"]  # sorted gaps: 0 0 0 10 100 690 4000
    assert g["count"] == 7
    assert g["zero_share"] == pytest.approx(3 / 7)
    assert g["p50_s"] == 10
    assert g["p75_s"] == pytest.approx(100 + 0.5 * 590)
    assert g["max_s"] == 4000
    assert s["repeats"]["consecutive_repeat_share"] == pytest.approx(0.1)  # user 2: 1, 1


def test_sessions_per_candidate_gap() -> None:
    table = st.candidate_gaps(st.order_events(events(SMALL)).gaps)
    by_gap = {r["gap"]: r for r in table.iter_rows(named=True)}
    # 5m and 10m cut at 690 s and 4000 s: lengths 3, 1, 1 | 4 | 1
    assert by_gap["5m"]["sessions"] == by_gap["10m"]["sessions"] == 5
    assert by_gap["5m"]["median_length"] == 1
    # 15m … 1h cut only at 4000 s: 4, 1 | 4 | 1
    assert [by_gap[k]["sessions"] for k in ("15m", "30m", "1h")] == [4, 4, 4]
    assert by_gap["15m"]["median_length"] == 2.5
    # from 2h on, one session per user: 5 | 4 | 1
    assert by_gap["2h"]["sessions"] == by_gap["1d"]["sessions"] == 3
    assert by_gap["2h"]["median_length"] == 4
    assert by_gap["1h"]["cut_per_doubling"] == pytest.approx(0.25)  # 4 → 3, gap × 2
    assert by_gap["1d"]["cut_per_doubling"] is None


def test_cut_per_doubling_normalises_uneven_steps() -> None:
    gaps = np.array([np.nan] * 81 + [120.0] * 19)  # 100 sessions at 1m, 81 from 2m on
    t = st.candidate_gaps(gaps, ("1m", "4m"))
    # a 4× step that keeps 81 % is a 2× step that keeps 90 %
    assert t["cut_per_doubling"][0] == pytest.approx(0.1)


def _table(gaps: list[str], sessions: list[int]) -> pl.DataFrame:
    """A candidate table whose gaps double: the cut per doubling is the plain step cut."""
    cuts = [1 - sessions[i + 1] / sessions[i] for i in range(len(gaps) - 1)] + [None]
    return pl.DataFrame(
        {"gap": gaps, "sessions": sessions, "cut_per_doubling": cuts},
        schema_overrides={"cut_per_doubling": pl.Float64},
    )


def test_suggested_gap_is_the_knee() -> None:
    knee = _table(["1m", "2m", "4m", "8m"], [1000, 600, 580, 575])  # cuts 40 %, 3.3 %, 0.9 %
    assert st.suggest_gap(knee) == "2m"
    no_knee = _table(["1m", "2m", "4m", "8m"], [1000, 800, 700, 600])  # 20 %, 12.5 %, 14 %
    assert st.suggest_gap(no_knee) == "2m"
    assert st.suggest_gap(knee, max_cut=0.01) == "4m"


def test_suggested_gap_on_a_two_scale_log() -> None:
    # 20 users, each: 3 visits a day apart, 5 clicks 30 s apart per visit
    rows = [
        (u, i, day * 86400 + k * 30 + u)
        for u in range(20)
        for day in range(3)
        for k, i in enumerate(range(5))
    ]
    ex = explore(events(rows))
    assert ex.summary["sessions"]["suggested_gap"] == "5m"
    assert ex.summary["sessions"]["by"] == "gap"
    assert ex.summary["counts"]["sessions"] == 60
    assert ex.summary["session_length"]["p50"] == 5


def test_top_share_counts_ceil_of_the_fraction() -> None:
    counts = np.array([50] + [1] * 199)  # 200 items, 249 events
    assert st.top_share(counts, 0.01) == pytest.approx(51 / 249)  # top 2 items
    assert st.top_share(counts, 0.10) == pytest.approx(69 / 249)  # top 20 items
    item_counts = st.item_counts(events([(1, i, i) for i in [7, 7, 7, 8, 9, 9]]))
    assert item_counts[S.ITEM].to_list() == [7, 9, 8]
    p = st.popularity(item_counts)
    assert p["top1pct_items"] == 1 and p["top1pct_share"] == pytest.approx(0.5)
    assert p["single_event_items"] == 1


def test_bursty_users() -> None:
    ex = explore(events(SMALL), burst_second=3, burst_minute=3)
    sec, minute = ex.summary["bursts"]["second"], ex.summary["bursts"]["minute"]
    # only user 2 has 3 events in one second (100 s)
    assert (sec["actors"], sec["events_share"], sec["max_in_window"]) == (1, 0.3, 3)
    # in one minute: user 1 (0, 0, 10 s) and user 2 (100 s ×3, minute 1)
    assert (minute["actors"], minute["events_share"]) == (2, 0.6)
    bursty = ex.tables["bursty"]
    assert bursty[S.USER].to_list() == [2, 1]
    assert bursty["max_in_second"].to_list() == [3, 2]


def test_heavy_users_have_more_events_than_days() -> None:
    day = 86400
    rows = [(1, i, i * 0.6 * day) for i in range(5)]  # 5 events; log spans 2.4 days → 3 days
    rows += [(2, 1, 0), (2, 2, 1), (2, 3, 2)]  # 3 events: not more than 3 days
    rows += [(3, 1, 5)]
    ex = explore(events(rows))
    h = ex.summary["heavy_users"]
    assert h["days_in_log"] == 3
    assert (h["users"], h["users_share"]) == (1, pytest.approx(1 / 3))
    assert h["events_share"] == pytest.approx(5 / 9)
    assert ex.tables["heavy_users"][S.USER].to_list() == [1]


def test_log_session_ids_are_used_and_an_explicit_gap_wins() -> None:
    rows = [(None, 1, 0), (None, 2, 5), (None, 3, 10_000), (None, 1, 20), (None, 2, 25)]
    ev = events(rows, sessions=[7, 7, 7, 8, 8])
    ex = explore(ev)
    assert ex.summary["actor"] == S.SESSION
    assert ex.summary["counts"]["users"] is None
    assert ex.summary["sessions"]["by"] == "column"
    assert ex.summary["counts"]["sessions"] == 2
    assert ex.summary["user_length"] is None and ex.summary["heavy_users"]["users"] is None
    cut = explore(ev, session_gap="1h")  # splits session 7 at its 9,995 s gap
    assert cut.summary["sessions"] == {**cut.summary["sessions"], "by": "gap", "gap": "1h"}
    assert cut.summary["counts"]["sessions"] == 3


def test_rating_distribution_and_time_tables() -> None:
    ev = events(SMALL).with_columns(
        pl.Series(S.RATING, [5, 4, 4, 3, 5, 5, 1, 2, 4, 5], dtype=pl.Float32)
    )
    ex = explore(ev)
    r = ex.tables["ratings"]
    assert r[S.RATING].to_list() == [1, 2, 3, 4, 5]
    assert r["events"].to_list() == [1, 1, 1, 3, 4]
    assert ex.summary["ratings"]["mean"] == pytest.approx(3.8)
    assert ex.tables["hour_of_day"]["events"].sum() == 10
    assert ex.tables["hour_of_day"].height == 24
    assert ex.tables["hour_of_day"]["events"][0] == 9  # all but the 4700 s event: 01:18
    assert ex.tables["weekday"]["events"][2] == 10  # 2020-01-01 was a Wednesday
    assert ex.summary["activity"]["unit"] == "day"
    assert ex.tables["activity"]["events"].to_list() == [10]


def test_log_histogram_keeps_every_positive_value() -> None:
    values = np.array([1, 1, 2, 3, 9, 10, 11, 99, 100, 1000])
    h = st.log_histogram(values, integer=True)
    assert h["count"].sum() == values.size
    assert (h["lo"] < h["hi"]).all()
    g = st.log_histogram(np.array([0.0, 0.5, 3.0, 7200.0]))
    assert g["count"].sum() == 3  # the zero is reported apart


@pytest.fixture(scope="module")
def rated() -> Exploration:
    """One exploration whose plots (the slow part) are drawn once for the tests below."""
    ev = events(SMALL).with_columns(pl.lit(4.0, pl.Float32).alias(S.RATING))
    return explore(ev, burst_second=3)


def test_save_writes_plots_reports_and_the_same_numbers(rated: Exploration, tmp_path: Path) -> None:
    out = rated.save(tmp_path / "report")
    names = {p.name for p in out.iterdir()}
    pngs = {"lengths.png", "gaps.png", "activity.png", "popularity.png", "ratings.png"}
    assert names == pngs | {"report.md", "report.html", "summary.json", ".sessionrec.json"}
    for png in pngs:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["events"] == 10
    assert summary["gaps"]["zero_share"] == pytest.approx(3 / 7)
    assert summary["bursts"]["second"]["actors"] == 1
    assert [r["sessions"] for r in summary["tables"]["candidate_gaps"]][:3] == [5, 5, 4]
    md = (out / "report.md").read_text()
    assert "![" in md and "(gaps.png)" in md and "42.9%" in md  # 3/7 zero gaps
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 5
    assert 'src="http' not in page and "gaps.png" not in page  # self-contained


def test_notebook_reprs_show_numbers_and_plots(rated: Exploration) -> None:
    ex = rated
    html = ex._repr_html_()
    assert "<table>" in html and "data:image/png;base64," in html and "<html" not in html
    md = ex._repr_markdown_()
    assert "| events | 10 |" in md and "data:image/png;base64," in md


def test_package_exports_the_function_not_the_module() -> None:
    assert sr.explore is explore
    assert "explore" in sr.__all__ and "Exploration" in sr.__all__


def write_log(path: Path, rows: list[tuple[int, int, int]]) -> Path:
    pl.DataFrame(rows, schema=[S.USER, S.ITEM, S.TIME], orient="row").write_csv(path)
    return path


def test_cli_explore_on_a_tiny_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = int(T0.timestamp())
    rows = [(u, i, base + t) for u, i, t in [(1, 10, 0), (1, 11, 0), (1, 12, 60), (2, 10, 5)]]
    csv = write_log(tmp_path / "log.csv", rows)
    out = tmp_path / "out"
    main(["explore", str(csv), "--out", str(out), "--time-unit", "s"])
    text = capsys.readouterr().out
    assert "explore" in text and "4" in text and str(out / "report.html") in text.replace("\n", "")
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["counts"]["events"], summary["counts"]["users"]) == (4, 2)
    assert summary["gaps"]["zero_share"] == pytest.approx(0.5)


def test_cli_explore_bad_gap_is_one_line_exit_2(tmp_path: Path) -> None:
    csv = write_log(tmp_path / "log.csv", [(1, 10, 1_600_000_000)])
    with pytest.raises(SystemExit) as exc:
        main(["explore", str(csv), "--out", str(tmp_path / "o"), "--session-gap", "soon"])
    assert exc.value.code == 2
    assert not (tmp_path / "o").exists()


def test_empty_log_and_a_file_as_out_dir_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="at least one event"):
        explore(events(SMALL).clear())
    (tmp_path / "taken").write_text("")
    with pytest.raises(ConfigError, match="expected a directory"):
        explore(events(SMALL)).save(tmp_path / "taken")


@pytest.mark.e2e
def test_explore_ml100k(ml100k: Path, tmp_path: Path) -> None:
    ex = sr.explore(sr.load(ml100k))
    c = ex.summary["counts"]
    assert (c["events"], c["users"], c["items"]) == (100_000, 943, 1_682)
    assert ex.summary["gaps"]["zero_share"] == pytest.approx(0.51, abs=0.01)
    assert ex.summary["user_length"]["min"] == 20  # MovieLens keeps users with >= 20 ratings
    assert ex.tables["ratings"]["events"].sum() == 100_000
    assert ex.tables["top_items"]["title"][0] == "Star Wars (1977)"
    by_gap = dict(ex.tables["candidate_gaps"].select("gap", "sessions").iter_rows())
    assert by_gap["1h"] == 2_692  # sessions a 1 h gap cuts before any filter
    assert math.isfinite(ex.summary["popularity"]["top10pct_share"])
    ex.save(tmp_path)
    assert json.loads((tmp_path / "summary.json").read_text())["counts"]["events"] == 100_000


@pytest.mark.parametrize("seed", range(5))
def test_int_quantiles_match_numpy(seed: int) -> None:
    values = np.random.default_rng(seed).geometric(0.1, size=1 + seed * 37)
    qs = [0, 0.25, 0.5, 0.9, 0.99, 0.999, 1]
    np.testing.assert_allclose(st.int_quantiles(values, qs), np.quantile(values, qs))
