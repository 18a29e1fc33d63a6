"""Test and benchmark helpers: in-memory frame grids, and forcing scripted replies through a real model.

`ForcedReplies` makes a real (tiny, random) model emit given texts token by token, so the whole
prefill/decode path runs at its true cost while the conversation follows a script.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


class ArrayGrid:
    """A FrameGrid look-alike over an in-memory array [T, side, side, 3], addressed like a real one."""

    def __init__(self, frames: np.ndarray, grid_size: int = 128, path: str = "<memory>"):
        from vrthinker.media.frame_grid import grid_to_real

        self.frames, self.grid_size, self.path = frames, grid_size, path
        self.total_frames, self.fps = len(frames), 24.0
        self._real = [grid_to_real(i, len(frames), grid_size) for i in range(grid_size)]
        self._images: dict[int, object] = {}

    def real_index(self, i: int) -> int:
        return self._real[i]

    def array(self, i: int) -> np.ndarray:
        return self.frames[self._real[i]]

    def sha256(self, i: int) -> str:
        return hashlib.sha256(self.array(i).tobytes()).hexdigest()

    def image(self, i: int):
        from PIL import Image

        if i not in self._images:  # one object per frame, as FrameGrid, so backends can cache by identity
            self._images[i] = Image.fromarray(self.array(i))
        return self._images[i]


def random_grid(seed: int, n_frames: int = 32, side: int = 448) -> ArrayGrid:
    rng = np.random.default_rng(seed)
    return ArrayGrid(rng.integers(0, 256, (n_frames, side, side, 3), dtype=np.uint8))


class ForcedReplies:
    """A transformers LogitsProcessor that forces reply k of a script on the k-th `generate` call.

    Each reply is forced token by token and then ended with `eos_id`; a new generate call is recognised
    by its prompt length not continuing the previous one.
    """

    def __init__(self, tokenizer, replies: Sequence[str], eos_id: int):
        self.scripts = [tokenizer(r, add_special_tokens=False)["input_ids"] + [eos_id] for r in replies]
        self.calls = -1
        self._start = None
        self._expect = None

    def reset(self) -> None:
        self.calls, self._start, self._expect = -1, None, None

    def __call__(self, input_ids, scores):
        n = input_ids.shape[1]
        if n != self._expect:  # a new generate call
            self.calls += 1
            self._start = n
        self._expect = n + 1
        script = self.scripts[min(self.calls, len(self.scripts) - 1)]
        step = n - self._start
        target = script[min(step, len(script) - 1)]
        scores[:] = float("-inf")
        scores[:, target] = 0.0
        return scores
