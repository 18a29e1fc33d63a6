"""The one key/value prefix-cache engine: a model's cached keys/values and the token ids they hold.

A `PrefixCache` knows which token ids its transformers cache holds, finds how much of a new token
sequence it can reuse (the longest common prefix, never cutting into a run of media tokens, always leaving
tokens to feed), crops back to that, and forks (deep copies) for continuations that must not disturb it.
The judge's multi-turn sessions (backends/hf.py) extend one cache turn by turn; the checklist runs one
shared prefix once and many short questions over it, cropping back after each.

`Cache.crop`'s argument changed meaning within transformers 5.x (once the length to keep, where 0 emptied
the cache; now the number of tokens to remove, where 0 is a no-op): it is only ever called here, and only
with a negative count of tokens to remove, which means the same in both.
"""
from __future__ import annotations

import copy
from collections.abc import Collection, Sequence
from typing import Any


def common_prefix(rows: Sequence[Sequence[int]]) -> int:
    """Length of the longest prefix all token sequences in `rows` share."""
    if not rows:
        return 0
    first = rows[0]
    n = min(len(r) for r in rows)
    for r in rows[1:]:
        k = 0
        while k < n and r[k] == first[k]:
            k += 1
        n = k
    return n


def _seq_length(cache: Any) -> int:
    return 0 if cache is None else int(cache.get_seq_length())


class PrefixCache:
    """A transformers key/value cache (e.g. DynamicCache) and the token ids whose keys/values it holds.

    `length` is read from the cache itself, never from bookkeeping. `ids` may run one token past it (the
    last generated token has no keys/values yet) and is cut to `length` by `hold`.
    """

    def __init__(self, cache: Any = None, ids: Sequence[int] = ()):
        self.cache = cache
        self.ids: list[int] = list(ids[:_seq_length(cache)])

    @property
    def length(self) -> int:
        """Tokens whose keys/values the cache holds now (0 when there is none)."""
        return _seq_length(self.cache)

    @property
    def empty(self) -> bool:
        return self.cache is None or self.length == 0

    def hold(self, cache: Any, ids: Sequence[int]) -> "PrefixCache":
        """Take `cache` (a forward's or generate's past_key_values) as holding the first tokens of `ids`."""
        self.cache = cache
        self.ids = list(ids[:_seq_length(cache)])
        return self

    def reusable(self, ids: Sequence[int], atomic: Collection[int] = (), feed: int = 1) -> int:
        """How many leading tokens of `ids` the cache can serve: the longest prefix shared with what it holds,
        leaving at least `feed` tokens of `ids` to run (logits need one), and backed off to the start of a run
        of equal `atomic` tokens (an image's or video's placeholders) rather than cutting into it. 0 when
        nothing is cached."""
        if self.cache is None:
            return 0
        n = common_prefix([ids, self.ids])
        n = max(0, min(n, len(ids) - feed))
        while n > 0 and ids[n] in atomic and ids[n - 1] == ids[n]:
            n -= 1
        return n

    def crop(self, n: int) -> None:
        """Keep the keys/values of the first `n` tokens only (no cache at all for 0)."""
        have = self.length
        if n <= 0:
            self.cache, self.ids = None, []
            return
        if n > have:
            raise ValueError(f"cannot crop a cache of {have} tokens to {n}")
        if n < have:
            self.cache.crop(n - have)  # a negative count: tokens to remove (see the module doc)
        del self.ids[n:]

    def fork(self) -> "PrefixCache":
        """An independent copy (generate and forward passes extend the cache they are given in place)."""
        return PrefixCache(copy.deepcopy(self.cache), self.ids)

    @classmethod
    def split(cls, cache: Any, sequences: Sequence[Sequence[int]], device: Any = "cpu") -> list["PrefixCache"]:
        """One PrefixCache per row of a batched `cache` (row b holding the start of `sequences[b]`); the last
        row takes `cache` itself, the others copies."""
        import torch

        out = []
        for b, seq in enumerate(sequences):
            row = cache if b == len(sequences) - 1 else copy.deepcopy(cache)
            row.batch_select_indices(torch.tensor([b], device=device))
            out.append(cls(row, seq))
        return out
