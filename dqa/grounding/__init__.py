"""Spatial grounding of a prompt in a video: what the prompt names (prompt.py), where it is in the frames
(proxyclip.py, training-free open-vocabulary segmentation), and whether the layout matches (spatial.py)."""
from dqa.grounding.prompt import Entity, Parsed, Relation, parse_prompt
from dqa.grounding.spatial import evaluate

__all__ = ["Entity", "Parsed", "Relation", "parse_prompt", "evaluate"]
