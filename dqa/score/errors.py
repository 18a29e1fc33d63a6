"""Why a video cannot get a component: `ScoreError` and its reason word (no scorer imported here)."""
from __future__ import annotations

from vrthinker.errors import JudgeError


class ScoreError(JudgeError):
    """This video cannot get this component. `reason` is one word a program can act on:
    bad_video, too_few_frames, empty_prompt, no_entities, model_unavailable, over_budget, failed."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(message)
