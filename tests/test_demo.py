from __future__ import annotations

import json
from pathlib import Path

import pytest

from sessionrec.cli import main


@pytest.mark.e2e
def test_demo_end_to_end_with_cheap_models(
    ml100k: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["demo", "--source", str(ml100k), "--out", str(tmp_path), "-m", "pop", "-m", "markov"])
    out = capsys.readouterr().out
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results) == {"pop", "markov"}
    assert results["markov"]["predictions"] == 7_117
    # first-order Markov beats popularity on next-item accuracy, with or without seen items
    for key in ("all", "exclude_seen"):
        assert results["markov"][key]["recall@20"] > results["pop"][key]["recall@20"]
    assert (tmp_path / "explore" / "report.html").exists()
    assert (tmp_path / "models" / "markov" / "config.json").exists()
    assert "Toy Story (1995)" in out and "results.md" in out
    assert f"sessionrec serve {tmp_path / 'models' / 'markov'}" in out  # the page, live
    assert out.rstrip().endswith("then open http://127.0.0.1:8000/")


def test_demo_rejects_unknown_model(tmp_path: Path, ml100k: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--source", str(ml100k), "--out", str(tmp_path / "o"), "-m", "nope"])
    assert exc.value.code == 2
    assert not (tmp_path / "o").exists()  # refused before any work
