"""GRU4Rec beside the official PyTorch code: each official behaviour on offer, hand-checked,
and official parameter files read safely with the official semantics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _helpers import run_cli
from test_gru4rec import cyclic, sessions_to_data
from test_train_runner import prepared  # noqa: F401  (a module-scoped fixture)

import sessionrec as sr
from sessionrec.errors import ConfigError
from sessionrec.models import gru4rec as gru4rec_module
from sessionrec.models import load_model
from sessionrec.models.gru4rec import GRU4Rec, GRU4RecConfig
from sessionrec.models.gru4rec_official import (
    OFFICIAL_SEMANTICS,
    load_param_file,
    official_params,
    read_param_file,
)
from sessionrec.training.optim import AdagradNesterov

torch.set_num_threads(1)

RETAILROCKET = """from collections import OrderedDict
gru4rec_params = OrderedDict([
('loss', 'bpr-max'),
('constrained_embedding', True),
('embedding', 0),
('elu_param', 0.5),
('layers', [224]),
('n_epochs', 10),
('batch_size', 80),
('dropout_p_embed', 0.5),
('dropout_p_hidden', 0.05),
('learning_rate', 0.05),
('momentum', 0.4),
('n_sample', 2048),
('sample_alpha', 0.4),
('bpreg', 1.95),
('logq', 0.0)
])
"""


def tail_heavy_log() -> Any:
    """Short cyclic sessions plus one long session last: the last steps of an epoch have a
    single active slot."""
    sessions = cyclic(30, seed=3)
    sessions.append([(k * 5) % 12 for k in range(40)])
    return sessions_to_data(sessions)


def finite(model: GRU4Rec) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in model.params.values())


# -- n_sample = 0 at the end of an epoch ---------------------------------------------------------
@pytest.mark.parametrize("loss", ["cross-entropy", "bpr-max", "top1-max"])
@pytest.mark.parametrize("n_sample", [-1, 0, 64])
def test_every_loss_and_sampling_ends_with_finite_weights(loss: str, n_sample: int) -> None:
    records: list[dict[str, Any]] = []
    model = GRU4Rec.from_params(
        {"loss": loss, "n_sample": n_sample, "layers": [8], "batch_size": 4, "n_epochs": 2,
         "elu_param": 0.5, "momentum": 0.2, "learning_rate": 0.1}
    )  # fmt: skip
    model.fit(tail_heavy_log(), callback=lambda r: records.append(r) and False)
    assert finite(model)
    assert all(np.isfinite(r["train_loss"]) for r in records)


def test_n_sample_0_stops_the_epoch_when_one_session_is_left() -> None:
    data = tail_heavy_log()
    seen: list[int] = []
    for n_sample in (0, 8):
        model = GRU4Rec.from_params(
            {"loss": "bpr-max", "n_sample": n_sample, "layers": [8], "batch_size": 4,
             "n_epochs": 1}
        )  # fmt: skip
        model.progress_hook = lambda done, total, loss: seen.append(total)
        model.fit(data)
    every_pair = int((np.diff(data.offsets) - 1).sum())
    without, with_samples = seen[0], seen[-1]
    assert with_samples == every_pair  # samples give negatives to the last slot: all pairs
    assert without < every_pair - 20  # the long session's lone tail is not trained on


def test_n_sample_0_needs_two_slots() -> None:
    with pytest.raises(ConfigError, match="batch_size >= 2"):
        GRU4RecConfig(n_sample=0, batch_size=1)


# -- hidden dropout placement -------------------------------------------------------------------
@pytest.mark.parametrize("placement", ["output", "state"])
def test_hidden_dropout_placement(placement: str) -> None:
    model = GRU4Rec.from_params(
        {"layers": [6, 5], "dropout_p_hidden": 0.5, "hidden_dropout_placement": placement}
    )
    model._init_params(10)
    items = torch.tensor([1, 2, 3])
    hidden = list(model.start(3))
    gen = torch.Generator().manual_seed(0)
    new, out = model._forward(items, hidden, gen, train=True)
    clean, _ = model._forward(items, list(model.start(3)), None, train=False)
    dropped = out == 0
    assert dropped.any()
    if placement == "state":  # official: the dropped-out state is the next step's state
        assert torch.equal(new[-1], out)
        assert bool((new[0] == 0).any()) and not bool((clean[0] == 0).any())  # layer 0 too
    else:  # sessionrec: the clean state is carried, only what goes up / out is dropped
        torch.testing.assert_close(new[0], clean[0])
        assert not bool((new[-1] == 0).any())
        torch.testing.assert_close(out[~dropped], 2 * new[-1][~dropped])


# -- momentum -----------------------------------------------------------------------------------
def hand_adagrad(grads: list[float], lr: float, mu: float, eps: float, nesterov: bool) -> float:
    p, acc, v = 1.0, 0.0, 0.0
    for g in grads:
        acc += g * g
        step = g / np.sqrt(acc + eps)
        v = mu * v - lr * step
        p += mu * v - lr * step if nesterov else v
    return p


@pytest.mark.parametrize("nesterov", [True, False])
def test_heavy_ball_and_nesterov_updates_by_hand(nesterov: bool) -> None:
    grads, lr, mu, eps = [0.5, -1.0, 2.0], 0.1, 0.4, 1e-6
    dense = torch.tensor([1.0])
    table = torch.tensor([[1.0], [1.0]])
    opt = AdagradNesterov({"w": dense}, lr=lr, momentum=mu, eps=eps, nesterov=nesterov)
    rows = AdagradNesterov({"t": table}, lr=lr, momentum=mu, eps=eps, nesterov=nesterov)
    for g in grads:
        opt.step_dense(["w"], [torch.tensor([g])])
        rows.step_rows("t", torch.tensor([1]), torch.tensor([[g]]))
    expected = hand_adagrad(grads, lr, mu, eps, nesterov)
    # heavy-ball after 3 steps, by hand: v1 = -0.1, v2 = -0.04 + 0.0894 = 0.0494, ...
    assert dense.item() == pytest.approx(expected, rel=1e-5)
    assert table[1, 0].item() == pytest.approx(expected, rel=1e-5)
    assert table[0, 0].item() == 1.0  # rows not in a step are untouched
    other = hand_adagrad(grads, lr, mu, eps, not nesterov)
    assert abs(dense.item() - other) > 1e-3


def test_momentum_type_reaches_the_optimizer() -> None:
    for kind, nesterov in (("nesterov", True), ("heavy-ball", False)):
        model = GRU4Rec.from_params({"layers": [4], "momentum": 0.3, "momentum_type": kind})
        model._init_params(5)
        opt = model._make_optimizer()
        assert isinstance(opt, AdagradNesterov) and opt.nesterov is nesterov
    assert GRU4RecConfig().momentum_type == "nesterov"  # the default, as documented
    with pytest.raises(ConfigError, match="momentum_type"):
        GRU4RecConfig(momentum_type="adam")


# -- logQ ---------------------------------------------------------------------------------------
def test_logq_columns_of_targets_and_shared_samples_by_hand() -> None:
    log_pop = torch.log(torch.tensor([1.0, 2.0, 4.0, 8.0, 16.0]))
    columns = torch.tensor([3, 1, 4, 2, 3])  # 2 batch targets, then 3 shared samples
    official = GRU4Rec.from_params({"logq_correction": "sampling", "sample_alpha": 0.25})
    ours = GRU4Rec.from_params({"sample_alpha": 0.25})
    ln2 = float(np.log(2))
    expected = torch.tensor([3 * ln2, 1 * ln2, 0.25 * 4 * ln2, 0.25 * 2 * ln2, 0.25 * 3 * ln2])
    torch.testing.assert_close(official._log_q(log_pop, columns, 2), expected)
    torch.testing.assert_close(ours._log_q(log_pop, columns, 2), log_pop[columns])


def test_official_logq_uses_raw_counts_in_training(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[torch.Tensor] = []
    original = GRU4Rec._log_q

    def spy(self: GRU4Rec, log_pop: torch.Tensor, columns: Any, n: int) -> torch.Tensor:
        seen.append(log_pop)
        return original(self, log_pop, columns, n)

    monkeypatch.setattr(GRU4Rec, "_log_q", spy)
    data = sessions_to_data(cyclic(20, seed=1))
    GRU4Rec.from_params(
        {"logq": 1.0, "logq_correction": "sampling", "n_sample": 8, "layers": [4],
         "batch_size": 4, "n_epochs": 1}
    ).fit(data)  # fmt: skip
    counts = np.maximum(data.item_counts(), 1)
    torch.testing.assert_close(seen[0], torch.log(torch.from_numpy(counts).float()))


# -- ELU, embedding -----------------------------------------------------------------------------
def test_elu_is_not_applied_to_cross_entropy_when_official(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[float] = []
    original = gru4rec_module.loss_and_grad

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["elu"])
        return original(*args, **kwargs)

    monkeypatch.setattr(gru4rec_module, "loss_and_grad", spy)
    data = sessions_to_data(cyclic(10, seed=1))
    base = {"loss": "cross-entropy", "elu_param": 0.5, "layers": [4], "batch_size": 4,
            "n_sample": 4, "n_epochs": 1}  # fmt: skip
    GRU4Rec.from_params({**base, "elu_for_cross_entropy": False}).fit(data)
    assert calls and set(calls) == {0.0}
    calls.clear()
    GRU4Rec.from_params(base).fit(data)
    assert calls and set(calls) == {0.5}


def test_embedding_layersize() -> None:
    cfg = GRU4RecConfig(embedding="layersize", layers=(24, 12), constrained_embedding=False)
    assert cfg.embedding == 24
    model = GRU4Rec(cfg)
    model._init_params(7)
    assert model.params["embed.weight"].shape == (7, 24)
    with pytest.raises(ConfigError, match="layersize"):
        GRU4RecConfig(embedding="layer")


# -- parameter files ----------------------------------------------------------------------------
def test_reads_an_official_parameter_file(tmp_path: Path) -> None:
    path = tmp_path / "retailrocket_bprmax_shared_best.py"
    path.write_text(RETAILROCKET)
    raw = read_param_file(path)
    assert list(raw)[:3] == ["loss", "constrained_embedding", "embedding"]
    assert raw["layers"] == [224] and raw["bpreg"] == 1.95
    params = load_param_file(path)
    cfg = GRU4Rec.from_params(params).config
    assert cfg.layers == (224,) and cfg.momentum == 0.4 and cfg.loss == "bpr-max"
    assert cfg.hidden_dropout_placement == "state"
    assert cfg.momentum_type == "heavy-ball"
    assert cfg.logq_correction == "sampling"
    assert cfg.elu_for_cross_entropy is False


def test_missing_keys_take_the_official_defaults(tmp_path: Path) -> None:
    path = tmp_path / "p.py"
    path.write_text(
        "import collections\ngru4rec_params = collections.OrderedDict([('layers', 64)])\n"
    )
    params = load_param_file(path)
    assert params["elu_param"] == 0.5 and params["layers"] == [64]
    assert params["n_sample"] == 2048 and params["bpreg"] == 1.0
    assert official_params({"embedding": "layersize"})["embedding"] == "layersize"
    assert GRU4Rec.from_params(official_params({"embedding": "layersize"})).config.embedding == 100
    assert OFFICIAL_SEMANTICS.items() <= official_params().items()


@pytest.mark.parametrize(
    "source, message",
    [
        ("import os\nos.system('touch {flag}')\ngru4rec_params = {{}}\n", ":1: expected only"),
        ("gru4rec_params = OrderedDict([('loss', __import__('os').system('touch {flag}'))])\n",
         ":1: expected gru4rec_params = OrderedDict"),
        ("gru4rec_params = OrderedDict([('loss', 'bpr-max')])\nopen('{flag}', 'w')\n",
         ":2: expected only"),
        ("from os import system\ngru4rec_params = {{}}\n", ":1: expected only"),
        ("gru4rec_params = OrderedDict([('loss', 'x'),\n", ": expected Python, found a syntax"),
        ("x = 1\n", ":1: expected only"),
        ("", ": expected an assignment to gru4rec_params"),
        ("gru4rec_params = OrderedDict([('hidden', 3)])\n", "unknown parameter(s) hidden"),
        ("gru4rec_params = OrderedDict([(1, 3)])\n", "parameter names as strings"),
    ],
)  # fmt: skip
def test_bad_or_malicious_files_are_refused_without_running(
    tmp_path: Path, source: str, message: str
) -> None:
    flag = tmp_path / "ran"
    path = tmp_path / "evil.py"
    path.write_text(source.format(flag=flag))
    with pytest.raises(ConfigError) as e:
        read_param_file(path)
    text = str(e.value)
    assert text.startswith(str(path)) and message in text and "\n" not in text
    assert not flag.exists()


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.py: cannot read"):
        read_param_file(tmp_path / "nope.py")


def test_python_train_with_a_param_file(prepared: sr.PreparedData, tmp_path: Path) -> None:  # noqa: F811
    path = tmp_path / "rr.py"
    path.write_text(RETAILROCKET)
    model = sr.train(
        "gru4rec", prepared, tmp_path / "m", param_file=path, progress=False,
        params={"layers": [8], "n_sample": 16, "batch_size": 4, "n_epochs": 1},
    )  # fmt: skip
    cfg: Any = model.config
    assert cfg.layers == (8,) and cfg.bpreg == 1.95 and cfg.momentum_type == "heavy-ball"
    with pytest.raises(ConfigError, match="gru4rec only"):
        sr.train("itemknn", prepared, tmp_path / "k", param_file=path, progress=False)


def test_cli_train_with_a_param_file(
    prepared: sr.PreparedData,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "rr.py"
    path.write_text(RETAILROCKET)
    argv = ["train", str(prepared.path), "--model", "gru4rec", "--out", str(tmp_path / "m"),
            "--param-file", str(path), "--param", "layers=[8]", "--param", "n_sample=16",
            "--param", "batch_size=4", "--param", "n_epochs=1", "--device", "cpu"]  # fmt: skip
    code, out, err = run_cli(argv, capsys)
    assert code == 0, out + err
    cfg = load_model(tmp_path / "m").config
    assert cfg.layers == (8,) and cfg.sample_alpha == 0.4
    assert cfg.hidden_dropout_placement == "state"
    evil = tmp_path / "evil.py"
    evil.write_text(f"open({str(tmp_path / 'ran')!r}, 'w')\n")
    code, out, err = run_cli([*argv[:6], "--param-file", str(evil)], capsys)
    assert code == 2 and str(evil) in out + err
    assert not (tmp_path / "ran").exists()
