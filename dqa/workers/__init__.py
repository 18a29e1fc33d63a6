"""DQA scorers as workers behind one registry (`registry()`); see base.py for the interface."""
from .base import Score, ScoreError, Worker, register, registry

__all__ = ["Score", "ScoreError", "Worker", "register", "registry"]
