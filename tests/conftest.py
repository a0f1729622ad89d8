from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest
import torch

# One intra-op thread per test worker: the suite runs as `-n 2` on a shared 2-core machine,
# where extra OpenMP threads only wait for a core (many-fold slowdowns of small tensor ops).
torch.set_num_threads(1)

# ../shared/data beside the checkout; a worktree one level deeper finds it further up.
SHARED = next(
    (
        p / "shared" / "data"
        for p in Path(__file__).resolve().parents[2:4]
        if (p / "shared" / "data").is_dir()
    ),
    Path(__file__).resolve().parents[2] / "shared" / "data",
)


def _find_ml100k() -> Path:
    """ML-100K for the end-to-end tests: ../shared/data/ml-100k, else the user's sessionrec
    cache (``sessionrec data fetch ml-100k`` puts it there), looked up before the tests
    isolate $SESSIONREC_HOME."""
    if (SHARED / "ml-100k" / "u.data").exists():
        return SHARED / "ml-100k"
    from sessionrec.datasets.registry import cache_dir, is_cached

    return cache_dir("ml-100k") if is_cached("ml-100k") else SHARED / "ml-100k"


ML100K = _find_ml100k()


@pytest.fixture(autouse=True)
def _isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Never touch the user's real cache from tests."""
    monkeypatch.setenv("SESSIONREC_HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture
def ml100k() -> Path:
    if not (ML100K / "u.data").exists():
        pytest.skip(
            "ML-100K not found in ../shared/data/ml-100k nor in the sessionrec cache: run "
            "`sessionrec data fetch ml-100k` (or `sessionrec data import ml-100k PATH`)"
        )
    return ML100K


def write_log(path: Path, rows: list[tuple[int, int, int]], sep: str = ",") -> Path:
    """A tiny user,item,timestamp CSV log."""
    pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row").write_csv(
        path, separator=sep
    )
    return path


@pytest.fixture
def tuning_log(tmp_path: Path) -> Any:
    """A prepared log for the tuning tests: 60 users, cyclic item sequences with a
    user-dependent start, random parts."""
    import sessionrec as sr

    rows = [(u, (u + j) % 9 + 1, 1000 * u + 60 * j) for u in range(60) for j in range(6)]
    log = write_log(tmp_path / "log.csv", rows)
    return sr.prepare(log, tmp_path / "prep", session="user", split="random", test_fraction=0.2,
                      valid_fraction=0.2, min_item_support=1)  # fmt: skip
