"""The CUDA path: every model fits, streams, scores and evaluates on a GPU as it does on the CPU.

These tests run where ``torch.cuda.is_available()``; elsewhere they are skipped with that reason
(no GPU is lent to this project's CI). Only the refusal of ``--device cuda`` on a machine
without CUDA runs everywhere else.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _helpers import run_cli
from test_model_contract import ITEMS, NAMES, PREFIXES, TRAIN, cyclic, params_for

from sessionrec.errors import ConfigError
from sessionrec.evaluation import evaluate
from sessionrec.models import load_model, model_class
from sessionrec.models.base import SessionModel, resolve_device

HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device on this machine")


def tiny_prepared(root: Path) -> Path:
    """A prepared log of 3-item cycles (40 sessions over 20 days)."""
    import sessionrec as sr

    rows, t = [], 1_600_000_000
    for s in range(40):
        for k in range(3 + s % 4):
            rows.append(f"{s},{100 + (s % 4) * 3 + (s + k) % 3},{t + 60 * k}\n")
        t += 43_200
    (root / "log.csv").write_text("user_id,item_id,timestamp\n" + "".join(rows))
    sr.prepare(str(root / "log.csv"), root / "prep", session="1h", split="time",
               test_days=4, valid_days=4)  # fmt: skip
    return root / "prep"


def fit_on(name: str, device: str) -> SessionModel:
    cls = model_class(name)
    model = cls.from_params(params_for(cls, seed=3), device=device).fit(TRAIN)
    model.items = ITEMS
    return model


@pytest.mark.skipif(HAS_CUDA, reason="this machine has CUDA: the refusal cannot happen here")
def test_cuda_without_a_gpu_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        model_class("gru4rec").from_params({}, device="cuda:0")
    assert resolve_device("auto") == torch.device("cpu")
    code, out, err = run_cli(
        ["train", str(tiny_prepared(tmp_path)), "-m", "pop", "-o", str(tmp_path / "m"),
         "--device", "cuda"], capsys,
    )  # fmt: skip
    assert code == 2 and "CUDA is not available" in err and "Traceback" not in out + err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m").exists()


@needs_cuda
@pytest.mark.parametrize("name", NAMES)
def test_fit_stream_and_score_on_the_gpu(name: str) -> None:
    model = fit_on(name, "cuda")
    assert model.device.type == "cuda"
    scores = model.score_sessions(PREFIXES)
    assert scores.device.type == "cuda" and torch.isfinite(scores).all()
    state = model.step(model.start(3), torch.tensor([0, 4, 11], device=model.device))
    streamed = model.score(state)
    assert streamed.device.type == "cuda"
    torch.testing.assert_close(
        streamed.cpu(), model.score_sessions([[0], [4], [11]]).cpu(), rtol=1e-4, atol=1e-5
    )


@needs_cuda
@pytest.mark.parametrize("name", NAMES)
def test_a_gpu_model_saved_loads_on_the_cpu_with_the_same_scores(name: str, tmp_path: Path) -> None:
    model = fit_on(name, "cuda")
    model.save(tmp_path / "m")
    on_cpu = load_model(tmp_path / "m", device="cpu")
    assert on_cpu.device.type == "cpu"
    torch.testing.assert_close(
        on_cpu.score_sessions(PREFIXES), model.score_sessions(PREFIXES).cpu(), rtol=1e-4, atol=1e-5
    )


@needs_cuda
@pytest.mark.parametrize("name", NAMES)
def test_the_evaluator_gives_the_same_figures_on_both_devices(name: str, tmp_path: Path) -> None:
    fit_on(name, "cuda").save(tmp_path / "m")
    test = cyclic(15, seed=3, noise=0.3)
    cpu = evaluate(load_model(tmp_path / "m", device="cpu"), test, cutoffs=(1, 5, 10))
    gpu = evaluate(load_model(tmp_path / "m", device="cuda"), test, cutoffs=(1, 5, 10))
    assert gpu.predictions == cpu.predictions == test.n_predictions
    for key, value in cpu.metrics.items():
        assert gpu.metrics[key] == pytest.approx(value, abs=1e-6), key


@needs_cuda
def test_deterministic_models_fit_the_same_on_both_devices() -> None:
    """Counting models have no randomness: the same counts on either device."""
    for name in ("pop", "markov", "sr", "itemknn", "sknn", "vsknn"):
        cpu, gpu = fit_on(name, "cpu"), fit_on(name, "cuda")
        torch.testing.assert_close(
            gpu.score_sessions(PREFIXES).cpu(), cpu.score_sessions(PREFIXES), rtol=1e-5, atol=1e-6
        )


@needs_cuda
def test_cli_trains_on_cuda(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "g"
    code, _, err = run_cli(
        ["train", str(tiny_prepared(tmp_path)), "-m", "gru4rec", "-o", str(out), "--device", "cuda",
         "-p", "n_epochs=1", "-p", "layers=[16]", "-p", "batch_size=8"], capsys,
    )  # fmt: skip
    assert code == 0, err
    assert load_model(out, device="cuda").device.type == "cuda"
