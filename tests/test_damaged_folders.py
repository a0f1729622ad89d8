"""Folders and files sessionrec reads that it cannot trust: a model or prepared-data folder
written by a newer version (its format tag), and a damaged gzip-compressed log. Each is
refused in one line naming the file, with exit code 2 and nothing written."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from _helpers import run_cli, session_data

from sessionrec.errors import DataError
from sessionrec.models import create, load_model
from sessionrec.prepare.data import PreparedData


def one_line(code: int, err: str, *words: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], err


def retag(path: Path, tag: Any) -> None:
    raw = json.loads(path.read_text())
    raw["format"] = tag
    path.write_text(json.dumps(raw))


@pytest.mark.parametrize("tag", ["sessionrec.model/99", "sessionrec.model/2", "other.model/1", 7])
def test_a_model_folder_of_a_newer_format_is_refused(tmp_path: Path, tag: Any) -> None:
    folder = tmp_path / "m"
    create("pop").fit(session_data([[0, 1, 2], [1, 2]], 3)).save(folder)
    assert load_model(folder).n_items == 3
    retag(folder / "config.json", tag)
    with pytest.raises(DataError, match="format") as err:
        load_model(folder)
    assert "config.json" in str(err.value) and repr(tag) in str(err.value)
    if tag == "sessionrec.model/99":
        assert "upgrade" in str(err.value)


def test_serve_refuses_a_model_folder_of_a_newer_format(tmp_path: Path, capsys: Any) -> None:
    pytest.importorskip("fastapi", reason='needs the serve extra: pip install -e ".[serve]"')
    folder = tmp_path / "m"
    create("pop").fit(session_data([[0, 1, 2], [1, 2]], 3)).save(folder)
    retag(folder / "config.json", "sessionrec.model/99")
    code, _, err = run_cli(["serve", str(folder), "--state", "memory"], capsys)
    one_line(code, err, "config.json", "sessionrec.model/99")


def test_prepared_data_of_a_newer_format_is_refused(tmp_path: Path, capsys: Any) -> None:
    rows = "user_id,item_id,timestamp\n" + "".join(
        f"{u},{i},{1_000_000_000 + u * 10_000 + i * 60}\n" for u in range(30) for i in range(8)
    )
    (tmp_path / "log.csv").write_text(rows)
    out = tmp_path / "prep"
    code, _, err = run_cli(
        ["prepare", str(tmp_path / "log.csv"), "--out", str(out), "--test-days", "0",
         "--test-fraction", "0.2", "--valid-days", "0"],
        capsys,
    )  # fmt: skip
    if code != 0:
        pytest.skip(f"prepare options differ here: {err}")
    PreparedData(out)
    retag(out / "meta.json", "sessionrec.prepared/99")
    with pytest.raises(DataError, match="upgrade"):
        PreparedData(out)
    code, _, err = run_cli(
        ["train", str(out), "--model", "pop", "--out", str(tmp_path / "m")], capsys
    )
    one_line(code, err, "meta.json", "sessionrec.prepared/99")
    assert not (tmp_path / "m").exists()


def _gz(tmp_path: Path) -> bytes:
    rows = "user_id,item_id,timestamp\n" + "".join(
        f"{u},{i},{1_000_000_000 + u * 100 + i}\n" for u in range(60) for i in range(20)
    )
    return gzip.compress(rows.encode())


@pytest.mark.parametrize("damage", ["truncated", "corrupt", "trailing garbage"])
@pytest.mark.parametrize("verb", ["explore", "prepare"])
def test_a_damaged_gzip_log_is_a_one_line_error(
    tmp_path: Path, capsys: Any, damage: str, verb: str
) -> None:
    data = bytearray(_gz(tmp_path))
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "corrupt":
        data[len(data) // 2 : len(data) // 2 + 40] = b"\xff" * 40
    else:
        data += b"\x1f\x8b\x08 not a second member"
    log = tmp_path / "log.csv.gz"
    log.write_bytes(bytes(data))
    code, _, err = run_cli([verb, str(log), "--out", str(tmp_path / "out")], capsys)
    one_line(code, err, "log.csv.gz", "gzip")
    assert not (tmp_path / "out").exists()
