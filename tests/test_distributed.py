"""Distributed data parallel training: two gloo processes on this machine.

Each test starts the ranks as separate Python processes with the variables torchrun sets
(``tests/_ddp_worker.py``), on a small synthetic log; one test goes through ``torchrun``
and the CLI itself. CUDA (NCCL) runs skip without a GPU.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _helpers import run_cli
from safetensors.torch import load_file

import sessionrec as sr
from sessionrec import synthetic as syn
from sessionrec.errors import ConfigError
from sessionrec.training.distributed import Distributed, rank_seed

WORKER = Path(__file__).with_name("_ddp_worker.py")
GRU = {"layers": [32], "batch_size": 16, "n_sample": 64, "loss": "bpr-max", "elu_param": 0.5,
       "momentum": 0.3, "n_epochs": 2, "learning_rate": 0.05, "dropout_p_hidden": 0.1}  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ranks(spec: dict[str, Any], tmp: Path, world: int = 2) -> list[int]:
    """Run the worker as ``world`` ranks; their exit codes."""
    arrays = Path(spec.setdefault("arrays", str(tmp / "arrays")))
    arrays.mkdir(parents=True, exist_ok=True)
    path = tmp / f"spec{len(list(tmp.glob('spec*.json')))}.json"
    path.write_text(json.dumps(spec))
    port = _free_port()
    procs = []
    for rank in range(world):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}  # fmt: skip
        procs.append(subprocess.Popen([sys.executable, str(WORKER), str(path)], env=env))
    return [p.wait(timeout=600) for p in procs]


def _arrays(folder: Path, rank: int) -> dict[str, torch.Tensor]:
    return load_file(str(folder / f"rank{rank}.safetensors"))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> sr.PreparedData:
    tmp = tmp_path_factory.mktemp("ddp")
    log = syn.generate("ecommerce", n_items=300, n_intents=10, items_per_intent=40,
                       n_sessions=3000, days=30, seed=3)  # fmt: skip
    folder = log.save(tmp / "log")
    out = sr.prepare(str(folder / "log.parquet"), tmp / "data", session="column",
                     split="time", test_days=3, valid_days=3, min_item_support=1)  # fmt: skip
    assert isinstance(out, sr.PreparedData)
    return out


@pytest.fixture(scope="module")
def gru_run(data: sr.PreparedData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """GRU4Rec (sampled bpr-max) on two ranks, row gradients gathered; its folder."""
    tmp = tmp_path_factory.mktemp("gru")
    spec = {"model": "gru4rec", "data": str(data.path), "out": str(tmp / "model"),
            "params": GRU, "patience": None}  # fmt: skip
    assert _ranks(spec, tmp) == [0, 0]
    return tmp


def test_every_rank_ends_with_the_model_rank_0_wrote(gru_run: Path) -> None:
    a, b = _arrays(gru_run / "arrays", 0), _arrays(gru_run / "arrays", 1)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    saved = sr.load_model(gru_run / "model")
    for k, v in saved.state_arrays().items():
        assert torch.equal(v, a[k]), k
    history = [
        json.loads(x) for x in (gru_run / "model" / "history.jsonl").read_text().splitlines()
    ]
    assert [r["epoch"] for r in history] == [1, 2]
    assert all(np.isfinite(r["valid_mrr@20"]) for r in history)
    comm = json.loads((gru_run / "arrays" / "comm0.json").read_text())
    assert comm["calls"] > 0 and comm["bytes"] > 0


def test_gathered_and_dense_row_gradients_agree(
    data: sr.PreparedData, gru_run: Path, tmp_path: Path
) -> None:
    """The two ways of sending the item tables' rows are the same sums (to rounding)."""
    spec = {"model": "gru4rec", "data": str(data.path), "out": str(tmp_path / "model"),
            "params": GRU, "patience": None, "rows": "dense"}  # fmt: skip
    assert _ranks(spec, tmp_path) == [0, 0]
    dense, gathered = _arrays(tmp_path / "arrays", 0), _arrays(gru_run / "arrays", 0)
    for k in gathered:
        assert torch.allclose(dense[k], gathered[k], atol=1e-4, rtol=1e-4), k
    a = json.loads((tmp_path / "arrays" / "comm0.json").read_text())
    b = json.loads((gru_run / "arrays" / "comm0.json").read_text())
    assert a["bytes"] > b["bytes"]  # every item's row against the touched ones


def test_a_killed_run_resumes_to_the_same_model(
    data: sr.PreparedData, gru_run: Path, tmp_path: Path
) -> None:
    spec: dict[str, Any] = {"model": "gru4rec", "data": str(data.path),
                            "out": str(tmp_path / "model"), "params": GRU, "patience": None,
                            "die_after_epoch": 1}  # fmt: skip
    codes = _ranks(spec, tmp_path)
    assert codes[0] == 3 and codes[1] != 0  # rank 0 died; rank 1 lost its peer
    assert not (tmp_path / "model" / "weights.safetensors").exists()
    progress = json.loads((tmp_path / "model" / "checkpoint" / "progress.json").read_text())
    assert len(progress["history"]) == 1
    spec = {**spec, "resume": True, "die_after_epoch": None}
    shutil.rmtree(tmp_path / "arrays")
    assert _ranks(spec, tmp_path) == [0, 0]
    whole = _arrays(gru_run / "arrays", 0)
    for rank in (0, 1):
        resumed = _arrays(tmp_path / "arrays", rank)
        for k in whole:
            assert torch.equal(resumed[k], whole[k]), (rank, k)


def test_two_ranks_at_half_the_batch_learn_as_one_process(
    data: sr.PreparedData, gru_run: Path, tmp_path: Path
) -> None:
    """GRU4Rec: two ranks at batch 16 against one process at 32, test Recall@5 and MRR@20;
    the gap is within what a seed moves (measured below on two seeds of one process)."""
    ddp = sr.load_model(gru_run / "model")
    one = [
        sr.train("gru4rec", data, tmp_path / f"one{s}",
                 params={**GRU, "batch_size": 32, "seed": s}, patience=None, progress=False)
        for s in (0, 1)
    ]  # fmt: skip
    pop = sr.train("pop", data, tmp_path / "pop", progress=False)
    res = {k: sr.evaluate(m, data.test, cutoffs=(5, 20)).metrics for k, m in
           (("ddp", ddp), ("one0", one[0]), ("one1", one[1]), ("pop", pop))}  # fmt: skip
    for metric in ("recall@5", "mrr@20"):
        noise = abs(res["one0"][metric] - res["one1"][metric])
        mean_one = (res["one0"][metric] + res["one1"][metric]) / 2
        assert res["ddp"][metric] > 1.5 * res["pop"][metric], (metric, res)
        assert abs(res["ddp"][metric] - mean_one) <= max(3 * noise, 0.1 * mean_one), (metric, res)


def test_sasrec_two_ranks_take_the_one_process_step(data: sr.PreparedData, tmp_path: Path) -> None:
    """Without dropout, two ranks at batch 8 see together the windows one process sees at
    16, in the same steps: the same model up to the rounding of the summed gradients (which
    Adam's normalised steps carry on: within 5 % of how far each weight moved)."""
    params = {"context_length": 8, "dim": 16, "blocks": 1, "dropout": 0.0, "n_epochs": 1,
              "batch_size": 8, "learning_rate": 0.003}  # fmt: skip
    spec = {"model": "sasrec", "data": str(data.path), "out": str(tmp_path / "model"),
            "params": params, "patience": None}  # fmt: skip
    assert _ranks(spec, tmp_path) == [0, 0]
    one = sr.train("sasrec", data, tmp_path / "one", params={**params, "batch_size": 16},
                   patience=None, progress=False).state_arrays()  # fmt: skip
    first = sr.train("sasrec", data, tmp_path / "e0", params={**params, "n_epochs": 0},
                     patience=None, progress=False).state_arrays()  # fmt: skip
    a, b = _arrays(tmp_path / "arrays", 0), _arrays(tmp_path / "arrays", 1)
    for k, v in one.items():
        assert torch.equal(a[k], b[k]), k
        moved = float((v - first[k]).abs().max())
        if moved == 0:  # (the padding row)
            assert torch.equal(a[k], v), k
            continue
        assert float((a[k] - v).abs().max()) <= 0.05 * moved, (k, (a[k] - v).abs().max(), moved)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("repeatnet", {"context_length": 8, "dim": 16, "n_epochs": 1, "batch_size": 16}),
        ("two-tower", {"context_length": 8, "dim": 16, "n_epochs": 1, "batch_size": 32}),
    ],
)
def test_window_models_train_on_two_ranks(
    data: sr.PreparedData, tmp_path: Path, name: str, params: dict[str, Any]
) -> None:
    spec = {"model": name, "data": str(data.path), "out": str(tmp_path / "model"),
            "params": params, "patience": None}  # fmt: skip
    assert _ranks(spec, tmp_path) == [0, 0]
    a, b = _arrays(tmp_path / "arrays", 0), _arrays(tmp_path / "arrays", 1)
    first = sr.train(name, data, tmp_path / "e0", params={**params, "n_epochs": 0},
                     patience=None, progress=False).state_arrays()  # fmt: skip
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], first[k]) for k in a)  # trained
    history = (tmp_path / "model" / "history.jsonl").read_text().splitlines()
    assert json.loads(history[0])["valid_mrr@20"] > 0


def test_torchrun_trains_from_the_command_line(data: sr.PreparedData, tmp_path: Path) -> None:
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed beside this Python")
    out = tmp_path / "model"
    cmd = [str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "sessionrec", "train",
           str(data.path), "--model", "sasrec", "--out", str(out), "--device", "cpu",
           "-p", "n_epochs=1", "-p", "dim=16", "-p", "context_length=8", "-p", "blocks=1"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("trained sasrec") == 1  # rank 0 reports, once
    assert (out / "weights.safetensors").exists() and (out / "checkpoint").is_dir()


def test_models_without_distributed_training_are_refused(data: sr.PreparedData,
                                                         tmp_path: Path) -> None:  # fmt: skip
    fake = Distributed(rank=0, world_size=2, device=torch.device("cpu"))
    with pytest.raises(
        ConfigError, match=r"itemknn does not train distributed; these do: .*gru4rec"
    ):
        sr.train("itemknn", data, tmp_path / "m", distributed=fake, progress=False)
    with pytest.raises(ConfigError, match="rows must be"):
        Distributed(rank=0, world_size=2, device=torch.device("cpu"), rows="sparse")


def test_dist_rows_outside_torchrun_is_refused(
    data: sr.PreparedData, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    base = ["train", str(data.path), "--model", "sasrec", "--out", str(tmp_path / "m")]
    code, _, err = run_cli([*base, "--dist-rows", "dense"], capsys)
    assert code == 2 and "applies to a run started by torchrun" in err
    code, _, err = run_cli([*base, "--dist-rows", "sparse"], capsys)
    assert code == 2 and "--dist-rows must be one of gather, dense" in err
    assert not (tmp_path / "m").exists()


def test_shards_hold_every_session_once(data: sr.PreparedData) -> None:
    from sessionrec.models.gru4rec import _shard_sessions

    train = data.train
    parts = [_shard_sessions(train, r, 3) for r in range(3)]
    assert sum(len(o) - 1 for o, _, _ in parts) == train.n_sessions
    assert sum(len(i) for _, _, i in parts) == train.n_events
    assert abs(len(parts[0][0]) - len(parts[2][0])) <= 1
    got = np.sort(np.concatenate([i for _, _, i in parts]))
    assert np.array_equal(got, np.sort(train.items))
    # rank 0 keeps the one-process seeds; other ranks draw their own
    fake = Distributed(rank=1, world_size=2, device=torch.device("cpu"))
    assert rank_seed(7, None) == 7 and rank_seed(7, fake) != 7


@pytest.mark.skipif(not torch.cuda.is_available(), reason="NCCL runs need a CUDA GPU")
def test_nccl_ranks_on_cuda(data: sr.PreparedData, tmp_path: Path) -> None:
    spec = {"model": "sasrec", "data": str(data.path), "out": str(tmp_path / "model"),
            "params": {"n_epochs": 1, "dim": 16, "context_length": 8}, "patience": None,
            "device": "cuda"}  # fmt: skip
    world = min(2, torch.cuda.device_count())
    assert _ranks(spec, tmp_path, world) == [0] * world
    a = _arrays(tmp_path / "arrays", 0)
    for r in range(1, world):
        b = _arrays(tmp_path / "arrays", r)
        assert all(torch.equal(a[k], b[k]) for k in a)
