"""The service's fast paths agree with their plain references: events answered without
FastAPI's routing, responses joined from pre-written item JSON, the kNN "because" from one
pass of bits, the top-k without cleaning a clean vector."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason='needs the serve extra: pip install -e ".[serve]"')

import numpy as np
import torch
from _serve_helpers import GRU_PARAMS, model_folder
from fastapi.testclient import TestClient

from sessionrec.models.base import _top_cleaned
from sessionrec.models.base import top_of_scores as scores_to_top
from sessionrec.serving import events as A
from sessionrec.serving.app import AppOptions, create_app
from sessionrec.serving.engine import Engine
from sessionrec.serving.state import open_store


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("models")
    return [
        str(model_folder("vsknn", root / "vsknn")),
        str(model_folder("gru4rec", root / "gru", GRU_PARAMS)),
        str(model_folder("pop", root / "pop")),
    ]


class Routed:
    """The app, recording for each request whether FastAPI's router handled it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.routed: list[bool] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)
        if scope["type"] == "http":
            self.routed.append("route" in scope)


def requests() -> list[tuple[str, str, Any, dict[str, str]]]:
    """(method, path, body bytes or None, headers): valid events and every kind of bad one."""
    j = {"content-type": "application/json"}
    out: list[tuple[str, str, Any, dict[str, str]]] = []

    def ev(sid: str, body: Any, headers: dict[str, str] = j) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        out.append(("POST", f"/v1/sessions/{sid}/events", raw, headers))

    for n, item in enumerate(["Toy Story", 101, "Fargo (1996)", "Amélie", "110", 104]):
        ev("a", {"item": item, "k": 3 + n})
        ev("b", {"item": item, "model": "gru", "exclude_seen": n % 2 == 0})
        ev("c", {"item": item, "model": "pop", "k": 1000, "event_id": f"c-{n % 3}"})
    ev("a", {"item": "Toy Stori"})  # unknown: 404 with the closest titles
    ev("a", {"item": "Heat"})  # ambiguous: 422 with the candidates
    ev("a", {"item": 100, "model": "nope"})  # unknown model: 404
    ev("a", {"item": 100, "k": 0})
    ev("a", {"item": 100, "surprise": 1})
    ev("a", [1, 2])
    ev("a", b"{not json")
    ev("a", b"\xff\xfe\x00")
    ev("a", b"")
    ev("a", {"item": "\ud800"})
    ev("a", {"item": 100}, {"content-type": "text/plain"})
    ev("a", {"item": 100}, {"content-type": "application/json; charset=utf-8"})
    ev("x" * 129, {"item": 100})
    ev("a%20b", {"item": 100})
    ev("a", b'{"item": 100, "k": 2}' + b" " * 70_000)  # over --max-body: 413
    out.append(("GET", "/v1/sessions/a/recommendations?k=4", None, {}))
    out.append(("GET", "/v1/sessions/c", None, {}))
    out.append(("POST", "/v1/recommend", json.dumps({"items": [100, "Fargo"]}).encode(), j))
    return out


def replay(app: Any) -> list[tuple[int, bytes]]:
    with TestClient(app) as c:
        return [
            (r.status_code, r.content)
            for r in (c.request(m, p, content=body, headers=h) for m, p, body, h in requests())
        ]


def test_fast_events_answer_as_fastapi_does(folders: list[str]) -> None:
    def app(fast: bool) -> Routed:
        engine = Engine(folders, open_store("memory", 1800, 200))
        return Routed(create_app(engine, AppOptions(fast_events=fast)))

    fast, plain = app(True), app(False)
    got, want = replay(fast), replay(plain)
    assert [s for s, _ in got] == [s for s, _ in want]
    assert {s for s, _ in got} == {200, 404, 413, 422}
    for (_, g), (_, w) in zip(got, want, strict=True):
        if b'"created"' in g:  # GET /v1/sessions/c: its times differ, its items must not
            g, w = (json.loads(x) for x in (g, w))
            for key in ("created", "updated", "expires_at"):
                g.pop(key), w.pop(key)
        assert g == w  # the same bytes, errors included
    valid_events = 18
    assert fast.routed[:valid_events] == [False] * valid_events  # answered by the fast path
    assert all(plain.routed[:valid_events])
    charset = valid_events + 11  # application/json; charset=utf-8: valid, answered fast too
    assert fast.routed[charset] is False and plain.routed[charset] is True
    rest = [r for i, r in enumerate(fast.routed) if i >= valid_events and i != charset]
    assert rest == [r for i, r in enumerate(plain.routed) if i >= valid_events and i != charset]


def test_answers_equal_the_plain_json(folders: list[str]) -> None:
    engine = Engine(folders, open_store("memory", 1800, 200))
    for name in ("vsknn", "gru", "pop"):
        sm = engine.model(name)
        for n, item in enumerate([0, 5, 11, 5, 7]):  # Amélie (5): not ASCII
            rec, applied = engine.add_event(f"s-{name}", sm, item, 1 + 4 * n, n % 2 == 1)
            cases: list[tuple[str | None, int, bool | None]] = [
                ("s", n + 1, applied),
                ('q"\\é', 2, None),
                (None, 0, None),
            ]
            for sid, events, flag in cases:
                want = A.answer_reference(sid, name, events, flag, rec)
                assert A.answer(sid, name, events, flag, rec) == want
            json.loads(A.answer("s", name, 1, True, rec))


def test_because_equals_the_intersection_loop(folders: list[str]) -> None:
    engine = Engine(folders[:1], open_store("memory", 1800, 200))
    sm = engine.model(None)
    rng = np.random.default_rng(0)
    n = sm.model.n_items
    cases = [([3], [0, 1, 2]), ([1, 1, 1], [1]), ([0, 4, 8], list(range(n)))]
    cases += [
        (rng.integers(0, n, int(rng.integers(1, 90))).tolist(), rng.permutation(n)[:7].tolist())
        for _ in range(30)
    ]
    assert sm.because([], [1, 2]) == [[], []]
    assert sm.because([1], []) == []
    for session, top in cases:
        for most in (1, 2, 5):
            assert sm.because(session, top, most) == sm.because_reference(session, top, most)


@pytest.mark.parametrize(
    "make",
    [
        lambda: torch.randn(50, dtype=torch.float64),
        lambda: torch.tensor([1.0, float("nan"), 3.0, float("-inf"), 2.0]),
        lambda: torch.tensor([float("nan")] * 4),
        lambda: torch.tensor([0.0, -float("inf"), -float("inf"), 5.0]),
        lambda: torch.tensor([1.0, 1.0, 1.0, 2.0, 2.0]),
    ],
)
def test_top_k_skips_cleaning_only_when_it_changes_nothing(
    make: Callable[[], torch.Tensor],
) -> None:
    for k in (1, 2, 3, 5, 9):
        for exclude in (None, [0], [3, 1]):
            s = make()
            reference = s.clone()
            if exclude:
                reference[torch.tensor(exclude)] = -torch.inf
            assert scores_to_top(s, k, exclude) == _top_cleaned(reference, k)
            assert torch.equal(s.isnan(), make().isnan())  # the input is left as it was


def test_metrics_count_fast_answers(folders: list[str], tmp_path: Path) -> None:
    engine = Engine(folders, open_store(str(tmp_path / "s.sqlite"), 1800, 200))
    with TestClient(create_app(engine)) as c:
        for item in (100, 101, "nope nope"):
            c.post("/v1/sessions/m/events", json={"item": item})
        text = c.get("/metrics").text
    route = 'method="POST",route="/v1/sessions/{session_id}/events"'
    assert f'sessionrec_requests_total{{{route},status="200"}} 2.0' in text
    assert f'sessionrec_requests_total{{{route},status="404"}} 1.0' in text
    assert 'sessionrec_events_total{model="vsknn"} 2.0' in text
    assert "sessionrec_model_steps 2.0" in text and "sessionrec_live_sessions 1.0" in text
