"""dqa: absolute scores of a video (VBench dimensions, grounding, checklist, measures, a grade), above vrthinker."""
