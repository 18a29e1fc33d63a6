"""A stored result is reused only for the same model, and always for the same model: whole-file checkpoint
fingerprints (cached in the store), and a local model keyed by what it is, not by the path that named it."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from vrthinker.batch import identify, read_pairs, run_batch
from vrthinker.identity import adapter_identity, model_identity
from vrthinker.judge import Judge
from vrthinker.store import Store


def _checkpoint(d: Path, weights: bytes) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text('{"hidden_size": 8}')
    (d / "model.safetensors").write_bytes(weights)
    return d


def test_a_change_in_the_middle_of_a_weight_file_changes_the_fingerprint(tmp_path):
    """A merged LoRA that changes only middle tensors: the first and last MiB alone did not see it."""
    weights = bytearray(b"\7" * (5 << 20))
    a = model_identity(str(_checkpoint(tmp_path / "base", bytes(weights))))
    weights[len(weights) // 2] ^= 0xFF
    b = model_identity(str(_checkpoint(tmp_path / "merged", bytes(weights))))
    assert a["fingerprint"] != b["fingerprint"]
    ad1 = _checkpoint(tmp_path / "ad1", bytes(weights))
    weights[(3 << 20)] ^= 0xFF
    ad2 = _checkpoint(tmp_path / "ad2", bytes(weights))
    assert adapter_identity(str(ad1))["fingerprint"] != adapter_identity(str(ad2))["fingerprint"]


def test_checkpoint_hashes_are_remembered_in_the_store_by_path_size_and_mtime(tmp_path):
    from vrthinker.identity import hashing_with

    ckpt = _checkpoint(tmp_path / "ckpt", b"\1" * (3 << 20))
    weights = ckpt / "model.safetensors"
    with Store(tmp_path / "j.sqlite") as store:
        with hashing_with(store.file_hash):
            first = model_identity(str(ckpt))["fingerprint"]
        rows = {r["path"]: dict(r) for r in store.db.execute("SELECT * FROM file_hashes")}
        assert set(rows) == {str(weights.resolve()), str((ckpt / "config.json").resolve())}
        st = weights.stat()
        assert rows[str(weights.resolve())]["size"] == st.st_size and \
            rows[str(weights.resolve())]["mtime_ns"] == st.st_mtime_ns
        # the next run reads the remembered hash, not the file: a planted value shows through
        store.db.execute("UPDATE file_hashes SET sha256='planted' WHERE path=?", (str(weights.resolve()),))
        with hashing_with(store.file_hash):
            assert model_identity(str(ckpt))["fingerprint"] != first
        # a rewritten file (new mtime) is hashed again: the planted value is gone, the first fingerprint is back
        os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
        with hashing_with(store.file_hash):
            assert model_identity(str(ckpt))["fingerprint"] == first
    # without a store the same whole-file fingerprint comes out
    assert model_identity(str(ckpt))["fingerprint"] == first


def test_relative_absolute_and_copied_checkpoints_are_one_model(tmp_path, hf_backend, tiny_model_dir, clips,
                                                                monkeypatch):
    """`--model ./ckpt` and `--model /abs/ckpt` were two keys: the second run judged everything again."""
    from vrthinker.backends.hf import HFBackend

    pairs = tmp_path / "t.jsonl"
    pairs.write_text(json.dumps({"video1": str(clips["a"]), "video2": str(clips["b"]), "prompt": "a cat"}) + "\n")
    rows = read_pairs(pairs)

    def judge(model_id: str) -> Judge:
        backend = HFBackend(hf_backend.model, hf_backend.processor, model_id=model_id)
        return Judge(backend, "card", max_turns=1, max_new_tokens=4)

    copy = tmp_path / "elsewhere" / "ckpt"
    shutil.copytree(tiny_model_dir, copy)
    monkeypatch.chdir(tiny_model_dir.parent)
    with Store(tmp_path / "j.sqlite") as store:
        absolute = judge(str(tiny_model_dir))
        assert run_batch(absolute, rows, store, job="t", orders="one").judged == 1
        relative = judge(f"./{tiny_model_dir.name}")
        assert identify(relative).model_id == str(tiny_model_dir.resolve())
        assert identify(relative).label == identify(absolute).label
        s = run_batch(relative, rows, store, job="t", orders="one")
        assert (s.judged, s.reused) == (0, 1)
        s = run_batch(judge(str(copy)), rows, store, job="t", orders="one")  # the same files in another folder
        assert (s.judged, s.reused) == (0, 1)
        # every checkpoint file was hashed once per path and remembered
        paths = {r[0] for r in store.db.execute("SELECT path FROM file_hashes")}
        assert str((tiny_model_dir / "model.safetensors").resolve()) in paths
        assert str((copy / "model.safetensors").resolve()) in paths
        # a changed weight file is another model
        with open(copy / "model.safetensors", "r+b") as f:
            f.seek(os.path.getsize(copy / "model.safetensors") // 2)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0xFF]))
        s = run_batch(judge(str(copy)), rows, store, job="t", orders="one")
        assert (s.judged, s.reused) == (1, 0)
