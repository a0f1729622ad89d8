"""`serve --state redis://...`: sessions shared by several servers through a real redis-server.

The test starts Debian's ``redis-server`` on a free loopback port (no persistence) and skips
when it is not installed (CI installs it: .ci/run).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason='needs the serve extra: pip install -e ".[serve]"')
pytest.importorskip("redis", reason='needs the redis client: pip install -e ".[redis]"')

from _serve_helpers import GRU_PARAMS, RedisServer, model_folder
from fastapi.testclient import TestClient

from sessionrec.models import load_model
from sessionrec.serving import ServeConfig, build_app
from sessionrec.serving.state import RedisStore


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = RedisServer(tmp_path_factory.mktemp("redis"), durable=False)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "gru": model_folder("gru4rec", root / "gru", GRU_PARAMS),
        "vsknn": model_folder("vsknn", root / "vsknn"),
    }


def client(folders: dict[str, Path], url: str, **kw: Any) -> TestClient:
    dirs = (str(folders["gru"]), str(folders["vsknn"]))
    return TestClient(build_app(ServeConfig(model_dirs=dirs, state=url, **kw)))


def test_two_servers_share_sessions(folders: dict[str, Path], redis_url: str) -> None:
    """Events sent alternately to two servers build one session; each answers for all of it."""
    session = [100, 101, 102, 103, 104, 111]
    with client(folders, redis_url) as a, client(folders, redis_url) as b:
        for n, item in enumerate(session, 1):
            server = a if n % 2 else b
            r = server.post("/v1/sessions/shared/events", json={"item": item, "k": 5})
            assert r.status_code == 200 and r.json()["events"] == n
        want = load_model(folders["gru"]).recommend(session, 5)  # seen left out, as served
        for server in (a, b):
            got = server.get("/v1/sessions/shared/recommendations", params={"k": 5}).json()
            assert [x["item_id"] for x in got["recommendations"]] == want["item_id"].to_list()
            items = server.get("/v1/sessions/shared").json()["items"]
            assert [x["item_id"] for x in items] == session
        assert a.get("/readyz").json() == {"status": "ok"}
        assert b.delete("/v1/sessions/shared").status_code == 200
        assert a.get("/v1/sessions/shared").status_code == 404


def test_redis_event_ids_cap_and_expiry(folders: dict[str, Path], redis_url: str) -> None:
    with client(folders, redis_url, max_session_events=3, session_ttl=0.5) as c:
        first = c.post("/v1/sessions/r1/events", json={"item": 100, "event_id": "a"}).json()
        again = c.post("/v1/sessions/r1/events", json={"item": 100, "event_id": "a"}).json()
        assert first["applied"] and not again["applied"] and again["events"] == 1
        for item in (101, 102, 103, 104):
            r = c.post("/v1/sessions/r1/events", json={"item": item, "model": "vsknn", "k": 4})
        assert r.json()["events"] == 5 and r.json()["kept"] == 3
        want = load_model(folders["vsknn"]).recommend([102, 103, 104], 4)
        assert [x["item_id"] for x in r.json()["recommendations"]] == want["item_id"].to_list()
        time.sleep(1.0)  # Redis expires the idle session by itself
        assert c.get("/v1/sessions/r1").status_code == 404
        assert c.post("/v1/sessions/r1/events", json={"item": 101}).json()["events"] == 1


def test_redis_store_counts_live_sessions(redis_url: str) -> None:
    store = RedisStore(redis_url, ttl=60, max_events=5, prefix="sessionrec-live-test:")
    now = time.time()
    store.append("x", "1", now)
    store.append("y", "1", now)
    assert store.live(now) == 2
    assert store.expire(now + 61) == 2 and store.live(now + 61) == 0
    assert store.describe() == redis_url


def test_redis_append_with_the_callers_copy_equals_the_stored_session(redis_url: str) -> None:
    """With a fresh ``known`` copy the script sends back only the new event's head; the record
    built from it must equal what is stored, past the cap too, and a stale copy (another
    writer appended, another epoch, another cap) must get the stored list."""
    store = RedisStore(redis_url, ttl=60, max_events=4, prefix="sessionrec-known-test:")
    other = RedisStore(redis_url, ttl=60, max_events=6, prefix="sessionrec-known-test:")
    now = time.time()
    rec = None
    for n in range(9):
        rec, applied = store.append("k", str(n), now, known=rec)
        assert applied and rec == store.get("k", now) and rec.total == n + 1
    # past the cap of 4, back to 3 (a quarter of the cap at a time, at least one)
    assert rec is not None and rec.items == ("6", "7", "8") and rec.first_seq == 6
    other.append("k", "x", now)  # someone else's event: the copy is stale
    fresh, _ = store.append("k", "y", now, known=rec)
    assert fresh == store.get("k", now) and fresh.items == ("8", "x", "y")
    long, _ = other.append("k", "z", now, known=fresh)  # a longer cap keeps what is stored
    assert long == other.get("k", now) and long.items[-3:] == ("x", "y", "z")
    store.delete("k")
    again, _ = store.append("k", "new", now, known=long)  # a new epoch
    assert again.items == ("new",) and again.epoch != long.epoch
    assert again == store.get("k", now)


def test_redis_append_many_is_the_appends_one_by_one(redis_url: str) -> None:
    """One pipeline of appends: the records equal the stored sessions and what the same
    appends give one by one (the memory store), event ids and the cap included; an error
    of one script stays with its event."""
    from sessionrec.serving.state import Append, open_store

    store = RedisStore(redis_url, ttl=60, max_events=3, prefix="sessionrec-many-test:")
    ref = open_store("memory", 60, 3)
    now = time.time()
    appends = [Append(f"m{i % 3}", str(i), now + i, f"e{i % 4}") for i in range(14)]
    got, want = store.append_many(appends), ref.append_many(appends)
    for g, w in zip(got, want, strict=True):
        assert not isinstance(g, Exception) and not isinstance(w, Exception)
        assert (g[0].items, g[0].first_seq, g[1]) == (w[0].items, w[0].first_seq, w[1])
    last = {a.session_id: g for a, g in zip(appends, got, strict=True)}
    for sid, (rec, _) in last.items():  # type: ignore[misc]
        stored = store.get(sid, now + 20)
        assert stored is not None and stored.items == rec.items
    # with the callers' fresh copies: the script sends back heads only, records still right
    more = [Append(sid, "z", now + 30, known=rec) for sid, (rec, _) in last.items()]  # type: ignore[misc]
    for a, res in zip(more, store.append_many(more), strict=True):
        assert not isinstance(res, Exception)
        assert res[0] == store.get(a.session_id, now + 30)
    # a key of the wrong type makes that one script fail, not the others
    store._r.set("sessionrec-many-test:s:bad:e", "not a list")
    store._r.hset("sessionrec-many-test:s:bad:m", mapping={"epoch": "x", "first": 0,
                                                          "created": now})  # fmt: skip
    out = store.append_many([Append("m0", "p", now + 40), Append("bad", "q", now + 40),
                             Append("m1", "r", now + 40)])  # fmt: skip
    assert isinstance(out[1], Exception)
    assert not isinstance(out[0], Exception) and out[0][0].items[-1] == "p"
    assert not isinstance(out[2], Exception) and out[2][0].items[-1] == "r"


def test_redis_trims_a_quarter_at_a_time_as_the_other_stores(redis_url: str) -> None:
    from sessionrec.serving.state import open_store

    store = RedisStore(redis_url, ttl=60, max_events=20, prefix="sessionrec-trim-test:")
    ref = open_store("memory", 60, 20)
    now = time.time()
    rec = None
    for n in range(45):
        rec, _ = store.append("t", str(n), now, known=rec)
        want, _ = ref.append("t", str(n), now)
        assert (rec.items, rec.first_seq) == (want.items, want.first_seq)
        assert rec == store.get("t", now)
    assert rec is not None and len(rec.items) == 15 and rec.first_seq == 30
