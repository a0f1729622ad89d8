"""sessionrec: session-based ("what next?") recommendation.

>>> import sessionrec as sr
>>> ds = sr.load("ml-100k")
>>> sr.explore(ds).save("runs/ml-100k-explore")
>>> data = sr.prepare(ds, "runs/ml-100k", session="1h", split="time", test_days=21, valid_days=21)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# Before anything can load torch: idle OpenMP threads sleep instead of spinning
# (sessionrec._threads says why; an OMP_WAIT_POLICY already set is kept).
from sessionrec import _threads
from sessionrec._version import __version__

_threads.quiet_openmp()

# Names resolved lazily so that `import sessionrec` stays fast and imports no torch.
_LAZY = {
    "load": "sessionrec.datasets",
    "Dataset": "sessionrec.datasets",
    "ColumnMapping": "sessionrec.datasets",
    "PrepareConfig": "sessionrec.prepare",
    "PreparedData": "sessionrec.prepare",
    "SessionData": "sessionrec.prepare",
    "evaluate": "sessionrec.evaluation",
    "EvalResult": "sessionrec.evaluation",
    "train": "sessionrec.runner",
    "sweep": "sessionrec.experiments",
    "experiment": "sessionrec.study",
    "tune": "sessionrec.tuning",
    "load_model": "sessionrec.models",
    "models_table": "sessionrec.catalog",
    "serve": "sessionrec.serving",
}

# Functions named like their subpackage are bound eagerly: importing the subpackage would
# otherwise shadow them with the module object.
from sessionrec import errors  # noqa: E402
from sessionrec.explore import Exploration, explore  # noqa: E402
from sessionrec.prepare import prepare  # noqa: E402

__all__ = [
    "ColumnMapping",
    "Dataset",
    "EvalResult",
    "Exploration",
    "PrepareConfig",
    "PreparedData",
    "SessionData",
    "__version__",
    "errors",
    "evaluate",
    "experiment",
    "explore",
    "load",
    "load_model",
    "models_table",
    "prepare",
    "serve",
    "sweep",
    "train",
    "tune",
]

if TYPE_CHECKING:
    from sessionrec.catalog import models_table
    from sessionrec.datasets import ColumnMapping, Dataset, load
    from sessionrec.evaluation import EvalResult, evaluate
    from sessionrec.experiments import sweep
    from sessionrec.models import load_model
    from sessionrec.prepare import PrepareConfig, PreparedData, SessionData
    from sessionrec.runner import train
    from sessionrec.serving import serve
    from sessionrec.study import experiment
    from sessionrec.tuning import tune


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sessionrec' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names, lazy ones included (tab completion sees ``sr.load``, ``sr.train``)."""
    return sorted(set(globals()) | set(__all__))
