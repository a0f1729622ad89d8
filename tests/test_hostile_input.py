"""Hostile input (issue 9, input side): each case ends in one clear line (exit 2) or in a
correct result that says what it did; never a traceback, never a silent wrong number.

Grouped as the issue: time units and bad times, literal paths, duplicated events, encodings,
typed files and options, and error text printed literally.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import sessionrec as sr
from sessionrec.cli import main
from sessionrec.datasets import ColumnMapping, load_table
from sessionrec.errors import ConfigError, DataError
from sessionrec.prepare.pipeline import PrepareConfig, prepare_frames

T0 = 1_600_000_000  # 2020-09-13, in seconds


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err.strip()


def one_line_error(code: int, err: str, *parts: str) -> None:
    assert code == 2, err
    assert err.count("\n") == 0, err
    assert err.startswith("error: "), err
    for p in parts:
        assert p in err, (p, err)


def rows(n: int = 400, seed: int = 0, scale: int = 1) -> pl.DataFrame:
    """n events in sessions of 10 (one user each, a minute apart) starting at random over 20
    days, on 12 items; times in seconds * scale, in time order."""
    rng = np.random.default_rng(seed)
    user = np.arange(n) // 10
    start = T0 + rng.integers(0, 20 * 86_400, user.max() + 1)
    t = start[user] + 60 * (np.arange(n) % 10)
    order = np.argsort(t, kind="stable")
    return pl.DataFrame(
        {
            "user_id": user[order],
            "item_id": rng.integers(0, 12, n),
            "timestamp": t[order] * scale,
        }
    )


def write(path: Path, df: pl.DataFrame) -> Path:
    if path.suffix == ".parquet":
        df.write_parquet(path)
    else:
        df.write_csv(path, separator="\t" if path.suffix == ".tsv" else ",")
    return path


def meta(out: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((out / "meta.json").read_text())


def prepare_args(log: Path, out: Path, *extra: str) -> list[str]:
    return ["prepare", str(log), "--out", str(out), "--min-item-support", "1", "--test-days",
            "2", "--valid-days", "0", *extra]  # fmt: skip


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --- time units and bad times -------------------------------------------------------------


def test_one_outlier_does_not_turn_seconds_into_milliseconds(
    cwd: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    df = rows()
    df[5, "timestamp"] = 120_000_000_000  # year 5772 in seconds
    log = write(cwd / "log.csv", df)
    code, _, err = run(prepare_args(log, cwd / "out"), capsys)
    assert code == 0, err
    m = meta(cwd / "out")
    assert m["source"]["time_unit"] == "s"
    assert m["source"]["bad_times"]["count"] == 1 and m["dropped"]["bad_times"] == 1
    assert m["source"]["bad_times"]["first_line"] == 7  # header, then data row 6
    assert m["raw_events"] == 399
    assert "log.csv:7: column 'timestamp'" in caplog.text and "120000000000" in caplog.text


def test_outlier_beyond_the_first_thousand_rows_is_reported(tmp_path: Path) -> None:
    df = rows(3_000)
    df[2_500, "timestamp"] = 5  # 1970 in a log of 2020
    ds = load_table(write(tmp_path / "log.csv", df))
    assert ds.info["time_unit"] == "s"
    assert ds.info["bad_times"]["first_line"] == 2_502  # type: ignore[index]
    assert ds.collect().height == 2_999


def test_unit_decided_by_the_whole_column_not_its_head(tmp_path: Path) -> None:
    # The first 1,000 times are milliseconds-sized outliers; the other 2,000 are seconds.
    df = rows(3_000)
    df = df.with_columns(
        pl.when(pl.int_range(pl.len()) < 1_000)
        .then(pl.col("timestamp") * 1_000)
        .otherwise(pl.col("timestamp"))
        .alias("timestamp")
    )
    ds = load_table(write(tmp_path / "log.csv", df))
    assert ds.info["time_unit"] == "s"
    assert ds.info["bad_times"]["count"] == 1_000  # type: ignore[index]


def test_bad_time_refused_with_on_bad_time_error(
    cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    df = rows(scale=1_000)
    df[9, "timestamp"] = 4_102_444_800_000  # 2100-01-01 in milliseconds
    log = write(cwd / "log.csv", df)
    code, _, err = run(prepare_args(log, cwd / "out", "--on-bad-time", "error"), capsys)
    one_line_error(code, err, "log.csv:11: column 'timestamp'", "4102444800000", "2100-01-01",
                   "--on-bad-time drop")  # fmt: skip
    assert not (cwd / "out").exists()


def test_iso_time_before_1990_is_dropped_and_counted(tmp_path: Path) -> None:
    df = rows().with_columns(
        pl.from_epoch("timestamp").dt.strftime("%Y-%m-%dT%H:%M:%SZ").alias("timestamp")
    )
    df[3, "timestamp"] = "1850-01-01T00:00:00Z"
    log = write(tmp_path / "log.csv", df)
    ds = sr.load(log)
    assert ds.info["time_unit"] == "iso"
    assert ds.info["bad_times"]["count"] == 1  # type: ignore[index]
    assert ds.collect()["timestamp"].dt.year().min() == 2020


def test_seconds_read_as_milliseconds_says_so(
    cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = write(cwd / "log.csv", rows())
    code, _, err = run(prepare_args(log, cwd / "out", "--time-unit", "ms"), capsys)
    one_line_error(code, err, "log.csv", "look like seconds", "--time-unit s")


@pytest.mark.parametrize("verb", ["prepare", "explore"])
def test_time_unit_s_on_a_millisecond_log_says_so(
    cwd: Path, capsys: pytest.CaptureFixture[str], verb: str
) -> None:
    log = write(cwd / "log.csv", rows(scale=1_000))
    code, _, err = run([verb, str(log), "--out", str(cwd / "out"), "--time-unit", "s"], capsys)
    one_line_error(code, err, "log.csv", "look like milliseconds", "--time-unit ms")


def test_python_api_refuses_bad_time_on_request(tmp_path: Path) -> None:
    df = rows()
    df[0, "timestamp"] = 10**30 // 10**12  # far beyond year 9999 in seconds
    log = write(tmp_path / "log.parquet", df)
    with pytest.raises(DataError, match=r"row 1\b"):
        load_table(log, ColumnMapping(on_bad_time="error"))
    with pytest.raises(ConfigError, match="drop or error"):
        load_table(log, ColumnMapping(on_bad_time="keep"))


# --- literal paths ------------------------------------------------------------------------


def test_brackets_in_a_path_are_literal(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = write(cwd / "log[1].csv", rows(400, seed=1))
    write(cwd / "log1.csv", rows(50, seed=2))  # what the pattern log[1].csv would match
    code, _, err = run(prepare_args(log, cwd / "out"), capsys)
    assert code == 0, err
    m = meta(cwd / "out")
    assert m["raw_events"] == 400
    assert m["source"]["sha256"] == hashlib.sha256(log.read_bytes()).hexdigest()


def test_brackets_in_a_prepared_folder_are_literal(tmp_path: Path) -> None:
    a = sr.prepare(write(tmp_path / "a.csv", rows(400, seed=1)), tmp_path / "out[1]",
                   min_item_support=1, test_days=2, valid_days=0)  # fmt: skip
    sr.prepare(write(tmp_path / "b.csv", rows(200, seed=2)), tmp_path / "out1",
               min_item_support=1, test_days=2, valid_days=0)  # fmt: skip
    assert isinstance(a, sr.PreparedData)
    again = sr.PreparedData(tmp_path / "out[1]")
    assert again.frame("train").height == a.meta["counts"]["train"]["rows"]
    assert again.items.height == a.n_items


# --- duplicated events --------------------------------------------------------------------


def test_prepare_warns_and_records_duplicates(
    cwd: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    df = rows()
    log = write(cwd / "log.csv", pl.concat([df, df]))
    code, _, err = run(prepare_args(log, cwd / "out"), capsys)
    assert code == 0, err
    assert "400 event(s) repeat an earlier row" in caplog.text
    assert "--drop-duplicates" in caplog.text
    assert meta(cwd / "out")["duplicates"] == {"events": 400, "dropped": False}


def test_drop_duplicates_gives_the_clean_logs_data(
    cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    df = rows()
    clean = write(cwd / "clean.csv", df)
    doubled = write(cwd / "doubled.csv", pl.concat([df, df]))
    assert run(prepare_args(clean, cwd / "a"), capsys)[0] == 0
    assert run(prepare_args(doubled, cwd / "b", "--drop-duplicates"), capsys)[0] == 0
    ma, mb = meta(cwd / "a"), meta(cwd / "b")
    assert mb["dropped"]["duplicates"] == 400 and mb["duplicates"]["dropped"] is True
    assert ma["counts"] == mb["counts"]
    for part in ("train", "test"):
        a = pl.read_parquet(cwd / "a" / f"{part}.parquet").drop("session_id")
        b = pl.read_parquet(cwd / "b" / f"{part}.parquet").drop("session_id")
        assert a.equals(b)


def test_explore_reports_duplicate_rows(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    df = rows()
    log = write(cwd / "log.csv", pl.concat([df, df.head(30)]))
    code, out, err = run(["explore", str(log), "--out", str(cwd / "rep")], capsys)
    assert code == 0, err
    summary = json.loads((cwd / "rep" / "summary.json").read_text())
    assert summary["duplicates"]["events"] == 30
    assert "exact duplicate rows" in out
    assert "exact duplicate rows | 30 " in (cwd / "rep" / "report.md").read_text()


def test_same_item_same_time_with_other_rating_is_no_duplicate(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text(
        "user_id,item_id,rating,timestamp\n"
        f"1,1,4,{T0}\n1,1,5,{T0}\n1,2,3,{T0 + 1}\n1,2,3,{T0 + 1}\n2,1,4,{T0 - 99}\n"
        f"2,2,4,{T0 - 98}\n"
    )
    _, m = prepare_frames(
        sr.load(log), PrepareConfig(min_item_support=1, test_days=1e-5, valid_days=0)
    )
    assert m["duplicates"]["events"] == 1


# --- encodings ----------------------------------------------------------------------------


def latin1_log(path: Path, bad_row: int, n: int = 400) -> Path:
    df = rows(n).with_columns(pl.format("item{}", "item_id").alias("item_id"))
    lines = df.write_csv().encode().split(b"\n")
    lines[bad_row] = lines[bad_row].replace(b",item", b",caf\xe9", 1)  # data row bad_row
    path.write_bytes(b"\n".join(lines))
    return path


@pytest.mark.parametrize("bad_row", [2, 5_001])
def test_latin1_byte_names_the_line_and_suggests_encoding(
    cwd: Path, capsys: pytest.CaptureFixture[str], bad_row: int
) -> None:
    log = latin1_log(cwd / "log.csv", bad_row, n=6_000)
    for verb in ("prepare", "explore"):
        code, _, err = run([verb, str(log), "--out", str(cwd / "out")], capsys)
        one_line_error(code, err, f"log.csv:{bad_row + 1}:", "0xe9", "--encoding latin-1")
    assert not (cwd / "out").exists()


def test_encoding_option_reads_latin1(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = latin1_log(cwd / "log.csv", 2)
    code, _, err = run(prepare_args(log, cwd / "out", "--encoding", "latin-1"), capsys)
    assert code == 0, err
    m = meta(cwd / "out")
    assert m["raw_events"] == 400 and m["source"]["encoding"] == "iso8859-1"
    items = pl.read_parquet(cwd / "out" / "items.parquet")["item_id"].to_list()
    assert any(i.startswith("café") for i in items)


def test_unknown_encoding_is_one_line(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = write(cwd / "log.csv", rows())
    code, _, err = run(prepare_args(log, cwd / "out", "--encoding", "klingon"), capsys)
    one_line_error(code, err, "'klingon'", "latin-1")


def test_non_utf8_header_suggests_encoding(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_bytes(b"user_id,it\xe9m,timestamp\n1,2,1600000000\n")
    with pytest.raises(DataError, match=r"log.csv:1: .*--encoding"):
        load_table(log)


def test_extra_field_on_one_line_is_named(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text(f"user_id,item_id,timestamp\n1,2,{T0}\n1,3,{T0 + 5},oops\n")
    with pytest.raises(DataError, match=r"log.csv:3: expected 3 fields .* found 4"):
        sr.load(log).collect()


def test_lone_cr_line_endings_are_lines(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_bytes(f"user_id,item_id,timestamp,note\r1,2,{T0},x\r1,3,{T0 + 60},y\n".encode())
    ds = sr.load(log)
    assert ds.collect()["item_id"].to_list() == [2, 3]


def test_blank_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text(f"user_id,item_id,timestamp\n1,a,{T0}\n\n1,b,{T0 + 60}\n,,\n\n")
    ds = sr.load(log)
    assert ds.collect()["item_id"].to_list() == ["a", "b"]
    assert ds.info["blank_lines"] == 3


def test_unclosed_quote_is_named_by_line(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text(f'user_id,item_id,timestamp\n1,a,{T0}\n1,"b,{T0 + 60}\n2,c,{T0 + 99}\n')
    with pytest.raises(DataError, match=r"log.csv:3: .*unclosed quote"):
        sr.load(log).collect()


def test_fractional_user_id_is_refused_not_truncated(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text(f"user_id,item_id,timestamp\n1.0,a,{T0}\n1.5,b,{T0 + 60}\n")
    with pytest.raises(DataError, match=r"log.csv:3: column 'user_id': expected an integer"):
        sr.load(log).collect()


def test_fractional_seconds_are_kept(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text(f"user_id,item_id,timestamp\n1,a,{T0}.5\n1,b,{T0 + 60}.25\n")
    micros = sr.load(log).collect()["timestamp"].dt.epoch("us").to_list()
    assert micros == [(T0 * 10**6) + 500_000, (T0 + 60) * 10**6 + 250_000]


# --- typed files and options --------------------------------------------------------------


def test_text_in_an_integer_parquet_column(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    df = rows().with_columns(pl.col("user_id").cast(pl.Utf8))
    df[17, "user_id"] = "bob"
    log = write(cwd / "log.parquet", df)
    code, _, err = run(prepare_args(log, cwd / "out"), capsys)
    one_line_error(code, err, "log.parquet: column 'user_id'", "an integer", "'bob'", "row 18")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1"])
@pytest.mark.parametrize("option", ["--test-days", "--valid-days"])
def test_days_must_be_finite_and_not_negative(
    cwd: Path, capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    log = write(cwd / "log.csv", rows())
    code, _, err = run(["prepare", str(log), "--out", str(cwd / "out"), f"{option}={value}"],
                       capsys)  # fmt: skip
    one_line_error(code, err, option, "finite")


def test_huge_test_days_is_no_overflow(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = write(cwd / "log.csv", rows())
    code, _, err = run(["prepare", str(log), "--out", str(cwd / "out"), "--test-days", "1e300"],
                       capsys)  # fmt: skip
    one_line_error(code, err, "non-empty training part")


# --- error text printed literally ---------------------------------------------------------


@pytest.mark.parametrize("name", ["line :100: here.csv", "[bold]x.csv", "in/[red]dir/log.csv"])
def test_error_text_is_printed_literally(
    cwd: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    code, _, err = run(["prepare", name, "--out", "out"], capsys)
    one_line_error(code, err, name)


def test_output_paths_are_printed_literally(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = write(cwd / "log.csv", rows())
    code, out, err = run(prepare_args(log, Path("[red]out")), capsys)
    assert code == 0, err
    assert "prepared: [red]out" in out


def test_usage_errors_use_the_same_error_prefix(
    cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(["prepare", "log.csv", "--no-such-flag"], capsys)
    assert code == 2
    assert err.splitlines()[-1].startswith("error: ") and "--no-such-flag" in err
    assert "Error:" not in err


def test_warnings_are_plain_log_lines(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    df = rows()
    df[0, "timestamp"] = -1
    with caplog.at_level(logging.WARNING):
        load_table(write(tmp_path / "log.tsv", df))
    assert any("log.tsv:2: column 'timestamp': dropped 1 row" in r.message for r in caplog.records)
