"""DSDR (Dual-Scale Diversity Regularization, arXiv 2602.19895) for TRL's GRPOTrainer."""

from .config import DSDRConfig
from .scorer import DiversityScorer, DiversityScores
from .trainer import DSDRTrainer

__version__ = "0.1.0"

__all__ = ["DSDRConfig", "DSDRTrainer", "DiversityScorer", "DiversityScores", "__version__"]
