"""Offline equals online: the ML-100K acceptance test part replayed through the HTTP service,
one ``POST /v1/sessions/{id}/events`` per event (sessions side by side, so that the service
answers them in batches as under load), gives exactly the ranks ``evaluate`` computes.

The served list only shows the top k, so the rank of the next item is read from a list of 21:
under the evaluator's conservative ties, rank = 1 + the other items scored at least as high as
the target; when the 21st item still scores at least as high, the rank is past 20 (a miss at
every cutoff up to 20), otherwise every such item is in the list and the rank is exact.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi", reason='needs the serve extra: pip install -e ".[serve]"')

from _serve_helpers import asgi_call, batch_counts

import sessionrec as sr
from sessionrec.evaluation import evaluate
from sessionrec.evaluation import metrics as M
from sessionrec.evaluation.evaluator import prediction_mask
from sessionrec.models import create
from sessionrec.serving import ServeConfig, build_app

CUT = 20
MISS = float(CUT + 1)  # any rank past the cutoff scores 0 in Recall@20 and MRR@20


def served_rank(recs: list[dict[str, Any]], target: Any) -> float:
    """The conservative rank of ``target`` from a top-(CUT+1) list, or MISS if it is past CUT."""
    scores = [r["score"] for r in recs]
    if len(recs) > CUT and scores[CUT] >= max(
        (r["score"] for r in recs if r["item_id"] == target), default=-np.inf
    ):
        return MISS
    mine = [r["score"] for r in recs if r["item_id"] == target]
    if not mine:
        return MISS
    return 1.0 + sum(1 for r in recs if r["item_id"] != target and r["score"] >= mine[0])


async def replay(
    app: Any, name: str, data: Any, item_ids: list[Any], at_once: int = 24
) -> np.ndarray:
    """Ranks of every predicted event of ``data``, in event order, through the service:
    ``at_once`` sessions stream their events side by side (each session's in order), so the
    service answers them in batches, as it does under load."""
    test = data
    is_pred = prediction_mask(test, "every")
    out = np.full(test.n_events, np.nan)

    async def session(s: int) -> None:
        lo, hi = int(test.offsets[s]), int(test.offsets[s + 1])
        preds = np.flatnonzero(is_pred[lo:hi]) + lo
        if len(preds) == 0:
            return
        for e in range(lo, int(preds[-1])):
            status, body = await asgi_call(
                app,
                "POST",
                f"/v1/sessions/{name}-{s}/events",
                {"item": item_ids[test.items[e]], "k": CUT + 1, "model": name},
            )
            assert status == 200, body
            if is_pred[e + 1]:
                target = item_ids[test.items[e + 1]]
                out[e + 1] = served_rank(body["recommendations"], target)

    for first in range(0, test.n_sessions, at_once):
        await asyncio.gather(
            *(session(s) for s in range(first, min(first + at_once, test.n_sessions)))
        )
    return out[is_pred]


@pytest.mark.e2e
def test_served_ranks_equal_evaluated_ranks(ml100k: Path, tmp_path: Path) -> None:
    data = sr.prepare(
        ml100k,
        tmp_path / "p",
        session="1h",
        min_session_length=2,
        min_item_support=5,
        split="time",
        test_days=21,
        valid_days=21,
    )
    assert data.test.n_predictions == 7117
    item_ids = data.items.sort("item_idx")["item_id"].to_list()
    folders = []
    offline: dict[str, np.ndarray] = {}
    metrics: dict[str, dict[str, float]] = {}
    for name, params in (
        ("gru4rec", {"n_epochs": 1, "layers": [32], "batch_size": 128, "n_sample": 256}),
        ("vsknn", None),
        ("pop", None),
    ):
        model = create(name, params).fit(data.train)
        model.items = data.items
        folders.append(str(model.save(tmp_path / name)))
        # the service leaves the session's items out by default: evaluated the same way
        res = evaluate(model, data.test, exclude_seen=True)
        assert res.predictions == 7117
        offline[name] = np.minimum(res.ranks, MISS)
        metrics[name] = res.metrics

    # the evaluator feeds whole sessions (the longest test session has 317 events): keep them
    # whole here too (the default cap of 200 would serve the latest 200, by design)
    config = ServeConfig(
        model_dirs=tuple(folders), state=str(tmp_path / "s.sqlite"), max_session_events=1000
    )
    app = build_app(config)
    for name in ("gru4rec", "vsknn", "pop"):
        before = batch_counts(app)
        online = asyncio.run(replay(app, name, data.test, item_ids))
        events, count = (a - b for a, b in zip(batch_counts(app), before, strict=True))
        assert events / count > 2, f"{name}: {events / count:.1f} events per batch"
        assert len(online) == 7117
        mismatch = np.flatnonzero(online != offline[name])
        assert len(mismatch) == 0, f"{name}: {len(mismatch)} ranks differ, e.g. {mismatch[:5]}"
        assert M.recall(online, CUT) == metrics[name]["recall@20"]
        assert M.mrr(online, CUT) == metrics[name]["mrr@20"]
