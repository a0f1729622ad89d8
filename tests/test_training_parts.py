"""Session-parallel batches, negative sampling, losses and the optimiser, against brute force
and hand computations on tiny inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sessionrec.training.batching import session_parallel_schedule
from sessionrec.training.losses import bpr_max, cross_entropy, top1_max
from sessionrec.training.optim import AdagradNesterov, Adam
from sessionrec.training.sampling import NegativeSampler, sampling_probabilities


def brute_force_schedule(lengths: list[int], starts: list[int], B: int) -> list[list[tuple]]:
    """Step by step, slot by slot: the definition of session-parallel mini-batches."""
    offsets = np.r_[0, np.cumsum(lengths)]
    queue = [s for s in sorted(range(len(lengths)), key=lambda s: (starts[s], s)) if lengths[s] > 1]
    slots: list[list[int] | None] = [None] * B  # [session, position]
    steps = []
    while True:
        row = []
        for b in range(B):
            new = False
            if slots[b] is None or slots[b][1] + 1 >= lengths[slots[b][0]]:
                slots[b] = [queue.pop(0), 0] if queue else None
                new = slots[b] is not None
            if slots[b] is None:
                row.append((-1, -1, False))
                continue
            s, i = slots[b]
            row.append((offsets[s] + i, offsets[s] + i + 1, new))
            slots[b][1] += 1
        if all(r[0] < 0 for r in row):
            return steps
        steps.append(row)


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 7), min_size=0, max_size=14),
    B=st.integers(1, 5),
    data=st.data(),
)
def test_schedule_equals_brute_force(lengths: list[int], B: int, data: st.DataObject) -> None:
    starts = data.draw(st.lists(st.integers(0, 5), min_size=len(lengths), max_size=len(lengths)))
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    sched = session_parallel_schedule(offsets, np.array(starts, dtype=np.int64), B)
    ref = brute_force_schedule(lengths, starts, B)
    assert sched.n_steps == len(ref)
    for t, row in enumerate(ref):
        assert sched.inputs[t].tolist() == [r[0] for r in row]
        assert sched.targets[t].tolist() == [r[1] for r in row]
        assert sched.reset[t].tolist() == [r[2] for r in row]
    # every event after a session's first is a target exactly once, its predecessor the input
    n_events = int(offsets[-1])
    firsts = set(offsets[:-1].tolist())
    got = sorted(sched.targets[sched.targets >= 0].tolist())
    assert got == [e for e in range(n_events) if e not in firsts]
    assert np.all(sched.targets[sched.active] == sched.inputs[sched.active] + 1)
    idle = ~sched.active.all(axis=1)
    assert not idle[: sched.n_full].any() and idle[sched.n_full :].all()


def test_schedule_small_hand_case() -> None:
    # sessions (by first-event time): s1 [3 events] starts first, then s0 [2], then s2 [4]
    offsets = np.array([0, 2, 5, 9])
    sched = session_parallel_schedule(offsets, np.array([5, 1, 9]), batch_size=2)
    assert sched.inputs.tolist() == [[2, 0], [3, 5], [-1, 6], [-1, 7]]
    assert sched.targets.tolist() == [[3, 1], [4, 6], [-1, 7], [-1, 8]]
    assert sched.reset.tolist() == [[True, True], [False, True], [False, False], [False, False]]
    assert sched.n_full == 2
    assert sched.order.tolist() == [1, 0, 2]


def test_sampler_follows_popularity_power() -> None:
    counts = np.array([1, 4, 9, 0, 16])
    probs = sampling_probabilities(counts, 0.5)
    np.testing.assert_allclose(probs, np.array([1, 2, 3, 0, 4]) / 10)
    sampler = NegativeSampler(counts, 0.5, n_sample=500, seed=3, buffer_size=20_000)
    draws = torch.cat([sampler.next() for _ in range(200)]).numpy()  # refills 5 times
    freq = np.bincount(draws, minlength=5) / len(draws)
    np.testing.assert_allclose(freq, probs, atol=0.01)
    assert (draws != 3).all()
    again = NegativeSampler(counts, 0.5, n_sample=500, seed=3, buffer_size=20_000)
    assert torch.equal(again.next(), NegativeSampler(counts, 0.5, 500, seed=3).next()[:500])
    uniform = sampling_probabilities(counts, 0.0)
    np.testing.assert_allclose(uniform, np.full(5, 0.2))


SCORES = np.array([[1.0, -0.5, 0.3, 2.0], [0.2, 0.1, -1.0, 0.0]])
POS = np.array([0, 1])


def _np_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_cross_entropy_by_hand() -> None:
    s, pos = torch.tensor(SCORES), torch.tensor(POS)
    ref = np.mean([-np.log(_np_softmax(SCORES[i])[POS[i]]) for i in range(2)])
    assert float(cross_entropy(s, pos)) == pytest.approx(ref)
    logq = np.log(np.array([0.1, 0.2, 0.3, 0.4]))
    ref_q = np.mean([-np.log(_np_softmax(SCORES[i] - logq)[POS[i]]) for i in range(2)])
    assert float(cross_entropy(s, pos, torch.tensor(logq))) == pytest.approx(ref_q)


def test_bpr_max_and_top1_max_by_hand() -> None:
    s, pos = torch.tensor(SCORES), torch.tensor(POS)
    bpr, top1 = [], []
    for i in range(2):
        neg = [j for j in range(4) if j != POS[i]]
        w = _np_softmax(SCORES[i, neg])
        r = SCORES[i, POS[i]]
        hit = sum(wj * _sig(r - SCORES[i, j]) for wj, j in zip(w, neg, strict=True))
        reg = sum(wj * SCORES[i, j] ** 2 for wj, j in zip(w, neg, strict=True))
        bpr.append(-math.log(hit) + 1.5 * reg)
        top1.append(
            sum(
                wj * (_sig(SCORES[i, j] - r) + _sig(SCORES[i, j] ** 2))
                for wj, j in zip(w, neg, strict=True)
            )
        )
    assert float(bpr_max(s, pos, bpreg=1.5)) == pytest.approx(np.mean(bpr))
    assert float(top1_max(s, pos)) == pytest.approx(np.mean(top1))


def test_adagrad_nesterov_step_by_hand() -> None:
    lr, mu, eps = 0.1, 0.5, 1e-6
    p = torch.tensor([1.0, -2.0])
    opt = AdagradNesterov({"w": p}, lr=lr, momentum=mu, eps=eps)
    acc, vel, ref = np.zeros(2), np.zeros(2), np.array([1.0, -2.0])
    for g in ([0.5, -1.0], [0.25, 2.0]):
        opt.step_dense(["w"], [torch.tensor(g)])
        acc += np.square(g)
        scaled = np.array(g) / np.sqrt(acc + eps)
        vel = mu * vel - lr * scaled
        ref = ref + mu * vel - lr * scaled
    np.testing.assert_allclose(p.numpy(), ref, rtol=1e-6)
    # row updates touch only the rows given and agree with the dense formula on them
    table = torch.ones(4, 2)
    rows_opt = AdagradNesterov({"t": table}, lr=lr, momentum=mu, eps=eps)
    rows_opt.step_rows("t", torch.tensor([1, 3]), torch.tensor([[0.5, -1.0], [0.5, -1.0]]))
    first = 1 + mu * (-lr * np.array([0.5, -1.0]) / np.sqrt(np.array([0.25, 1.0]) + eps))
    first -= lr * np.array([0.5, -1.0]) / np.sqrt(np.array([0.25, 1.0]) + eps)
    np.testing.assert_allclose(table[1].numpy(), first, rtol=1e-6)
    np.testing.assert_allclose(table[3].numpy(), first, rtol=1e-6)
    assert torch.equal(table[0], torch.ones(2)) and torch.equal(table[2], torch.ones(2))


def test_adam_matches_torch() -> None:
    w0 = torch.tensor([0.5, -1.5, 2.0])
    mine, ref = w0.clone(), w0.clone().requires_grad_()
    opt = Adam({"w": mine}, lr=0.01)
    topt = torch.optim.Adam([ref], lr=0.01)
    for g in ([0.1, -0.2, 0.3], [1.0, 0.5, -0.5], [0.0, 0.1, 0.1]):
        opt.begin_step()
        opt.step_dense(["w"], [torch.tensor(g)])
        ref.grad = torch.tensor(g)
        topt.step()
    torch.testing.assert_close(mine, ref.detach())


@settings(max_examples=40, deadline=None)
@given(
    counts=st.lists(st.integers(0, 1000), min_size=1, max_size=300).filter(lambda c: sum(c) > 0),
    alpha=st.sampled_from([0.0, 0.4, 1.0]),
    seed=st.integers(0, 2**31),
)
def test_sampler_draws_are_the_inverse_cdf(counts: list[int], alpha: float, seed: int) -> None:
    """The guide-table lookup returns what a binary search of the CDF returns, draw for draw
    (zero-probability items included: never drawn unless alpha is 0)."""
    sampler = NegativeSampler(np.array(counts), alpha, n_sample=10, seed=seed)
    u = np.random.default_rng(seed).random(70_000)  # more than one lookup chunk
    expected = np.searchsorted(sampler._cdf, u, side="right")
    assert np.array_equal(sampler.draw(70_000), expected)
    if alpha > 0:
        assert not np.isin(expected, np.flatnonzero(np.array(counts) == 0)).any()


def test_sampler_lookup_holds_at_cdf_steps_and_bucket_edges() -> None:
    counts = np.array([5, 0, 1, 1, 0, 300, 2, 0, 0, 7])
    sampler = NegativeSampler(counts, 1.0, n_sample=4, seed=0)
    edges = np.arange(sampler._buckets) / sampler._buckets
    u = np.concatenate([sampler._cdf[:-1], edges])
    u = np.concatenate([u, np.nextafter(u, 0.0), np.nextafter(u, 1.0)])
    u = u[(u >= 0) & (u < 1)]

    class Fixed:
        def random(self, n: int) -> np.ndarray:
            assert n == len(u)
            return u

    sampler._rng = Fixed()  # type: ignore[assignment]
    assert np.array_equal(sampler.draw(len(u)), np.searchsorted(sampler._cdf, u, side="right"))


def test_adagrad_state_round_trips_bit_for_bit_and_reads_older_checkpoints() -> None:
    """The accumulator holds acc + eps (one pass fewer a step): its state saves as held, so a
    resumed run repeats an uninterrupted one exactly, and an older checkpoint's plain "acc"
    is read with eps added."""
    gen = torch.Generator().manual_seed(0)
    params = {"w": torch.randn(5, 3, generator=gen)}
    opt = AdagradNesterov(params, lr=0.1, momentum=0.5, eps=1e-6)
    for _ in range(3):
        opt.step_dense(["w"], [torch.randn(5, 3, generator=gen)])
        opt.step_rows("w", torch.tensor([4, 1]), torch.randn(2, 3, generator=gen))
    saved = {k: v.clone() for k, v in opt.state_dict().items()}
    assert "w/acc_eps" in saved and "w/acc" not in saved
    again = AdagradNesterov({"w": params["w"].clone()}, lr=0.1, momentum=0.5, eps=1e-6)
    again.load_state_dict(saved)
    assert torch.equal(again.state["w"]["acc"], opt.state["w"]["acc"])
    assert torch.equal(again.state["w"]["vel"], opt.state["w"]["vel"])
    older = {("w/acc" if k == "w/acc_eps" else k): v for k, v in saved.items()}
    older["w/acc"] = older["w/acc"] - 1e-6
    third = AdagradNesterov({"w": params["w"].clone()}, lr=0.1, momentum=0.5, eps=1e-6)
    third.load_state_dict(older)
    torch.testing.assert_close(third.state["w"]["acc"], opt.state["w"]["acc"])
