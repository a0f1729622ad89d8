"""Studies: one spec file, many session definitions × models × settings × seeds × slices.

``experiment(spec, out)`` expands the spec into cells (``sessionrec.study.plan``), computes
each cell's prepared data, model and evaluations once (``sessionrec.study.compute``: a
content-addressed cache in ``out/cache``), on one process, on ``workers`` local processes or on
many machines through an Optuna study used as the queue of cells (``sessionrec.study.queue``),
and writes ``out/results.json``, ``out/report.md`` and ``out/report.html``
(``sessionrec.study.report``). See docs/experiments.md.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sessionrec._io import check_output, write_marker, written_by
from sessionrec.errors import ConfigError, DataError
from sessionrec.study.compute import Context, Store, cell_done, load_source, log_span, run_cell
from sessionrec.study.plan import Cell, Plan, make_plan
from sessionrec.study.spec import Spec, load_spec, parse_spec

log = logging.getLogger(__name__)

VERB = "experiment"


def plan(spec: Spec | str | Path, out: str | Path | None = None) -> Plan:
    """The cells of a spec (reads the data's fingerprint and time span; a synthetic source is
    generated into ``out``'s cache, or a temporary folder without ``out``)."""
    import tempfile

    spec = spec if isinstance(spec, Spec) else load_spec(spec)
    with tempfile.TemporaryDirectory() as scratch:
        store = Store(Path(out) / "cache" if out is not None else Path(scratch))
        ds = load_source(spec, store)
        return make_plan(spec, ds.checksum(), log_span(ds))


def _claim(out: Path) -> None:
    """``out`` is a folder this verb wrote (a study to continue), or new/empty (claimed)."""
    if out.is_dir() and written_by(out) == VERB:
        return
    check_output(out, verb=VERB)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(out, expected="a folder for the study", found=str(exc)) from None
    write_marker(out, VERB)


def status(p: Plan, out: str | Path) -> list[dict[str, Any]]:
    """Per cell: what it is and whether its prepared data, model and evaluations are done."""
    store = Store(Path(out) / "cache")
    return [
        {
            "cell": c.key,
            "sessions": c.sessions,
            "slice": c.prep.slice,
            "model": c.model,
            "seed": c.seed,
            "targets": list(c.evals),
            "prepared": store.has("prepared", c.prep.key),
            "model_done": store.has("models", c.key),
            "done": cell_done(store, c),
        }
        for c in p.cells
    ]


class Progress:
    """Cells done of all, and an estimate of the time left from the cells computed so far."""

    def __init__(self, p: Plan, store: Store, say: Callable[[str], None] | None) -> None:
        self.plan, self.store, self.say = p, store, say
        self.seconds: list[float] = []

    def __call__(self, cell: Cell, seconds: float, fresh: bool) -> None:
        if fresh:
            self.seconds.append(seconds)
        done = sum(cell_done(self.store, c) for c in self.plan.cells)
        left = len(self.plan.cells) - done
        eta = ""
        if left and self.seconds:
            eta = f"; about {_duration(left * sum(self.seconds) / len(self.seconds))} left"
        how = f"{seconds:.1f} s" if fresh else "cached"
        message = f"[{done}/{len(self.plan.cells)}] {cell.describe()} ({how}){eta}"
        log.info(message)
        if self.say is not None:
            self.say(message)


def _duration(s: float) -> str:
    if s < 90:
        return f"{math.ceil(s)} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def experiment(
    spec: Spec | str | Path,
    out: str | Path,
    *,
    workers: int = 1,
    storage: str | None = None,
    device: str = "cpu",
    n_boot: int | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run a study: every cell of ``spec`` computed once, the report written to ``out``.

    Args:
        spec: a :class:`Spec` or a TOML spec file.
        out: the study folder (new, empty, or one an earlier run of a study wrote: its cache
            is reused, so a killed run resumes and a changed spec recomputes only the cells
            its changes touch).
        workers: local worker processes sharing the queue of cells.
        storage: an Optuna storage URL for the queue (``postgresql://...``) shared with
            workers on other machines, which run the same call on the same ``out`` (a shared
            file system); None: one worker runs in-process, several share
            ``sqlite:///out/queue.db``.
        device: ``cpu``, ``cuda`` or ``auto``.
        n_boot: bootstrap replicates of the intervals (the spec's by default).
        on_progress: called with a line per finished cell (done/all, the cell, time left).

    Returns:
        The content of ``out/results.json`` plus ``computed`` and ``reused`` (counts of the
        prepared data, models and evaluations this call computed or found done).
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a whole number >= 1, not {workers!r}")
    spec = spec if isinstance(spec, Spec) else load_spec(spec)
    out = Path(out)
    _claim(out)
    p = plan(spec, out)
    store = Store(out / "cache")
    store.clean()
    ctx = Context(p, store, device)
    progress = Progress(p, store, on_progress)
    if workers == 1 and storage is None:
        for cell in p.cells:
            fresh = not cell_done(store, cell)
            t0 = time.perf_counter()
            run_cell(ctx, cell)
            progress(cell, time.perf_counter() - t0, fresh)
    else:
        from sessionrec.study.queue import open_queue_storage, work

        url = storage or f"sqlite:///{(out / 'queue.db').resolve()}"
        open_queue_storage(url)  # fail here, once, on a bad URL or a missing driver
        if workers == 1:
            work(ctx, open_queue_storage(url), progress)
        else:
            _spawn(p, out, url, device, workers, on_progress is not None)
    missing = [c for c in p.cells if not cell_done(store, c)]
    if missing:
        raise ConfigError(
            f"{len(missing)} of {len(p.cells)} cells are not done (first: "
            f"{missing[0].describe()}); a worker failed or still runs: run again to finish"
        )
    from sessionrec.study.report import collect, write_report

    result = collect(ctx, n_boot or spec.evaluation.n_boot)
    write_report(result, out)
    return {**result, "computed": dict(store.computed), "reused": dict(store.reused)}


def _spawn(p: Plan, out: Path, url: str, device: str, workers: int, say: bool) -> None:
    threads = max(1, (os.cpu_count() or 1) // workers)
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_worker_main, args=(p, str(out), url, device, threads, say))
        for _ in range(workers)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    failed = [proc.exitcode for proc in procs if proc.exitcode != 0]
    if failed:
        raise ConfigError(
            f"{len(failed)} of {workers} workers failed (exit codes {failed}); their errors "
            "are above; run again to finish"
        )


def _worker_main(p: Plan, out: str, url: str, device: str, threads: int, say: bool) -> None:
    import torch

    from sessionrec.study.queue import open_queue_storage, work

    torch.set_num_threads(threads)
    store = Store(Path(out) / "cache")
    ctx = Context(p, store, device)
    progress = Progress(p, store, (lambda m: print(m, flush=True)) if say else None)
    work(ctx, open_queue_storage(url), progress)


__all__ = ["Plan", "Spec", "experiment", "load_spec", "parse_spec", "plan", "status"]
