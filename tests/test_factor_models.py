"""BPR and ALS (via implicit) behind the SessionModel protocol."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sessionrec.models import create, load_model, model_class
from sessionrec.models._factors import interaction_matrix
from sessionrec.prepare.data import SessionData

pytest.importorskip("implicit")


def _cyclic(n_sessions: int = 60, n_items: int = 12, seed: int = 0) -> SessionData:
    """Sessions that walk one of two item groups: items co-occur only within their group."""
    rng = np.random.default_rng(seed)
    sessions = []
    for s in range(n_sessions):
        group = np.arange(n_items // 2) + (s % 2) * (n_items // 2)
        sessions.append(rng.choice(group, size=rng.integers(3, 6), replace=False))
    items = np.concatenate(sessions)
    offsets = np.r_[0, np.cumsum([len(x) for x in sessions])]
    return SessionData(
        items=items.astype(np.int64),
        offsets=offsets.astype(np.int64),
        session_ids=np.arange(n_sessions, dtype=np.int64),
        timestamps=np.arange(len(items), dtype=np.int64),
        target=np.ones(len(items), dtype=bool),
        n_items=n_items,
        users=(np.arange(n_sessions) % 7).astype(np.int64),
    )


def test_interaction_matrix_rows() -> None:
    data = _cyclic()
    m = interaction_matrix(data, "session")
    assert m.shape == (data.n_sessions, data.n_items) and m.sum() == data.n_events
    mu = interaction_matrix(data, "user")
    assert mu.shape == (7, data.n_items) and mu.sum() == data.n_events


@pytest.mark.parametrize("name", ["bpr", "als"])
def test_factor_model_protocol(name: str, tmp_path: Path) -> None:
    data = _cyclic()
    tuned = {"n_epochs": 100, "learning_rate": 0.1} if name == "bpr" else {"n_epochs": 5}
    params = {**model_class(name).test_params, **tuned}  # type: ignore[attr-defined]
    records: list[dict[str, float]] = []
    m = create(name, params).fit(data, callback=records.append)
    assert len(records) == params["n_epochs"]
    assert {"epoch", "train_loss", "seconds", "events_per_second"} <= set(records[0])
    sessions = [[0, 1, 2], [7, 8], [3]]
    scores = m.score_sessions(sessions)
    assert scores.shape == (3, data.n_items)
    # Same-group items score above other-group items (the factors learned the two groups).
    assert scores[0, 3:6].mean() > scores[0, 6:].mean()
    assert scores[1, 6:].mean() > scores[1, :6].mean()
    # Streaming with a reset equals score_sessions.
    state = m.start(1)
    for i in [5, 5]:
        state = m.step(state, torch.tensor([i]))
    state = m.reset(state, torch.tensor([True]))
    for i in sessions[0]:
        state = m.step(state, torch.tensor([i]))
    torch.testing.assert_close(m.score(state), scores[:1])
    # Save → load → identical; same seed → same numbers.
    loaded = load_model(m.save(tmp_path / name))
    torch.testing.assert_close(loaded.score_sessions(sessions), scores, rtol=0, atol=0)
    again = create(name, params).fit(data)
    torch.testing.assert_close(again.score_sessions(sessions), scores, rtol=0, atol=0)


def test_early_stop_by_callback() -> None:
    m = create("als", {"factors": 4, "n_epochs": 10}).fit(
        _cyclic(), callback=lambda r: r["epoch"] >= 2
    )
    assert m.item_factors.shape == (12, 4)


@pytest.mark.parametrize(("name", "cls"), [("bpr", "BayesianPersonalizedRanking"),
                                           ("als", "AlternatingLeastSquares")])  # fmt: skip
def test_cuda_picks_implicit_gpu_when_built_with_it(
    name: str, cls: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import inspect
    import logging

    import implicit.gpu

    model = create(name)
    model.device = torch.device("cuda")  # only the choice of module is exercised: no CUDA op
    monkeypatch.setattr(implicit.gpu, "HAS_CUDA", False)
    with caplog.at_level(logging.WARNING):
        assert model._implicit_module(name).__name__ == f"implicit.cpu.{name}"  # type: ignore[attr-defined]
    assert "without CUDA" in caplog.text
    monkeypatch.setattr(implicit.gpu, "HAS_CUDA", True)
    module = model._implicit_module(name)  # type: ignore[attr-defined]
    assert module.__name__ == f"implicit.gpu.{name}"
    real, captured = getattr(module, cls), {}
    monkeypatch.setattr(module, cls, lambda **kw: captured.update(kw))
    model._implicit_model()  # type: ignore[attr-defined]
    inspect.signature(real).bind(**captured)  # the GPU class takes what we pass (no threads)
    assert "num_threads" not in captured
