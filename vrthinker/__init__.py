"""vrthinker: a pairwise judge of AI-generated videos (VR-Thinker, a Qwen2.5-VL reward model)."""
from vrthinker.errors import JudgeError, ModelLoadError, UsageError, VideoError
from vrthinker.judge import DEFAULT_MODEL, Judge
from vrthinker.verdict import DIMENSIONS, FrameRef, Turn, Verdict

__all__ = ["Judge", "Verdict", "Turn", "FrameRef", "DIMENSIONS", "DEFAULT_MODEL", "JudgeError",
           "ModelLoadError", "UsageError", "VideoError"]
__version__ = "0.1.0"
