"""min_user_events + min_item_support, iterated by the recursive filter, give a k-core."""

from __future__ import annotations

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from sessionrec import _schema as S
from sessionrec.prepare.filters import SupportFilter, filter_recursive


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(2, 5))
def test_support_rules_give_a_k_core(seed: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    n = 300
    pairs = np.unique(
        np.c_[rng.integers(0, 40, n), rng.zipf(1.6, n) % 60], axis=0
    )  # distinct (user, item) pairs, as in a ratings log
    ev = pl.DataFrame({S.USER: pairs[:, 0], S.SESSION: pairs[:, 0], S.ITEM: pairs[:, 1]})
    rules = SupportFilter(
        min_session_length=None, min_item_support=k, min_user_events=k, max_session_length=None
    )
    core, _ = filter_recursive(ev, rules)
    if core.height:
        assert core.group_by(S.USER).len()["len"].min() >= k
        assert core.group_by(S.ITEM).len()["len"].min() >= k
    # Maximal: the k-core computed by plain peeling (a reference loop) keeps the same rows.
    users, items = pairs[:, 0].copy(), pairs[:, 1].copy()
    keep = np.ones(len(pairs), dtype=bool)
    while True:
        cu = np.bincount(users[keep], minlength=40)
        ci = np.bincount(items[keep], minlength=60)
        drop = keep & ((cu[users] < k) | (ci[items] < k))
        if not drop.any():
            break
        keep &= ~drop
    assert core.height == int(keep.sum())
