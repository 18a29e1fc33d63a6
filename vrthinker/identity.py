"""Names what shapes a judge's answers: canonical JSON of a configuration, and content digests of checkpoints.

A judge's configuration is a JSON-able dict (every backend and judge has `config()`); stored judgments are
keyed by it, so a changed model, adapter, dtype or limit is judged again. Files are named by content, never
by modification time: a copied checkpoint is the same checkpoint, an edited one is not. Every file is read
whole (a fine-tune may change only middle tensors); inside `hashing_with(store.file_hash)` each file's hash
comes from the store's cache by (absolute path, size, mtime), so a checkpoint is read once, not per run.
`content_view` is what keys use: a local model or adapter by its fingerprint, whatever path named it.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

# The files of a checkpoint that shape its answers: weights, config, generation config, tokenizer, chat
# template, weight index. Each is hashed whole.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf")
SMALL_SUFFIXES = (".json", ".jinja", ".txt", ".model", ".py", ".tiktoken")

FileHash = Callable[[str], str]  # a file's path -> sha256 of its bytes (Store.file_hash)
_FILE_HASH: ContextVar[FileHash | None] = ContextVar("vrthinker_file_hash", default=None)
_MEMO: dict[tuple[str, int, int], str] = {}  # this process's hashes by (real path, size, mtime), without a store


@contextmanager
def hashing_with(file_hash: FileHash | None) -> Iterator[None]:
    """Within this block (this thread), checkpoint files are hashed through `file_hash`, e.g. a store's
    cached `Store.file_hash`; None keeps the process's own memo."""
    token = _FILE_HASH.set(file_hash)
    try:
        yield
    finally:
        _FILE_HASH.reset(token)


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 of a whole file, remembered for this process by (real path, size, mtime)."""
    real = os.path.realpath(path)
    st = os.stat(real)
    key = (real, st.st_size, st.st_mtime_ns)
    if key not in _MEMO:
        h = hashlib.sha256()
        with open(real, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _MEMO[key] = h.hexdigest()
    return _MEMO[key]


def canonical(obj: Any) -> str:
    """One JSON text per value: sorted keys, no spaces; what JSON cannot hold is written as its str()."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def plain(obj: Any) -> Any:
    """`obj` as plain JSON values (tuples become lists, other objects their str())."""
    return json.loads(canonical(obj))


def digest(obj: Any) -> str:
    """sha256 of `obj`'s canonical JSON."""
    return hashlib.sha256(canonical(obj).encode()).hexdigest()


def _file_digest(path: Path) -> str:
    file_hash = _FILE_HASH.get() or sha256_file
    return f"{path.stat().st_size}:{file_hash(str(path))}"


def directory_fingerprint(path: str | os.PathLike, *, whole_weights: bool = True) -> str:
    """sha256 over the files at the top of a checkpoint folder, by name and whole content (WEIGHT_SUFFIXES,
    SMALL_SUFFIXES). `whole_weights` is kept for callers of old: every file is read whole."""
    root = Path(path).expanduser()
    parts = []
    for f in sorted(root.iterdir()):
        if not f.is_file() or f.name.startswith("."):
            continue
        if f.suffix.lower() in WEIGHT_SUFFIXES + SMALL_SUFFIXES:
            parts.append((f.name, _file_digest(f)))
    return digest(parts)


def local_dir(name: str | None) -> Path | None:
    """The folder `name` names, resolved (symlinks, '..', '~'), or None for a hub id."""
    if not name:
        return None
    local = Path(str(name)).expanduser()
    return local.resolve() if local.is_dir() else None


def model_identity(model: str, revision: str | None = None, commit: str | None = None) -> dict:
    """A model's id and revision; a local checkpoint folder is named by its resolved path and the fingerprint
    of its files (`./ckpt` and `/abs/ckpt` are one model), a hub model adds the commit it resolved to."""
    out: dict[str, Any] = {"model_id": str(model), "revision": str(revision or "")}
    local = local_dir(model)
    if local is not None:
        out["model_id"] = str(local)
        out["fingerprint"] = directory_fingerprint(local)
    elif commit:
        out["commit"] = str(commit)
    return out


def adapter_identity(adapter: str | None) -> dict:
    """An adapter (a LoRA folder or hub id) by content: every weight file read whole (adapters are small)."""
    if not adapter:
        return {}
    out: dict[str, Any] = {"adapter": str(adapter)}
    local = local_dir(adapter)
    if local is not None:
        out["adapter"] = str(local)
        out["fingerprint"] = directory_fingerprint(local)
    return out


def content_view(config: dict) -> dict:
    """`config` as keys see it: a local model or adapter by its fingerprint alone, not the path it was loaded
    from (a copy elsewhere is the same model, and a path is no part of what the model answers)."""
    out = dict(config)
    if out.get("fingerprint"):
        out["model_id"] = f"local:{out['fingerprint']}"
    adapter = out.get("adapter")
    if isinstance(adapter, dict) and adapter.get("fingerprint"):
        out["adapter"] = {**adapter, "adapter": f"local:{adapter['fingerprint']}"}
    return out
