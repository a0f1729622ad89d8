"""Bad input through the CLI: one line naming the file (line, column), expected and found;
exit code 2; no traceback; nothing half-written left behind (issue 2, section 6)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sessionrec.cli import main
from sessionrec.datasets import registry

HEADER = "user_id,item_id,timestamp\n"


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as e:
        main(args)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return int(e.value.code or 0), err.strip()


def assert_one_line_error(
    code: int, err: str, *parts: str, expected: bool = True, found: bool = True
) -> None:
    assert code == 2, err
    assert err.count("\n") == 0, err
    assert err.startswith("error: ")
    if expected:
        assert "expected" in err, err
    if found:
        assert "found" in err, err
    for p in parts:
        assert p in err, (p, err)


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def prepare(cwd: Path, source: str, *extra: str) -> list[str]:
    return ["prepare", source, "--out", str(cwd / "out"), *extra]


def nothing_written(cwd: Path) -> None:
    assert not (cwd / "out").exists()
    assert not [p.name for p in cwd.iterdir() if p.name.startswith(".out")]


def test_missing_file(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(prepare(cwd, "no/such/log.csv"), capsys)
    assert_one_line_error(code, err, "no/such/log.csv", "no such")
    nothing_written(cwd)


def test_wrong_separator_100k(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (cwd / "ml").mkdir()
    (cwd / "ml" / "u.data").write_text("196,242,3,881250949\n186,302,3,891717742\n")
    code, err = run(prepare(cwd, "ml"), capsys)
    assert_one_line_error(code, err, "u.data:1:", "4 fields separated by '\\t'", "1 field(s)")
    nothing_written(cwd)


def test_wrong_separator_given_for_csv(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (cwd / "log.csv").write_text(HEADER + "1,2,1600000000\n")
    code, err = run(prepare(cwd, "log.csv", "--separator", ";"), capsys)
    assert_one_line_error(code, err, "log.csv:1:", "separator ';'?")
    nothing_written(cwd)


def test_missing_column(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (cwd / "log.csv").write_text(HEADER + "1,2,1600000000\n")
    code, err = run(prepare(cwd, "log.csv", "--item-column", "sku"), capsys)
    assert_one_line_error(code, err, "log.csv:1:", "column 'sku'", "'user_id', 'item_id'")
    nothing_written(cwd)


def test_missing_column_in_movielens_csv(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (cwd / "ml").mkdir()
    (cwd / "ml" / "ratings.csv").write_text("userId,movieId,timestamp\n1,2,3\n")
    (cwd / "ml" / "movies.csv").write_text("movieId,title,genres\n2,A (1999),Drama\n")
    code, err = run(prepare(cwd, "ml"), capsys)
    assert_one_line_error(code, err, "ratings.csv:1:", "column 'rating'")
    nothing_written(cwd)


@pytest.mark.parametrize(
    ("rows", "where", "found"),
    [
        ("1,2,2020-01-01T00:00:00Z\n1,3,soon\n", "log.csv:3: column 'timestamp'", "'soon'"),
        ("1,2,1600000000\n1,3,1600000001\n1,4,yesterday\n", "log.csv:4: column 'timestamp'",
         "'yesterday'"),
    ],
)  # fmt: skip
def test_unparseable_timestamps(
    cwd: Path, capsys: pytest.CaptureFixture[str], rows: str, where: str, found: str
) -> None:
    (cwd / "log.csv").write_text(HEADER + rows)
    code, err = run(prepare(cwd, "log.csv"), capsys)
    assert_one_line_error(code, err, where, found)
    nothing_written(cwd)


def test_unparseable_timestamp_in_yoochoose(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (cwd / "yoochoose-clicks.dat").write_text(
        "1,2014-04-07T10:51:09.277Z,214536502,0\n1,2014-04-07 10:51,214536500,S\n"
    )
    code, err = run(prepare(cwd, "yoochoose-clicks.dat"), capsys)
    assert_one_line_error(code, err, "yoochoose-clicks.dat:2: column 'time'", "ISO-8601")


def test_unparseable_ids(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (cwd / "log.csv").write_text(HEADER + "1,2,1600000000\nbob,3,1600000001\n")
    code, err = run(prepare(cwd, "log.csv"), capsys)
    assert_one_line_error(code, err, "log.csv:3: column 'user_id'", "an integer", "'bob'")
    nothing_written(cwd)


def test_unparseable_ids_in_movielens(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (cwd / "ml").mkdir()
    (cwd / "ml" / "u.data").write_text("196\t242\t3\t881250949\n186\t30x\t3\t891717742\n")
    code, err = run(prepare(cwd, "ml"), capsys)
    assert_one_line_error(code, err, "u.data:2: column 'item'", "an integer", "'30x'")
    nothing_written(cwd)


@pytest.mark.parametrize(("content", "found"), [("", "an empty file"), (HEADER, "no rows")])
def test_empty_file(
    cwd: Path, capsys: pytest.CaptureFixture[str], content: str, found: str
) -> None:
    (cwd / "log.csv").write_text(content)
    code, err = run(prepare(cwd, "log.csv"), capsys)
    assert_one_line_error(code, err, "log.csv", found)
    nothing_written(cwd)


def test_filters_remove_everything(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (cwd / "log.csv").write_text(HEADER + "1,2,1600000000\n1,3,1600000060\n")
    code, err = run(prepare(cwd, "log.csv", "--min-item-support", "5"), capsys)
    assert_one_line_error(code, err, "log.csv", "events left after filtering", "none of 2")
    nothing_written(cwd)


@pytest.mark.parametrize("verb", [["prepare", "ml-5m", "--out", "out"], ["data", "fetch", "ml-5m"]])
def test_unknown_dataset_name(
    cwd: Path, capsys: pytest.CaptureFixture[str], verb: list[str]
) -> None:
    code, err = run(verb, capsys)
    assert_one_line_error(code, err, "'ml-5m'", "ml-100k", expected=False, found=False)
    nothing_written(cwd)
    assert not (registry.home() / "datasets").exists()


def test_corrupt_archive(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (cwd / "ml-100k.zip").write_bytes(b"PK\x03\x04" + os.urandom(64))
    code, err = run(["data", "import", "ml-100k", "ml-100k.zip"], capsys)
    assert_one_line_error(code, err, "ml-100k.zip", "zip")
    datasets = registry.home() / "datasets"
    assert not datasets.exists() or list(datasets.iterdir()) == []


def test_archive_without_the_dataset(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import zipfile

    with zipfile.ZipFile(cwd / "x.zip", "w") as zf:
        zf.writestr("ml-100k/README", "no data here")
    code, err = run(["data", "import", "ml-100k", "x.zip"], capsys)
    assert_one_line_error(code, err, "x.zip", "u.data", "README")
    assert list((registry.home() / "datasets").iterdir()) == []


def test_usage_error_is_not_a_traceback(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(["prepare", "log.csv", "--separator"], capsys)
    assert code == 2 and "requires an argument" in err


def test_wrong_separator_dat(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (cwd / "ml").mkdir()
    (cwd / "ml" / "ratings.dat").write_text("1\t10\t5\t978300760\n")
    code, err = run(prepare(cwd, "ml"), capsys)
    assert_one_line_error(code, err, "ratings.dat:1:", "4 fields separated by '::'")
    nothing_written(cwd)


@pytest.mark.parametrize(
    ("name", "content", "where"),
    [
        ("ml/u.data", "196\t242\t3\t881250949\n186\t302\t3\n", "u.data:2: column 'time'"),
        ("log.csv", HEADER + "1,a,1600000000\n1,,1600000001\n", "log.csv:3: column 'item_id'"),
    ],
)
def test_short_line_or_empty_value(
    cwd: Path, capsys: pytest.CaptureFixture[str], name: str, content: str, where: str
) -> None:
    (cwd / name).parent.mkdir(exist_ok=True)
    (cwd / name).write_text(content)
    code, err = run(prepare(cwd, name.split("/")[0]), capsys)
    assert_one_line_error(code, err, where, "an empty value")
    nothing_written(cwd)
