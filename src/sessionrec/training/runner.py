"""The training runner moved to ``sessionrec.runner`` (it sits above the models it creates,
while this package holds what models use to train); its names stay importable from here."""

from sessionrec.runner import (
    AUTO,
    AUTO_PATIENCE,
    CHECKPOINT,
    EPOCH_KEYS,
    FIT_ON,
    VALID_METRICS,
    parse_patience,
    train,
)

__all__ = [
    "AUTO",
    "AUTO_PATIENCE",
    "CHECKPOINT",
    "EPOCH_KEYS",
    "FIT_ON",
    "VALID_METRICS",
    "parse_patience",
    "train",
]
