"""`sessionrec tune`: spaces, the search on valid only, one score on test, shared storage."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _helpers import run_cli

import sessionrec as sr
from sessionrec.errors import ConfigError, DataError
from sessionrec.models import REGISTRY, model_class
from sessionrec.prepare.data import PreparedData
from sessionrec.tuning import SearchData, load_space
from sessionrec.tuning.search import open_storage
from sessionrec.tuning.space import shipped_space_path

optuna = pytest.importorskip("optuna", reason='tune needs the extra: pip install -e ".[tune]"')

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture
def tiny(tuning_log: PreparedData) -> PreparedData:
    return tuning_log


def _space(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.toml"
    path.write_text(text)
    return path


# -- spaces -------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", sorted(REGISTRY))
def test_every_registered_model_ships_a_space_its_config_accepts(model: str) -> None:
    assert shipped_space_path(model).is_file()  # a new model needs its space file
    space = load_space(model)
    fields = set(model_class(model).Config.__dataclass_fields__)
    assert {p.name for p in space.params} <= fields
    assert space.to_dict() == load_space(model, None).to_dict()


def test_gru4rec_space_mirrors_the_official_paramspaces() -> None:
    space = {p.name: p for p in load_space("gru4rec").params}
    assert (space["layers"].low, space["layers"].high, space["layers"].step) == (64, 512, 32)
    assert (space["batch_size"].low, space["batch_size"].high) == (32, 256)
    assert (space["learning_rate"].low, space["learning_rate"].high) == (0.01, 0.25)
    assert space["dropout_p_hidden"].high == 0.7 and space["momentum"].high == 0.9
    assert space["bpreg"].when == {"loss": "bpr-max"} and space["n_epochs"].value == 10
    for name in ("loss", "n_sample", "sample_alpha", "elu_param", "logq", "dropout_p_embed",
                 "constrained_embedding"):  # fmt: skip
        assert name in space


def test_a_space_file_overrides_by_name_and_round_trips(tmp_path: Path) -> None:
    path = _space(tmp_path, 'k = { choices = [5, 7] }\nsimilarity = "dot"\n')
    space = load_space("sknn", path)
    by = {p.name: p for p in space.params}
    assert by["k"].choices == (5, 7) and by["similarity"].kind == "fixed"
    assert by["sample_size"].kind == "choice"  # kept from the shipped space
    again = load_space("sknn", _space(tmp_path, space.to_toml()))
    assert again.to_dict() == space.to_dict()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            "k = 5\nneighbours = { low = 1, high = 9 }\n",
            ":2: expected a parameter",
        ),  # unknown: file:line
        ("k = { low = 0.5, high = 9.5 }\n", "integer low"),  # float range for an int
        ("k = { low = 0, high = 9 }\n", "values sknn accepts"),  # k=0 refused by the config
        ("similarity = { choices = ['cosine', 'jaccard'] }\n", "values sknn accepts"),
        ("k = [5, 7]\n", "the list [5, 7]"),
        ("k = { low = 1, high = 9, when = { later = 1 } }\n", "listed before"),
        ("k = {\n", "TOML"),
    ],
)
def test_bad_spaces_fail_in_one_line_naming_the_file(tmp_path: Path, text: str, says: str) -> None:
    path = _space(tmp_path, text)
    with pytest.raises(DataError) as info:
        load_space("sknn", path)
    message = str(info.value)
    assert str(path) in message and says in message and "\n" not in message


def test_show_space_prints_toml_that_reads_back(
    tiny: PreparedData, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(["tune", str(tiny.path), "--model", "gru4rec", "--show-space"], capsys)
    assert code == 0, err
    assert load_space("gru4rec", _space(tmp_path, out)).to_dict() == load_space("gru4rec").to_dict()
    code, _, err = run_cli(["tune", str(tiny.path), "--model", "sr"], capsys)
    assert code == 2 and "--out" in err


def test_unknown_parameter_from_the_cli_is_one_line_exit_2(
    tiny: PreparedData, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _space(tmp_path, "neighbours = { low = 1, high = 9 }\n")
    code, _, err = run_cli(
        ["tune", str(tiny.path), "--model", "sknn", "--space", str(path), "--out",
         str(tmp_path / "t")], capsys,
    )  # fmt: skip
    assert code == 2 and "neighbours" in err and f"{path}:1" in err
    assert not (tmp_path / "t" / "tune.db").exists()  # refused before any trial


# -- the search -----------------------------------------------------------------------------------


def test_search_data_refuses_the_test_part(tiny: PreparedData) -> None:
    view = SearchData(tiny.path)
    assert view.valid.n_sessions > 0 and view.train.n_sessions > 0
    with pytest.raises(ConfigError, match="test"):
        view.part("test")


def test_test_is_read_once_after_every_trial(
    tiny: PreparedData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    frame = PreparedData.frame

    def spy(self: PreparedData, part: str) -> Any:
        events.append(f"read {part}")
        return frame(self, part)

    monkeypatch.setattr(PreparedData, "frame", spy)
    result = sr.tune("sr", tiny.path, tmp_path / "t", trials=3, metric="mrr@5", cutoffs=(5,),
                     n_boot=50, on_trial=lambda t: events.append(f"trial {t['number']}"))  # fmt: skip
    assert events.count("read test") == 1
    assert events.index("read test") > events.index("trial 2")
    assert result["chosen_on"] == "valid" and result["test"]["fit_on"] == "train+valid"
    assert all(t["state"] == "complete" for t in result_trials(tmp_path / "t"))


def result_trials(out: Path) -> list[dict[str, Any]]:
    return list(json.loads((out / "tune.json").read_text())["study"]["trials"])


def test_cli_tune_writes_best_and_the_report_and_resumes(
    tiny: PreparedData, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "t"
    argv = ["tune", str(tiny.path), "--model", "sr", "--trials", "3", "--metric", "recall@5",
            "--out", str(out), "--cutoffs", "5", "10"]  # fmt: skip
    code, stdout, err = run_cli(argv, capsys)
    assert code == 0, err
    best = json.loads((out / "best.json").read_text())
    assert best["model"] == "sr" and best["metric"] == "recall@5" and best["chosen_on"] == "valid"
    trials = result_trials(out)
    top = max((t for t in trials if t["state"] == "complete"), key=lambda t: t["value"])
    assert best["valid"]["recall@5"] == pytest.approx(top["value"])
    assert set(best["params"]) == {"steps", "weighting", "pruning"}
    test = best["test"]
    assert test["protocol"]["ties"] == "conservative" and test["protocol"]["exclude_seen"] is False
    assert test["protocol"]["cutoffs"] == [5, 10] and test["fit_on"] == "train+valid"
    assert test["predictions"] == tiny.test.n_predictions
    iv = test["intervals"]["recall@5"]
    assert iv["low"] <= iv["value"] <= iv["high"] and iv["value"] == test["metrics"]["recall@5"]
    assert best["study"]["name"] == "sr-recall@5" and best["study"]["storage"].startswith("sqlite")
    assert (out / "model" / "config.json").exists()
    page = (out / "tune.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "data:image/png;base64," in page
    md = (out / "tune.md").read_text()
    for heading in ("Trials over time", "Parameter importances", "learning curve", "Test"):
        assert heading in md
    assert (out / "tune-trials.png").read_bytes()[:4] == b"\x89PNG"
    assert "best: trial" in stdout and "95 % interval" in stdout
    # the same command again: nothing left to run, test not scored again
    mtime = (out / "model" / "config.json").stat().st_mtime_ns
    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    assert len(result_trials(out)) == 3
    assert (out / "model" / "config.json").stat().st_mtime_ns == mtime
    # more trials asked of the same folder: the study continues where it was
    code, _, err = run_cli([*argv[:5], "5", *argv[6:]], capsys)
    assert code == 0, err
    assert [t["number"] for t in result_trials(out)] == [0, 1, 2, 3, 4]


def test_an_interrupted_search_resumes_to_the_count_asked(
    tiny: PreparedData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sessionrec.runner as runner

    real = runner.train
    calls = {"n": 0}

    def flaky(*args: Any, **kw: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:  # killed in the middle of the third trial
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(runner, "train", flaky)
    with pytest.raises(KeyboardInterrupt):
        sr.tune("sr", tiny.path, tmp_path / "t", trials=4, metric="mrr@5", final=False)
    monkeypatch.setattr(runner, "train", real)
    result = sr.tune("sr", tiny.path, tmp_path / "t", trials=4, metric="mrr@5", n_boot=20)
    trials = result_trials(tmp_path / "t")
    done = [t for t in trials if t["state"] == "complete"]
    assert len(done) == 4 and [t["number"] for t in trials][:2] == [0, 1]
    assert all(t["state"] in ("complete", "fail") for t in trials)
    assert result["study"]["states"]["complete"] == 4


def test_epoch_models_report_each_epoch_and_refit_the_best_epoch_count(
    tiny: PreparedData, tmp_path: Path
) -> None:
    space = _space(tmp_path, "n_epochs = 3\nlayers = { low = 8, high = 16, step = 8 }\n"
                   "batch_size = 8\nn_sample = { choices = [4] }\n")  # fmt: skip
    out = tmp_path / "t"
    result = sr.tune("gru4rec", tiny.path, out, trials=2, metric="mrr@5", space=space,
                     device="cpu", n_boot=20)  # fmt: skip
    st = optuna.load_study(study_name="gru4rec-mrr@5", storage=f"sqlite:///{out / 'tune.db'}")
    for t in st.trials:
        assert sorted(t.intermediate_values) == [1, 2, 3]
        assert len(t.user_attrs["history"]) == 3
        assert t.value == max(t.intermediate_values.values())
    best = st.best_trial
    assert result["valid"]["best_epoch"] == best.user_attrs["best_epoch"]
    assert result["refit"]["params"]["n_epochs"] == best.user_attrs["best_epoch"]
    assert result["params"]["n_epochs"] == 3
    assert (out / "tune-curve.png").exists()


def test_pruned_trials_stop_early(
    tiny: PreparedData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A pruner that prunes at once stands in for the median pruner (which needs 5 trials).
    monkeypatch.setattr(
        optuna.pruners, "MedianPruner", lambda **_: optuna.pruners.ThresholdPruner(lower=2.0)
    )
    space = _space(tmp_path, "n_epochs = 4\nlayers = 8\nbatch_size = 8\nn_sample = 4\n")
    result = sr.tune("gru4rec", tiny.path, tmp_path / "t", trials=2, metric="mrr@5",
                     space=space, device="cpu", final=False)  # fmt: skip
    assert result["study"]["states"] == {"pruned": 2}
    assert all(t["epochs"] == 1 and t["last_value"] is not None for t in result["study"]["trials"])
    with pytest.raises(ConfigError, match="no finished trial"):
        sr.tune("gru4rec", tiny.path, tmp_path / "t", trials=0, metric="mrr@5", space=space)


def test_a_model_without_parameters_runs_one_trial(tiny: PreparedData, tmp_path: Path) -> None:
    result = sr.tune("pop", tiny.path, tmp_path / "t", trials=5, metric="mrr@5", n_boot=20)
    assert result["study"]["states"] == {"complete": 1} and result["params"] == {}


def test_refusals(tiny: PreparedData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="recall@K"):
        sr.tune("sr", tiny.path, tmp_path / "a", metric="hit@5")
    with pytest.raises(ConfigError, match="rating model"):
        sr.tune("svd", tiny.path, tmp_path / "a")
    sr.tune("sr", tiny.path, tmp_path / "b", trials=1, metric="mrr@5", final=False)
    with pytest.raises(ConfigError, match="was made for model 'sr'"):
        sr.tune("itemknn", tiny.path, tmp_path / "c", trials=1, metric="mrr@5", study="sr-mrr@5",
                storage=f"sqlite:///{tmp_path / 'b' / 'tune.db'}")  # fmt: skip
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ConfigError, match=r'pip install -e "\.\[tune\]"'):
        sr.tune("sr", tiny.path, tmp_path / "d")


# -- many workers, one study ---------------------------------------------------------------------


def _worker(tiny: PreparedData, out: Path, storage: str, trials: int) -> subprocess.Popen[bytes]:
    argv = ["tune", str(tiny.path), "--model", "sr", "--trials", str(trials), "--metric",
            "mrr@5", "--storage", storage, "--study", "shared", "--out", str(out), "--no-final"]  # fmt: skip
    code = f"from sessionrec.cli import main; main({argv!r})"
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)


def _two_workers_then_finish(tiny: PreparedData, tmp_path: Path, storage: str) -> None:
    workers = [_worker(tiny, tmp_path / f"w{i}", storage, n) for i, n in ((1, 2), (2, 1))]
    for w in workers:
        _, err = w.communicate(timeout=600)
        assert w.returncode == 0, err.decode()
    _check_shared(storage, [1, 2])
    # one more run finishes: refit the study's best, score test once
    result = sr.tune("sr", tiny.path, tmp_path / "final", trials=0, metric="mrr@5",
                     storage=storage, study="shared", n_boot=20)  # fmt: skip
    st = optuna.load_study(study_name="shared", storage=open_storage(storage))
    assert result["trial"] == st.best_trial.number and result["study"]["workers"] == 2


def _check_shared(storage: str, per_worker: list[int]) -> None:
    st = optuna.load_study(study_name="shared", storage=open_storage(storage))
    trials = st.get_trials()
    assert len(trials) == sum(per_worker)  # the sum of the workers' trials
    assert all(t.state.name == "COMPLETE" for t in trials)
    assert sorted(t.number for t in trials) == list(range(sum(per_worker)))  # none run twice
    by_worker: dict[str, int] = {}
    for t in trials:
        by_worker[t.user_attrs["worker"]] = by_worker.get(t.user_attrs["worker"], 0) + 1
    assert sorted(by_worker.values()) == per_worker


_POP = """
import json, sys
import optuna
from sessionrec.tuning.search import open_storage
optuna.logging.set_verbosity(optuna.logging.ERROR)
st = optuna.load_study(study_name="q", storage=open_storage(sys.argv[1]))
got = []
while (t := st.ask()).user_attrs.get("cell") is not None:
    got.append(t.user_attrs["cell"])
    st.tell(t, 1.0)
st.tell(t, state=optuna.trial.TrialState.PRUNED)
print(json.dumps(got))
"""


def test_workers_on_one_sqlite_file_never_pop_the_same_queued_trial(tmp_path: Path) -> None:
    """SQLite ignores SELECT ... FOR UPDATE: without BEGIN IMMEDIATE two workers read one
    waiting trial and both run it (then one fails to tell a finished trial)."""
    import optuna

    url = f"sqlite:///{tmp_path / 'q.db'}"
    st = optuna.create_study(study_name="q", storage=open_storage(url))
    for i in range(40):
        st.enqueue_trial({}, user_attrs={"cell": i})
    env = {**os.environ, "PYTHONPATH": str(SRC), "PYTHONWARNINGS": "ignore"}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _POP, url],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(3)
    ]
    popped: list[int] = []
    for w in workers:
        out, err = w.communicate(timeout=300)
        assert w.returncode == 0, err.decode()
        popped += json.loads(out.decode().splitlines()[-1])
    assert sorted(popped) == list(range(40))  # each queued trial run once, none lost


def test_two_workers_share_one_sqlite_study(tiny: PreparedData, tmp_path: Path) -> None:
    _two_workers_then_finish(tiny, tmp_path, f"sqlite:///{tmp_path / 'shared.db'}")


def test_workers_share_one_journal_file(tiny: PreparedData, tmp_path: Path) -> None:
    storage = f"journal:{tmp_path / 'shared.journal'}"
    for i, n in ((1, 2), (2, 1)):  # one after the other, in-process: the counting alone
        sr.tune("sr", tiny.path, tmp_path / f"w{i}", trials=n, metric="mrr@5", storage=storage,
                study="shared", final=False)  # fmt: skip
    _check_shared(storage, [1, 2])


def _pg_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return versions[-1].parent if versions else None


@pytest.fixture
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throw-away PostgreSQL cluster on a free port (as user postgres when run as root)."""
    pytest.importorskip("psycopg", reason='PostgreSQL storage needs pip install -e ".[tune]"')
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; .ci/run does)")
    root = tmp_path_factory.mktemp("pg")
    prefix: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        runuser = shutil.which("runuser")
        if runuser is None:
            pytest.skip("running as root without runuser to start PostgreSQL as postgres")
        prefix = [runuser, "-u", "postgres", "--"]
        os.chmod(root, 0o777)
        for parent in root.parents:  # let postgres reach its folder
            if str(parent).startswith(("/tmp", str(Path.home()))) and parent != Path("/"):
                os.chmod(parent, os.stat(parent).st_mode | 0o711)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = root / "data"
    run = lambda *a: subprocess.run(  # noqa: E731
        [*prefix, *map(str, a)], check=True, capture_output=True, timeout=120
    )
    run(bin_dir / "initdb", "-D", data, "-A", "trust", "-U", "postgres")
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(bin_dir / "pg_ctl", "-D", data, "-o", opts, "-l", root / "log", "-w", "start")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "stop"], capture_output=True, timeout=120)  # fmt: skip


def test_two_workers_share_one_postgresql_study(
    tiny: PreparedData, tmp_path: Path, postgres: str
) -> None:
    _two_workers_then_finish(tiny, tmp_path, postgres)


def test_the_storage_password_is_not_recorded() -> None:
    from sessionrec.tuning.search import safe_url

    assert safe_url("postgresql://me:secret@db:5432/s") == "postgresql://me:***@db:5432/s"
    assert safe_url("sqlite:///x/tune.db") == "sqlite:///x/tune.db"


def test_a_diverged_trial_fails_alone(
    tiny: PreparedData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sessionrec.runner as runner
    from sessionrec.errors import TrainingDivergedError

    real = runner.train
    calls = {"n": 0}

    def diverging_once(*args: Any, **kw: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise TrainingDivergedError("sr", "the training loss turned nan", 1)
        return real(*args, **kw)

    monkeypatch.setattr(runner, "train", diverging_once)
    result = sr.tune("sr", tiny.path, tmp_path / "t", trials=2, metric="mrr@5", final=False)
    states = [t["state"] for t in result["study"]["trials"]]
    assert states[0] == "fail" and states.count("complete") == 1


def test_tune_writes_only_into_its_own_new_or_empty_folder(
    tiny: PreparedData, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The output rule: a folder with the user's files, or another verb's output, is refused
    in one line and left as it was; tune's own folder is a study to continue."""
    from sessionrec._io import OutputError

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError, match="not empty"):
        sr.tune("sr", tiny.path, mine, trials=1, metric="mrr@5", final=False)
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    code, _, err = run_cli(["tune", str(tiny.path), "--model", "sr", "--trials", "1",
                            "--out", str(tiny.path), "--no-final"], capsys)  # fmt: skip
    assert code == 2 and "prepare" in err and len(err.strip().splitlines()) == 1
    out = tmp_path / "t"
    sr.tune("sr", tiny.path, out, trials=1, metric="mrr@5", final=False)
    sr.tune("sr", tiny.path, out, trials=2, metric="mrr@5", final=False)  # continues the study
    from sessionrec._io import written_by

    assert written_by(out) == "tune"


def test_the_defaults_are_the_first_trial_so_the_choice_never_loses_to_them(
    tiny: PreparedData, tmp_path: Path
) -> None:
    space = _space(tmp_path, "[k]\nlow = 1\nhigh = 3\n\n[sample_size]\nchoices = [0, 7]\n")
    result = sr.tune("vsknn", tiny.path, tmp_path / "t", trials=3, metric="mrr@5",
                     space=space, cutoffs=(5,), n_boot=20)  # fmt: skip
    trials = result_trials(tmp_path / "t")
    first = trials[0]
    assert first["defaults"] is True and not any(t["defaults"] for t in trials[1:])
    defaults = model_class("vsknn").Config()
    assert first["params"]["k"] == defaults.k  # outside the range [1, 3]: run as it is
    assert "sample_size" not in first["params"] or first["params"]["sample_size"] in (0, 7)
    done = [t for t in trials if t["state"] == "complete"]
    assert result["valid"]["mrr@5"] >= first["value"] == max(t["value"] for t in done[:1])
    assert result["valid"]["mrr@5"] == max(t["value"] for t in done)
    # a second worker on the same study does not queue the defaults again
    sr.tune("vsknn", tiny.path, tmp_path / "t", trials=4, metric="mrr@5", space=space,
            cutoffs=(5,), n_boot=20, final=False)  # fmt: skip
    assert sum(t["defaults"] for t in result_trials(tmp_path / "t")) == 1
