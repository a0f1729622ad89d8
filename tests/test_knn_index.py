"""Session kNN through the item → recent-sessions index (VMIS-kNN) against the exhaustive path.

The index path (``sample_size`` = m > 0) scores only the m most recent sessions sharing an item
with the current session; ``sample_size=0`` scores every training session as a dense block. With
m at least the number of training sessions both must give the same scores bit for bit (with the
exact popularity tie-break, hence the same ranks), for every similarity and weighting; with a
small m the index must equal the dense block cut to the m most recent candidates.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _helpers import session_data

from sessionrec.evaluation.metrics import ranks
from sessionrec.models import create, load_model
from sessionrec.models.base import SessionModel
from sessionrec.models.sknn import DEFAULT_SAMPLE_SIZE, KNNState

N_ITEMS = 60


def skewed_sessions(n: int, seed: int, max_len: int = 12) -> list[list[int]]:
    """Sessions over a Zipf-like catalogue with repeats, so that lists and ties are long."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, N_ITEMS + 1) ** 1.1
    p /= p.sum()
    return [
        [int(i) for i in rng.choice(N_ITEMS, size=int(rng.integers(1, max_len)), p=p)]
        for _ in range(n)
    ]


TRAIN = skewed_sessions(600, seed=3)
QUERIES = [*skewed_sessions(80, seed=4, max_len=20), [N_ITEMS - 1], [0, 0, 0]]

CONFIGS = [
    ("sknn", {}),
    ("sknn", {"similarity": "dot", "k": 7}),
    ("vsknn", {}),
    ("vsknn", {"weighting": "linear", "weighting_score": "quadratic", "k": 20}),
    ("vsknn", {"weighting": "quadratic", "similarity": "dot", "idf_counts": "events"}),
    ("vsknn", {"weighting": "same", "weighting_score": "same", "idf_weighting": 0.0, "k": 3}),
    ("vsknn", {"preset": "session-rec"}),
]


def streamed(sessions: list[list[int]], width: int = 32) -> KNNState:
    """The streaming state after each session's events (``step`` pads to a growing width)."""
    items = torch.full((len(sessions), width), -1, dtype=torch.long)
    for b, s in enumerate(sessions):
        items[b, : len(s)] = torch.tensor(s)
    return KNNState(items, torch.tensor([len(s) for s in sessions]))


@pytest.mark.parametrize(("name", "params"), CONFIGS)
def test_index_covering_every_session_equals_exhaustive(name: str, params: dict) -> None:
    data = session_data(TRAIN, N_ITEMS)
    exhaustive = create(name, {**params, "sample_size": 0}).fit(data)
    indexed = create(name, {**params, "sample_size": len(TRAIN)}).fit(data)
    assert exhaustive.recent_index is None and indexed.recent_index is not None
    want = exhaustive.score_sessions(QUERIES)
    got = indexed.score_sessions(QUERIES)
    assert want.dtype == torch.float64  # the exact popularity tie-break is on
    assert torch.equal(got, want)
    targets = torch.tensor([(q[0] * 7 + 3) % N_ITEMS for q in QUERIES])
    assert torch.equal(ranks(got, targets), ranks(want, targets))
    # the evaluator's and the server's path: a subset of slots of a streamed state
    state = streamed(QUERIES)
    rows = torch.tensor([0, 5, 17, len(QUERIES) - 1])
    assert torch.equal(indexed.score_rows(state, rows), want[rows])
    assert torch.equal(indexed.score_rows(state, rows[1:2]), want[rows[1:2]])


@pytest.mark.parametrize(("name", "params"), CONFIGS)
@pytest.mark.parametrize("m", [1, 4, 37])
def test_small_index_equals_the_dense_block_cut_by_recency(name: str, params: dict, m: int) -> None:
    model = create(name, {**params, "sample_size": m}).fit(session_data(TRAIN, N_ITEMS))
    state = streamed(QUERIES)
    got = model._score(state.items, state.lengths)
    want = model._score(state.items, state.lengths, exhaustive=True)
    assert torch.equal(got, want)
    # and m really cuts: fewer candidates than every session changes some scores
    full = create(name, {**params, "sample_size": 0}).fit(session_data(TRAIN, N_ITEMS))
    assert not torch.equal(got, full.score_sessions(QUERIES))


def test_index_holds_the_m_most_recent_sessions_of_each_item() -> None:
    model = create("sknn", {"sample_size": 5}).fit(session_data(TRAIN, N_ITEMS))
    index, sessions = model.recent_index, model.item_sessions
    assert index is not None and sessions is not None
    for item in (0, 1, 30, N_ITEMS - 1):
        # session index 0 is the most recent (the last of TRAIN)
        want = sorted(len(TRAIN) - 1 - s for s, x in enumerate(TRAIN) if item in x)[:5]
        got = index.indices[index.indptr[item] : index.indptr[item + 1]].tolist()
        assert got == want
    assert int(index.indptr.diff().max()) == 5 and index.n_cols == len(TRAIN)


def test_default_sample_size_and_the_index_after_load(tmp_path) -> None:
    """The index is derived, not saved: a loaded folder rebuilds it and scores the same; a
    folder saved exhaustive (sample_size 0, as every folder before the index) stays so."""
    data = session_data(TRAIN, N_ITEMS)
    for name, m in (("vsknn", None), ("sknn", 3), ("vsknn", 0)):
        params = {} if m is None else {"sample_size": m}
        model = create(name, params).fit(data)
        assert model.config.sample_size == ("auto" if m is None else m)
        # auto on a small log: every session is a candidate, through the index
        assert model.sample_m == (len(TRAIN) if m is None else m)
        model.save(tmp_path / f"{name}{m}")
        back = load_model(tmp_path / f"{name}{m}")
        assert back.config == model.config
        assert (back.recent_index is None) == (m == 0)
        assert torch.equal(back.score_sessions(QUERIES), model.score_sessions(QUERIES))


@pytest.mark.parametrize(("name", "params"), CONFIGS)
@pytest.mark.parametrize("m", [4, DEFAULT_SAMPLE_SIZE])
@pytest.mark.parametrize("tiebreak", [True, False])
@pytest.mark.parametrize("dense", [0, 10**9], ids=["sorted", "dense"])
def test_numpy_index_equals_the_torch_index(
    name: str, params: dict, m: int, tiebreak: bool, dense: int, monkeypatch
) -> None:
    """On the CPU the index is read with numpy; the torch code (other devices) must give the
    same scores bit for bit, for whole blocks, single rows and an empty session, whether the
    numpy path groups keys by a sort or densely (``_DENSE_GROUPING``: 0 always sorts, 10⁹
    always bins)."""
    monkeypatch.setattr("sessionrec.models.sknn._DENSE_GROUPING", dense)
    params = {**params, "sample_size": m, "tiebreak": tiebreak}
    model = create(name, params).fit(session_data(TRAIN, N_ITEMS))
    state = streamed([*QUERIES, []])
    got = model._score(state.items, state.lengths)
    want = model._score(state.items, state.lengths, torch_index=True)
    assert got.dtype == want.dtype == (torch.float64 if tiebreak else torch.float32)
    assert torch.equal(got, want)
    for b in (0, 3, len(QUERIES)):
        one = model._score(state.items[b : b + 1], state.lengths[b : b + 1])
        assert torch.equal(one, want[b : b + 1])


@pytest.mark.parametrize(("name", "params"), CONFIGS)
@pytest.mark.parametrize("tiebreak", [True, False])
def test_top_k_from_candidates_equals_the_full_ranking(
    name: str, params: dict, tiebreak: bool
) -> None:
    """The served top-k ranks only the neighbours' items and the head of the popularity
    background; it must equal the top-k of the full score vector, exclusions included."""
    model = create(name, {**params, "sample_size": 37, "tiebreak": tiebreak})
    model.fit(session_data(TRAIN, N_ITEMS))
    state = streamed([*QUERIES[:12], [N_ITEMS - 1], []])
    for row in range(state.items.shape[0]):
        for k in (1, 5, 20, N_ITEMS, N_ITEMS + 5):
            for exclude in (None, [0], list(range(0, N_ITEMS, 2)), list(range(N_ITEMS))):
                got = model.top_k(state, row, k, exclude)
                want = SessionModel.top_k(model, state, row, k, exclude)
                assert got == want, (row, k, exclude)
                n_left = N_ITEMS - len(set(exclude or []))
                assert len(got[0]) == min(k, n_left)


@pytest.mark.parametrize("name", ["sknn", "vsknn"])
def test_auto_is_exhaustive_bit_for_bit_on_a_small_log(name: str) -> None:
    """The default costs no accuracy where exhaustive search is affordable: the same scores
    as the dense path over every session (a fixed m = 3 does not give them here)."""
    data = session_data(TRAIN, N_ITEMS)
    auto = create(name).fit(data)
    exhaustive = create(name, {"sample_size": 0}).fit(data)
    assert auto.recent_index is not None  # served through the index
    assert torch.equal(auto.score_sessions(QUERIES), exhaustive.score_sessions(QUERIES))
    small = create(name, {"sample_size": 3}).fit(data)
    assert not torch.equal(small.score_sessions(QUERIES), exhaustive.score_sessions(QUERIES))


def test_auto_samples_the_most_recent_on_a_log_with_a_very_popular_item(monkeypatch) -> None:
    from sessionrec.models import sknn

    monkeypatch.setattr(sknn, "AUTO_EXACT_LIST", 2)  # TRAIN's popular items are in > 2 sessions
    model = create("vsknn").fit(session_data(TRAIN, N_ITEMS))
    assert model.sample_m == DEFAULT_SAMPLE_SIZE
    assert "sample_size auto" in model.fit_warnings[0]  # sampling is said, not hidden
    monkeypatch.undo()
    assert sknn.effective_sample_size("auto", 10**6, 10**5) == DEFAULT_SAMPLE_SIZE
    assert sknn.effective_sample_size("auto", 1_000, 800) == 1_000
    assert sknn.effective_sample_size(7, 1_000, 800) == 7


def test_a_sampled_auto_is_a_recorded_warning_of_the_run(tmp_path, monkeypatch) -> None:
    import json

    from conftest import write_log

    import sessionrec as sr
    from sessionrec.models import sknn

    rows = [(u, (u * 3 + j) % 7 + 1, 1000 * u + 60 * j) for u in range(40) for j in range(4)]
    data = sr.prepare(write_log(tmp_path / "log.csv", rows), tmp_path / "p", session="user",
                      split="random", min_item_support=1)  # fmt: skip
    sr.train("vsknn", data, tmp_path / "exact", progress=False)
    done = json.loads((tmp_path / "exact" / "training.json").read_text())
    assert not any("sample_size" in w for w in done["warnings"])
    monkeypatch.setattr(sknn, "AUTO_EXACT_LIST", 2)
    monkeypatch.setattr(sknn, "DEFAULT_SAMPLE_SIZE", 3)  # fewer than the sessions: sampled
    sr.train("vsknn", data, tmp_path / "sampled", progress=False)
    done = json.loads((tmp_path / "sampled" / "training.json").read_text())
    assert any("sample_size auto" in w for w in done["warnings"])
