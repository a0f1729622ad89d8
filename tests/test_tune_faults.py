"""`tune` under faults, on real Optuna studies: a journal in a missing folder, two workers
with incompatible spaces on one study, a trial killed mid-run (kill -9), a second run in the
same folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from _helpers import run_cli

import sessionrec as sr
from sessionrec.errors import ConfigError
from sessionrec.prepare.data import PreparedData
from sessionrec.tuning.search import open_storage

optuna = pytest.importorskip("optuna", reason='tune needs the extra: pip install -e ".[tune]"')

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture
def tiny(tuning_log: PreparedData) -> PreparedData:
    return tuning_log


def test_a_journal_in_a_missing_folder_is_one_line(
    tiny: PreparedData, tmp_path: Path, capsys: Any
) -> None:
    storage = f"journal:{tmp_path / 'no' / 'such' / 'study.journal'}"
    argv = ["tune", str(tiny.path), "--model", "sr", "--out", str(tmp_path / "t"),
            "--storage", storage, "--trials", "1"]  # fmt: skip
    code, _, err = run_cli(argv, capsys)
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2 and len(lines) == 1 and "does not exist" in lines[0], err
    assert not (tmp_path / "no").exists()
    (tmp_path / "adir").mkdir()
    with pytest.raises(ConfigError, match="is a folder"):
        open_storage(f"journal:{tmp_path / 'adir'}")


def test_two_workers_with_incompatible_spaces_are_refused_before_any_trial(
    tiny: PreparedData, tmp_path: Path
) -> None:
    storage = f"journal:{tmp_path / 'shared.journal'}"
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text("k = { choices = [5, 7] }\n")
    b.write_text("k = { choices = [10, 20] }\n")  # other choices: Optuna cannot mix them
    common: dict[str, Any] = {"metric": "mrr@5", "storage": storage, "study": "s", "final": False}
    sr.tune("sknn", tiny.path, tmp_path / "w1", trials=2, space=a, **common)
    with pytest.raises(ConfigError, match=r"searched k as categorical \[5, 7\]"):
        sr.tune("sknn", tiny.path, tmp_path / "w2", trials=2, space=b, **common)
    st = optuna.load_study(study_name="s", storage=open_storage(storage))
    assert [t.state.name for t in st.get_trials()] == ["COMPLETE", "COMPLETE"]  # no FAIL left
    # the same space from another worker joins the study
    sr.tune("sknn", tiny.path, tmp_path / "w3", trials=1, space=a, **common)
    assert len(optuna.load_study(study_name="s", storage=open_storage(storage)).trials) == 3


def _running(storage: str, study: str) -> list[Any]:
    try:
        st = optuna.load_study(study_name=study, storage=open_storage(storage))
    except Exception:  # not created yet
        return []
    return st.get_trials(states=(optuna.trial.TrialState.RUNNING,))


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_trial_killed_mid_run_shows_as_failed(
    tiny: PreparedData, tmp_path: Path, kind: str
) -> None:
    out = tmp_path / "t"
    storage = (
        f"sqlite:///{tmp_path / 'study.db'}" if kind == "sqlite" else f"journal:{tmp_path / 'j'}"
    )
    space = tmp_path / "slow.toml"  # a trial that runs until it is killed
    space.write_text("n_epochs = 1000000\nlayers = [8]\nbatch_size = 4\n")
    argv = ["tune", str(tiny.path), "--model", "gru4rec", "--trials", "2", "--metric", "mrr@5",
            "--out", str(out), "--storage", storage, "--study", "s", "--space", str(space),
            "--no-final", "--device", "cpu", "--no-pruning"]  # fmt: skip
    code = f"from sessionrec.cli import main; main({argv!r})"
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while not _running(storage, "s"):
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "no trial started"
            time.sleep(0.5)
        # a second run in the same folder, while the first is alive: refused, nothing touched
        with pytest.raises(ConfigError, match="another tune is running"):
            sr.tune("gru4rec", tiny.path, out, trials=0, metric="mrr@5", storage=storage,
                    study="s", space=space, final=False)  # fmt: skip
        assert len(_running(storage, "s")) == 1
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    (killed,) = _running(storage, "s")  # what kill -9 leaves: RUNNING
    result = sr.tune("gru4rec", tiny.path, out, trials=0, metric="mrr@5", storage=storage,
                     study="s", space=space, final=False)  # fmt: skip
    st = optuna.load_study(study_name="s", storage=open_storage(storage))
    states = {t.number: t.state.name for t in st.get_trials()}
    assert states[killed.number] == "FAIL" and "RUNNING" not in states.values()
    assert result["study"]["states"].get("running", 0) == 0
