"""A session store that cannot do its job, on real SQLite files and a real ``redis-server``.

At start: one line naming the store and what is wrong, exit code 2, no traceback. While
serving: the session routes answer 503 (never 500, never a 200 for an event that was not
stored), ``/readyz`` says not ready, and the service recovers by itself when the store comes
back. An ``event_id`` is applied once on every store, also after the cap trimmed its event.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason='needs the serve extra: pip install -e ".[serve]"')

from _helpers import run_cli
from _serve_helpers import RedisServer, free_port, model_folder
from fastapi.testclient import TestClient

from sessionrec.serving import ServeConfig, build_app
from sessionrec.serving.app import AppOptions, create_app
from sessionrec.serving.engine import Engine
from sessionrec.serving.state import (
    MemoryStore,
    SessionStore,
    SQLiteStore,
    StoreError,
    StoreUnavailable,
    open_store,
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return model_folder("vsknn", tmp_path_factory.mktemp("models") / "vsknn")


def filled_store(path: Path, events: int = 3000) -> bytes:
    """A real store file with ``events`` events; its bytes."""
    store = SQLiteStore(path, 1e9, 200)
    for i in range(events):
        store.append(f"s{i % 50}", str(i), 1.0)
    store.close()
    return path.read_bytes()


# -- at start ----------------------------------------------------------------------------------
def _bad_stores(root: Path) -> dict[str, tuple[str, str]]:
    """case → (the --state value, words the error must hold)."""
    good = filled_store(root / "good.sqlite")
    (root / "text.sqlite").write_text("session,item\n1,2\n" * 20)
    (root / "truncated.sqlite").write_bytes(good[: len(good) // 2])
    damaged = bytearray(good)
    damaged[8192 : 8192 + 4096] = bytes(range(256)) * 16
    (root / "damaged.sqlite").write_bytes(bytes(damaged))
    (root / "a-folder").mkdir()
    (root / "a-file").write_text("x")
    return {
        "not a database": (str(root / "text.sqlite"), "not an SQLite database"),
        "truncated": (str(root / "truncated.sqlite"), "damaged"),
        "damaged pages": (f"sqlite:///{root / 'damaged.sqlite'}", "damaged"),
        "a folder": (str(root / "a-folder"), "a folder"),
        "under a file": (str(root / "a-file" / "s.sqlite"), "a file stands in the way"),
        "redis unreachable": (f"redis://127.0.0.1:{free_port()}/0", "cannot reach Redis"),
        "redis bad port": ("redis://127.0.0.1:notaport/0", "redis://"),
        "redis bad db": ("redis://127.0.0.1:6379/notadb", "redis://"),
        "unknown scheme": ("postgres://x/y", "expected sqlite:///PATH"),
    }


CASES = [
    "not a database",
    "truncated",
    "damaged pages",
    "a folder",
    "under a file",
    "redis unreachable",
    "redis bad port",
    "redis bad db",
    "unknown scheme",
]


@pytest.mark.parametrize("case", CASES)
def test_a_bad_store_stops_serve_at_start_in_one_line(
    case: str, folder: Path, tmp_path: Path, capsys: Any
) -> None:
    if case.startswith("redis"):
        pytest.importorskip("redis", reason='needs the redis client: pip install -e ".[redis]"')
    state, words = _bad_stores(tmp_path)[case]
    before = {p: p.read_bytes() for p in tmp_path.glob("*.sqlite")}
    code, out, err = run_cli(["serve", str(folder), "--state", state], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (out, err)
    assert len(lines) == 1 and words in lines[0], err
    assert "Traceback" not in err
    for p, data in before.items():  # a damaged store is reported, never rewritten
        assert p.read_bytes() == data, p


def test_a_read_only_store_stops_serve_at_start(folder: Path, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes to read-only files")
    filled_store(tmp_path / "ro.sqlite", 10)
    (tmp_path / "ro.sqlite").chmod(0o444)
    with pytest.raises(StoreError, match=r"read-only|cannot be opened"):
        open_store(str(tmp_path / "ro.sqlite"), 10, 10)
    (tmp_path / "rodir").mkdir()
    (tmp_path / "rodir").chmod(0o555)
    with pytest.raises(StoreError, match="ro"):
        open_store(str(tmp_path / "rodir" / "s.sqlite"), 10, 10)


# -- while serving: SQLite ---------------------------------------------------------------------
def serve(folder: Path, state: str, fast: bool = True) -> TestClient:
    """The app over ``state``; ``fast=False``: every event through FastAPI's route."""
    if fast:
        app = build_app(ServeConfig(model_dirs=(str(folder),), state=state))
    else:
        engine = Engine([folder], open_store(state, 1800, 200))
        app = create_app(engine, AppOptions(fast_events=False))
    return TestClient(app, raise_server_exceptions=False)


def stored_items(path: Path, session: str) -> list[str]:
    """The session's events as they are in the file on disk (another connection)."""
    db = sqlite3.connect(path)
    try:
        rows = db.execute(
            "SELECT item FROM events WHERE session = ? ORDER BY seq", (session,)
        ).fetchall()
    finally:
        db.close()
    return [r[0] for r in rows]


def event(c: TestClient, sid: str, item: int, **kw: Any) -> Any:
    return c.post(f"/v1/sessions/{sid}/events", json={"item": item, **kw})


@pytest.mark.parametrize("fast", [True, False])
def test_a_store_file_deleted_while_serving_is_found_not_written_into(
    folder: Path, tmp_path: Path, fast: bool
) -> None:
    path = tmp_path / "s.sqlite"
    with serve(folder, str(path), fast) as c:
        assert event(c, "a", 100).status_code == 200
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        r = event(c, "a", 101)
        assert r.status_code == 503, r.text  # not a 200 for an event that went nowhere
        assert "deleted or replaced" in r.json()["detail"]
        assert r.headers.get("retry-after") == "1"
        # the service opened the path again: a retry is stored, in the file on disk
        r = event(c, "a", 101)
        assert r.status_code == 200 and r.json()["events"] == 1
        assert stored_items(path, "a") == ["101"]
        assert c.get("/readyz").status_code == 200


def test_a_store_file_replaced_while_serving_is_read_from_then_on(
    folder: Path, tmp_path: Path
) -> None:
    path, other = tmp_path / "s.sqlite", tmp_path / "other.sqlite"
    store = SQLiteStore(other, 1e9, 200)
    store.append("b", "103", time.time())
    store.close()
    with serve(folder, str(path)) as c:
        assert event(c, "a", 100).status_code == 200
        os.replace(other, path)  # an operator restores a copy
        assert c.get("/v1/sessions/a").status_code == 503
        got = c.get("/v1/sessions/b")
        assert got.status_code == 200 and [x["item_id"] for x in got.json()["items"]] == [103]
        assert c.get("/v1/sessions/a").status_code == 404
        assert event(c, "b", 104).json()["events"] == 2
        assert stored_items(path, "b") == ["103", "104"]


def test_a_store_gone_while_serving_answers_503_until_it_can_be_opened_again(
    folder: Path, tmp_path: Path
) -> None:
    """The store's folder removed and a file put where it was: the path cannot be opened
    again, so every session route answers 503 and /readyz says why, until the way is clear."""
    where = tmp_path / "state"
    path = where / "s.sqlite"
    with serve(folder, str(path)) as c:
        for i in range(3):
            assert event(c, "a", 100 + i, event_id=f"e{i}").status_code == 200
        shutil.rmtree(where)
        where.write_text("not a folder")
        for _ in range(3):
            r = event(c, "a", 103, event_id="e3")
            assert r.status_code == 503, r.text
            assert r.json()["detail"].startswith("session store unavailable")
        assert c.get("/v1/sessions/a").status_code == 503
        assert c.get("/v1/sessions/a/recommendations").status_code == 503
        assert c.delete("/v1/sessions/a").status_code == 503
        ready = c.get("/readyz")
        assert ready.status_code == 503 and "a file stands in the way" in ready.json()["detail"]
        metrics = c.get("/metrics")
        assert metrics.status_code == 200 and "sessionrec_store_up 0.0" in metrics.text
        assert c.post("/v1/recommend", json={"items": [100]}).status_code == 200  # stateless
        where.unlink()  # the operator clears the way
        r = event(c, "a", 103, event_id="e3")
        assert r.status_code == 200 and r.json()["applied"] and r.json()["events"] == 1
        assert c.get("/readyz").status_code == 200
        assert "sessionrec_store_up 1.0" in c.get("/metrics").text
    assert stored_items(path, "a") == ["103"]


# -- idempotency on every store ----------------------------------------------------------------
def _idempotent_past_the_cap(store: SessionStore) -> None:
    for i in range(10):
        rec, applied = store.append("s", str(i), 1.0 + i, event_id=f"e{i}")
        assert applied
    assert rec.total == 10 and len(rec.items) <= 4
    for i in range(10):  # every retry, of trimmed events too, is recorded already
        rec, applied = store.append("s", str(i), 20.0 + i, event_id=f"e{i}")
        assert not applied, i
    assert rec.total == 10
    # a delete forgets the ids with the session
    assert store.delete("s")
    assert store.append("s", "0", 40.0, event_id="e0")[1]


def test_a_retried_event_is_applied_once_after_the_cap_trimmed_it_sqlite(tmp_path: Path) -> None:
    _idempotent_past_the_cap(SQLiteStore(tmp_path / "s.sqlite", 1e9, 4))


def test_a_retried_event_is_applied_once_after_the_cap_trimmed_it_memory() -> None:
    _idempotent_past_the_cap(MemoryStore(1e9, 4))


def test_event_ids_of_an_older_store_file_are_kept(tmp_path: Path) -> None:
    """A store written before event ids had their own table: its ids still count."""
    path = tmp_path / "old.sqlite"
    store = SQLiteStore(path, 1e9, 200)
    store.append("s", "1", 1.0, event_id="x")
    store.close()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE event_ids")
    db.commit()
    db.close()
    store = SQLiteStore(path, 1e9, 200)
    assert store.append("s", "1", 2.0, event_id="x")[1] is False


# -- Redis: a real server, stopped and started again -------------------------------------------
@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    pytest.importorskip("redis", reason='needs the redis client: pip install -e ".[redis]"')
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_redis_lost_mid_run_answers_503_and_recovers(
    folder: Path, redis_server: RedisServer
) -> None:
    acked: list[int] = []
    with serve(folder, redis_server.url) as c:
        for i in range(4):
            r = event(c, "a", 100 + i, event_id=f"e{i}")
            assert r.status_code == 200
            acked.append(100 + i)
        redis_server.stop()
        for path in ("/v1/sessions/a", "/v1/sessions/a/recommendations"):
            assert c.get(path).status_code == 503
        r = event(c, "a", 104, event_id="e4")
        assert r.status_code == 503 and "session store unavailable" in r.json()["detail"]
        assert c.post("/v1/recommend", json={"items": [100]}).status_code == 200  # stateless
        ready = c.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "not ready"
        assert "sessionrec_store_up 0.0" in c.get("/metrics").text
        redis_server.start()  # back: no restart of the service
        assert c.get("/readyz").status_code == 200
        r = event(c, "a", 104, event_id="e4")
        assert r.status_code == 200 and r.json()["events"] == 5  # nothing acknowledged was lost
        acked.append(104)
        items = c.get("/v1/sessions/a").json()["items"]
        assert [x["item_id"] for x in items] == acked


def test_a_retried_event_is_applied_once_after_the_cap_trimmed_it_redis(
    redis_server: RedisServer,
) -> None:
    _idempotent_past_the_cap(open_store(redis_server.url, 1e6, 4))


def test_store_unavailable_is_what_a_redis_store_raises(redis_server: RedisServer) -> None:
    store = open_store(redis_server.url, 1e6, 10)
    redis_server.stop()
    for call in (
        lambda: store.append("s", "1", 1.0),
        lambda: store.get("s", 1.0),
        lambda: store.delete("s"),
        lambda: store.live(1.0),
        lambda: store.expire(1.0),
        store.check,
    ):
        with pytest.raises(StoreUnavailable):
            call()
    from sessionrec.serving.state import Append

    out = store.append_many([Append("s", "1", 1.0), Append("t", "2", 1.0)])
    assert all(isinstance(x, StoreUnavailable) for x in out)
