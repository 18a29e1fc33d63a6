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


class GivenProbabilities:
    """A backend wrapper whose answers' label digits carry given probabilities, for a backend that reads none
    (ScriptedBackend): so everything downstream of the probabilities (orders, ranking, pairs, eval, report)
    runs without a model. `scripts[c][k]` is {dimension: {"1": p, "2": p, "0": p}} for turn k of the c-th
    conversation started (cycling), or None for that turn; `mass` is reported for every digit."""

    def __init__(self, backend, scripts, mass: float = 0.99):
        self.inner, self.scripts, self.mass = backend, [list(s) for s in scripts], mass
        self.started = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def new_session(self):
        script = self.scripts[self.started % len(self.scripts)]
        self.started += 1
        return _GivenSession(self.inner.new_session(), script, self.mass)


class _GivenSession:
    def __init__(self, inner, script, mass: float):
        self.inner, self.script, self.mass, self.turn = inner, script, mass, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def generate(self, messages, images, max_new_tokens):
        from dataclasses import replace

        from vrthinker.parsing import answer_positions, recommendation_positions

        reply = self.inner.generate(messages, images, max_new_tokens)
        given = self.script[self.turn] if self.turn < len(self.script) else None
        self.turn += 1
        if given is None:
            return replace(reply, digits={})
        where = answer_positions(reply.text) or recommendation_positions(reply.text)
        return replace(reply, digits={where[d]: ({k: float(p[k]) for k in ("1", "2", "0")}, self.mass)
                                      for d, p in given.items() if d in where})
