"""Served = evaluated at the service's session cap, for sessions longer than the cap.

A service with ``--max-session-events N`` ranks each event's list from the session's latest
events only (past N it keeps three quarters of N, then grows to N again); ``evaluate`` with
``max_session_events=N`` ranks every prediction from the same window. Replayed event by
event through the HTTP service, the ranks are equal, for GRU4Rec, SASRec, RepeatNet and
V-SKNN, with the seen items kept or excluded; the answers count every event received
(``events``) and say how many are kept (``kept``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi", reason='needs the serve extra: pip install -e ".[serve]"')

from _helpers import session_data
from _serve_helpers import asgi_call

from sessionrec.evaluation import evaluate
from sessionrec.evaluation.evaluator import prediction_mask
from sessionrec.evaluation.window import kept, trim_to, window_sessions
from sessionrec.models import create
from sessionrec.serving.app import AppOptions, create_app
from sessionrec.serving.engine import Engine
from sessionrec.serving.state import open_store

CAP = 8
CUT = 10
MISS = float(CUT + 1)
N_ITEMS = 25


def sessions(seed: int, n: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        length = int(rng.integers(2, 4 * CAP))
        start = int(rng.integers(0, N_ITEMS))
        # a walk with repeats, so that excluding seen items matters
        out.append([(start + int(rng.integers(-2, 4)) * j) % N_ITEMS for j in range(length)])
    return out


def test_kept_follows_the_store() -> None:
    store = open_store("memory", 1e9, CAP)
    for n in range(1, 5 * CAP):
        rec, _ = store.append("s", str(n), 1.0)
        assert len(rec.items) == int(kept(n, CAP)) and rec.total == n
    assert trim_to(CAP) == store.trim_to


def test_windows_keep_every_prediction_once() -> None:
    data = session_data(sessions(1, 30), N_ITEMS)
    windowed, origin = window_sessions(data, CAP)
    assert windowed.n_predictions == data.n_predictions
    pred = prediction_mask(windowed, "every")
    assert sorted(origin[pred].tolist()) == np.flatnonzero(prediction_mask(data, "every")).tolist()
    for s in range(windowed.n_sessions):  # no piece is longer than the window plus its targets
        lo, hi = windowed.offsets[s], windowed.offsets[s + 1]
        history = int(np.argmax(windowed.target[lo:hi])) if windowed.target[lo:hi].any() else 0
        assert history <= CAP


def served_rank(recs: list[dict[str, Any]], target: Any) -> float:
    scores = [r["score"] for r in recs]
    mine = [r["score"] for r in recs if r["item_id"] == target]
    if not mine or (len(recs) > CUT and scores[CUT] >= mine[0]):
        return MISS
    return 1.0 + sum(1 for r in recs if r["item_id"] != target and r["score"] >= mine[0])


MODELS: dict[str, dict[str, Any] | None] = {
    "gru4rec": {"layers": [16], "n_epochs": 2, "batch_size": 4, "n_sample": 8},
    "sasrec": {"context_length": 16, "dim": 8, "n_epochs": 1, "dropout": 0.0},
    "repeatnet": {"context_length": 16, "dim": 8, "n_epochs": 1, "dropout": 0.0, "batch_size": 4},
    "vsknn": None,
}


@pytest.mark.parametrize("exclude_seen", [False, True])
@pytest.mark.parametrize("name", list(MODELS))
def test_served_equals_evaluated_past_the_cap(
    name: str, exclude_seen: bool, tmp_path: Path
) -> None:
    train = session_data(sessions(2, 60), N_ITEMS)
    test = session_data(sessions(3, 12), N_ITEMS)
    assert (np.diff(test.offsets) > CAP + 1).sum() >= 3  # sessions longer than the cap
    model = create(name, MODELS[name]).fit(train)
    folder = model.save(tmp_path / name)
    res = evaluate(model, test, exclude_seen=exclude_seen, max_session_events=CAP)
    assert res.protocol["max_session_events"] == CAP
    offline = np.minimum(res.ranks, MISS)
    whole = np.minimum(evaluate(model, test, exclude_seen=exclude_seen).ranks, MISS)
    assert (whole != offline).any()  # the window changes ranks: the test can tell them apart

    engine = Engine([folder], open_store(str(tmp_path / "s.sqlite"), 1e9, CAP))
    app = create_app(engine, AppOptions())
    is_pred = prediction_mask(test, "every")
    online = np.full(test.n_events, np.nan)

    async def replay() -> None:
        for s in range(test.n_sessions):
            lo, hi = int(test.offsets[s]), int(test.offsets[s + 1])
            for e in range(lo, hi - 1):
                body = {"item": int(test.items[e]), "k": CUT + 1, "exclude_seen": exclude_seen}
                status, out = await asgi_call(app, "POST", f"/v1/sessions/w{s}/events", body)
                assert status == 200, out
                n = e - lo + 1
                assert out["events"] == n and out["kept"] == int(kept(n, CAP))
                if is_pred[e + 1]:
                    online[e + 1] = served_rank(out["recommendations"], int(test.items[e + 1]))

    asyncio.run(replay())
    served = online[is_pred]
    mismatch = np.flatnonzero(served != offline)
    assert len(mismatch) == 0, f"{name}: {len(mismatch)} of {len(served)} ranks differ"


def test_cli_evaluate_applies_the_window(tmp_path: Path, capsys: Any) -> None:
    import json

    from _helpers import run_cli
    from conftest import write_log

    import sessionrec as sr

    rng = np.random.default_rng(0)
    rows = []
    for u in range(40):  # sessions of 30 events: past a cap of 8
        t0 = int(rng.integers(0, 10 * 86400))
        rows += [(u, int(rng.integers(1, 12)), t0 + 60 * j) for j in range(30)]
    log = write_log(tmp_path / "log.csv", rows)
    data = sr.prepare(log, tmp_path / "prep", session="1h", split="time", test_days=2,
                      valid_days=2, min_item_support=1)  # fmt: skip
    model = create("vsknn").fit(data.train)
    model.items = data.items
    folder = model.save(tmp_path / "m")
    argv = ["evaluate", str(folder), str(data.path), "--json"]
    code, out, err = run_cli([*argv, str(tmp_path / "w.json"), "--max-session-events", "8"], capsys)
    assert code == 0, err
    assert "session window 8 (as served)" in out
    windowed = json.loads((tmp_path / "w.json").read_text())
    assert windowed["protocol"]["max_session_events"] == 8
    want = evaluate(model, data.test, max_session_events=8).metrics["mrr@20"]
    assert windowed["mrr@20"] == want
    code, _, err = run_cli([*argv, str(tmp_path / "x.json"), "--max-session-events", "0"], capsys)
    assert code == 2 and "max_session_events" in err
