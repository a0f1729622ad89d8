"""The official GRU4Rec code's parameter files, read without executing them.

hidasib/GRU4Rec_PyTorch_Official keeps its published settings in ``paramfiles/*.py``: a
Python module that assigns an ``OrderedDict`` literal to ``gru4rec_params``, e.g.::

    from collections import OrderedDict
    gru4rec_params = OrderedDict([
    ('loss', 'bpr-max'),
    ('layers', [224]),
    ...
    ])

``read_param_file`` parses such a file with :mod:`ast` and reads the literal with
``ast.literal_eval`` (never ``exec``/``eval``): the only statements allowed are the
``OrderedDict`` import and that one assignment, so a file that does anything else is refused
before anything in it could run. ``official_params`` turns the values into a
``GRU4RecConfig`` parameter dict with the official code's semantics: its defaults for the
keys a file leaves out (``elu_param`` 0.5), the dropped-out hidden state carried to the next
step, heavy-ball momentum, logQ by each column's sampling distribution, and no ELU for
cross-entropy (see ``sessionrec.models.gru4rec``).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from sessionrec.errors import ConfigError

#: The official ``GRU4Rec.__init__`` defaults (the keys a parameter file may give).
OFFICIAL_DEFAULTS: dict[str, Any] = {
    "layers": [100],
    "loss": "cross-entropy",
    "batch_size": 64,
    "dropout_p_embed": 0.0,
    "dropout_p_hidden": 0.0,
    "learning_rate": 0.05,
    "momentum": 0.0,
    "sample_alpha": 0.5,
    "n_sample": 2048,
    "embedding": 0,
    "constrained_embedding": True,
    "n_epochs": 10,
    "bpreg": 1.0,
    "elu_param": 0.5,
    "logq": 0.0,
}

#: Where the official code's behaviour differs from sessionrec's defaults.
OFFICIAL_SEMANTICS: dict[str, Any] = {
    "hidden_dropout_placement": "state",
    "momentum_type": "heavy-ball",
    "logq_correction": "sampling",
    "elu_for_cross_entropy": False,
    "optimizer": "adagrad",
}

_VARIABLE = "gru4rec_params"


def _fail(path: Path, line: int | None, what: str) -> ConfigError:
    where = f"{path}:{line}" if line else str(path)
    return ConfigError(f"{where}: {what}")


def _is_ordered_dict(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id == "OrderedDict"
    return (
        isinstance(func, ast.Attribute)
        and func.attr == "OrderedDict"
        and isinstance(func.value, ast.Name)
        and func.value.id == "collections"
    )


def _literal_pairs(path: Path, node: ast.expr) -> dict[str, Any]:
    """The key/value pairs of ``OrderedDict([...])``, ``dict(...)`` or a dict literal."""
    line = getattr(node, "lineno", None)
    if isinstance(node, ast.Call) and _is_ordered_dict(node.func):
        if node.keywords or len(node.args) != 1:
            raise _fail(path, line, "expected OrderedDict([(key, value), ...]), found other args")
        node = node.args[0]
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise _fail(
            path,
            line,
            f"expected {_VARIABLE} = OrderedDict([(key, value), ...]) of literals, found "
            f"{ast.unparse(node)[:60]!r}",
        ) from None
    if isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, (list, tuple)) and all(
        isinstance(p, (list, tuple)) and len(p) == 2 for p in value
    ):
        pairs = [tuple(p) for p in value]
    else:
        raise _fail(path, line, f"expected (key, value) pairs, found {type(value).__name__}")
    out: dict[str, Any] = {}
    for key, v in pairs:
        if not isinstance(key, str):
            raise _fail(path, line, f"expected parameter names as strings, found {key!r}")
        out[key] = v
    return out


def read_param_file(path: str | Path) -> dict[str, Any]:
    """The raw ``gru4rec_params`` of an official parameter file, parsed, never executed.

    Raises:
        ConfigError: one line naming the file (and line) and what was wrong: unreadable,
            not Python, a statement other than the import and the assignment, values that
            are not literals, unknown parameter names.
    """
    path = Path(path)
    try:
        source = path.read_text(encoding="utf-8")
    except OSError as e:
        raise _fail(path, None, f"cannot read the parameter file ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise _fail(path, None, "expected a UTF-8 Python file, found other bytes") from None
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as e:
        raise _fail(path, e.lineno, f"expected Python, found a syntax error ({e.msg})") from None
    except (ValueError, RecursionError, MemoryError) as e:
        raise _fail(path, None, f"expected a Python file, found {type(e).__name__}") from None
    params: dict[str, Any] | None = None
    for stmt in tree.body:
        if isinstance(stmt, ast.ImportFrom) and stmt.module == "collections":
            if [a.name for a in stmt.names] == ["OrderedDict"] and stmt.names[0].asname is None:
                continue
        elif isinstance(stmt, ast.Import) and [(a.name, a.asname) for a in stmt.names] == [
            ("collections", None)
        ]:
            continue
        elif (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
            and stmt.targets[0].id == _VARIABLE
            and params is None
        ):
            params = _literal_pairs(path, stmt.value)
            continue
        raise _fail(
            path,
            stmt.lineno,
            f"expected only 'from collections import OrderedDict' and '{_VARIABLE} = "
            f"OrderedDict([...])', found {ast.unparse(stmt).splitlines()[0][:60]!r}",
        )
    if params is None:
        raise _fail(path, None, f"expected an assignment to {_VARIABLE}, found none")
    unknown = sorted(set(params) - set(OFFICIAL_DEFAULTS))
    if unknown:
        raise _fail(
            path,
            None,
            f"unknown parameter(s) {', '.join(unknown)}; the official code knows "
            f"{', '.join(sorted(OFFICIAL_DEFAULTS))}",
        )
    return params


def official_params(raw: dict[str, Any] | None = None) -> dict[str, Any]:
    """``GRU4RecConfig`` parameters reproducing the official code with ``raw`` settings.

    Keys missing from ``raw`` take the official defaults; the official semantics
    (``OFFICIAL_SEMANTICS``) are added. ``layers`` may be an int or a list, as officially.
    """
    params = {**OFFICIAL_DEFAULTS, **(raw or {}), **OFFICIAL_SEMANTICS}
    layers = params["layers"]
    params["layers"] = [layers] if isinstance(layers, int) else list(layers)
    return params


def load_param_file(path: str | Path) -> dict[str, Any]:
    """``official_params(read_param_file(path))``: what ``--param-file`` trains with."""
    return official_params(read_param_file(path))


__all__ = [
    "OFFICIAL_DEFAULTS",
    "OFFICIAL_SEMANTICS",
    "load_param_file",
    "official_params",
    "read_param_file",
]
