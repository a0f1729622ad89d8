"""The app factory uvicorn's worker processes import (``serve --workers N``).

The parent process puts its ``ServeConfig`` in the environment before starting the workers:
this edge of the service is the one place that reads it.
"""

from __future__ import annotations

import os
from typing import Any


def app() -> Any:
    from sessionrec.serving import ServeConfig, build_app

    return build_app(ServeConfig.from_json(os.environ["SESSIONREC_SERVE_CONFIG"]))
