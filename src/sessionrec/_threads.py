"""OpenMP's wait policy and torch's threads for the many small tensor ops of evaluation.

torch's OpenMP threads spin while they wait for work. On a machine whose cores are busy with
other jobs, two spinning threads wait for a core at every small op, and evaluation runs over
ten times slower (BENCHMARKS.md, "Evaluation speed" and "Python API"). OpenMP reads
``OMP_WAIT_POLICY`` once, when torch loads it, so:

- ``import sessionrec`` before torch sets ``OMP_WAIT_POLICY=PASSIVE`` (idle threads sleep)
  unless the caller's environment already chose a policy;
- when torch was imported first and no policy was chosen, threads may spin, and ``evaluate``
  runs its loop on one torch thread (as fast as any on ML-100K, and never the ten-fold
  slowdown), restoring the caller's thread count afterwards.

This is the one place where the library looks at the environment: the variable has to be set
before torch starts, which no argument could do.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

#: Whether OpenMP may spin: torch was loaded before sessionrec with no policy chosen.
_SPINNING = False


def quiet_openmp() -> None:
    """Let idle OpenMP threads sleep, if torch is not loaded yet and no policy was chosen."""
    global _SPINNING
    if "OMP_WAIT_POLICY" in os.environ:
        return
    if "torch" in sys.modules:
        _SPINNING = True
        return
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


def openmp_may_spin() -> bool:
    """True when torch's OpenMP threads were started with the spinning default."""
    return _SPINNING


@contextmanager
def calm_threads() -> Iterator[None]:
    """One torch thread inside the block when OpenMP may spin; otherwise nothing changes.

    Evaluation and training run inside it: with passive waits (the CLI, or sessionrec
    imported before torch) they keep every thread, which the large products of training use
    when the cores are free (BENCHMARKS.md, "GRU4Rec on one and two threads")."""
    if not _SPINNING:
        yield
        return
    import torch

    before = torch.get_num_threads()
    if before > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if before > 1:
            torch.set_num_threads(before)


#: The name evaluation used first.
evaluation_threads = calm_threads
