"""A reference read for tests: every frame of a file in order, with plain OpenCV (independent of
vrthinker.media.decode)."""
from __future__ import annotations

import cv2
import numpy as np


def sequential_rgb(path) -> list[np.ndarray]:
    """Every decodable frame of `path`, RGB uint8, in order."""
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return out
