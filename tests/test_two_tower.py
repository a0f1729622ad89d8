"""Two-tower retrieval: example windows by hand, learns a cycle, protocol (stream, save, seed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from sessionrec.models import create, load_model
from sessionrec.models.two_tower import TwoTower, training_examples
from sessionrec.prepare.data import SessionData


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny models on a loaded 2-core machine: extra intra-op threads only oversubscribe."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _data(sessions: list[list[int]], n_items: int, target: list[bool] | None = None) -> SessionData:
    items = np.concatenate([np.asarray(s) for s in sessions]).astype(np.int64)
    return SessionData(
        items=items,
        offsets=np.r_[0, np.cumsum([len(s) for s in sessions])].astype(np.int64),
        session_ids=np.arange(len(sessions), dtype=np.int64),
        timestamps=np.arange(len(items), dtype=np.int64),
        target=np.ones(len(items), dtype=bool) if target is None else np.asarray(target),
        n_items=n_items,
    )


def test_training_examples_by_hand() -> None:
    # Session 0: 1 2 3 (context length 2); session 1: 4 5 with 4 a context row, 5 a target.
    data = _data([[1, 2, 3], [4, 5]], n_items=6, target=[True, True, True, False, True])
    windows, labels = training_examples(data, 2)
    pad = 6
    np.testing.assert_array_equal(labels, [2, 3, 5])
    np.testing.assert_array_equal(windows, [[pad, 1], [1, 2], [pad, 4]])


def test_learns_a_cycle_and_keeps_the_protocol(tmp_path: Path) -> None:
    n = 8
    rng = np.random.default_rng(0)
    sessions = []
    for _ in range(120):
        start = int(rng.integers(n))
        sessions.append([(start + t) % n for t in range(int(rng.integers(3, 8)))])
    data = _data(sessions, n)
    params = {"dim": 16, "n_epochs": 15, "batch_size": 32, "learning_rate": 0.01}
    records: list[dict[str, float]] = []
    m = create("two-tower", params).fit(data, callback=records.append)
    assert len(records) == 15 and records[-1]["train_loss"] < records[0]["train_loss"]
    probes = [[i, (i + 1) % n] for i in range(n)]
    scores = m.score_sessions(probes)
    assert scores.shape == (n, n)
    assert (scores.argmax(1).numpy() == [(i + 2) % n for i in range(n)]).mean() >= 0.9
    # Streaming with a reset equals score_sessions.
    state = m.start(2)
    for a, b in [(3, 5), (4, 6)]:
        state = m.step(state, torch.tensor([a, b]))
    state = m.reset(state, torch.tensor([True, False]))
    for i in probes[0]:
        state = m.step(state, torch.tensor([i, 7]))
    torch.testing.assert_close(m.score(state)[0], scores[0])
    # Save → load → identical; same seed → same numbers.
    loaded = load_model(m.save(tmp_path / "tt"))
    assert isinstance(loaded, TwoTower)
    torch.testing.assert_close(loaded.score_sessions(probes), scores, rtol=0, atol=0)
    again = create("two-tower", params).fit(data)
    torch.testing.assert_close(again.score_sessions(probes), scores, rtol=0, atol=0)


def test_extra_negatives_and_no_logq_train() -> None:
    data = _data([[0, 1, 2, 3], [2, 3, 0, 1]] * 5, n_items=4)
    m = create(
        "two-tower", {"dim": 4, "n_epochs": 1, "batch_size": 8, "extra_negatives": 3, "logq": False}
    ).fit(data)
    assert torch.isfinite(m.score_sessions([[0]])).all()


def test_sequence_examples_by_hand() -> None:
    from datetime import UTC, datetime

    import polars as pl

    from sessionrec.prepare.examples import sequence_examples

    # User 1 rates a b c d (c with 1 star, dropped by min_rating=2); user 2 has two ratings only.
    t = [datetime(2020, 1, d, tzinfo=UTC) for d in range(1, 7)]
    ev = pl.DataFrame(
        {
            "user_id": [1, 1, 1, 1, 2, 2],
            "item_id": [10, 11, 12, 13, 10, 11],
            "timestamp": t,
            "rating": [5.0, 4.0, 1.0, 3.0, 5.0, 5.0],
        }
    )
    ex = sequence_examples(ev, max_context=1, train_fraction=0.5, seed=0)
    both = [ex.train, ex.test]
    assert sum(d.n_sessions for d in both) == 2  # labels 11 (after 10) and 13 (after 11)
    got = sorted(tuple(d.session(s).tolist()) for d in both for s in range(d.n_sessions))
    assert got == [(0, 1), (1, 2)]  # item_idx: 10→0, 11→1, 13→2; context of one item
    assert all(d.target.tolist() == [False, True] for d in both)


def test_progress_hook_reports_every_example_of_an_epoch() -> None:
    data = _data([[i % 5, (i + 1) % 5, (i + 2) % 5] for i in range(50)], 5)
    m = create("two-tower", {"dim": 4, "n_epochs": 2, "batch_size": 2})
    calls: list[tuple[int, int, float]] = []
    m.progress_hook = lambda done, total, loss: calls.append((done, total, loss))  # type: ignore[attr-defined]
    m.fit(data)
    # 100 examples (two labels per session) in 50 batches: every 20 batches and the last one
    assert [c[0] for c in calls] == [40, 80, 100] * 2
    assert all(c[1] == 100 and c[2] > 0 for c in calls)


def test_prepare_examples_cli_writes_one_prediction_per_example(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import polars as pl
    from _helpers import run_cli

    import sessionrec as sr

    rng = np.random.default_rng(0)
    rows = [(u, int(i), int(rng.integers(1, 6)), 1000 * u + k)
            for u in range(30) for k, i in enumerate(rng.permutation(20)[: 4 + u % 5])]  # fmt: skip
    log = tmp_path / "r.csv"
    pl.DataFrame(
        rows, schema=["user_id", "item_id", "rating", "timestamp"], orient="row"
    ).write_csv(log)
    argv = ["prepare", str(log), "--out", str(tmp_path / "ex"), "--examples", "tfrs",
            "--max-context", "2", "--test-fraction", "0.25", "--seed", "3"]  # fmt: skip
    code, out, err = run_cli(argv, capsys)
    assert code == 0, out + err
    data = sr.PreparedData(tmp_path / "ex")
    # the examples: every rating >= 2 after the first of a user's timeline (>= 3 of them)
    kept = pl.read_csv(log).filter(pl.col("rating") >= 2)
    kept = kept.filter(pl.len().over("user_id") >= 3)
    n_examples = kept.height - kept["user_id"].n_unique()
    c = data.meta["counts"]
    assert c["train"]["events"] + c["test"]["events"] == n_examples
    assert c["test"]["events"] == n_examples - round(n_examples * 0.75)
    assert data.test.n_predictions == c["test"]["events"] and data.valid.n_sessions == 0
    assert max(data.test.lengths) <= 3  # context of at most 2, then the label
    code, out, err = run_cli(["prepare", str(log), "--out", str(tmp_path / "x"),
                              "--examples", "bert4rec"], capsys)  # fmt: skip
    assert code == 2 and "tfrs" in err and not (tmp_path / "x").exists()


def test_tfrs_preset_is_the_tutorial_model(tmp_path: Path) -> None:
    m = create("two-tower", {"preset": "tfrs"})
    c = m.config
    assert (c.dim, c.n_epochs, c.batch_size, c.learning_rate, c.optimizer) == (
        32,
        3,
        12800,
        0.1,
        "adagrad",
    )
    assert (c.normalize, c.query_projection, c.logq, c.temperature) == (False, False, False, 1.0)
    assert (c.mask_accidental_hits, c.loss_reduction, c.padding) == (False, "sum", "right")
    # a small version of it trains, learns the cycle's direction, and round-trips
    n = 6
    sessions = [[(s + t) % n for t in range(5)] for s in range(n)] * 20
    data = _data(sessions, n)
    params = {"preset": "tfrs", "dim": 8, "batch_size": 16, "n_epochs": 8}
    records: list[dict[str, float]] = []
    m = create("two-tower", params).fit(data, callback=records.append)
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    assert isinstance(m, TwoTower) and m.net is not None
    assert m.net.query_out is None and isinstance(m._opt, torch.optim.Adagrad)
    # Keras' initialisers: embeddings within ±0.05 before training
    fresh = TwoTower.from_params(params)
    fresh.n_items = n
    net = fresh._build()
    assert net.candidate_embedding.weight.abs().max() <= 0.05
    assert float(net.gru.get_parameter("bias_hh_l0").detach().abs().max()) == 0.0
    # no normalisation: candidate vectors are the raw embeddings
    torch.testing.assert_close(m.item_vectors(), m.net.candidate_embedding.weight)
    probes = [[i, (i + 1) % n] for i in range(n)]
    scores = m.score_sessions(probes)
    assert (scores.argmax(1).numpy() == [(i + 2) % n for i in range(n)]).mean() >= 0.8
    loaded = load_model(m.save(tmp_path / "tfrs"))
    torch.testing.assert_close(loaded.score_sessions(probes), scores, rtol=0, atol=0)


def test_right_padding_reads_the_items_first() -> None:
    m = TwoTower.from_params({"dim": 4, "context_length": 4, "padding": "right"})
    m.n_items = 5
    net = m._build()
    pad = 5
    left = torch.tensor([[pad, pad, 1, 2]])
    out, _ = net.gru(net.query_embedding(torch.tensor([[1, 2, pad, pad]])))
    assert net.query_out is not None
    by_hand = torch.nn.functional.normalize(net.query_out(out[:, -1]), dim=-1)
    torch.testing.assert_close(net.query(left), by_hand)


def test_loss_record_is_per_example_under_either_reduction() -> None:
    data = _data([[0, 1, 2, 3], [2, 3, 0, 1]] * 5, n_items=4)
    base = {"dim": 4, "n_epochs": 1, "batch_size": 100, "learning_rate": 0.0}
    mean: list[dict[str, float]] = []
    total: list[dict[str, float]] = []
    create("two-tower", base).fit(data, callback=mean.append)
    create("two-tower", {**base, "loss_reduction": "sum"}).fit(data, callback=total.append)
    # lr 0: same weights; the record is per example whichever reduction trained
    assert total[0]["train_loss"] == pytest.approx(mean[0]["train_loss"], rel=1e-6)
