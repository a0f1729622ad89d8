"""Property (issue 9): loading a malformed CSV/TSV/Parquet log either succeeds with the right
number of events or raises sessionrec's own one-line error, never another exception.

Hypothesis writes logs of a few rows and spoils some: text where numbers belong, missing cells,
bytes that are not UTF-8, extra or missing fields, extra columns, huge numbers, and mixed
line endings (LF, CRLF, lone CR).
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessionrec.datasets import load
from sessionrec.errors import SessionrecError

T0 = 1_600_000_000
COLUMNS = ("user_id", "item_id", "timestamp")
SPOILS = ("text", "empty", "bad_byte", "huge", "negative_huge", "float", "quote", "extra_field",
          "short")  # fmt: skip
HARMLESS_ENDINGS = ("\n", "\r\n")


@st.composite
def text_logs(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 25))
    rows = [[str(i % 4), str(draw(st.integers(0, 9))), str(T0 + 60 * i)] for i in range(n)]
    spoils = draw(
        st.lists(
            st.tuples(st.integers(0, n - 1), st.integers(0, 2), st.sampled_from(SPOILS)),
            max_size=3,
        )
    )
    endings = draw(st.lists(st.sampled_from(["\n", "\r\n", "\r"]), min_size=n + 1, max_size=n + 1))
    return {
        "sep": draw(st.sampled_from([",", "\t"])),
        "extra_column": draw(st.booleans()),
        "rows": rows,
        "spoils": spoils,
        "endings": endings,
        "final_newline": draw(st.booleans()),
    }


def render_text(log: dict[str, Any]) -> bytes:
    sep = log["sep"]
    header = list(COLUMNS) + (["note"] if log["extra_column"] else [])
    cells: list[list[bytes]] = [
        [c.encode() for c in r] + ([b"x"] if log["extra_column"] else []) for r in log["rows"]
    ]
    tails = [b""] * len(cells)
    for row, col, spoil in log["spoils"]:
        if spoil == "extra_field":
            tails[row] = sep.encode() + b"more"
        elif spoil == "short":
            cells[row] = cells[row][:-1]
        elif col < len(cells[row]):  # not a cell a "short" spoil removed
            cell = cells[row][col]
            cells[row][col] = {
                "text": b"abc",
                "empty": b"",
                "bad_byte": cell + b"\xe9",
                "huge": b"9" * 25,
                "negative_huge": b"-1e300",
                "float": cell + b".5",
                "quote": b'"' + cell,
            }[spoil]
    lines = [sep.join(header).encode()] + [
        sep.encode().join(c) + t for c, t in zip(cells, tails, strict=True)
    ]
    endings = [e.encode() for e in log["endings"]]
    out = b"".join(line + end for line, end in zip(lines[:-1], endings, strict=False))
    return out + lines[-1] + (endings[-1] if log["final_newline"] else b"")


def data_lines(text: bytes) -> list[bytes]:
    """The data lines as a reader sees them: LF, CRLF and a lone CR each end a line (so a CR
    that ends an empty line before an LF makes one CRLF)."""
    lines = text.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")[1:]
    return lines[:-1] if lines and lines[-1] == b"" else lines  # the final newline


def blank_rows(lines: list[bytes], sep: str) -> int:
    """Data lines without a value in any of the three columns the loader reads (skipped)."""
    return sum(1 for line in lines if not any(line.split(sep.encode())[:3]))


def check_outcome(path: Path, n_rows: int, must_load: bool, blank: int = 0) -> None:
    try:
        ds = load(path)
        events = ds.collect()
    except SessionrecError as exc:
        assert not must_load, f"a harmless file was refused: {exc}"
        message = str(exc)
        assert "\n" not in message and "\r" not in message, message
        assert path.name in message or "--" in message, message
        return
    bad = ds.info.get("bad_times")
    dropped = bad["count"] if isinstance(bad, dict) else 0
    assert ds.info.get("blank_lines", 0) == blank
    assert events.height + dropped + blank == n_rows, (events.height, dropped, blank, n_rows)
    assert events["timestamp"].null_count() == 0 and events["item_id"].null_count() == 0
    if must_load:
        assert dropped == 0
        assert events["timestamp"].dt.epoch("s").to_list() == [T0 + 60 * i for i in range(n_rows)]


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(text_logs())
def test_malformed_text_logs_load_or_fail_in_one_line(log: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("log.tsv" if log["sep"] == "\t" else "log.csv")
        text = render_text(log)
        path.write_bytes(text)
        harmless = not log["spoils"] and set(log["endings"]) <= set(HARMLESS_ENDINGS)
        lines = data_lines(text)
        if harmless:
            assert len(lines) == len(log["rows"])
        check_outcome(path, len(lines), must_load=harmless, blank=blank_rows(lines, log["sep"]))


PARQUET_SPOILS = ("text", "null", "huge", "nan", "negative", "datetime_1900")


@st.composite
def parquet_logs(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 25))
    columns: dict[str, list[Any]] = {
        "user_id": [i % 4 for i in range(n)],
        "item_id": [draw(st.integers(0, 9)) for _ in range(n)],
        "timestamp": [T0 + 60 * i for i in range(n)],
    }
    spoils = draw(
        st.lists(
            st.tuples(st.integers(0, n - 1), st.sampled_from(COLUMNS),
                      st.sampled_from(PARQUET_SPOILS)),
            max_size=3,
        )
    )  # fmt: skip
    return {
        "columns": columns,
        "spoils": spoils,
        "extra_column": draw(st.booleans()),
        "time_as": draw(st.sampled_from(["int", "float", "text", "datetime"])),
    }


def render_parquet(log: dict[str, Any], path: Path) -> None:
    cols = {k: list(v) for k, v in log["columns"].items()}
    as_text: set[str] = set()
    as_float: set[str] = set()
    for row, col, spoil in log["spoils"]:
        if spoil == "text":
            cols[col][row] = "bob"
            as_text.add(col)
        elif spoil == "null":
            cols[col][row] = None
        elif spoil == "huge":
            cols[col][row] = 1e300
            as_float.add(col)
        elif spoil == "nan":
            cols[col][row] = float("nan")
            as_float.add(col)
        elif spoil == "negative":
            cols[col][row] = -(10**18)
        elif spoil == "datetime_1900" and col == "timestamp":
            cols[col][row] = int(datetime(1900, 1, 1, tzinfo=UTC).timestamp())
    series = {}
    for name, values in cols.items():
        if name in as_text:
            series[name] = pl.Series(name, [None if v is None else str(v) for v in values])
        elif name in as_float or (name == "timestamp" and log["time_as"] == "float"):
            series[name] = pl.Series(name, values, dtype=pl.Float64, strict=False)
        else:
            series[name] = pl.Series(name, values, dtype=pl.Int64, strict=False)
    df = pl.DataFrame(series)
    if "timestamp" not in as_text and "timestamp" not in as_float:
        if log["time_as"] == "text":
            df = df.with_columns(pl.col("timestamp").cast(pl.Utf8))
        elif log["time_as"] == "datetime":
            df = df.with_columns(pl.from_epoch("timestamp", time_unit="s"))
    if log["extra_column"]:
        df = df.with_columns(pl.lit("x").alias("note"))
    df.write_parquet(path)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parquet_logs())
def test_malformed_parquet_logs_load_or_fail_in_one_line(log: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "log.parquet"
        render_parquet(log, path)
        check_outcome(path, len(log["columns"]["user_id"]), must_load=not log["spoils"])
