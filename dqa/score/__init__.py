"""Absolute scores: the workers' schedule, the stored results, the checklist, the grade and `dqa score`."""
