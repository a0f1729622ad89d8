"""SASRec: its training windows (every label once, with exactly its own context), the
attention that never reads the future or the padding, and a planted order learned. The model
contract (streaming = score_sessions, save/load, seeds, callbacks) runs in
tests/test_model_contract.py like every registered model's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from _helpers import session_data
from hypothesis import given, settings
from hypothesis import strategies as st

from sessionrec.errors import ConfigError
from sessionrec.models import create
from sessionrec.models._window import training_windows
from sessionrec.models.sasrec import SASRec


@settings(max_examples=60, deadline=None)
@given(
    sessions=st.lists(st.lists(st.integers(0, 6), min_size=1, max_size=23), min_size=1, max_size=6),
    length=st.integers(1, 9),
    seed=st.integers(0, 2**16),
)
def test_every_target_is_a_label_once_with_its_own_context(
    sessions: list[list[int]], length: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    targets = [[bool(rng.random() < 0.7) for _ in s] for s in sessions]
    data = session_data(sessions, n_items=7, targets=targets)
    windows, labels = training_windows(data, length)
    assert windows.shape == labels.shape and windows.shape[1:] == (length,)

    want = []  # (label, its context: the up to `length` items before it... in its window)
    for s, t in zip(sessions, targets, strict=True):
        for p in range(1, len(s)):
            if t[p]:
                want.append(s[p])
    got = []
    for w, y in zip(windows, labels, strict=True):
        real = w[w != 7]
        assert (w[: length - len(real)] == 7).all()  # left padded
        assert any(real.tolist() == s[a : a + len(real)] for s in sessions for a in range(len(s)))
        for j in np.flatnonzero(y >= 0):
            assert w[j] != 7  # a label follows a real input
            got.append(int(y[j]))
    assert sorted(got) == sorted(want)
    # inputs: each event but a session's last is an input exactly once
    assert int((windows != 7).sum()) == sum(len(s) - 1 for s in sessions)


def test_attention_reads_neither_the_future_nor_padding() -> None:
    model = create("sasrec", {"context_length": 6, "dim": 8, "n_epochs": 1, "dropout": 0.0})
    model.fit(session_data([[0, 1, 2, 3, 4], [4, 3, 2, 1]], n_items=5))
    assert isinstance(model, SASRec) and model.net is not None
    net = model.net.eval()
    with torch.no_grad():
        a = net(torch.tensor([[5, 5, 0, 1, 2, 3]]))
        b = net(torch.tensor([[5, 5, 0, 1, 2, 4]]))  # only the last item differs
        c = net(torch.tensor([[5, 0, 0, 1, 2, 3]]))  # a real item where padding was
        d = net(torch.tensor([[5, 5, 5, 5, 5, 5]]))  # an empty session: finite
    assert torch.allclose(a[0, 2:5], b[0, 2:5], atol=1e-6)  # earlier items ignore it
    assert not torch.allclose(a[0, 5], b[0, 5])
    assert not torch.allclose(a[0, 5], c[0, 5])  # the item is read, padding is not
    assert torch.isfinite(d).all() and torch.isfinite(model.score(torch.full((1, 6), 5))).all()
    # padding is not read: whatever its embedding, the real positions' outputs stay
    with torch.no_grad():
        net.item.weight[5] = torch.randn(8) * 3
        g = net(torch.tensor([[5, 5, 0, 1, 2, 3]]))
    assert torch.allclose(a[0, 2:], g[0, 2:], atol=1e-5)


def test_a_planted_second_order_rule_is_learned() -> None:
    """After (0, 1) comes 2, after (3, 1) comes 4: only a model that reads more than the last
    item gets both (a first-order Markov chain cannot)."""
    sessions = [[0, 1, 2], [3, 1, 4]] * 30
    model = create(
        "sasrec",
        {"context_length": 4, "dim": 16, "n_epochs": 40, "dropout": 0.0, "learning_rate": 0.01,
         "batch_size": 8},
    ).fit(session_data(sessions, n_items=5))  # fmt: skip
    scores = model.score_sessions([[0, 1], [3, 1]])
    assert scores[0].argmax().item() == 2 and scores[1].argmax().item() == 4


def test_bad_settings_are_named() -> None:
    with pytest.raises(ConfigError, match="heads"):
        create("sasrec", {"dim": 10, "heads": 3})
    with pytest.raises(ConfigError, match="dropout"):
        create("sasrec", {"dropout": 1.0})


@pytest.mark.parametrize("heads", [1, 2, 4])
def test_every_head_count_scores_finite_and_eval_equals_training_without_dropout(
    heads: int,
) -> None:
    """With nn.TransformerEncoderLayer, eval mode and an even number of heads took PyTorch's
    fused path, which turned the padding rows into NaN and spread them to the real ones."""
    model = create(
        "sasrec",
        {"context_length": 6, "dim": 8, "heads": heads, "blocks": 2, "n_epochs": 1,
         "dropout": 0.0},
    ).fit(session_data([[0, 1, 2, 3, 4], [4, 3, 2, 1]], n_items=5))  # fmt: skip
    assert isinstance(model, SASRec) and model.net is not None
    windows = torch.tensor([[5, 5, 5, 0, 1, 2], [5, 5, 5, 5, 5, 3], [5, 5, 5, 5, 5, 5]])
    scores = model.score(windows)
    assert torch.isfinite(scores).all()
    model.net.train()
    with torch.no_grad():
        trained = model.net.logits(model.net(windows)[:, -1])
    model.net.eval()
    assert torch.allclose(scores, trained, atol=1e-5)


@pytest.mark.parametrize("positions", ["first", "window"])
def test_streamed_logits_are_the_training_logits_at_every_prefix(
    positions: str, tmp_path: Path
) -> None:
    """Training reads each label's logits from a left-padded window cut from the session's
    end; streaming reads the last slot of the window of the prefix. With positions counted
    from the first item held, both are one function: equal logits at every prefix within the
    window, and at every window's last position beyond it. By slot they differ."""
    length = 6
    sessions = [[0, 1, 2], [3, 4, 5, 6, 0, 1, 2], [1, 3, 5, 0, 2, 4, 6, 1, 3, 5, 0, 2, 4]]
    data = session_data(sessions, n_items=7)
    model = create("sasrec", {"context_length": length, "dim": 8, "n_epochs": 3,
                              "dropout": 0.0, "positions": positions})  # fmt: skip
    model.fit(data)
    assert isinstance(model, SASRec) and model.net is not None
    same, compared = [], 0
    for sess in sessions:
        windows, labels = training_windows(session_data([sess], n_items=7), length)
        with torch.no_grad():
            trained = model.net.logits(model.net.eval()(torch.from_numpy(windows)))  # (W, L, n)
        for k in range(len(windows)):  # window k from the session's end
            last_label = len(sess) - 1 - k * length
            for q in np.flatnonzero(labels[k] >= 0):
                first_input = last_label - length  # the event index of slot 0
                if first_input > 0 and q != length - 1:
                    continue  # cut mid-session: its earlier slots read fewer items than served
                label_at = last_label - length + int(q) + 1
                assert labels[k, q] == sess[label_at]
                streamed = model.score_sessions([sess[:label_at]])[0]
                same.append(torch.allclose(streamed, trained[k, q], atol=1e-5))
                compared += 1
    assert compared >= 10
    if positions == "first":
        assert all(same)
    else:
        assert not all(same)  # e.g. the prefix [0, 1] of the first session


def test_a_folder_saved_before_positions_keeps_its_scheme(tmp_path: Path) -> None:
    import json

    from sessionrec.models import load_model

    model = create("sasrec", {"context_length": 4, "dim": 8, "n_epochs": 1, "dropout": 0.0})
    model.fit(session_data([[0, 1, 2], [2, 1, 0, 1]], n_items=3)).save(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["config"]["positions"] == "first"
    del cfg["config"]["positions"]
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    old = load_model(tmp_path / "m")
    assert isinstance(old, SASRec) and old.config.positions == "window"
