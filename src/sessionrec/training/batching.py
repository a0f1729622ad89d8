"""Session-parallel mini-batches (Hidasi et al., ICLR 2016, section 3.1.1).

B slots run sessions side by side. Sessions are taken in the order of their first event's
time; when the session in a slot ends, the slot takes the next session and its hidden state
is reset to zero. A session of n events gives n-1 (input, target) pairs, one per step.

The schedule runs to the end of the epoch: in the last steps some slots are idle (``active``
False), so every event of the training data is used exactly once as a target. The official
PyTorch code does the same (it shrinks the mini-batch to the sessions left), except with
``n_sample=0``, where it stops the epoch once fewer than two sessions are left (the other
sessions' targets are then the only negatives); ``GRU4Rec`` stops there too in that case.

The whole schedule of an epoch is computed up front as index arrays, so the training loop
does no per-session Python work.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BatchSchedule:
    """The steps of one epoch over B slots.

    Attributes:
        inputs: (T, B) int64 event index fed as input at step t in slot b, -1 when idle.
        targets: (T, B) int64 event index of the next event (the target), -1 when idle.
        reset: (T, B) bool, True where slot b starts a new session at step t (its hidden
            state is zeroed before the step).
        n_full: number of leading steps in which every slot is active; steps from
            ``n_full`` on have idle slots.
        order: (S',) the sessions (indices into the offsets) in the order they were
            scheduled; sessions with fewer than 2 events are left out (no pair).
    """

    inputs: np.ndarray
    targets: np.ndarray
    reset: np.ndarray
    n_full: int
    order: np.ndarray

    @property
    def n_steps(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def batch_size(self) -> int:
        return int(self.inputs.shape[1])

    @property
    def active(self) -> np.ndarray:
        """(T, B) bool: the slot holds a session at that step."""
        return self.inputs >= 0

    @property
    def n_pairs(self) -> int:
        return int((self.inputs >= 0).sum())


def session_order(offsets: np.ndarray, start_times: np.ndarray) -> np.ndarray:
    """Session indices sorted by the time of their first event (stable: ties keep file order)."""
    del offsets
    return np.argsort(start_times, kind="stable")


def session_parallel_schedule(
    offsets: np.ndarray, start_times: np.ndarray, batch_size: int
) -> BatchSchedule:
    """Build the session-parallel schedule of one epoch.

    Args:
        offsets: (S+1,) session s spans events ``offsets[s]:offsets[s+1]``.
        start_times: (S,) time of each session's first event; sessions are scheduled in
            this order (stable).
        batch_size: B, the number of slots.

    Returns:
        The schedule; ``inputs[t, b]`` and ``targets[t, b]`` are consecutive events of one
        session.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    offsets = np.asarray(offsets, dtype=np.int64)
    order = session_order(offsets, np.asarray(start_times))
    n_pairs = (offsets[1:] - offsets[:-1] - 1)[order]
    keep = n_pairs > 0
    order, n_pairs = order[keep], n_pairs[keep]
    n_sess = len(order)
    # Greedy list scheduling: the slot that frees first takes the next session; slots that
    # free at the same step take sessions in slot order (lower slot first).
    start_step = np.empty(n_sess, dtype=np.int64)
    slot = np.empty(n_sess, dtype=np.int64)
    first = min(batch_size, n_sess)
    start_step[:first] = 0
    slot[:first] = np.arange(first)
    heap = [(int(n_pairs[i]), i) for i in range(first)]
    heapq.heapify(heap)
    pairs = n_pairs.tolist()
    for s in range(first, n_sess):
        free_at, b = heapq.heappop(heap)
        start_step[s] = free_at
        slot[s] = b
        heapq.heappush(heap, (free_at + pairs[s], b))
    n_steps = int((start_step + n_pairs).max()) if n_sess else 0
    inputs = np.full((n_steps, batch_size), -1, dtype=np.int64)
    targets = np.full((n_steps, batch_size), -1, dtype=np.int64)
    reset = np.zeros((n_steps, batch_size), dtype=bool)
    if n_sess:
        total = int(n_pairs.sum())
        within = np.arange(total) - np.repeat(np.cumsum(n_pairs) - n_pairs, n_pairs)
        step = np.repeat(start_step, n_pairs) + within
        col = np.repeat(slot, n_pairs)
        event = np.repeat(offsets[order], n_pairs) + within
        inputs[step, col] = event
        targets[step, col] = event + 1
        reset[start_step, slot] = True
    idle = (inputs < 0).any(axis=1)
    n_full = int(np.argmax(idle)) if idle.any() else n_steps
    return BatchSchedule(inputs=inputs, targets=targets, reset=reset, n_full=n_full, order=order)
