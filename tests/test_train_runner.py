"""The training runner and `sessionrec train`: files written, checkpoints, resume, early
stopping with the best epoch restored, --param parsing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import sessionrec as sr
from sessionrec import runner
from sessionrec.cli import main
from sessionrec.cli.train import parse_params
from sessionrec.errors import ConfigError
from sessionrec.models import load_model

torch.set_num_threads(1)  # tiny tensors: threads only add synchronisation

PARAMS = {"layers": [16], "batch_size": 4, "n_sample": 8, "n_epochs": 3, "learning_rate": 0.1}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> sr.PreparedData:
    """A tiny log of users walking 3-item cycles over 30 days, prepared with a time split."""
    rng = np.random.default_rng(0)
    rows = []
    t = 1_600_000_000
    for s in range(150):
        g, start = rng.integers(0, 4), rng.integers(0, 3)
        for k in range(int(rng.integers(3, 8))):
            rows.append((int(s % 40), int(100 + g * 3 + (start + k) % 3), t + 60 * k))
        t += 17_000
    path = tmp_path_factory.mktemp("log") / "log.csv"
    with path.open("w") as f:
        f.write("user_id,item_id,timestamp\n")
        f.writelines(f"{u},{i},{ts}\n" for u, i, ts in rows)
    out = tmp_path_factory.mktemp("prep") / "data"
    data = sr.prepare(str(path), out, session="1h", split="time", test_days=5, valid_days=5)
    assert isinstance(data, sr.PreparedData)
    return data


def history(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]


def test_train_writes_the_model_directory(prepared: sr.PreparedData, tmp_path: Path) -> None:
    out = tmp_path / "model"
    model = sr.train("gru4rec", prepared, out, params=PARAMS, seed=3, progress=False)
    for name in ("config.json", "weights.safetensors", "items.parquet", "history.jsonl",
                 "data_meta.json", "learning_curve.png", "checkpoint/state.safetensors"):  # fmt: skip
        assert (out / name).exists(), name
    hist = history(out)
    assert [r["epoch"] for r in hist] == [1, 2, 3]
    assert {"train_loss", "seconds", "events_per_second"} <= set(hist[0])
    assert json.loads((out / "data_meta.json").read_text())["n_items"] == prepared.n_items
    assert (out / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    loaded = load_model(out)
    assert loaded.config.seed == 3  # type: ignore[attr-defined]
    assert torch.equal(loaded.score_sessions([[0, 1]]), model.score_sessions([[0, 1]]))
    ckpt = load_file(str(out / "checkpoint" / "state.safetensors"))
    assert int(ckpt["epochs_done"][0]) == 3 and any(k.startswith("opt/") for k in ckpt)


@pytest.mark.parametrize(
    ("name", "params", "epochs_key"),
    [
        ("gru4rec", PARAMS, "n_epochs"),
        ("two-tower", {"dim": 8, "n_epochs": 3, "batch_size": 16}, "n_epochs"),
        # dropout on: its draws are seeded per epoch, so a resumed run repeats them
        ("sasrec", {"context_length": 8, "dim": 8, "n_epochs": 3, "batch_size": 16}, "n_epochs"),
    ],
)
def test_resume_continues_from_the_checkpoint(
    prepared: sr.PreparedData, tmp_path: Path, name: str, params: dict[str, Any], epochs_key: str
) -> None:
    full = sr.train(
        name, prepared, tmp_path / "a", params=params, fit_on="train+valid", progress=False
    )
    part = {**params, epochs_key: 2}
    sr.train(name, prepared, tmp_path / "b", params=part, fit_on="train+valid", progress=False)
    # the "interrupted" run stopped after epoch 2; resuming with 3 epochs runs epoch 3 only
    state = json.loads((tmp_path / "b" / "checkpoint" / "progress.json").read_text())
    state["config"][epochs_key] = 3
    (tmp_path / "b" / "checkpoint" / "progress.json").write_text(json.dumps(state))
    resumed = sr.train(
        name, prepared, tmp_path / "b", fit_on="train+valid", resume=True, progress=False
    )
    assert [r["epoch"] for r in history(tmp_path / "b")] == [1, 2, 3]
    for k, v in full.state_arrays().items():
        assert torch.equal(v, resumed.state_arrays()[k]), k


def test_early_stopping_restores_the_best_epoch(
    prepared: sr.PreparedData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = iter([0.1, 0.3, 0.2, 0.25, 0.9])
    snapshots: list[torch.Tensor] = []

    def fake_evaluator(*_: Any) -> Any:  # (valid_metric, exclude_seen)
        def run(model: Any, data: Any) -> dict[str, float]:
            snapshots.append(model.state_arrays()["item.weight"].clone())
            v = next(values)
            return {"recall@20": v, "mrr@20": v / 2}

        return run

    monkeypatch.setattr(runner, "_evaluator", fake_evaluator)
    out = tmp_path / "m"
    model = sr.train(
        "gru4rec", prepared, out, params={**PARAMS, "n_epochs": 5}, patience=2, progress=False
    )
    hist = history(out)
    assert [r["epoch"] for r in hist] == [1, 2, 3, 4]  # no improvement in epochs 3 and 4
    assert hist[1]["valid_mrr@20"] == pytest.approx(0.15)
    assert torch.equal(model.state_arrays()["item.weight"], snapshots[1])
    assert torch.equal(load_model(out).state_arrays()["item.weight"], snapshots[1])
    assert json.loads((out / "training.json").read_text())["best_epoch"] == 2


def flat_valid(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Valid metrics that never improve after the first epoch; returns the scored epochs."""
    scored: list[int] = []

    def fake_evaluator(*_: Any) -> Any:  # (valid_metric, exclude_seen)
        def run(model: Any, data: Any) -> dict[str, float]:
            scored.append(len(scored) + 1)
            return {"recall@20": 0.5, "mrr@20": 0.25}

        return run

    monkeypatch.setattr(runner, "_evaluator", fake_evaluator)
    return scored


def test_early_stopping_is_on_by_default_when_fitting_on_train(
    prepared: sr.PreparedData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No patience asked: with valid metrics the run stops after AUTO_PATIENCE validations
    without a better one and keeps the best epoch; without them it trains every epoch."""
    flat_valid(monkeypatch)
    params = {**PARAMS, "n_epochs": 10}
    sr.train("gru4rec", prepared, tmp_path / "a", params=params, progress=False)
    assert runner.AUTO_PATIENCE == 3
    assert [r["epoch"] for r in history(tmp_path / "a")] == [1, 2, 3, 4]
    done = json.loads((tmp_path / "a" / "training.json").read_text())
    assert done["patience"] == 3 and done["patience_asked"] == "auto"
    assert done["stopped_early"] is True and done["best_epoch"] == 1
    # patience=None (or "none") switches it off: every epoch is trained, the best still kept
    sr.train("gru4rec", prepared, tmp_path / "b", params=params, patience="none",
             progress=False)  # fmt: skip
    assert len(history(tmp_path / "b")) == 10
    assert json.loads((tmp_path / "b" / "training.json").read_text())["best_epoch"] == 1
    # nothing to stop on: the configured number of epochs
    sr.train("gru4rec", prepared, tmp_path / "c", params={**params, "n_epochs": 5},
             fit_on="train+valid", progress=False)  # fmt: skip
    assert len(history(tmp_path / "c")) == 5
    done = json.loads((tmp_path / "c" / "training.json").read_text())
    assert done["patience"] is None and done["stopped_early"] is False


def test_stopping_by_default_lets_valid_choose_up_to_the_models_cap(
    prepared: sr.PreparedData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """n_epochs not given: a fit on train that stops early by default may run up to the
    model's ``early_stopping_epochs``; a fit on train+valid trains the default n_epochs."""
    from sessionrec.models.gru4rec import GRU4Rec, GRU4RecConfig

    values = iter(range(1, 100))

    def improving(*_: Any) -> Any:
        return lambda model, data: {"recall@20": 0.0, "mrr@20": next(values) / 100}

    monkeypatch.setattr(runner, "_evaluator", improving)
    small = {k: v for k, v in PARAMS.items() if k != "n_epochs"}
    assert GRU4Rec.early_stopping_epochs == 10 and GRU4RecConfig.n_epochs == 5
    sr.train("gru4rec", prepared, tmp_path / "a", params=small, progress=False)
    assert len(history(tmp_path / "a")) == 10
    # the cap, not valid, ended that run: a recorded warning says so
    (warning,) = json.loads((tmp_path / "a" / "training.json").read_text())["warnings"]
    assert "still improving at the last epoch (10: 0.0900 → 0.1000)" in warning
    assert "n_epochs" in warning
    sr.train("gru4rec", prepared, tmp_path / "b", params={**small, "n_epochs": 2},
             progress=False)  # fmt: skip
    assert len(history(tmp_path / "b")) == 2  # asked for: kept
    sr.train("gru4rec", prepared, tmp_path / "c", params=small, patience=None, progress=False)
    assert len(history(tmp_path / "c")) == 5  # no early stopping: the default n_epochs
    sr.train("gru4rec", prepared, tmp_path / "d", params=small, fit_on="train+valid",
             progress=False)  # fmt: skip
    assert len(history(tmp_path / "d")) == 5


def test_cli_train_stops_early_by_default(
    prepared: sr.PreparedData,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    flat_valid(monkeypatch)
    argv = ["train", str(prepared.path), "--model", "gru4rec", "--device", "cpu",
            "--param", "layers=8", "--param", "n_epochs=8", "--param", "batch_size=4"]  # fmt: skip
    main([*argv, "--out", str(tmp_path / "a")])
    assert len(history(tmp_path / "a")) == 4
    printed = capsys.readouterr()
    assert "stopped early (3 validations without a better mrr@20); kept the best epoch, 1" in (
        " ".join(printed.out.split())
    )
    assert "still improving" not in printed.err  # valid ended it, not the epoch count
    assert json.loads((tmp_path / "a" / "training.json").read_text())["warnings"] == []
    main([*argv, "--out", str(tmp_path / "b"), "--patience", "none"])
    assert len(history(tmp_path / "b")) == 8
    main([*argv, "--out", str(tmp_path / "c"), "--patience", "2"])
    assert len(history(tmp_path / "c")) == 3
    from _helpers import run_cli

    code, _, err = run_cli([*argv, "--out", str(tmp_path / "d"), "--patience", "soon"], capsys)
    assert code == 2 and "patience must be 'auto'" in err and "Traceback" not in err
    assert not (tmp_path / "d").exists()


def test_parse_params() -> None:
    got = parse_params(["layers=224", "layers2=[224, 224]", "constrained_embedding=true",
                        "loss=bpr-max", "learning_rate=0.05", "flag=False"])  # fmt: skip
    assert got == {"layers": 224, "layers2": [224, 224], "constrained_embedding": True,
                   "loss": "bpr-max", "learning_rate": 0.05, "flag": False}  # fmt: skip
    with pytest.raises(ConfigError):
        parse_params(["layers"])


def test_cli_train(
    prepared: sr.PreparedData, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "cli"
    main(["train", str(prepared.path), "--model", "gru4rec", "--out", str(out),
          "--param", "layers=16", "--param", "n_epochs=2", "--param", "batch_size=4",
          "--param", "constrained_embedding=false", "--param", "loss=top1-max",
          "--fit-on", "train+valid", "--seed", "5", "--device", "cpu"])  # fmt: skip
    cfg = json.loads((out / "config.json").read_text())["config"]
    assert cfg["layers"] == [16] and cfg["loss"] == "top1-max" and cfg["seed"] == 5
    assert cfg["constrained_embedding"] is False
    assert len(history(out)) == 2
    with pytest.raises(SystemExit) as exc:
        main(["train", str(prepared.path), "--model", "gru4rec", "--out", str(out),
              "--param", "no_such=1"])  # fmt: skip
    assert exc.value.code == 2
    assert "no_such" in capsys.readouterr().err


def test_long_runs_print_about_twenty_epoch_lines(
    prepared: sr.PreparedData, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("implicit")
    import logging

    with caplog.at_level(logging.INFO, logger="sessionrec.runner"):
        sr.train("bpr", prepared, tmp_path / "b", params={"n_epochs": 60, "factors": 4},
                 fit_on="train+valid", progress=False)  # fmt: skip
    printed = [r.getMessage().split(",")[0] for r in caplog.records if "events/s" in r.getMessage()]
    assert printed == ["epoch 1", *(f"epoch {e}" for e in range(3, 61, 3))]
    assert len(history(tmp_path / "b")) == 60  # the file keeps every epoch


def test_divergence_stops_training_naming_epoch_and_step(
    prepared: sr.PreparedData, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sessionrec.errors import TrainingDivergedError

    params = {**PARAMS, "learning_rate": 1e30, "optimizer": "adam"}
    with pytest.raises(TrainingDivergedError, match=r"gru4rec diverged: .* at epoch 1, step \d+"):
        sr.train("gru4rec", prepared, tmp_path / "m", params=params, progress=False)
    # no epoch of a diverged run is recorded as trained, and no model folder looks finished
    assert not (tmp_path / "m" / "weights.safetensors").exists()
    argv = ["train", str(prepared.path), "--model", "gru4rec", "--out", str(tmp_path / "c")]
    for k, v in params.items():
        argv += ["--param", f"{k}={v if not isinstance(v, list) else v[0]}"]
    from _helpers import run_cli

    code, _, err = run_cli(argv, capsys)
    assert code == 2 and "diverged" in err and "Traceback" not in err


def test_a_non_finite_epoch_is_never_kept(
    prepared: sr.PreparedData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An epoch whose weights turned NaN stops the run before it is scored or checkpointed."""
    from sessionrec.errors import TrainingDivergedError
    from sessionrec.models.gru4rec import GRU4Rec

    real = GRU4Rec.fit

    def poisoned(self: GRU4Rec, train: Any, valid: Any = None, callback: Any = None) -> Any:
        def cb(record: dict[str, Any]) -> bool:
            if record["epoch"] == 2:
                next(iter(self.params.values())).data.fill_(float("nan"))
            return bool(callback(record)) if callback else False

        return real(self, train, valid, callback=cb)

    monkeypatch.setattr(GRU4Rec, "fit", poisoned)
    out = tmp_path / "m"
    with pytest.raises(TrainingDivergedError, match="epoch 2"):
        sr.train("gru4rec", prepared, out, params=PARAMS, progress=False)
    hist = history(out)
    assert [r["epoch"] for r in hist] == [1]  # epoch 2 never recorded
    progress = json.loads((out / "checkpoint" / "progress.json").read_text())
    assert progress["best_epoch"] == 1


def test_history_is_valid_json_even_with_non_finite_numbers(tmp_path: Path) -> None:
    from sessionrec.training.curve import write_history

    def strict(s: str) -> Any:
        raise ValueError(f"not JSON: {s}")

    write_history(tmp_path / "h.jsonl", [{"epoch": 1, "train_loss": float("nan"), "x": 1.5}])
    line = (tmp_path / "h.jsonl").read_text().strip()
    assert json.loads(line, parse_constant=strict) == {"epoch": 1, "train_loss": None, "x": 1.5}


def test_a_run_ended_by_its_epoch_count_while_valid_improves_warns(
    prepared: sr.PreparedData,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The last validation the best: the warning is recorded and printed. A best epoch before
    the last, a single validation or a tie with the one before: no warning."""
    curves = {"up": [0.1, 0.2, 0.3], "peak": [0.1, 0.3, 0.2], "tie": [0.1, 0.3, 0.3]}
    for name, curve in curves.items():
        values = iter(curve)

        def fake_evaluator(*_: Any, values: Any = values) -> Any:
            return lambda model, data: {"recall@20": 0.0, "mrr@20": next(values)}

        monkeypatch.setattr(runner, "_evaluator", fake_evaluator)
        argv = ["train", str(prepared.path), "--model", "gru4rec", "--device", "cpu",
                "--param", "layers=8", "--param", "n_epochs=3", "--param", "batch_size=4",
                "--out", str(tmp_path / name)]  # fmt: skip
        main(argv)
        err = " ".join(capsys.readouterr().err.split())
        warnings = json.loads((tmp_path / name / "training.json").read_text())["warnings"]
        if name == "up":
            assert len(warnings) == 1 and "(3: 0.2000 → 0.3000)" in warnings[0]
            assert "warning: valid_mrr@20 was still improving at the last epoch" in err
        else:
            assert warnings == [] and "still improving" not in err
    monkeypatch.setattr(runner, "_evaluator", lambda *_: lambda m, d: {"mrr@20": 0.5})
    sr.train("gru4rec", prepared, tmp_path / "one", params={**PARAMS, "n_epochs": 1},
             progress=False)  # fmt: skip
    assert json.loads((tmp_path / "one" / "training.json").read_text())["warnings"] == []


def test_the_still_improving_warning_is_logged_loud_only_with_progress(
    prepared: sr.PreparedData,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """From Python with progress (a notebook): a WARNING record; without (tune's trials,
    sweeps): INFO only, the warning still kept in training.json."""
    for progress in (True, False):
        values = iter([0.1, 0.2])
        monkeypatch.setattr(
            runner, "_evaluator", lambda *_, v=values: lambda m, d: {"mrr@20": next(v)}
        )
        caplog.clear()
        with caplog.at_level("INFO", logger=runner.__name__):
            sr.train("gru4rec", prepared, tmp_path / str(progress),
                     params={**PARAMS, "n_epochs": 2}, progress=progress)  # fmt: skip
        (rec,) = [r for r in caplog.records if "still improving" in r.getMessage()]
        assert rec.levelname == ("WARNING" if progress else "INFO")
