"""From per-frame label maps to a spatial score: is each named thing there, and do the named relations hold.

Every rule is 2D and per frame (the frames are sampled from the video); positions are mask centroids and
robust boxes, so a stray pixel or two does not move them. "In front of" / "behind" have no depth here:
they use a 2D proxy (A covers part of B's box and A's bottom edge is lower, i.e. nearer the camera on a
ground plane).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from dqa.grounding.prompt import Relation

MIN_AREA = 0.005  # an entity is visible in a frame when its mask covers at least 0.5% of the frame
MIN_SHARE = 0.5  # ... and present in the video when visible in at least half of the sampled frames
MARGIN = 0.05  # left/right/above/below: centroids at least 5% of the frame width/height apart
NEXT_TO = 1.0  # next to: centroid distance <= NEXT_TO * (sqrt(area A) + sqrt(area B)), in pixels
FRONT_OVERLAP = 0.1  # in front of: at least 10% of A's pixels inside B's box ...
BOX_PCT = 2.0  # boxes span the 2nd..98th percentile of a mask's pixel coordinates


@dataclass(frozen=True)
class Region:
    """One entity in one frame, in pixels: area, centroid, robust box (x0, y0, x1, y1)."""

    area: int
    cx: float
    cy: float
    box: tuple[float, float, float, float]


def region(mask: np.ndarray) -> Region | None:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    x0, x1 = np.percentile(xs, [BOX_PCT, 100 - BOX_PCT])
    y0, y1 = np.percentile(ys, [BOX_PCT, 100 - BOX_PCT])
    return Region(len(xs), float(xs.mean()), float(ys.mean()), (float(x0), float(y0), float(x1), float(y1)))


def holds(relation: str, a: np.ndarray, b: np.ndarray) -> bool:
    """Whether `relation` holds between the boolean masks `a` (subject) and `b` (object) of one frame."""
    ra, rb = region(a), region(b)
    if ra is None or rb is None:
        return False
    h, w = a.shape
    if relation == "left_of":
        return ra.cx < rb.cx - MARGIN * w
    if relation == "right_of":
        return ra.cx > rb.cx + MARGIN * w
    if relation == "above":
        return ra.cy < rb.cy - MARGIN * h
    if relation == "below":
        return ra.cy > rb.cy + MARGIN * h
    if relation == "on_top_of":  # above, and over B's horizontal extent (contact is not checked)
        return ra.cy < rb.cy - MARGIN * h and rb.box[0] <= ra.cx <= rb.box[2]
    if relation == "in_front_of":
        return _in_front(a, ra, rb)
    if relation == "behind":
        return _in_front(b, rb, ra)
    if relation == "next_to":
        return np.hypot(ra.cx - rb.cx, ra.cy - rb.cy) <= NEXT_TO * (np.sqrt(ra.area) + np.sqrt(rb.area))
    raise ValueError(f"unknown relation {relation!r}")


def _in_front(a: np.ndarray, ra: Region, rb: Region) -> bool:
    """2D proxy for depth: A overlaps B's box and A's bottom edge is lower in the frame (nearer the camera)."""
    x0, y0, x1, y1 = (int(round(v)) for v in rb.box)
    inside = int(a[y0:y1 + 1, x0:x1 + 1].sum())
    return inside >= FRONT_OVERLAP * ra.area and ra.box[3] > rb.box[3]


def evaluate(labels: np.ndarray, names: Sequence[str], relations: Sequence[Relation]) -> tuple[float, dict]:
    """Score in [0, 1] and details from label maps [T, H, W] (0 = background, k = entity `names[k-1]`).

    Score: the mean over items where each entity is one item (1 when present, else 0) and each relation is
    one item (its held fraction: frames where it holds / frames where both entities are visible; 0 when
    they are never visible together). With no relation, only the entities count.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3 or len(labels) == 0:
        raise ValueError(f"labels must be [T, H, W] with T >= 1, got shape {labels.shape}")
    t, h, w = labels.shape
    masks = [labels == k + 1 for k in range(len(names))]  # each [T, H, W]
    areas = [m.reshape(t, -1).mean(1) for m in masks]
    visible = [a >= MIN_AREA for a in areas]
    entities = {}
    items = []
    for name, a, v in zip(names, areas, visible):
        present = bool(v.sum() >= MIN_SHARE * t)
        entities[name] = {"present": present, "frames_present": int(v.sum()), "mean_area": round(float(a.mean()), 4)}
        items.append(1.0 if present else 0.0)
    rels = []
    for r in relations:
        both = [i for i in range(t) if visible[r.subject][i] and visible[r.object][i]]
        held = sum(holds(r.relation, masks[r.subject][i], masks[r.object][i]) for i in both)
        frac = held / len(both) if both else 0.0
        rels.append({"subject": names[r.subject], "relation": r.relation, "object": names[r.object],
                     "held_fraction": round(frac, 4), "frames_evaluated": len(both)})
        items.append(frac)
    score = float(np.mean(items)) if items else 0.0
    return score, {"frames": t, "entities": entities, "relations": rels,
                   "rules": {"min_area": MIN_AREA, "min_share": MIN_SHARE, "margin": MARGIN}}
