"""AutoRec (the rating autoencoder) under distributed data parallel: two gloo processes.

The ranks are started as in tests/test_distributed.py (``_ddp_worker.py`` with torchrun's
variables), on a small synthetic rating log whose 41 items are I-AutoRec's training rows: at
4 rows per rank and step an epoch is 6 steps, and in the last one rank 1 has no row (41 =
5 × 8 + 1), so the steps a rank takes without rows are exercised too.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch
from test_distributed import _arrays, _ranks

import sessionrec as sr
from sessionrec.errors import ConfigError
from sessionrec.rating import load_rating_model
from sessionrec.rating.prepared import evaluate_prepared
from sessionrec.training.distributed import Distributed

N_ITEMS = 41
#: Without dropout the ranks' run is one process's run up to rounding; weight decay makes
#: Adam's steps depend on the gradient's scale (Adam alone would hide a constant factor).
PARAMS = {"hidden": [16], "n_epochs": 3, "batch_size": 4, "l2": 1.0, "weight_decay": 0.1,
          "learning_rate": 0.01}  # fmt: skip


@pytest.fixture(scope="module")
def rated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """90 users × 41 items, ratings from a rank-2 taste model; per-user time split."""
    tmp = tmp_path_factory.mktemp("rated")
    rng = np.random.default_rng(5)
    users, items = rng.normal(0, 1, (90, 2)), rng.normal(0, 1, (N_ITEMS, 2))
    rows = []
    for u in range(90):
        for j, i in enumerate(rng.permutation(N_ITEMS)[: rng.integers(12, 30)]):
            r = np.clip(np.rint(3 + users[u] @ items[i] + rng.normal(0, 0.3)), 1, 5)
            rows.append((u, int(i) + 1, int(r), 1_000_000 + 3600 * (u * 50 + j)))
    log = tmp / "log.csv"
    pl.DataFrame(rows, schema=["user_id", "item_id", "rating", "timestamp"],
                 orient="row").write_csv(log)  # fmt: skip
    sr.prepare(log, tmp / "prep", session="user", split="user-time", test_fraction=0.2,
               valid_fraction=0.1, min_item_support=0, min_session_length=0)  # fmt: skip
    return tmp / "prep"


def _spec(rated: Path, out: Path, **kw: Any) -> dict[str, Any]:
    return {"model": "autorec", "data": str(rated), "out": str(out), "params": PARAMS,
            "patience": None, **kw}  # fmt: skip


@pytest.fixture(scope="module")
def ddp_run(rated: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """AutoRec on two ranks at batch 4; the folder with the model and each rank's arrays."""
    tmp = tmp_path_factory.mktemp("autorec-ddp")
    assert _ranks(_spec(rated, tmp / "model"), tmp) == [0, 0]
    return tmp


def _one_process(rated: Path, out: Path, **params: Any) -> Any:
    return sr.train("autorec", rated, out, params={**PARAMS, **params}, progress=False)


def test_every_rank_ends_with_the_model_rank_0_wrote(ddp_run: Path) -> None:
    a, b = _arrays(ddp_run / "arrays", 0), _arrays(ddp_run / "arrays", 1)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    saved = load_rating_model(ddp_run / "model")
    assert len(np.unique(saved.train_items)) == N_ITEMS  # (the shape the module doc relies on)
    for k, v in saved.state_arrays().items():
        assert torch.equal(v, a[k]), k
    history = [
        json.loads(x) for x in (ddp_run / "model" / "history.jsonl").read_text().splitlines()
    ]
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert all(np.isfinite(r["valid_rmse"]) and np.isfinite(r["train_loss"]) for r in history)
    assert (ddp_run / "model" / "checkpoint" / "state.safetensors").exists()
    comm = json.loads((ddp_run / "arrays" / "comm1.json").read_text())
    assert comm["calls"] > 0 and comm["bytes"] > 0


def test_two_ranks_at_half_the_batch_take_the_one_process_steps(
    rated: Path, ddp_run: Path, tmp_path: Path
) -> None:
    """Two ranks at batch 4 against one process at batch 8, same seed, no dropout: the same
    rows in the same steps with the same summed gradient, so the same weights to rounding
    (within 0.1 % of how far each weight moved over the 18 steps), and the same epoch losses."""
    one = _one_process(rated, tmp_path / "one", batch_size=8)
    start = _one_process(rated, tmp_path / "e0", n_epochs=0).state_arrays()
    ddp = _arrays(ddp_run / "arrays", 0)
    for k, v in one.state_arrays().items():
        if not k.startswith("net."):
            assert torch.equal(ddp[k], v), k  # the training triples
            continue
        moved = float((v - start[k]).abs().max())
        assert moved > 0, k
        gap = float((ddp[k] - v).abs().max())
        assert gap <= 1e-3 * moved, (k, gap, moved)
    hist = [json.loads(x) for x in (tmp_path / "one" / "history.jsonl").read_text().splitlines()]
    ddp_hist = [json.loads(x) for x in
                (ddp_run / "model" / "history.jsonl").read_text().splitlines()]  # fmt: skip
    for a, b in zip(hist, ddp_hist, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["valid_rmse"] == pytest.approx(a["valid_rmse"], rel=1e-4)


def test_ranks_with_dropout_reach_one_process_rmse(rated: Path, tmp_path: Path) -> None:
    """With dropout each rank draws its own masks: no longer one process's run, but the test
    RMSE stays within what a seed moves one process (measured on two seeds)."""
    params = {**PARAMS, "dropout": 0.2, "n_epochs": 40, "hidden": [32], "weight_decay": 0.0,
              "l2": 10.0, "learning_rate": 0.005}  # fmt: skip
    spec = _spec(rated, tmp_path / "model", params={**params, "batch_size": 4})
    assert _ranks(spec, tmp_path) == [0, 0]
    data = sr.PreparedData(rated)
    ddp = evaluate_prepared(load_rating_model(tmp_path / "model"), data, "test")["rmse"]
    one = [
        evaluate_prepared(
            _one_process(rated, tmp_path / f"one{s}", **{**params, "batch_size": 8, "seed": s}),
            data, "test",
        )["rmse"]
        for s in (0, 1)
    ]  # fmt: skip
    base = evaluate_prepared(sr.train("baseline", rated, tmp_path / "base", progress=False),
                             data, "test")["rmse"]  # fmt: skip
    noise, mean_one = abs(one[0] - one[1]), (one[0] + one[1]) / 2
    assert ddp < base, (ddp, base)  # it learned more than the biases
    assert abs(ddp - mean_one) <= max(3 * noise, 0.02 * mean_one), (ddp, one)


def test_a_killed_run_resumes_to_the_same_model(rated: Path, ddp_run: Path, tmp_path: Path) -> None:
    spec = _spec(rated, tmp_path / "model", die_after_epoch=1)
    codes = _ranks(spec, tmp_path)
    assert codes[0] == 3 and codes[1] != 0  # rank 0 died; rank 1 lost its peer
    assert not (tmp_path / "model" / "weights.safetensors").exists()
    progress = json.loads((tmp_path / "model" / "checkpoint" / "progress.json").read_text())
    assert len(progress["history"]) == 1
    assert _ranks({**spec, "resume": True, "die_after_epoch": None}, tmp_path) == [0, 0]
    whole = _arrays(ddp_run / "arrays", 0)
    for rank in (0, 1):
        resumed = _arrays(tmp_path / "arrays", rank)
        for k in whole:
            assert torch.equal(resumed[k], whole[k]), (rank, k)
    history = (tmp_path / "model" / "history.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in history] == [1, 2, 3]


def test_one_process_resumes_and_extends_a_run(rated: Path, tmp_path: Path) -> None:
    whole = _one_process(rated, tmp_path / "whole").state_arrays()
    _one_process(rated, tmp_path / "m", n_epochs=1)
    resumed = sr.train("autorec", rated, tmp_path / "m", params={"n_epochs": 3}, resume=True,
                       progress=False).state_arrays()  # fmt: skip
    for k in whole:
        assert torch.equal(resumed[k], whole[k]), k
    with pytest.raises(ConfigError, match=r"only the number of epochs may change.*hidden"):
        sr.train("autorec", rated, tmp_path / "m", params={"hidden": [8]}, resume=True,
                 progress=False)  # fmt: skip
    sr.train("svd", rated, tmp_path / "svd", params={"n_epochs": 1}, progress=False)
    with pytest.raises(ConfigError, match="svd keeps no checkpoint to resume from; --resume "
                                          "continues autorec"):  # fmt: skip
        sr.train("svd", rated, tmp_path / "svd", resume=True, progress=False)


def test_rating_models_without_distributed_training_are_refused(
    rated: Path, tmp_path: Path
) -> None:
    fake = Distributed(rank=0, world_size=2, device=torch.device("cpu"))
    for name in ("svd", "baseline"):
        with pytest.raises(ConfigError, match=rf"{name} does not train distributed; these do: "
                                              r".*gru4rec.*autorec"):  # fmt: skip
            sr.train(name, rated, tmp_path / name, distributed=fake, progress=False)
        assert not (tmp_path / name).exists()


def _torchrun(args: list[str]) -> subprocess.CompletedProcess[str]:
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed beside this Python")
    cmd = [str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "sessionrec", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip


def test_torchrun_trains_autorec_from_the_command_line(rated: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    done = _torchrun(["train", str(rated), "--model", "autorec", "--out", str(out),
                      "--device", "cpu", "-p", "n_epochs=2", "-p", "hidden=[8]"])  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("trained autorec") == 1  # rank 0 reports, once
    assert done.stdout.count("epoch 2: train loss") == 1
    assert (out / "weights.safetensors").exists() and (out / "checkpoint").is_dir()
    assert len((out / "history.jsonl").read_text().splitlines()) == 2


def test_torchrun_refuses_a_rating_model_without_distributed_training(
    rated: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model"
    done = _torchrun(["train", str(rated), "--model", "svd", "--out", str(out),
                      "--device", "cpu", "-p", "n_epochs=1"])  # fmt: skip
    assert done.returncode != 0
    text = " ".join((done.stdout + done.stderr).split())
    assert re.search(r"svd does not train distributed; these do: [\w, -]*autorec", text), text
    assert "svd on train" not in text  # refused before it began
    assert not out.exists()
