"""Events answered together (``Engine.add_events``, ``serving.batcher.Batcher``) get the answers
they get one by one: same lists, same session order, errors kept to their own event."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason='needs the serve extra: pip install -e ".[serve]"')

import numpy as np
import torch
from _serve_helpers import GRU_PARAMS, TITLES, asgi_call, batch_counts, model_folder

from sessionrec.serving.app import AppOptions, create_app
from sessionrec.serving.engine import Engine, Event
from sessionrec.serving.state import Append, SQLiteStore, open_store

KINDS = ["gru4rec", "vsknn", "pop", "markov"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("models")
    return [
        str(model_folder(kind, root / kind, GRU_PARAMS if kind == "gru4rec" else None))
        for kind in KINDS
    ]


def stream(seed: int, n: int = 160) -> list[tuple[str, int, int, bool, str | None, str]]:
    """(session, item, k, exclude_seen, event_id, model): sessions interleaved, some events
    retried with their event id; each session mostly with one model, sometimes another."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        s = rng.randrange(24)
        model = KINDS[s % len(KINDS)] if rng.random() < 0.9 else rng.choice(KINDS)
        eid = None if rng.random() < 0.7 else f"e{rng.randrange(6)}"
        k = rng.randrange(1, 13)
        out.append((f"s{s}", rng.randrange(len(TITLES)), k, rng.random() < 0.3, eid, model))
    return out


def events_of(engine: Engine, rows: list[Any]) -> list[Event]:
    return [Event(s, engine.model(m), i, k, x, e) for s, i, k, x, e, m in rows]


def same(got: Any, want: Any) -> None:
    (g, g_applied), (w, w_applied) = got, want
    assert g_applied == w_applied
    assert g.session.items == w.session.items and g.session.total == w.session.total
    assert g.idx == w.idx and g.seen == w.seen and g.because == w.because
    np.testing.assert_allclose(g.scores, w.scores, rtol=1e-5, atol=1e-6)


class Spy:
    """Records the batch size of every ``step`` and ``top_k_many`` of a model."""

    def __init__(self, model: Any) -> None:
        self.steps: list[int] = []
        self.ranks: list[int] = []
        step, many = model.step, model.top_k_many

        def spy_step(state: Any, items: torch.Tensor) -> Any:
            self.steps.append(int(items.numel()))
            return step(state, items)

        def spy_many(state: Any, ks: Any, excludes: Any) -> Any:
            self.ranks.append(len(ks))
            return many(state, ks, excludes)

        model.step, model.top_k_many = spy_step, spy_many


@pytest.mark.parametrize("store", ["memory", "sqlite"])
def test_events_together_answer_as_one_by_one(
    folders: list[str], store: str, tmp_path: Path
) -> None:
    url = "memory" if store == "memory" else str(tmp_path / "b.sqlite")
    batched = Engine(folders, open_store(url, 1800, 200))
    single = Engine(folders, open_store("memory", 1800, 200))
    spies = [Spy(batched.model(name).model) for name in ("gru4rec", "vsknn")]
    rows = stream(0)
    rng = random.Random(1)
    got: list[Any] = []
    at = 0
    while at < len(rows):  # batches of 1 to 25 events, sessions repeating inside them
        n = rng.randrange(1, 26)
        got += batched.add_events(events_of(batched, rows[at : at + n]))
        at += n
    want = [single.add_event(e.session_id, e.model, e.idx, e.k, e.exclude_seen, e.event_id)
            for e in events_of(single, rows)]  # fmt: skip
    assert len(got) == len(want) == len(rows)
    for g, w in zip(got, want, strict=True):
        assert not isinstance(g, Exception)
        same(g, w)
    # the gru4rec and vsknn sessions did go through the model together
    for spy in spies:
        assert max(spy.steps) > 1 and max(spy.ranks) > 1
    assert batched.steps == single.steps


def test_a_sessions_events_in_one_batch_keep_their_order(folders: list[str]) -> None:
    engine = Engine(folders, open_store("memory", 1800, 200))
    gru = engine.model("gru4rec")
    items = [0, 1, 2, 3, 0, 1]
    batch = [Event("a", gru, i, 5, False) for i in items] + [Event("b", gru, 4, 5, False)]
    got = engine.add_events(batch)
    ref = Engine(folders, open_store("memory", 1800, 200))
    for g, e in zip(got, batch, strict=True):
        same(g, ref.add_event(e.session_id, ref.model("gru4rec"), e.idx, 5, False))
    assert [len(g[0].session.items) for g in got if not isinstance(g, Exception)] == [
        1, 2, 3, 4, 5, 6, 1
    ]  # fmt: skip


def test_a_failing_event_fails_alone(folders: list[str], tmp_path: Path) -> None:
    engine = Engine(folders, open_store(str(tmp_path / "f.sqlite"), 1800, 200))
    gru = engine.model("gru4rec")
    model = gru.model
    step = model.step

    def fragile(state: Any, items: torch.Tensor) -> Any:  # item 7 breaks the model
        if bool((items == 7).any()):
            raise RuntimeError("broken step")
        return step(state, items)

    for s in "abcd":  # states to continue
        engine.add_event(s, gru, 0, 3, False)
    model.step = fragile
    got = engine.add_events([Event(s, gru, 7 if s == "c" else 1, 3, False) for s in "abcd"])
    assert isinstance(got[2], RuntimeError)
    model.step = step
    ref = Engine(folders, open_store("memory", 1800, 200))
    for s, g in zip("abd", [got[0], got[1], got[3]], strict=True):
        ref.add_event(s, ref.model("gru4rec"), 0, 3, False)
        same(g, ref.add_event(s, ref.model("gru4rec"), 1, 3, False))
    # the failed event was recorded (the store took it) and its session goes on from there
    rec, _ = engine.add_event("c", gru, 2, 3, False)
    assert rec.session is not None and len(rec.session.items) == 3


def test_sqlite_batch_is_one_transaction_or_one_each(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.sqlite", 1800, 3)
    ref = open_store("memory", 1800, 3)
    appends = [Append(f"s{i % 3}", str(i), 1000.0 + i, f"e{i % 4}") for i in range(12)]
    got = store.append_many(appends)
    want = ref.append_many(appends)
    for g, w in zip(got, want, strict=True):
        assert not isinstance(g, Exception) and not isinstance(w, Exception)
        assert (g[0].items, g[0].first_seq, g[1]) == (w[0].items, w[0].first_seq, w[1])
    # one event that fails: the batch is rolled back and redone one by one
    real = store._append

    def fails_on_x(sid: str, *args: Any) -> Any:
        if sid == "x":
            raise RuntimeError("disk on fire")
        return real(sid, *args)

    store._append = fails_on_x  # type: ignore[method-assign]
    out = store.append_many([Append("y", "1", 2000.0), Append("x", "2", 2000.0),
                             Append("y", "3", 2000.0)])  # fmt: skip
    assert isinstance(out[1], RuntimeError)
    rec = store.get("y", 2000.0)
    assert rec is not None and rec.items == ("1", "3")  # each once: the rollback undid them
    assert store.get("x", 2000.0) is None


def test_concurrent_requests_are_answered_together(folders: list[str]) -> None:
    """Requests that reach the app in the same turn of the event loop go to the engine as
    one batch (the batch-size histogram says so) and get the one-by-one answers."""
    rows = [(f"s{j}", item) for item in (0, 1, 2, 3) for j in range(12)]

    async def run(batch: bool) -> tuple[list[Any], tuple[float, float]]:
        engine = Engine(folders[:1], open_store("memory", 1800, 200))
        app = create_app(engine, AppOptions(batch_events=batch))
        out: list[Any] = []
        for item in (0, 1, 2, 3):
            calls = [
                asgi_call(app, "POST", f"/v1/sessions/{s}/events", {"item": 100 + i, "k": 5})
                for s, i in rows
                if i == item
            ]
            out += await asyncio.gather(*calls)
        return out, batch_counts(app)

    got, metrics = asyncio.run(run(True))
    want, _ = asyncio.run(run(False))
    assert [s for s, _ in got] == [200] * len(rows)
    for (_, g), (_, w) in zip(got, want, strict=True):
        assert [r["item_id"] for r in g["recommendations"]] == [
            r["item_id"] for r in w["recommendations"]
        ]
        assert g["events"] == w["events"]
    sum_, count = metrics
    assert sum_ == len(rows) and 0 < count < len(rows) / 4, metrics


def test_sessions_rebuilt_together_equal_one_by_one(folders: list[str], tmp_path: Path) -> None:
    """After a restart every session's state is rebuilt from its stored events: sessions with
    as many events are stepped through them together, and answer as one by one."""
    path = str(tmp_path / "r.sqlite")
    first = Engine(folders, open_store(path, 1800, 200))
    gru = first.model("gru4rec")
    lengths = [5, 5, 5, 3, 3, 1]
    for s, n in enumerate(lengths):
        for t in range(n):
            first.add_event(f"r{s}", gru, (s + 3 * t) % 12, 4, False)
    restarted = Engine(folders, open_store(path, 1800, 200))
    spy = Spy(restarted.model("gru4rec").model)
    batch = [Event(f"r{s}", restarted.model("gru4rec"), 7, 4, s % 2 == 0) for s in range(6)]
    got = restarted.add_events(batch)
    ref = Engine(folders, open_store("memory", 1800, 200))
    for s, n in enumerate(lengths):
        for t in range(n):
            ref.add_event(f"r{s}", ref.model("gru4rec"), (s + 3 * t) % 12, 4, False)
    for e, g in zip(batch, got, strict=True):
        same(g, ref.add_event(e.session_id, ref.model("gru4rec"), 7, 4, e.exclude_seen))
    assert restarted.rebuilds == 6
    # 6, 6, 6, 4, 4 and 2 events to step: 6 steps of 3 sessions, 4 of 2, the last one alone
    assert spy.steps.count(3) == 6 and spy.steps.count(2) == 4 and spy.steps.count(1) == 2


def test_a_loop_that_stopped_leaves_no_event_waiting(folders: list[str]) -> None:
    """Events submitted in a loop that stopped before answering them (a test client's, a
    server shutting down) do not keep the events of another loop waiting."""
    from sessionrec.serving.batcher import Batcher
    from sessionrec.serving.metrics import Metrics

    engine = Engine(folders[:1], open_store("memory", 1800, 200))
    batcher = Batcher(engine, Metrics(engine))
    gru = engine.model(None)
    dead = asyncio.new_event_loop()

    def submit_and_stop() -> None:
        batcher.submit(Event("a", gru, 1, 3, False))
        dead.stop()  # before the batch's callback runs

    dead.call_soon(submit_and_stop)
    dead.run_forever()
    dead.close()

    async def answer() -> bytes:
        return await asyncio.wait_for(batcher.submit(Event("b", gru, 2, 3, False)), 5)

    assert b'"session_id":"b"' in asyncio.run(answer())
