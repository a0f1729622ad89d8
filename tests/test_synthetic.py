"""Synthetic logs with a known process, and the Bayes-optimal oracle against a plain-Python
posterior computed by enumeration."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from _helpers import run_cli

import sessionrec as sr
from sessionrec import synthetic as syn
from sessionrec.errors import ConfigError, UnknownNameError

TINY = syn.SyntheticSpec(
    n_items=12, n_intents=3, items_per_intent=5, fanout=2, n_sessions=400, mean_length=4.0,
    noise=0.1, concentration=0.5, days=20, seed=7,
)  # fmt: skip


def test_generation_is_seeded_and_well_formed() -> None:
    a, b = syn.generate(TINY), syn.generate(TINY)
    assert a.events.equals(b.events)
    assert not syn.generate(TINY, seed=8).events.equals(a.events)
    ev = a.events
    lengths = ev.group_by("session_id").len()["len"]
    assert ev["session_id"].n_unique() == TINY.n_sessions and lengths.min() >= 2
    assert ev["item_id"].min() >= 1 and ev["item_id"].max() <= TINY.n_items
    # rows are in session then time order
    assert ev.sort(["session_id", "timestamp"], maintain_order=True).equals(ev)
    p = a.process
    assert np.allclose(p.chain.sum(2), 1) and np.allclose(p.entry.sum(1), 1)
    assert math.isclose(p.prior.sum(), 1) and math.isclose(p.pop.sum(), 1)
    assert ((p.chain > 0).sum(2) <= TINY.fanout).all()


def test_generation_does_not_depend_on_the_chunking(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows are sampled a chunk at a time (no (sessions, items) array for large logs); the
    draws, and so the log, are the same for any chunk size, down to one row per chunk."""
    whole = syn.generate(TINY, n_sessions=300)
    sample = syn._sample_rows
    for chunk in (8 * TINY.n_items, 8 * TINY.n_items * 7):
        monkeypatch.setattr(
            syn, "_sample_rows", lambda t, r, g, c=chunk: sample(t, r, g, chunk_bytes=c)
        )
        assert syn.generate(TINY, n_sessions=300).events.equals(whole.events)


def test_bad_specs_and_names_are_refused() -> None:
    with pytest.raises(ConfigError, match="noise"):
        syn.SyntheticSpec(noise=0)
    with pytest.raises(UnknownNameError):
        syn.generate("nope")
    with pytest.raises(ConfigError, match="unknown synthetic spec"):
        syn.generate("media", n_users=3)


def _posterior_predictive(p: syn.Process, prefix: list[int]) -> np.ndarray:
    """P(next | prefix) over generator items, by enumerating the intents, in plain Python."""
    eps, K, n = p.noise, len(p.prior), p.n_items
    pos = p.position()

    def step_prob(k: int, last: int | None, cur: int) -> float:
        if last is None or pos[k, last] < 0:
            own = p.entry[k, cur]
        else:
            own = p.chain[k, pos[k, last], pos[k, cur]] if pos[k, cur] >= 0 else 0.0
        return (1 - eps) * own + eps * p.pop[cur]

    joint = []
    for k in range(K):
        like, last = p.prior[k], None
        for cur in prefix:
            like *= step_prob(k, last, cur)
            last = cur
        joint.append(like)
    post = np.array(joint) / sum(joint)
    return np.array(
        [sum(post[k] * step_prob(k, prefix[-1], j) for k in range(K)) for j in range(n)]
    )


def test_oracle_scores_are_the_posterior_predictive() -> None:
    log = syn.generate(TINY)
    items = pl.DataFrame({"item_idx": range(TINY.n_items), "item_id": range(1, TINY.n_items + 1)})
    oracle = syn.OracleModel.for_data(log.process, items)
    rng = np.random.default_rng(0)
    prefixes = [rng.integers(0, TINY.n_items, int(rng.integers(1, 6))).tolist() for _ in range(8)]
    for prefix in prefixes:
        state = oracle.start(1)
        for i in prefix:
            state = oracle.step(state, torch.tensor([i]))
        got = oracle.score(state)[0].numpy()
        assert got.sum() == pytest.approx(1.0)
        assert got == pytest.approx(_posterior_predictive(log.process, prefix), rel=1e-9)
    # reset gives the prior back, and streaming slots do not leak into each other
    s = oracle.start(2)
    s = oracle.step(s, torch.tensor([1, 2]))
    s = oracle.reset(s, torch.tensor([True, False]))
    s = oracle.step(s, torch.tensor([3, 4]))
    got = oracle.score(s).numpy()
    assert got[0] == pytest.approx(_posterior_predictive(log.process, [3]), rel=1e-9)
    assert got[1] == pytest.approx(_posterior_predictive(log.process, [2, 4]), rel=1e-9)


def test_the_oracle_is_the_ceiling_and_round_trips(tmp_path: Path) -> None:
    log = syn.generate(TINY, n_items=60, items_per_intent=12, n_sessions=1500, noise=0.05)
    folder = log.save(tmp_path / "log")
    again = syn.SyntheticLog.load(folder)
    assert again.events.equals(log.events) and again.spec == log.spec
    data = sr.prepare(str(folder / "log.parquet"), tmp_path / "data", session="column",
                      split="time", test_days=2, valid_days=2, min_item_support=1)  # fmt: skip
    assert isinstance(data, sr.PreparedData)
    top = syn.ceiling(log, data, cutoffs=(1, 5))
    assert top.predictions == data.test.n_predictions > 100
    for name in ("pop", "markov"):
        model = sr.train(name, data, tmp_path / name, fit_on="train+valid", progress=False)
        res = sr.evaluate(model, data.test, cutoffs=(1, 5))
        assert res.metrics["mrr@5"] <= top.metrics["mrr@5"] + 1e-12, name
    # save → load of the oracle as a model folder gives the same scores
    oracle = syn.OracleModel.for_data(log.process, data.items)
    oracle.save(tmp_path / "oracle")
    back = syn.OracleModel.load_from(tmp_path / "oracle")
    sessions = [[0, 1], [2], [3, 4, 5]]
    assert torch.equal(oracle.score_sessions(sessions), back.score_sessions(sessions))


def test_estimated_process_converges_to_the_true_one(tmp_path: Path) -> None:
    """The informed count reference: with many sessions its estimates approach the generating
    process (planted answer), and each session's intent survives save and load."""
    log = syn.generate(TINY, n_sessions=20_000, noise=0.02)
    assert log.intents is not None and len(log.intents) == 20_000
    again = syn.SyntheticLog.load(log.save(tmp_path / "log"))
    assert again.intents is not None and np.array_equal(again.intents, log.intents)
    data = sr.prepare(str(tmp_path / "log" / "log.parquet"), tmp_path / "data", session="column",
                      min_item_support=1)  # fmt: skip
    assert isinstance(data, sr.PreparedData)
    gen = data.items.sort("item_idx")["item_id"].to_numpy() - 1
    est = syn.estimate_process(log, data.train, gen, smoothing=0.01)
    true = log.process
    assert np.allclose(est.chain.sum(2), 1) and np.allclose(est.entry.sum(1), 1)
    assert np.abs(est.chain - true.chain).max() < 0.08
    assert np.abs(est.entry - true.entry).max() < 0.05
    assert np.abs(est.prior - true.prior).max() < 0.02
    # a little data estimates worse: the reference is a learner, not the oracle
    head = data.frame("train").filter(pl.col("session_id") < 100)
    few = syn.estimate_process(log, sr.SessionData.from_frame(head, data.n_items), gen, 0.01)
    assert np.abs(few.chain - true.chain).max() > np.abs(est.chain - true.chain).max()
    with pytest.raises(ConfigError, match="intents"):
        syn.estimate_process(syn.SyntheticLog(log.spec, true, log.events), data.train, gen, 0.1)


def test_cli_synth_and_ceiling(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "syn"
    code, stdout, err = run_cli(["data", "synth", "media", "--out", str(out), "--sessions",
                                 "300"], capsys)  # fmt: skip
    assert code == 0, err
    assert "sessionrec prepare" in stdout and (out / "process.npz").exists()
    code, _, err = run_cli(["data", "synth", "media", "--out", str(out)], capsys)
    assert code == 2 and "already holds sessionrec output" in err and "--overwrite" in err
    prep = tmp_path / "prep"
    code, _, err = run_cli(["prepare", str(out / "log.parquet"), "--out", str(prep),
                            "--session-column", "session_id", "--min-item-support", "1",
                            "--split", "time", "--test-days", "18", "--valid-days", "18"],
                           capsys)  # fmt: skip
    assert code == 0, err
    code, stdout, err = run_cli(["data", "ceiling", str(out), str(prep)], capsys)
    assert code == 0, err
    assert "ceiling" in stdout and "recall" in stdout
