"""The queue of cells: an Optuna study whose trials are cells.

Each cell not yet finished is enqueued as a trial (``enqueue_trial``, the cell's key in its user
attributes); every worker, on this machine or another, runs ``study.optimize`` on the same
storage, and Optuna hands each waiting trial to exactly one of them. The storage is the one
``sessionrec tune`` uses: a SQLite file in the study folder by default, PostgreSQL (or any
Optuna RDB URL) for workers on many machines, which then share the study folder on a shared
file system (the cache of prepared data, models and evaluations lives there).

A worker that dies leaves its trial RUNNING: its heartbeat stops, and after the grace period
any live worker marks it failed and puts a copy back in the queue (Optuna's
``RetryHeartbeatStaleTrialCallback``); a worker started on the same machine finds the dead process at
once and re-queues its cell without waiting.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import warnings
from collections.abc import Callable
from typing import Any

from sessionrec.errors import ConfigError
from sessionrec.study.compute import Context, Store, cell_done, run_cell
from sessionrec.study.plan import Plan, digest

log = logging.getLogger(__name__)

INSTALL_HINT = 'running a study on several workers needs Optuna: pip install -e ".[tune]"'


def _optuna() -> Any:
    from sessionrec.tuning.search import _optuna as optuna_or_hint

    return optuna_or_hint(INSTALL_HINT)


def open_queue_storage(url: str) -> Any:
    """An RDB storage with heartbeats, re-queueing the trials of workers that died."""
    optuna = _optuna()
    from sessionrec.tuning.search import safe_url, serialise_sqlite

    kwargs: dict[str, Any] = (
        {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    )
    with warnings.catch_warnings():  # the retry callback is flagged experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry: dict[str, Any] = (
            {"heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(3)}
            if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback")  # optuna >= 4.9
            else {"failed_trial_callback": optuna.storages.RetryFailedTrialCallback(max_retry=3)}
        )
    for attempt in range(5):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = optuna.storages.RDBStorage(
                    url, engine_kwargs=kwargs, heartbeat_interval=10, grace_period=60, **retry
                )
            if url.startswith("sqlite"):
                serialise_sqlite(storage.engine)  # one worker pops a queued cell, not two
            return storage
        except ImportError as exc:
            raise ConfigError(
                f"storage {safe_url(url)} needs a database driver ({exc}); {INSTALL_HINT}"
            ) from None
        except Exception as exc:  # workers starting together race to create the tables
            racing = ("already exists", "UNIQUE constraint", "duplicate key", "locked")
            if any(r in str(exc) for r in racing) and attempt < 4:
                time.sleep(0.5 + attempt)
                continue
            raise ConfigError(
                f"cannot open storage {safe_url(url)}: {str(exc).splitlines()[0]}"
            ) from None
    raise AssertionError("unreachable")


def study_name(plan: Plan) -> str:
    """One queue per set of cells (a changed spec is a new queue; the cache carries over)."""
    return "experiment-" + digest(sorted(c.key for c in plan.cells))[:16]


def _host() -> str:
    return socket.gethostname()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def enqueue(plan: Plan, store: Store, storage: Any) -> Any:
    """Create (or open) the plan's study and queue every unfinished cell not already waiting
    or running on a live worker. Returns the study."""
    optuna = _optuna()
    st = optuna.create_study(
        study_name=study_name(plan), storage=storage, load_if_exists=True, direction="maximize"
    )
    states = optuna.trial.TrialState
    queued: set[str] = set()
    for t in st.get_trials(deepcopy=False, states=(states.WAITING, states.RUNNING)):
        cell = t.user_attrs.get("cell")
        pid, host = t.user_attrs.get("pid"), t.user_attrs.get("host")
        if t.state == states.RUNNING and host == _host() and pid and not _alive(int(pid)):
            st.tell(t.number, state=states.FAIL)  # its worker died on this machine
            continue
        queued.add(cell)
    for cell in plan.cells:
        if cell.key not in queued and not cell_done(store, cell):
            st.enqueue_trial({}, user_attrs={"cell": cell.key, "label": cell.describe()})
            queued.add(cell.key)
    return st


def _earlier_twin(trial: Any, key: str, states: Any) -> int | None:
    """The number of an earlier trial of the same cell that is running now, if any."""
    for t in trial.study.get_trials(deepcopy=False, states=(states.RUNNING,)):
        if t.number < trial.number and t.user_attrs.get("cell") == key:
            return int(t.number)
    return None


def work(
    ctx: Context,
    storage: Any,
    on_cell: Callable[[Any, float, bool], None] | None = None,
    wait: bool = True,
) -> None:
    """Run queued cells until none waits; with ``wait``, then wait for the cells other
    workers are running (taking over those whose worker died) until every cell is done."""
    optuna = _optuna()
    plan, store = ctx.plan, ctx.store
    st = enqueue(plan, store, storage)
    by_key = {c.key: c for c in plan.cells}
    states = optuna.trial.TrialState

    def objective(trial: Any) -> float:
        key = trial.user_attrs.get("cell")
        if key is None:  # the queue ran empty between the check and the ask
            trial.study.stop()
            raise optuna.TrialPruned("no cell left in the queue")
        trial.set_user_attr("pid", os.getpid())
        trial.set_user_attr("host", _host())
        twin = _earlier_twin(trial, key, states)
        if twin is not None:  # workers starting together both queued it
            raise optuna.TrialPruned(f"cell {key} is run by trial {twin}")
        cell = by_key[key]
        fresh = not cell_done(store, cell)
        t0 = time.perf_counter()
        value = run_cell(ctx, cell)
        if on_cell is not None:
            on_cell(cell, time.perf_counter() - t0, fresh)
        return value

    def stop_when_empty(study: Any, _: Any) -> None:
        if not study.get_trials(deepcopy=False, states=(states.WAITING,)):
            study.stop()

    while True:
        if st.get_trials(deepcopy=False, states=(states.WAITING,)):
            st.optimize(objective, callbacks=[stop_when_empty], gc_after_trial=False)
            continue
        if not wait or all(cell_done(store, c) for c in plan.cells):
            return
        running = st.get_trials(deepcopy=False, states=(states.RUNNING,))
        if not running:
            st = enqueue(plan, store, storage)  # failed elsewhere: try them here
            if not st.get_trials(deepcopy=False, states=(states.WAITING,)):
                return
            continue
        optuna.storages.fail_stale_trials(st)  # dead workers' cells go back in the queue
        time.sleep(2.0)


__all__ = ["enqueue", "open_queue_storage", "study_name", "work"]
