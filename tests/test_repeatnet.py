"""RepeatNet: its scores are log-probabilities, training and scoring are one function, padding
is a no-op, and whether sessions repeat their items is learned from the log. The model contract
(streaming = score_sessions, save/load, seeds, callbacks, a planted order) runs in
tests/test_model_contract.py like every registered model's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _helpers import session_data

from sessionrec.errors import ConfigError
from sessionrec.models import create
from sessionrec.models.repeatnet import RepeatNet

SMALL = {"context_length": 6, "dim": 8, "n_epochs": 2, "dropout": 0.0, "batch_size": 4}


def small(sessions: list[list[int]], n_items: int, **kw: object) -> RepeatNet:
    model = create("repeatnet", {**SMALL, **kw}).fit(session_data(sessions, n_items=n_items))
    assert isinstance(model, RepeatNet)
    return model


@pytest.mark.parametrize("repeat_mode", [True, False])
def test_scores_are_log_probabilities_and_finite_at_the_edges(repeat_mode: bool) -> None:
    model = small([[0, 1, 2, 0, 3], [4, 3, 2, 1]], n_items=5, repeat_mode=repeat_mode)
    windows = torch.tensor(
        [
            [5, 5, 5, 0, 1, 2],
            [5, 5, 0, 1, 0, 1],  # repeats
            [5, 5, 5, 5, 5, 5],  # nothing yet
            [0, 1, 2, 3, 4, 0],  # every item of the catalogue in the session
        ]
    )
    s = model.score(windows)
    assert torch.isfinite(s).all()
    torch.testing.assert_close(s.exp().sum(-1), torch.ones(4), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("repeat_mode", [True, False])
def test_the_loss_is_minus_the_score_of_the_label(repeat_mode: bool) -> None:
    """Training maximises the same log P(i) that ``score`` ranks by, at any position."""
    model = small([[0, 1, 2, 0, 3], [4, 3, 2, 1]], n_items=5, repeat_mode=repeat_mode)
    window = torch.tensor([[5, 0, 1, 2, 0, 3]])
    for at, label in [(2, 2), (3, 0), (4, 1), (5, 4)]:  # a repeat (0 after 0 1 2) and not
        labels = torch.full((1, 6), -1)
        labels[0, at] = label
        assert model.net is not None
        model.net.eval()
        with torch.no_grad():
            loss, n = model._loss(window, labels)
        prefix = window[0, : at + 1].tolist()
        padded = torch.tensor([[5] * (6 - len(prefix)) + prefix])
        assert n == 1
        torch.testing.assert_close(loss, -model.score(padded)[0, label], rtol=1e-5, atol=1e-5)


def test_padding_leaves_the_gru_state_at_zero() -> None:
    model = small([[0, 1, 2, 3], [3, 2, 1]], n_items=4)
    assert model.net is not None
    with torch.no_grad():
        model.net.item.weight[:4] += 1.0  # whatever the items' embeddings
        h, _ = model.net.gru(model.net.item(torch.tensor([[4, 4, 4, 0, 1, 2]])))
    assert torch.equal(h[0, :3], torch.zeros(3, 8))
    assert (h[0, 3:].abs() > 0).any()


def _log_of(kind: str, n_sessions: int, seed: int) -> list[list[int]]:
    """Sessions over 20 items; 'explore': never an item twice; 'repeat': each event after the
    third repeats one of the session's first three."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_sessions):
        head = rng.choice(20, size=3, replace=False).tolist()
        if kind == "explore":
            out.append(
                head + rng.choice([i for i in range(20) if i not in head], 3, False).tolist()
            )
        else:
            out.append(head + rng.choice(head, size=3).tolist())
    return out


@pytest.mark.parametrize("kind", ["explore", "repeat"])
def test_whether_sessions_repeat_is_learned_from_the_log(kind: str) -> None:
    model = small(_log_of(kind, 200, seed=1), n_items=20, n_epochs=8, learning_rate=0.01)
    prefixes = [s[:4] for s in _log_of(kind, 20, seed=2)]
    scores = model.score_sessions(prefixes)
    for row, prefix in zip(scores, prefixes, strict=True):
        seen = torch.zeros(20, dtype=torch.bool)
        seen[prefix] = True
        if kind == "explore":  # the session's items ranked below every other
            assert row[seen].max() < row[~seen].min()
        else:  # and above every other
            assert row[seen].min() > row[~seen].max()


def test_without_the_repeat_mode_the_session_items_are_not_set_apart() -> None:
    """The ablation (``repeat_mode=False``) ranks by one softmax over every item: on a log
    that never repeats it learns only what its attention can, and no session item is forced
    below the others by construction."""
    full = small(_log_of("explore", 200, seed=1), n_items=20, n_epochs=8, learning_rate=0.01)
    ablated = small(_log_of("explore", 200, seed=1), n_items=20, n_epochs=8,
                    learning_rate=0.01, repeat_mode=False)  # fmt: skip
    prefix = [[3, 7, 11]]
    a, b = full.score_sessions(prefix)[0], ablated.score_sessions(prefix)[0]
    seen = torch.zeros(20, dtype=torch.bool)
    seen[prefix[0]] = True
    assert a[seen].max() < a[~seen].min()  # the repeat mode learned P(repeat) ~ 0
    assert b[seen].min() > -50  # the ablation: never the explore decoder's mask (-1e9)
    torch.testing.assert_close(b.exp().sum(), torch.tensor(1.0))


def test_bad_settings_are_named() -> None:
    with pytest.raises(ConfigError, match="dropout"):
        create("repeatnet", {"dropout": 1.0})
    with pytest.raises(ConfigError, match="context_length"):
        create("repeatnet", {"context_length": 0})
