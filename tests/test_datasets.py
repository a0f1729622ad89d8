"""Loaders of every layout, on tiny fixtures written here (no MovieLens data in git)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import sessionrec as sr
from sessionrec import _schema as S
from sessionrec.datasets import ColumnMapping, load_movielens, load_table, load_yoochoose
from sessionrec.errors import DataError


def ts(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def flags(*on: int) -> str:
    return "|".join("1" if i in on else "0" for i in range(19))


@pytest.fixture
def ml100k_tiny(tmp_path: Path) -> Path:
    d = tmp_path / "ml-100k"
    d.mkdir()
    (d / "u.data").write_text("196\t242\t3\t881250949\n186\t302\t3\t891717742\n196\t302\t5\t1\n")
    (d / "u.item").write_bytes(
        (
            f"242|Misérables, Les (1995)|01-Jan-1995||http://x|{flags(8, 12)}\n"
            f"302|Two Friends (1986) |26-Apr-1986||http://y|{flags(5)}\n"
            f"267|unknown||||{flags(0)}\n"
        ).encode("latin-1")
    )
    return d


def test_ml100k_layout(ml100k_tiny: Path) -> None:
    ds = sr.load(ml100k_tiny)
    ev = ds.events
    assert ev.columns == [S.USER, S.SESSION, S.ITEM, S.TIME, S.ROW, S.RATING]
    assert ev[S.USER].to_list() == [196, 186, 196]
    assert ev[S.ITEM].to_list() == [242, 302, 302]
    assert ev[S.RATING].to_list() == [3.0, 3.0, 5.0]
    assert ev[S.TIME].to_list() == [ts(881250949), ts(891717742), ts(1)]
    assert ev[S.ROW].to_list() == [0, 1, 2]
    assert ev[S.SESSION].null_count() == 3
    assert ev.schema[S.TIME] == S.TIME_DTYPE and ev.schema[S.RATING] == pl.Float32
    assert ds.items is not None
    items = {r[S.ITEM]: r for r in ds.items.iter_rows(named=True)}
    assert items[242][S.TITLE] == "Misérables, Les (1995)"
    assert items[242][S.YEAR] == 1995
    assert items[242][S.GENRES] == ["Drama", "Musical"]
    assert items[302][S.TITLE] == "Two Friends (1986)"  # trailing space stripped
    assert items[302][S.GENRES] == ["Comedy"]
    assert items[267][S.YEAR] is None and items[267][S.GENRES] == ["unknown"]
    # A path to u.data loads the same folder.
    assert sr.load(ml100k_tiny / "u.data").events.equals(ev)


def write_dat(folder: Path, movies: bytes) -> Path:
    folder.mkdir()
    (folder / "ratings.dat").write_text("1::10::5::978300760\n2::20::3.5::978300761\n1::20::4::5\n")
    (folder / "movies.dat").write_bytes(movies)
    return folder


@pytest.mark.parametrize("encoding", ["latin-1", "utf-8"])  # 1M is latin-1, 10M is UTF-8
def test_dat_layout(tmp_path: Path, encoding: str) -> None:
    movies = (
        "10::Misérables: Les Enfants du Paradis (1945)::Drama|Romance\n"
        "20::Star Wars: Episode IV - A New Hope (1977)::Action|Sci-Fi\n"
    ).encode(encoding)
    folder = write_dat(tmp_path / "ml-1m", movies)
    ds = load_movielens(folder)
    ev = ds.events
    assert ev[S.USER].to_list() == [1, 2, 1]
    assert ev[S.ITEM].to_list() == [10, 20, 20]
    assert ev[S.RATING].to_list() == [5.0, 3.5, 4.0]
    assert ev[S.TIME].to_list() == [ts(978300760), ts(978300761), ts(5)]
    assert ds.items is not None
    row = ds.items.filter(pl.col(S.ITEM) == 10).row(0, named=True)
    assert row[S.TITLE] == "Misérables: Les Enfants du Paradis (1945)"
    assert row[S.YEAR] == 1945
    assert row[S.GENRES] == ["Drama", "Romance"]
    assert ds.items.filter(pl.col(S.ITEM) == 20)[S.TITLE].item().startswith("Star Wars: Ep")


def test_csv_layout(tmp_path: Path) -> None:
    d = tmp_path / "ml-25m"
    d.mkdir()
    (d / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,1,4.0,944249077\n1,2,0.5,944250228\n7,1,5.0,3\n"
    )
    (d / "movies.csv").write_text(
        "movieId,title,genres\n"
        '1,"American President, The (1995)",Comedy|Drama|Romance\n'
        '2,"Café ""Noir"", Le (2001)",(no genres listed)\n'
    )
    ds = sr.load(d)
    ev = ds.events
    assert ev[S.USER].to_list() == [1, 1, 7]
    assert ev[S.ITEM].to_list() == [1, 2, 1]
    assert ev[S.RATING].to_list() == [4.0, 0.5, 5.0]
    assert ev[S.TIME].to_list() == [ts(944249077), ts(944250228), ts(3)]
    assert ds.items is not None
    items = {r[S.ITEM]: r for r in ds.items.iter_rows(named=True)}
    assert items[1][S.TITLE] == "American President, The (1995)"
    assert items[1][S.GENRES] == ["Comedy", "Drama", "Romance"]
    assert items[2][S.TITLE] == 'Café "Noir", Le (2001)'
    assert items[2][S.YEAR] == 2001
    assert items[2][S.GENRES] == []
    assert sr.load(d / "ratings.csv").events.equals(ev)


CLICKS = (
    "1,2014-04-07T10:51:09.277Z,214536502,0\n"
    "1,2014-04-07T10:54:09.868Z,214536500,S\n"
    "2,2014-04-06T18:44:57.001Z,214662742,2053\n"
)
BUYS = "1,2014-04-07T10:56:00.000Z,214536502,12462,1\n"


def test_yoochoose_clicks_file_and_folder(tmp_path: Path) -> None:
    (tmp_path / "yoochoose-clicks.dat").write_text(CLICKS)
    ev = sr.load(tmp_path / "yoochoose-clicks.dat").events
    assert ev[S.SESSION].to_list() == [1, 1, 2]
    assert ev[S.USER].null_count() == 3
    assert ev[S.ITEM].to_list() == [214536502, 214536500, 214662742]
    assert ev.schema[S.ITEM] == pl.Int64
    assert ev[S.EVENT_TYPE].to_list() == ["click"] * 3
    assert ev[S.TIME][0] == datetime(2014, 4, 7, 10, 51, 9, 277000, tzinfo=UTC)
    assert ev[S.ROW].to_list() == [0, 1, 2]
    (tmp_path / "yoochoose-buys.dat").write_text(BUYS)
    ds = sr.load(tmp_path)
    ev = ds.events
    assert ev[S.EVENT_TYPE].to_list() == ["click"] * 3 + ["buy"]
    assert ev[S.ROW].to_list() == [0, 1, 2, 3]
    assert ev[S.TIME][3] == datetime(2014, 4, 7, 10, 56, tzinfo=UTC)
    assert [f.name for f in ds.files] == ["yoochoose-clicks.dat", "yoochoose-buys.dat"]
    assert load_yoochoose(tmp_path, buys=False).events.height == 3


def test_yoochoose_times_fast_and_general_shapes(tmp_path: Path) -> None:
    (tmp_path / "yoochoose-clicks.dat").write_text(
        "1,2014-04-07T10:51:09.277Z,1,0\n1,2014-04-07T10:51:10Z,2,0\n"
        "1,2014-04-07T10:51:11.5Z,3,0\n1,2014-12-31T23:59:59.999Z,4,0\n"
    )
    got = load_yoochoose(tmp_path).events[S.TIME].to_list()
    assert got == [
        datetime(2014, 4, 7, 10, 51, 9, 277000, tzinfo=UTC),
        datetime(2014, 4, 7, 10, 51, 10, tzinfo=UTC),
        datetime(2014, 4, 7, 10, 51, 11, 500000, tzinfo=UTC),
        datetime(2014, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),
    ]


def test_yoochoose_bad_time_names_line(tmp_path: Path) -> None:
    (tmp_path / "yoochoose-clicks.dat").write_text(CLICKS + "3,07/04/2014 10:51,5,0\n")
    with pytest.raises(DataError) as e:
        load_yoochoose(tmp_path)
    assert e.value.line == 4 and e.value.column == "time"
    assert "07/04/2014" in e.value.found


def test_lazy_error_beyond_the_probe_names_line(tmp_path: Path) -> None:
    """A bad value after the eagerly probed head still ends in a DataError with its line."""
    d = tmp_path / "ml-25m"
    d.mkdir()
    rows = [f"{i},{i % 7},3.0,{1000 + i}" for i in range(3000)]
    rows[2500] = "2500,x7,3.0,3500"
    (d / "ratings.csv").write_text("userId,movieId,rating,timestamp\n" + "\n".join(rows) + "\n")
    (d / "movies.csv").write_text("movieId,title,genres\n1,A (1999),Drama\n")
    ds = sr.load(d)
    with pytest.raises(DataError) as e:
        _ = ds.events
    assert (e.value.line, e.value.column, e.value.found) == (2502, "movieId", "'x7'")


@pytest.mark.parametrize(
    ("values", "unit", "first"),
    [
        ([1_600_000_000, 1_600_000_060], "s", datetime(2020, 9, 13, 12, 26, 40, tzinfo=UTC)),
        ([1_600_000_000_000, 1_600_000_060_000], "ms", datetime(2020, 9, 13, 12, 26, 40, tzinfo=UTC)),
        (["2020-09-13T12:26:40Z", "2020-09-13T12:27:40Z"], "iso", datetime(2020, 9, 13, 12, 26, 40, tzinfo=UTC)),
    ],
)  # fmt: skip
def test_tabular_time_unit_detection(
    tmp_path: Path, values: list[object], unit: str, first: datetime
) -> None:
    path = tmp_path / "log.csv"
    pl.DataFrame({"visitor": [5, 6], "product": ["a", "b"], "when": values}).write_csv(path)
    ds = load_table(path, ColumnMapping(user="visitor", item="product", time="when"))
    assert ds.info["time_unit"] == unit
    ev = ds.events
    assert ev[S.TIME][0] == first
    assert (ev[S.TIME][1] - ev[S.TIME][0]).total_seconds() == 60
    assert ev[S.ITEM].to_list() == ["a", "b"]  # ids kept raw
    assert ev[S.USER].to_list() == [5, 6]


def test_tabular_tsv_with_mapping_and_guesses(tmp_path: Path) -> None:
    path = tmp_path / "log.tsv"
    path.write_text(
        "sid\tuser_id\tsku\tt\tstars\tkind\n"
        "10\t1\t7\t1600000000\t4\tview\n"
        "10\t1\t8\t1600000001\t5\tbuy\n"
    )
    m = ColumnMapping(session="sid", item="sku", time="t", rating="stars", event_type="kind")
    ev = sr.load(path, m).events
    assert ev[S.SESSION].to_list() == [10, 10]
    assert ev[S.USER].to_list() == [1, 1]  # guessed from the name
    assert ev[S.ITEM].to_list() == [7, 8]
    assert ev[S.RATING].to_list() == [4.0, 5.0]
    assert ev[S.EVENT_TYPE].to_list() == ["view", "buy"]


def test_tabular_parquet(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    pl.DataFrame(
        {
            "userId": [1, 1, 2],
            "itemId": [3, 4, 3],
            "ts": [1_600_000_000_000, 1_600_000_001_000, 1_600_000_002_000],
        }
    ).write_parquet(path)
    ds = sr.load(path, ColumnMapping(time_unit="ms"))
    ev = ds.events
    assert ds.info["format"] == "parquet"
    assert ev[S.USER].to_list() == [1, 1, 2]
    assert ev[S.ITEM].to_list() == [3, 4, 3]
    assert ev[S.TIME][1] == datetime(2020, 9, 13, 12, 26, 41, tzinfo=UTC)
    assert ev[S.ROW].to_list() == [0, 1, 2]


def _many_clicks(n: int) -> str:
    return "".join(
        f"{i // 3},2014-04-07T10:{i // 60 % 60:02d}:{i % 60:02d}.277Z,{i},0\n" for i in range(n)
    )


def test_yoochoose_fast_read_falls_back_and_names_lines_beyond_the_probe(tmp_path: Path) -> None:
    """Arrow reads typed; what it rejects after the probed head goes to the polars path."""
    cols = [S.SESSION, S.ITEM, S.TIME, S.ROW]
    (tmp_path / "yoochoose-clicks.dat").write_text(_many_clicks(1500))
    ds = load_yoochoose(tmp_path)
    assert ds.collect(cols).columns == cols  # pruned: no event_type
    assert ds.collect(cols).equals(ds.events.select(cols))
    # Nanoseconds: Arrow (us) refuses them, polars' general parser reads them.
    (tmp_path / "yoochoose-clicks.dat").write_text(
        _many_clicks(1500) + "9,2014-04-07T10:51:09.123456789Z,5,0\n"
    )
    ev = load_yoochoose(tmp_path).collect(cols)
    assert ev[S.TIME][-1] == datetime(2014, 4, 7, 10, 51, 9, 123456, tzinfo=UTC)
    assert ev.height == 1501
    for bad, column in (("9,07/04/2014 10:51,5,0", "time"), ("9,2014-04-07T10:51:09.123Z", "item")):
        (tmp_path / "yoochoose-clicks.dat").write_text(_many_clicks(1500) + bad + "\n")
        with pytest.raises(DataError) as e:
            load_yoochoose(tmp_path).collect(cols)
        assert (e.value.line, e.value.column) == (1501, column)


def test_yoochoose_times_with_an_offset_are_converted_to_utc(tmp_path: Path) -> None:
    (tmp_path / "yoochoose-clicks.dat").write_text(
        "1,2014-04-07T10:51:09.277+01:00,1,0\n" + _many_clicks(1500)
    )
    (tmp_path / "yoochoose-buys.dat").write_text("1,2014-04-07 10:56:00-02:00,1,12462,1\n")
    ev = load_yoochoose(tmp_path).events
    assert ev[S.TIME][0] == datetime(2014, 4, 7, 9, 51, 9, 277000, tzinfo=UTC)
    assert ev[S.TIME][-1] == datetime(2014, 4, 7, 12, 56, tzinfo=UTC)
    assert ev[S.EVENT_TYPE][-1] == "buy" and ev.height == 1502


def _yoochoose_clicks(path: Path, n_sessions: int = 300, days: int = 6) -> Path:
    """A YOOCHOOSE-layout clicks file: sessions of 2-5 clicks over ``days`` days, 20 items."""
    rng = np.random.default_rng(0)
    lines = []
    for s in range(1, n_sessions + 1):
        day = 1 + s * days // (n_sessions + 1)
        for j in range(int(rng.integers(2, 6))):
            item = 214500000 + int(rng.integers(0, 20))
            lines.append(f"{s},2014-04-{day:02d}T10:{j:02d}:00.000Z,{item},0")
    path.mkdir(parents=True, exist_ok=True)
    (path / "yoochoose-clicks.dat").write_text("\n".join(lines) + "\n")
    return path


def test_an_imported_yoochoose_log_prepares_by_its_own_session_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from _helpers import run_cli

    src = _yoochoose_clicks(tmp_path / "yc")
    code, _, err = run_cli(["data", "import", "yoochoose", str(src)], capsys)
    assert code == 0, err
    out = tmp_path / "p"
    code, stdout, err = run_cli(
        ["prepare", "yoochoose", "--out", str(out), "--test-days", "1", "--valid-days", "1",
         "--min-item-support", "1"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "sessions: the log's own session ids" in stdout
    data = sr.PreparedData(out)
    assert data.meta["params"]["session"] == "column"
    # the Python API decides the same way
    again = sr.prepare(sr.load(src), test_days=1, valid_days=1, min_item_support=1)
    assert isinstance(again, dict) and again["train"].height == data.train.n_events
    # a gap asked for on a log without users names the option that would work
    code, _, err = run_cli(
        ["prepare", "yoochoose", "--out", str(tmp_path / "q"), "--session-gap", "30m"], capsys
    )
    assert code == 2 and "--session-column" in err
