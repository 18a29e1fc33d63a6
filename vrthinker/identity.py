"""Names what shapes a judge's answers: canonical JSON of a configuration, and content digests of checkpoints.

A judge's configuration is a JSON-able dict (every backend and judge has `config()`); stored judgments are
keyed by it, so a changed model, adapter, dtype or limit is judged again. Files are named by content, never
by modification time: a copied checkpoint is the same checkpoint, an edited one is not.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

# Weight files are large: each is named by its size and its first and last MiB (tensor data, so two
# fine-tunes of one architecture differ); every other file of a checkpoint (config, generation config,
# tokenizer, chat template, weight index) is read whole.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf")
SMALL_SUFFIXES = (".json", ".jinja", ".txt", ".model", ".py", ".tiktoken")
SAMPLE_BYTES = 1 << 20


def canonical(obj: Any) -> str:
    """One JSON text per value: sorted keys, no spaces; what JSON cannot hold is written as its str()."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def plain(obj: Any) -> Any:
    """`obj` as plain JSON values (tuples become lists, other objects their str())."""
    return json.loads(canonical(obj))


def digest(obj: Any) -> str:
    """sha256 of `obj`'s canonical JSON."""
    return hashlib.sha256(canonical(obj).encode()).hexdigest()


def _file_digest(path: Path, sample: bool) -> str:
    h = hashlib.sha256()
    size = path.stat().st_size
    with open(path, "rb") as f:
        if sample and size > 2 * SAMPLE_BYTES:
            h.update(f.read(SAMPLE_BYTES))
            f.seek(size - SAMPLE_BYTES)
            h.update(f.read(SAMPLE_BYTES))
        else:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return f"{size}:{h.hexdigest()}"


def directory_fingerprint(path: str | os.PathLike, *, whole_weights: bool = False) -> str:
    """sha256 over the files at the top of a checkpoint folder, by name and content (see WEIGHT_SUFFIXES)."""
    root = Path(path).expanduser()
    parts = []
    for f in sorted(root.iterdir()):
        if not f.is_file() or f.name.startswith("."):
            continue
        weight = f.suffix.lower() in WEIGHT_SUFFIXES
        if weight or f.suffix.lower() in SMALL_SUFFIXES:
            parts.append((f.name, _file_digest(f, sample=weight and not whole_weights)))
    return digest(parts)


def model_identity(model: str, revision: str | None = None, commit: str | None = None) -> dict:
    """A model's id and revision; a local checkpoint folder adds the fingerprint of its files, a hub model
    the commit it resolved to (when known)."""
    out: dict[str, Any] = {"model_id": str(model), "revision": str(revision or "")}
    local = Path(str(model)).expanduser()
    if local.is_dir():
        out["fingerprint"] = directory_fingerprint(local)
    elif commit:
        out["commit"] = str(commit)
    return out


def adapter_identity(adapter: str | None) -> dict:
    """An adapter (a LoRA folder or hub id) by content: every weight file read whole (adapters are small)."""
    if not adapter:
        return {}
    out: dict[str, Any] = {"adapter": str(adapter)}
    local = Path(str(adapter)).expanduser()
    if local.is_dir():
        out["fingerprint"] = directory_fingerprint(local, whole_weights=True)
    return out
