"""``sessionrec tune``: search a model's parameters on valid (Optuna), then score test once.

Every trial fits on **train** and scores **valid**; the search reads the data through a view
that refuses the test part, so no trial can look at it. Models trained in epochs report the
valid metric after each epoch, and the median pruner stops trials that fall behind the others
at the same epoch. After the search the best configuration is refit on train+valid (for
epoch-trained models, for the best trial's best epoch count) and test is scored exactly once,
with session-bootstrap intervals; ``DIR/best.json`` records it all.

The study lives in Optuna storage: a SQLite file in ``DIR`` by default; with a shared database
(``postgresql://...``, any Optuna RDB URL, or a ``journal:FILE`` on a shared file system) any
number of workers on any number of machines share one study. ``trials`` counts the trials of
one worker (its ``DIR``), so two workers of ``trials=10`` give a study of 20, and running the
same command again after an interruption finishes that worker's count.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sessionrec._checks import finite_number, whole_number
from sessionrec._io import atomic_dir, read_json, write_json
from sessionrec.errors import ConfigError, DataError
from sessionrec.prepare.data import PreparedData
from sessionrec.tuning.space import Space, load_space

log = logging.getLogger(__name__)

METRICS = ("recall", "mrr", "ndcg")
#: Config fields holding the number of epochs (the refit trains the best trial's best epoch).
EPOCH_FIELDS = ("n_epochs", "epochs")
INSTALL_HINT = 'sessionrec tune needs Optuna: pip install -e ".[tune]"'


class SearchData(PreparedData):
    """A PreparedData that refuses the test part: what every trial of a search sees."""

    def frame(self, part: str) -> Any:
        if part == "test":
            raise ConfigError("the search reads train and valid only; test is scored after it")
        return super().frame(part)


def tune(
    model_name: str,
    data: PreparedData | str | Path,
    out_dir: str | Path,
    *,
    trials: int = 20,
    metric: str = "mrr@20",
    space: Space | str | Path | None = None,
    storage: str | None = None,
    study: str | None = None,
    timeout: float | None = None,
    exclude_seen: bool = False,
    cutoffs: Sequence[int] = (10, 20),
    seed: int = 0,
    device: str = "auto",
    pruning: bool = True,
    final: bool = True,
    n_boot: int = 1000,
    on_trial: Callable[[dict[str, Any]], None] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Search ``model_name``'s parameters on valid, refit the best on train+valid, score test.

    Args:
        model_name: a registered next-item model (``sessionrec.models.REGISTRY``).
        data: a PreparedData (or its directory) with a non-empty valid part.
        out_dir: the tuning folder (study, report, best.json, the refit model in ``model/``);
            the same folder again continues its study.
        trials: trials this worker runs (counted over its earlier runs into ``out_dir``).
        metric: ``recall@K``, ``mrr@K`` or ``ndcg@K`` on valid, maximised.
        space: a Space, or a TOML file overriding the model's shipped space.
        storage: an Optuna storage URL (``postgresql://...``, ``sqlite:///...``,
            ``journal:FILE``); None: ``sqlite:///out_dir/tune.db``.
        study: the study's name (default ``<model>-<metric>``).
        timeout: stop starting trials after this many seconds.
        exclude_seen: rank without the session's own items (valid and test alike).
        cutoffs: the test figures' cutoffs (the metric's own is added).
        seed: the models' seed and the sampler's.
        device: ``cpu``, ``cuda`` or ``auto``.
        pruning: median pruning on the per-epoch valid metric.
        final: refit the best configuration on train+valid and score test (False: search only,
            for extra workers; one final run with ``trials=0`` then finishes).
        n_boot: bootstrap replicates of the test intervals.
        on_trial: called after each trial of this worker with its summary.
        progress: progress bars inside each trial (epochs, the valid evaluation) on stderr.

    A new study's first trial is the model's defaults (the space's fixed values aside), so
    the configuration the search chooses is never worse on valid than the defaults.

    Returns:
        The content of ``out_dir/best.json`` (``final``), else the study summary.
    """
    optuna = _optuna()
    from sessionrec import registry

    if registry.is_rating(model_name):
        raise ConfigError(f"{model_name} is a rating model: tune ranks next-item models")
    name, _, k = metric.partition("@")
    if name not in METRICS or not k.isdigit() or int(k) < 1:
        raise ConfigError(f"metric must be recall@K, mrr@K or ndcg@K, not {metric!r}")
    whole_number("--trials", trials, low=0)
    if timeout is not None:
        timeout = finite_number("--timeout", timeout)
    for c in cutoffs:
        whole_number("--cutoffs", c, low=1)
    whole_number("n_boot", n_boot, low=1)
    if not isinstance(space, Space):
        space = load_space(model_name, space)
    elif space.model != model_name:
        raise ConfigError(f"the space is {space.model}'s, not {model_name}'s")
    full = data if isinstance(data, PreparedData) else PreparedData(data)
    search = SearchData(full.path)
    if search.valid.n_sessions == 0:
        raise DataError(
            full.path / "valid.parquet",
            expected="valid sessions to score the trials on (prepare with --valid-days or "
            "--valid-fraction)",
            found="an empty valid part",
        )
    out = tune_dir(out_dir)
    worker = _worker_id(out)
    held = _hold_folder(out)
    try:
        return _tune_held(
            model_name, full, search, space, out, worker, trials=trials, metric=metric,
            storage=storage, study=study, timeout=timeout, exclude_seen=exclude_seen,
            cutoffs=cutoffs, seed=seed, device=device, pruning=pruning, final=final,
            n_boot=n_boot, on_trial=on_trial, progress=progress, optuna=optuna,
        )  # fmt: skip
    finally:
        held.close()


def _tune_held(
    model_name: str,
    full: PreparedData,
    search: SearchData,
    space: Space,
    out: Path,
    worker: str,
    *,
    trials: int,
    metric: str,
    storage: str | None,
    study: str | None,
    timeout: float | None,
    exclude_seen: bool,
    cutoffs: Sequence[int],
    seed: int,
    device: str,
    pruning: bool,
    final: bool,
    n_boot: int,
    on_trial: Callable[[dict[str, Any]], None] | None,
    progress: bool,
    optuna: Any,
) -> dict[str, Any]:
    """``tune`` once its folder is held."""
    storage_url = storage or f"sqlite:///{(out / 'tune.db').resolve()}"
    study_name = study or f"{model_name}-{metric}"
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
        if pruning
        else optuna.pruners.NopPruner()
    )
    st, created = _create_or_load(optuna, study_name, open_storage(storage_url), pruner)
    asked = {
        "model": model_name,
        "metric": metric,
        "exclude_seen": exclude_seen,
        "data": fingerprint(full),
    }
    _check_study(st, asked, space, study_name, created)
    _fail_stale(st, optuna, worker)
    if created and space.searched:
        # only the worker that made the study queues the defaults: workers starting together
        # would each see an empty study and queue them twice
        _enqueue_defaults(st, model_name, space)
    everyone = st.get_trials(deepcopy=False)
    # A fresh sampler seed per start: a resumed worker must not replay its first suggestions,
    # and two workers must not suggest the same ones.
    digest = hashlib.sha256(f"{seed}:{worker}:{len(everyone)}".encode()).digest()
    st.sampler = optuna.samplers.TPESampler(seed=int.from_bytes(digest[:4], "little"))
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    mine = sum(t.user_attrs.get("worker") == worker for t in everyone if t.state in finished)
    todo = max(0, trials - mine)
    if not space.searched:  # nothing varies: one trial is the whole study
        todo = min(todo, 0 if any(t.state in finished for t in everyone) else 1)
    log.info("study %s: %d trials so far, %d to run here", study_name, len(everyone), todo)

    def objective(trial: Any) -> float:
        return _run_trial(
            trial, optuna, model_name, search, space, out, worker, metric,
            exclude_seen, seed, device, pruning, progress,
        )  # fmt: skip

    def after(study_: Any, frozen: Any) -> None:
        if on_trial is not None and frozen.user_attrs.get("worker") == worker:
            best = _best(study_, optuna)
            on_trial(
                {
                    "number": frozen.number,
                    "state": frozen.state.name.lower(),
                    "value": frozen.value,
                    "epochs": len(frozen.user_attrs.get("history", [])),
                    "seconds": frozen.user_attrs.get("fit_seconds"),
                    "params": frozen.user_attrs.get("params", {}),
                    "defaults": bool(frozen.user_attrs.get("defaults")),
                    "best_number": None if best is None else best.number,
                    "best_value": None if best is None else best.value,
                }
            )

    if todo:
        # A setting that diverges fails its trial, not the search.
        st.optimize(objective, n_trials=todo, timeout=timeout, callbacks=[after], catch=_CATCH)
    summary = study_summary(st, optuna, storage_url, metric, space)
    result: dict[str, Any] = {"study": summary}
    if final:
        result = _final(
            st, optuna, model_name, full, out, summary, metric, exclude_seen, cutoffs, seed,
            device, n_boot,
        )  # fmt: skip
    from sessionrec.tuning.report import write_tune_report

    write_tune_report(result, summary, out, st, optuna)
    return result


def _catchable() -> tuple[type[BaseException], ...]:
    from sessionrec import errors

    diverged = getattr(errors, "TrainingDivergedError", None)
    return (diverged,) if diverged is not None else ()


_CATCH = _catchable()


def tune_dir(out_dir: str | Path) -> Path:
    """The tuning folder: the one place that decides what ``DIR`` may hold.

    A folder ``tune`` wrote (its marker, or an older one's ``worker.json``) is a study to
    continue; otherwise the output rule of ``sessionrec._io`` applies: a new or empty folder
    is claimed (and marked), anything else is refused in one line, nothing touched.
    """
    from sessionrec._io import check_output, write_marker, written_by

    out = Path(out_dir)
    if out.is_dir() and (written_by(out) == "tune" or (out / "worker.json").is_file()):
        return out
    check_output(out, verb="tune")  # raises for a file, a link or a non-empty folder
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(out, expected="a folder for the tuning results", found=str(exc)) from None
    write_marker(out, "tune")
    return out


def _worker_id(out: Path) -> str:
    """This folder's worker id (made once): trials are counted per worker."""
    path = out / "worker.json"
    if path.exists():
        return str(read_json(path)["worker"])
    worker = uuid.uuid4().hex[:12]
    write_json(path, {"worker": worker})
    return worker


def _optuna(hint: str = INSTALL_HINT) -> Any:
    """Optuna, quiet below warnings; a ConfigError saying ``hint`` when it is not installed."""
    try:
        import optuna
    except ImportError:
        raise ConfigError(hint) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def open_storage(url: str) -> Any:
    """An Optuna storage from a URL: ``journal:FILE``, ``redis://`` (journal) or an RDB URL
    (``postgresql://``, ``mysql://``, ``sqlite:///``)."""
    optuna = _optuna()
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        path = url.removeprefix("journal:").removeprefix("//")
        folder = Path(path).parent
        if not folder.is_dir():
            raise ConfigError(
                f"--storage {url}: the folder {folder} does not exist (create it, or name a "
                "journal file in an existing folder)"
            )
        if Path(path).is_dir():
            raise ConfigError(f"--storage {url}: {path} is a folder, not a journal file")
        try:
            return optuna.storages.JournalStorage(JournalFileBackend(path))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot open storage {url}: {str(exc).splitlines()[0]}") from None
    if url.startswith(("redis://", "rediss://")):
        from optuna.storages.journal import JournalRedisBackend

        return optuna.storages.JournalStorage(JournalRedisBackend(url))
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Several local workers on one SQLite file wait for the lock instead of failing.
        engine_kwargs["connect_args"] = {"timeout": 60}
    else:
        engine_kwargs["pool_pre_ping"] = True
    for attempt in range(5):
        try:
            # The heartbeat marks a killed worker's running trial failed after the grace period.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = optuna.storages.RDBStorage(
                    url, engine_kwargs=engine_kwargs, heartbeat_interval=30, grace_period=120
                )
            if url.startswith("sqlite"):
                serialise_sqlite(storage.engine)
            return storage
        except ImportError as exc:
            raise ConfigError(
                f"storage {safe_url(url)} needs a database driver ({exc}); "
                'pip install -e ".[tune]" brings PostgreSQL\'s (psycopg)'
            ) from None
        except Exception as exc:  # sqlalchemy's ArgumentError / OperationalError
            # Workers starting together on a new database race to create its tables.
            racing = ("already exists", "UNIQUE constraint", "duplicate key", "locked")
            if any(r in str(exc) for r in racing) and attempt < 4:
                time.sleep(0.5 + attempt)
                continue
            first = str(exc).splitlines()[0]
            raise ConfigError(f"cannot open storage {safe_url(url)}: {first}") from None
    raise AssertionError("unreachable")


def serialise_sqlite(engine: Any) -> None:
    """Make every transaction on a SQLite storage ``BEGIN IMMEDIATE`` (SQLAlchemy's recipe for
    pysqlite). SQLite ignores Optuna's ``SELECT ... FOR UPDATE``, so without this two workers
    can both read a queued trial as waiting and both run it; with it, a read-then-write
    transaction holds the write lock from its first read."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the "begin" hook below opens transactions

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections pooled while the storage set up its tables lack the hook


def safe_url(url: str) -> str:
    """The storage URL without its password."""
    if "://" not in url or "@" not in url:
        return url
    try:
        from sqlalchemy.engine import make_url

        return str(make_url(url).render_as_string(hide_password=True))
    except Exception:
        return url.split("://", 1)[0] + "://***"


def fingerprint(data: PreparedData) -> str:
    """What makes two copies of a prepared folder the same data (not its path)."""
    m = data.meta
    key = {
        "source": m.get("source", {}).get("sha256"),
        "params": m.get("params"),
        "counts": m.get("counts"),
        "n_items": m.get("n_items"),
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _create_or_load(optuna: Any, name: str, storage: Any, pruner: Any) -> tuple[Any, bool]:
    """The study, and whether this call made it (of workers starting together, exactly one
    did: the storage refuses a second study of the same name)."""
    try:
        st = optuna.create_study(
            study_name=name, storage=storage, direction="maximize", pruner=pruner
        )
        return st, True
    except optuna.exceptions.DuplicatedStudyError:
        return optuna.load_study(study_name=name, storage=storage, pruner=pruner), False


def _check_study(
    st: Any, asked: dict[str, Any], space: Space, name: str, created: bool = False
) -> None:
    have = st.user_attrs.get("sessionrec")
    if have is None and not created:
        # another worker made the study a moment ago and is about to label it
        for _ in range(20):
            time.sleep(0.25)
            have = st.user_attrs.get("sessionrec")
            if have is not None:
                break
    if have is None:
        st.set_user_attr("sessionrec", asked)
        st.set_user_attr("space", space.to_dict())
        return
    differ = [k for k in asked if have.get(k) != asked[k]]
    if differ:
        was = ", ".join(f"{k} {have.get(k)!r}" for k in differ)
        now = ", ".join(f"{k} {asked[k]!r}" for k in differ)
        raise ConfigError(
            f"study {name!r} was made for {was}, not {now}; name another with --study"
        )
    _check_distributions(st, space, name)
    if st.user_attrs.get("space") != space.to_dict():
        log.warning("study %s continues with a search space other than its first one", name)


def _check_distributions(st: Any, space: Space, name: str) -> None:
    """Refuse a space that gives a parameter a distribution Optuna cannot put beside the
    study's (another kind, other choices): its trials would fail one by one, each leaving a
    FAIL trial in the shared study. Ranges may differ (a narrowed search)."""
    import optuna

    mine = {p.name: p.distribution() for p in space.params if p.kind != "fixed"}
    seen: dict[str, Any] = {}
    for t in st.get_trials(deepcopy=False):
        for pname, dist in t.distributions.items():
            seen.setdefault(pname, dist)
    for pname, dist in mine.items():
        old = seen.get(pname)
        if old is None:
            continue
        try:
            optuna.distributions.check_distribution_compatibility(old, dist)
        except ValueError:
            raise ConfigError(
                f"study {name!r} searched {pname} as {_said(old)}, this space as {_said(dist)}: "
                "use the study's space (its tune.json) or name another study with --study"
            ) from None


def _said(dist: Any) -> str:
    kind = type(dist).__name__.removesuffix("Distribution").lower()
    if hasattr(dist, "choices"):
        return f"{kind} {list(dist.choices)}"
    return f"{kind} {dist.low}..{dist.high}"


def _fail_stale(st: Any, optuna: Any, worker: str) -> int:
    """Mark failed the trials left RUNNING by a killed run: this worker's own (no other run
    of it is alive: ``_hold_folder``), and any whose heartbeat stopped (RDB storages, after
    the grace period). Returns how many of this worker's were marked."""
    running = st.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    n = 0
    for t in running:
        if t.user_attrs.get("worker") == worker:
            st._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
            log.warning("trial %d was left running by a killed run: marked failed", t.number)
            n += 1
    # fails only the trials whose heartbeat stopped longer than the grace period ago;
    # a storage without heartbeats (journal) does nothing here
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(st)
    return n


def _hold_folder(out: Path) -> Any:
    """An exclusive lock on the tuning folder for this run (another run in the same folder
    is refused), so that a RUNNING trial of this folder's worker is known to be stale."""
    handle = (out / "worker.lock").open("a+")
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, stale trials of this worker still marked
        return handle
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise ConfigError(
            f"another tune is running in {out}: give each worker its own --out (they share "
            "the study through --storage)"
        ) from None
    return handle


def _run_trial(
    trial: Any,
    optuna: Any,
    model_name: str,
    data: SearchData,
    space: Space,
    out: Path,
    worker: str,
    metric: str,
    exclude_seen: bool,
    seed: int,
    device: str,
    pruning: bool,
    progress: bool = False,
) -> float:
    """Fit on train, score valid after each epoch (pruning), return the best epoch's value."""
    from sessionrec.runner import train

    trial.set_user_attr("worker", worker)
    params = space.suggest(trial)
    trial.set_user_attr("params", _jsonable(params))
    key = f"valid_{metric}"
    history: list[dict[str, Any]] = []

    def on_epoch(record: dict[str, Any]) -> None:
        history.append(_jsonable(record))
        value = record.get(key)
        if value is None:
            return
        trial.report(float(value), int(record["epoch"]))
        trial.set_user_attr("history", history)
        if pruning and trial.should_prune():
            raise optuna.TrialPruned(f"{key} {value:.4f} at epoch {record['epoch']}")

    work = Path(tempfile.mkdtemp(prefix=f".trial-{trial.number}-", dir=out))
    t0 = time.perf_counter()
    try:
        train(
            model_name, data, work, params=params, fit_on="train", seed=seed, device=device,
            valid_metric=metric, exclude_seen=exclude_seen, progress=progress,
            after_epoch=on_epoch,
        )  # fmt: skip
        epochs_reported = bool(history)
        if not history:  # fitted once, without epochs: the runner's one record
            lines = (work / "history.jsonl").read_text().splitlines()
            history = [_jsonable(json.loads(line)) for line in lines]
    finally:
        trial.set_user_attr("fit_seconds", round(time.perf_counter() - t0, 3))
        trial.set_user_attr("history", history)
        shutil.rmtree(work, ignore_errors=True)
    values = [(r[key], r["epoch"]) for r in history if r.get(key) is not None]
    if not values:
        raise DataError(data.path, expected=f"{key} after training", found="no valid metric")
    value, epoch = max(values, key=lambda v: (v[0], -v[1]))  # the runner keeps the first best
    if epochs_reported:  # trained in epochs: the refit trains as many as were best on valid
        trial.set_user_attr("best_epoch", int(epoch))
    if not math.isfinite(value):
        raise DataError(data.path, expected=f"a finite {key}", found=repr(value))
    return float(value)


def _enqueue_defaults(st: Any, model_name: str, space: Space) -> None:
    """Queue the model's defaults as the study's first trial (``skip_if_exists``: workers
    that start together queue it once). A searched parameter whose default lies outside its
    range still runs at its default (Optuna warns and keeps it); a categorical one whose
    default is not among its choices is left to the sampler, and the trial says so."""
    import dataclasses

    from sessionrec import registry

    cfg = registry.spec(model_name).config_class()
    defaults = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    params: dict[str, Any] = {}
    left: list[str] = []
    for p in space.params:
        if p.kind == "fixed" or p.name not in defaults:
            continue
        value = defaults[p.name]
        if isinstance(value, tuple) and len(value) == 1:
            value = value[0]  # a one-entry tuple (gru4rec's layers): the space's number
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if (p.kind == "choice" and value not in list(p.choices)) or (
            p.kind in ("int", "float") and not numeric
        ):
            left.append(p.name)
            continue
        params[p.name] = value
    attrs = {"defaults": True, "defaults_not_in_space": left}
    st.enqueue_trial(params, user_attrs=attrs, skip_if_exists=True)
    log.info("study %s: trial 0 is %s's defaults %s", st.study_name, model_name, params)


def _jsonable(obj: Any) -> Any:
    return json.loads(
        json.dumps(obj, default=lambda o: list(o) if isinstance(o, tuple) else str(o))
    )


def _best(st: Any, optuna: Any) -> Any:
    done = st.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return max(done, key=lambda t: (t.value, -t.number)) if done else None


def study_summary(
    st: Any, optuna: Any, storage_url: str, metric: str, space: Space
) -> dict[str, Any]:
    """The study as JSON: every trial (state, value, params, epochs, worker, times)."""
    trials = st.get_trials(deepcopy=False)
    rows = []
    for t in trials:
        rows.append(
            {
                "number": t.number,
                "state": t.state.name.lower(),
                "value": t.value,
                # a pruned trial's last per-epoch figure (it has no value of its own)
                "last_value": (
                    t.intermediate_values[max(t.intermediate_values)]
                    if t.intermediate_values
                    else None
                ),
                "params": t.user_attrs.get("params", dict(t.params)),
                "defaults": bool(t.user_attrs.get("defaults")),
                "best_epoch": t.user_attrs.get("best_epoch"),
                "epochs": len(t.user_attrs.get("history", [])),
                "fit_seconds": t.user_attrs.get("fit_seconds"),
                "worker": t.user_attrs.get("worker"),
                "start": t.datetime_start.isoformat() if t.datetime_start else None,
                "complete": t.datetime_complete.isoformat() if t.datetime_complete else None,
            }
        )
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    states: dict[str, int] = {}
    for r in rows:
        states[r["state"]] = states.get(r["state"], 0) + 1
    best = _best(st, optuna)
    return {
        "name": st.study_name,
        "storage": safe_url(storage_url),
        "metric": metric,
        "direction": "maximize",
        "space": space.to_dict(),
        "space_sources": list(space.sources),
        "states": states,
        "workers": len({r["worker"] for r in rows if r["worker"]}),
        "wall_seconds": (max(ends) - min(starts)).total_seconds() if starts and ends else None,
        "best_trial": None if best is None else best.number,
        "trials": rows,
    }


def _final(
    st: Any,
    optuna: Any,
    model_name: str,
    data: PreparedData,
    out: Path,
    summary: dict[str, Any],
    metric: str,
    exclude_seen: bool,
    cutoffs: Sequence[int],
    seed: int,
    device: str,
    n_boot: int,
) -> dict[str, Any]:
    """Refit the best trial's configuration on train+valid and score test, once per best."""
    from sessionrec.evaluation import bootstrap_interval, evaluate
    from sessionrec.models import model_class
    from sessionrec.models.base import SessionModel
    from sessionrec.runner import train

    best = _best(st, optuna)
    if best is None:
        raise ConfigError(f"study {st.study_name!r} has no finished trial to refit yet")
    params = dict(best.user_attrs.get("params", best.params))
    best_epoch = best.user_attrs.get("best_epoch")
    fields = set(getattr(model_class(model_name).Config, "__dataclass_fields__", {}))
    epoch_field = next((f for f in EPOCH_FIELDS if f in fields), None)
    refit = dict(params)
    if epoch_field is not None and best_epoch is not None:
        refit[epoch_field] = int(best_epoch)  # what valid chose, not more
    path = out / "best.json"
    before = read_json(path) if path.exists() else None
    same = (
        before is not None
        and before.get("study", {}).get("name") == st.study_name
        and before.get("study", {}).get("storage") == summary["storage"]
        and before.get("trial") == best.number
        and before.get("refit", {}).get("params") == _jsonable(refit)
        and "test" in before
    )
    if same:
        assert before is not None
        log.info("test was already scored for trial %d: not scoring it again", best.number)
        before["study"] = _study_ref(summary)
        write_json(path, before)
        return dict(before)
    ks = sorted({*cutoffs, int(metric.partition("@")[2])})
    t0 = time.perf_counter()
    with atomic_dir(out / "model") as tmp:
        model = train(
            model_name, data, tmp, params=refit, fit_on="train+valid", seed=seed, device=device,
            progress=False,
        )  # fmt: skip
    assert isinstance(model, SessionModel)
    fit_seconds = time.perf_counter() - t0
    test = data.part("test")  # the one read of test
    res = evaluate(model, test, cutoffs=tuple(ks), exclude_seen=exclude_seen)
    names = [f"{m}@{k}" for m in METRICS for k in ks]
    intervals = bootstrap_interval(res, test, names, n_boot=n_boot, seed=seed)
    result = {
        "model": model_name,
        "chosen_on": "valid",
        "metric": metric,
        "trial": best.number,
        "params": _jsonable(params),
        "valid": {metric: best.value, "best_epoch": best_epoch, "fit_on": "train"},
        "refit": {
            "fit_on": "train+valid",
            "params": _jsonable(refit),
            "seconds": round(fit_seconds, 3),
            "model_dir": str(out / "model"),
        },
        "test": {
            "fit_on": "train+valid",
            "predictions": res.predictions,
            "metrics": {n: res.metrics[n] for n in names},
            "protocol": _jsonable(res.protocol),
            "intervals": intervals,
            "interval": f"95 % session bootstrap, {n_boot} replicates",
        },
        "data": str(data.path),
        "study": _study_ref(summary),
    }
    write_json(path, result)
    return result


def _study_ref(summary: dict[str, Any]) -> dict[str, Any]:
    return {
        k: summary[k]
        for k in ("name", "storage", "states", "workers", "wall_seconds", "space_sources")
    }


__all__ = [
    "SearchData",
    "fingerprint",
    "open_storage",
    "safe_url",
    "serialise_sqlite",
    "study_summary",
    "tune",
    "tune_dir",
]
