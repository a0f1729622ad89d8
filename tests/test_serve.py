"""`sessionrec serve`: the JSON contract, session state, errors, in-process (TestClient)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason='needs the serve extra: pip install -e ".[serve]"')

import torch
from _helpers import run_cli
from _serve_helpers import GRU_PARAMS, model_folder
from fastapi.testclient import TestClient

from sessionrec.errors import ConfigError
from sessionrec.models import load_model
from sessionrec.serving import ServeConfig, build_app, require_serve_extra
from sessionrec.serving.catalog import fold
from sessionrec.serving.state import MemoryStore, SQLiteStore, open_store


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "vsknn": model_folder("vsknn", root / "vsknn"),
        "gru": model_folder("gru4rec", root / "gru", GRU_PARAMS),
        "pop": model_folder("pop", root / "pop"),
    }


def make_client(folders: dict[str, Path], state: Path | str, **kw: Any) -> TestClient:
    dirs = tuple(str(folders[n]) for n in kw.pop("names", ("vsknn", "gru", "pop")))
    return TestClient(build_app(ServeConfig(model_dirs=dirs, state=str(state), **kw)))


@pytest.fixture
def client(folders: dict[str, Path], tmp_path: Path) -> Iterator[TestClient]:
    with make_client(folders, tmp_path / "s.sqlite", admin_token="secret") as c:
        yield c


def engine_of(c: TestClient) -> Any:
    return c.app.state.engine  # type: ignore[attr-defined]


def post(c: TestClient, sid: str, item: Any, **kw: Any) -> Any:
    return c.post(f"/v1/sessions/{sid}/events", json={"item": item, **kw})


# -- the contract ------------------------------------------------------------------------------
def test_health_docs_and_schema(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ok"}
    schema = client.get("/openapi.json").json()
    for route in (
        "/v1/sessions/{session_id}/events",
        "/v1/sessions/{session_id}/recommendations",
        "/v1/sessions/{session_id}",
        "/v1/recommend",
        "/v1/items",
        "/v1/items/{item_id}",
        "/v1/models",
        "/metrics",
        "/admin/reload",
    ):
        assert route in schema["paths"], route
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]


def test_events_advance_the_session_and_return_the_list(client: TestClient) -> None:
    r = post(client, "s1", "Toy Story", k=3)
    assert r.status_code == 200
    body = r.json()
    assert body["session_id"] == "s1" and body["model"] == "vsknn" and body["events"] == 1
    recs = body["recommendations"]
    assert [x["rank"] for x in recs] == [1, 2, 3]
    assert set(recs[0]) >= {"rank", "item_id", "title", "year", "genres", "score", "because"}
    assert recs[0]["because"][0]["title"] == "Toy Story (1995)"  # kNN: the item that led to it
    moved = post(client, "s0", "The Shawshank Redemption")  # articles moved, as recommend
    assert moved.status_code == 200 and moved.json()["events"] == 1
    r = post(client, "s1", 101, k=5)  # by id
    assert r.json()["events"] == 2
    got = client.get("/v1/sessions/s1").json()
    assert [x["title"] for x in got["items"]] == ["Toy Story (1995)", "GoldenEye (1995)"]
    assert got["events"] == 2 and got["expires_at"] > got["updated"]
    again = client.get("/v1/sessions/s1/recommendations", params={"k": 5}).json()
    assert again["recommendations"] == r.json()["recommendations"]
    assert client.delete("/v1/sessions/s1").json() == {"status": "deleted"}
    assert client.get("/v1/sessions/s1").status_code == 404
    assert client.get("/v1/sessions/s1/recommendations").status_code == 404
    assert client.delete("/v1/sessions/s1").status_code == 404


@pytest.mark.parametrize("name", ["vsknn", "gru", "pop"])
def test_served_lists_equal_recommend(
    client: TestClient, folders: dict[str, Path], name: str
) -> None:
    """Session events and stateless /v1/recommend give exactly what ``recommend`` gives."""
    model = load_model(folders[name])
    session = ["Toy Story (1995)", "GoldenEye (1995)", "Fargo (1996)"]
    for excl in (False, True):
        sid = f"eq-{name}-{excl}"
        for item in session:
            r = post(client, sid, item, k=6, model=name, exclude_seen=excl)
        want = model.recommend(session, 6, exclude_seen=excl)
        served = r.json()["recommendations"]
        assert [x["item_id"] for x in served] == want["item_id"].to_list()
        assert [x["score"] for x in served] == pytest.approx(want["score"].to_list(), abs=0)
        stateless = client.post(
            "/v1/recommend", json={"items": session, "k": 6, "exclude_seen": excl, "model": name}
        ).json()
        assert stateless["recommendations"] == served


def test_gru4rec_takes_one_step_per_event(client: TestClient) -> None:
    engine = engine_of(client)
    for n, item in enumerate(["Toy Story", "GoldenEye", "Four Rooms", "Get Shorty"], 1):
        before = engine.steps
        assert post(client, "g", item, model="gru").json()["events"] == n
        assert engine.steps - before == 1  # one GRU step from the cached state, no replay
    entry = engine._states[("g", "gru")]
    model = engine.models["gru"].model
    replay = model.start(1)
    for i in (0, 1, 2, 3):
        replay = model.step(replay, torch.tensor([i]))
    for a, b in zip(entry.state, replay, strict=True):
        assert torch.equal(a, b)


def test_restart_continues_every_session(folders: dict[str, Path], tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    with make_client(folders, db) as c:
        for sid, model in (("a", "gru"), ("b", "vsknn")):
            for item in ("Toy Story", "GoldenEye", "Four Rooms"):
                post(c, sid, item, model=model)
        uninterrupted = {
            sid: post(c, sid, "Fargo", model=model, k=8).json()
            for sid, model in (("a", "gru"), ("b", "vsknn"))
        }
    # a second server over the same file (as after kill -9: nothing but the file remains)
    with make_client(folders, db) as c2:
        for sid in ("a", "b"):
            assert c2.get(f"/v1/sessions/{sid}").json()["events"] == 4
        for sid, model in (("a", "gru"), ("b", "vsknn")):
            r = c2.get(f"/v1/sessions/{sid}/recommendations", params={"k": 8, "model": model})
            assert r.json()["recommendations"] == uninterrupted[sid]["recommendations"]
        assert engine_of(c2).rebuilds == 2
        r = post(c2, "a", "Copycat", model="gru")
        assert r.json()["events"] == 5


def test_event_id_is_applied_once(client: TestClient) -> None:
    first = post(client, "idem", "Toy Story", event_id="e-1").json()
    retry = post(client, "idem", "Toy Story", event_id="e-1").json()
    assert first["applied"] and not retry["applied"]
    assert retry["events"] == 1 and retry["recommendations"] == first["recommendations"]
    assert post(client, "idem", "Toy Story", event_id="e-2").json()["events"] == 2


def test_max_session_events_keeps_the_latest(folders: dict[str, Path], tmp_path: Path) -> None:
    with make_client(folders, tmp_path / "s.sqlite", max_session_events=3) as c:
        items = ["Toy Story", "GoldenEye", "Four Rooms", "Get Shorty", "Copycat"]
        for item in items:
            r = post(c, "cap", item, model="gru", k=5)
        assert r.json()["events"] == 5 and r.json()["kept"] == 3  # received, kept
        session = c.get("/v1/sessions/cap").json()
        assert session["events"] == 5 and session["kept"] == 3
        got = session["items"]
        assert [x["item_id"] for x in got] == [102, 103, 104]
        want = load_model(folders["gru"]).recommend([102, 103, 104], 5)  # seen left out, as served
        assert [x["item_id"] for x in r.json()["recommendations"]] == want["item_id"].to_list()


@pytest.mark.parametrize("store_kind", ["sqlite", "memory"])
def test_a_long_session_is_trimmed_a_quarter_at_a_time(
    folders: dict[str, Path], tmp_path: Path, store_kind: str
) -> None:
    """Past the cap a session goes back to three quarters of it (never above the cap, the
    latest events kept in order), so the model's state is rebuilt once per trim, not at
    every event; the answers stay those of the model over exactly the kept events."""
    from sessionrec.serving.engine import Engine

    state = str(tmp_path / "t.sqlite") if store_kind == "sqlite" else "memory"
    engine = Engine([folders["gru"]], open_store(state, 1800, 20))
    sm = engine.model(None)
    model = load_model(folders["gru"])
    lengths = []
    for n in range(45):
        rec, _ = engine.add_event("long", sm, n % 12, 5, False)
        items = rec.session.items
        lengths.append(len(items))
        assert items == tuple(str(100 + i % 12) for i in range(n + 1 - len(items), n + 1))
        assert rec.session.first_seq + len(items) == n + 1
        if n % 7 == 0 or len(items) == 15:
            want = model.recommend([int(i) for i in items], 5, exclude_seen=False)
            assert rec.idx == [sm.idx_of_id[str(x)] for x in want["item_id"].to_list()]
    assert lengths[:20] == list(range(1, 21)) and max(lengths) == 20
    assert lengths[20:27] == [15, 16, 17, 18, 19, 20, 15]
    assert engine.rebuilds == 5  # events 21, 27, 33, 39 and 45 trimmed the session


@pytest.mark.parametrize("store_kind", ["sqlite", "memory"])
def test_store_expiry_trim_and_epochs(tmp_path: Path, store_kind: str) -> None:
    store = (
        SQLiteStore(tmp_path / "x.sqlite", ttl=10, max_events=2)
        if store_kind == "sqlite"
        else MemoryStore(ttl=10, max_events=2)
    )
    rec, ok = store.append("s", "1", now=100.0)
    assert ok and rec.items == ("1",) and rec.total == 1
    store.append("s", "2", now=105.0, known=rec)
    rec3, _ = store.append("s", "3", now=109.0)
    assert rec3.items == ("2", "3") and rec3.first_seq == 1 and rec3.total == 3
    assert store.live(now=110.0) == 1 and store.get("s", now=118.0) is not None
    assert store.get("s", now=120.0) is None  # idle > ttl
    fresh, _ = store.append("s", "9", now=125.0)
    assert fresh.items == ("9",) and fresh.epoch != rec.epoch
    store.append("t", "1", now=125.0)
    assert store.expire(now=136.0) == 2 and store.live(now=136.0) == 0
    assert not store.delete("s")


def test_sqlite_checkpoints_in_maintain_not_in_the_requests(tmp_path: Path) -> None:
    """Requests only append to the WAL; ``maintain`` copies it into the database file (a
    request that checkpoints waits for the disk: 14-22 ms on the development machine)."""
    path = tmp_path / "x.sqlite"
    store = SQLiteStore(path, ttl=1e9, max_events=200)
    empty = path.stat().st_size
    for n in range(2000):  # several thousand WAL pages: SQLite's default checkpoints at 1,000
        store.append(f"s{n % 50}", str(n), now=1.0 + n)
    assert path.stat().st_size == empty
    store.maintain()
    assert path.stat().st_size > empty
    assert store.get("s7", now=3000.0).items[-1] == "1957"  # type: ignore[union-attr]
    store.maintain()  # again, on its own connection: nothing left to copy, no error
    store.close()


def test_sqlite_waits_for_another_process_lock_and_gives_up_after_the_wait(
    tmp_path: Path,
) -> None:
    """Another connection (another worker) holds the write lock: an append waits for it
    (the store's own short retries, the connection has no busy timeout), and a lock never
    released fails with SQLite's error once the wait is over, not a hang."""
    import sqlite3
    import threading

    from sessionrec.serving.state import _retry

    path = tmp_path / "x.sqlite"
    store = SQLiteStore(path, ttl=1e9, max_events=200)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO sessions VALUES ('o', 'e', 0, 0, 1.0, 1.0)")
    release = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    release.start()
    rec, applied = store.append("s", "7", now=2.0)
    release.join()
    assert applied and rec.items == ("7",)
    assert store.live(now=2.0) == 2  # the other connection's session was committed first

    other.execute("BEGIN IMMEDIATE")
    db = sqlite3.connect(path, isolation_level=None, timeout=0)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        _retry(lambda: db.execute("BEGIN IMMEDIATE"), wait=0.2)
    other.execute("ROLLBACK")
    _retry(lambda: db.execute("BEGIN IMMEDIATE"), wait=0.2)
    db.execute("ROLLBACK")
    for c in (db, other):
        c.close()
    store.close()


def test_the_service_runs_the_store_maintenance(folders: dict[str, Path], tmp_path: Path) -> None:
    import gc
    import time

    gc.unfreeze()
    with make_client(folders, tmp_path / "s.sqlite") as c:
        assert gc.get_freeze_count() > 0  # the models and the app, out of the collector's way
        path = engine_of(c).store.path
        empty = path.stat().st_size
        for n in range(5):
            post(c, f"m{n}", "Toy Story")
        deadline = time.monotonic() + 10
        while path.stat().st_size == empty and time.monotonic() < deadline:
            time.sleep(0.1)
        assert path.stat().st_size > empty


def test_session_ttl_expires_idle_sessions(folders: dict[str, Path], tmp_path: Path) -> None:
    with make_client(folders, tmp_path / "s.sqlite", session_ttl=1e-6) as c:
        post(c, "short", "Toy Story")
        assert c.get("/v1/sessions/short").status_code == 404
        assert post(c, "short", "GoldenEye").json()["events"] == 1


# -- errors: never a 500 for bad input --------------------------------------------------------
def test_unknown_item_names_the_closest_titles(client: TestClient) -> None:
    r = post(client, "e", "Toy Stori")
    assert r.status_code == 404
    assert "Toy Story (1995)" in r.json()["closest"] and "closest" in r.json()["detail"]
    r = post(client, "e", "Heat")
    assert r.status_code == 422 and set(r.json()["candidates"]) == {"Heat (1995)", "Heat (1986)"}
    assert client.get("/v1/sessions/e").status_code == 404  # nothing was stored
    # any word of a title finds it (the one matcher of every surface); several are ambiguous
    assert post(client, "w", "Shawshank").status_code == 200
    assert client.get("/v1/sessions/w").json()["items"][0]["title"].startswith("Shawshank")
    r = post(client, "w2", "toy")
    assert r.status_code == 422
    assert set(r.json()["candidates"]) == {"Toy Story (1995)", "Toy Story 2 (1999)"}
    r = client.post("/v1/recommend", json={"items": ["Toy Story", "nope nope"]})
    assert r.status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"item": "Toy Story", "k": 0},
        {"item": "Toy Story", "k": 1001},
        {"item": "Toy Story", "k": "many"},
        {"item": 1.5},
        {"item": ""},
        {"item": "Toy Story", "surprise": 1},
        {"k": 3},
        [],
        {"item": "\ud800"},
        {"item": "Toy Story", "event_id": "has space"},
    ],
)
def test_bad_event_bodies_are_422(client: TestClient, body: Any) -> None:
    r = client.post(
        "/v1/sessions/x/events",
        content=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422, r.text


def test_bad_requests(client: TestClient) -> None:
    assert post(client, "x", "Toy Story", model="nope").status_code == 404
    assert client.get("/v1/sessions/x/recommendations", params={"k": 0}).status_code == 422
    assert client.get("/v1/sessions/x/recommendations", params={"k": 1001}).status_code == 422
    assert post(client, "a b", "Toy Story").status_code in (404, 422)
    assert post(client, "x" * 129, "Toy Story").status_code == 422
    r = client.post(
        "/v1/sessions/x/events", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422
    r = client.post(
        "/v1/recommend", content=b"\xff\xfe\x00", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422  # not even UTF-8: still a bad body, not a 400 or 500
    full = post(client, "k1000", "Toy Story", k=1000, exclude_seen=False).json()
    assert full["recommendations"][-1]["rank"] == 12 and full["exclude_seen"] is False
    # by default the session's items are left out, and the answer says so
    again = post(client, "k1000b", "Toy Story", k=1000).json()
    assert again["recommendations"][-1]["rank"] == 11 and again["exclude_seen"] is True


def test_oversize_bodies_are_413(client: TestClient) -> None:
    big = json.dumps({"items": ["Toy Story"] * 10_000}).encode()
    r = client.post("/v1/recommend", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413

    def chunks() -> Iterator[bytes]:  # no content-length: read up to the limit, then 413
        for _ in range(10):
            yield big[:10_000]

    r = client.post("/v1/recommend", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


# -- items, models, metrics --------------------------------------------------------------------
def test_item_search_ignores_case_and_accents(client: TestClient) -> None:
    def titles(q: str) -> list[str]:
        return [x["title"] for x in client.get("/v1/items", params={"q": q}).json()["items"]]

    assert titles("AMELIE") == ["Amélie (2001)"] == titles("amél")
    assert titles("toy sto") == ["Toy Story (1995)", "Toy Story 2 (1999)"]
    assert titles("the shawshank") == ["Shawshank Redemption, The (1994)"]
    assert titles("zzz") == [] and titles("   ") == []
    assert client.get("/v1/items", params={"q": "a", "limit": 0}).status_code == 422
    assert len(client.get("/v1/items", params={"q": "e", "limit": 2}).json()["items"]) == 2
    assert client.get("/v1/items/105").json()["title"] == "Amélie (2001)"
    assert client.get("/v1/items/999").status_code == 404
    assert fold("Ærø Čapek") == "ærø capek"


def test_models_lists_every_folder(client: TestClient, folders: dict[str, Path]) -> None:
    (folders["pop"] / "eval-test.json").write_text(
        json.dumps({"predictions": 7, "recall@20": 0.5, "protocol": {"name": "every"}})
    )
    body = client.get("/v1/models").json()
    assert body["default"] == "vsknn"
    by = {m["name"]: m for m in body["models"]}
    assert set(by) == {"vsknn", "gru", "pop"}
    assert by["gru"]["model"] == "gru4rec" and by["gru"]["parameters"]["layers"] == [16]
    assert by["pop"]["evaluations"][0]["metrics"] == {"recall@20": 0.5}


def test_metrics_in_prometheus_format(client: TestClient) -> None:
    post(client, "m", "Toy Story")
    post(client, "m", "nope nope")
    text = client.get("/metrics").text
    assert (
        'sessionrec_requests_total{method="POST",route="/v1/sessions/{session_id}/events",status="200"} 1.0'
        in text
    )
    assert "sessionrec_request_seconds_bucket" in text
    assert "sessionrec_live_sessions 1.0" in text
    assert 'sessionrec_errors_total{kind="404"} 1.0' in text


# -- admin reload ------------------------------------------------------------------------------
def test_admin_reload_needs_the_token_and_keeps_sessions(
    client: TestClient, folders: dict[str, Path]
) -> None:
    before = post(client, "r", "Toy Story", model="gru", k=4).json()
    assert client.post("/admin/reload").status_code == 401
    assert client.post("/admin/reload", headers={"Authorization": "Bearer no"}).status_code == 401
    r = client.post("/admin/reload", headers={"Authorization": "Bearer secret"})
    assert r.status_code == 200 and r.json()["models"] == ["vsknn", "gru", "pop"]
    engine = engine_of(client)
    assert engine.models["gru"].generation > 3
    after = client.get("/v1/sessions/r/recommendations", params={"k": 4, "model": "gru"}).json()
    assert after["recommendations"] == before["recommendations"]  # same folder, rebuilt state
    assert engine.rebuilds >= 1


def test_overlapping_reloads_run_one_at_a_time(
    folders: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SIGHUP during POST /admin/reload: the two loads must not interleave, or the models
    swapped in last mix generations of both (the CI failure of stop 19)."""
    import threading
    import time

    from sessionrec.serving import engine as engine_mod

    engine = engine_mod.Engine([folders["gru"], folders["pop"]], MemoryStore(1800, 50))
    real = engine_mod.load_served

    def slow(path: Any, generation: int, device: str = "cpu") -> Any:
        time.sleep(0.05)  # wide enough for the other reload to step in between two folders
        return real(path, generation, device)

    monkeypatch.setattr(engine_mod, "load_served", slow)
    threads = [threading.Thread(target=engine.reload) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    gens = [m.generation for m in engine.models.values()]
    assert gens == [5, 6]  # 1-2 at start, 3-4 and 5-6 for the reloads, the last one served


def test_admin_routes_off_without_a_token(folders: dict[str, Path], tmp_path: Path) -> None:
    with make_client(folders, tmp_path / "s.sqlite", names=("pop",)) as c:
        assert c.post("/admin/reload", headers={"Authorization": "Bearer x"}).status_code == 403


# -- configuration, CLI, missing extra ---------------------------------------------------------
def test_default_store_sits_beside_the_first_folder(folders: dict[str, Path]) -> None:
    cfg = ServeConfig(model_dirs=(str(folders["gru"]),))
    assert cfg.state_url == str(folders["gru"].parent / "gru.sessions.sqlite")
    assert ServeConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ConfigError, match="sqlite:///PATH"):
        open_store("postgres://x", 10, 10)
    assert isinstance(open_store("memory", 10, 10), MemoryStore)


def test_missing_extra_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "fastapi" else real(name, *a)
    )
    with pytest.raises(ConfigError, match=r'pip install -e "\.\[serve\]"'):
        require_serve_extra()


def test_cli_serve_rejects_a_folder_without_a_model(tmp_path: Path, capsys: Any) -> None:
    code, _, err = run_cli(["serve", str(tmp_path)], capsys)
    assert code == 2 and "config.json" in err
    code, _, err = run_cli(["serve", str(tmp_path), "--session-ttl", "soon"], capsys)
    assert code == 2 and "--session-ttl" in err


def test_parse_duration() -> None:
    from sessionrec.cli.serve import parse_duration

    assert parse_duration("30m") == 1800 and parse_duration("90") == 90
    assert parse_duration("2h") == 7200 and parse_duration("1.5s") == 1.5
