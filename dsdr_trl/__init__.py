"""DSDR (Dual-Scale Diversity Regularization, arXiv 2602.19895) for TRL's GRPOTrainer."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> defining module. Imported on first use, so that `import dsdr_trl` (and every `dsdr-trl --help`)
# does not pay for torch, transformers and TRL.
_LAZY_EXPORTS = {
    "DSDRConfig": ".config",
    "DSDRTrainer": ".trainer",
    "DiversityScorer": ".scorer",
    "DiversityScores": ".scorer",
}

__all__ = ["DSDRConfig", "DSDRTrainer", "DiversityScorer", "DiversityScores", "__version__"]

if TYPE_CHECKING:
    from .config import DSDRConfig
    from .scorer import DiversityScorer, DiversityScores
    from .trainer import DSDRTrainer


def __getattr__(name: str) -> Any:
    if name not in _LAZY_EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY_EXPORTS[name], __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
