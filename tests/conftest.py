from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

# ../shared/data beside the checkout, or beside the worktrees' folder (/work/wt/<name>).
SHARED = next(
    (
        p / "shared" / "data"
        for p in Path(__file__).resolve().parents[2:4]
        if (p / "shared" / "data").is_dir()
    ),
    Path(__file__).resolve().parents[2] / "shared" / "data",
)
ML100K = SHARED / "ml-100k"


@pytest.fixture(autouse=True)
def _isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Never touch the user's real cache from tests."""
    monkeypatch.setenv("SESSIONREC_HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture
def ml100k() -> Path:
    if not (ML100K / "u.data").exists():
        pytest.skip("../shared/data/ml-100k not present")
    return ML100K


def write_log(path: Path, rows: list[tuple[int, int, int]], sep: str = ",") -> Path:
    """A tiny user,item,timestamp CSV log."""
    pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row").write_csv(
        path, separator=sep
    )
    return path
