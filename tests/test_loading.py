"""vrthinker.loading (device, dtype, hub, local dirs, sizes: one network check for everyone) and
vrthinker.prefix_cache (the one key/value prefix engine) on hand-built caches."""
import json
import socket

import pytest
import torch

from vrthinker import loading
from vrthinker.errors import ModelLoadError, UsageError
from vrthinker.prefix_cache import PrefixCache, common_prefix


@pytest.fixture
def no_network(monkeypatch):
    """Every connection attempt fails at once, and is recorded (host, port)."""
    tried = []

    def refuse(address, timeout=None, *a, **k):
        tried.append(address)
        raise OSError("network is unreachable (test)")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return tried


def test_pickers():
    assert loading.pick_device("cpu") == "cpu"
    assert loading.pick_dtype(None, "cpu") == torch.float32 and loading.pick_dtype("auto", "cuda") == torch.bfloat16
    assert loading.pick_dtype("bf16", "cpu") == torch.bfloat16 and loading.pick_dtype("fp16", "cpu") == torch.float16
    with pytest.raises(ModelLoadError, match="use auto, bfloat16"):
        loading.pick_dtype("int8", "cpu")
    assert loading.pick_attention("cpu") == "sdpa"
    pytest.importorskip("bitsandbytes")
    with pytest.raises(ModelLoadError, match="use 4bit or 8bit"):
        loading.quant_config("2bit", torch.float32)
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="CUDA is not available"):
            loading.pick_device("cuda:1")


def test_one_reachability_check_for_hub_and_downloads(no_network, monkeypatch, tmp_path):
    """The judge's hub check, the aesthetic head's download and RAFT's weights all ask loading.reachable."""
    from dqa.vbench import quality, raft

    assert loading.reachable("example.invalid") is False and no_network == [("example.invalid", 443)]
    with pytest.raises(ModelLoadError, match="cannot be reached: download it where there is network"):
        loading.hub_access("nobody-here/no-such-model")
    assert no_network[-1] == (loading.hub_host(), 443)
    with pytest.raises(ModelLoadError, match="cannot download"):
        quality._download("https://weights.example.invalid/head.pth", tmp_path / "head.pth")
    assert no_network[-1] == ("weights.example.invalid", 443)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # nothing cached
    with pytest.raises(ModelLoadError, match="unreachable"):
        raft.load_raft("torchvision:raft_small.C_T_V2")
    assert len(no_network) == 4
    for module in (quality, raft):
        assert not hasattr(module, "socket"), f"{module.__name__} opens connections itself"


def test_hub_access_offline_and_hints(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match=r"HF_HUB_OFFLINE is set: download it first \(hf download ID\) or "
                                             "pass --model DIR"):
        loading.hub_access("nobody-here/no-such-model")
    from dqa.workers.base import source_kwargs

    with pytest.raises(ModelLoadError, match="pass a local copy: dqa score --models ROLE=DIR"):
        source_kwargs("nobody-here/no-such-model")


def test_local_dirs_and_sizes(tmp_path):
    assert loading.looks_local("./x") and loading.looks_local("/abs") and loading.looks_local("plain")
    assert not loading.looks_local("owner/name")
    with pytest.raises(ModelLoadError, match="model not found"):
        loading.source_kwargs(str(tmp_path / "missing"))
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "model.safetensors").write_bytes(b"\0" * 4000)
    (ckpt / "config.json").write_text(json.dumps({"dtype": "bfloat16"}))
    assert loading.source_kwargs(str(ckpt)) == (str(ckpt), {})
    assert loading.stored_bytes_per_param(ckpt) == 2.0
    assert loading.weights_gb(str(ckpt)) == pytest.approx(4e-6)
    assert loading.weights_gb(str(ckpt), 4.0) == pytest.approx(8e-6)  # fp32 is twice the stored bf16
    assert loading.weights_gb("owner/name", 2.0, fallback_gb=15.5) == 15.5
    assert loading.memory_needed_gb(str(ckpt), 1.0) == pytest.approx(2e-6)
    assert loading.memory_needed_gb(str(tmp_path), 4.0) is None  # no weights there
    assert loading.memory_needed_gb("nobody-here/no-such-model", 2.0) is None  # not cached: unknown


def test_cpu_refusal_only_when_nothing_was_asked(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    loading.refuse_cpu_by_default("owner/name", "cpu")  # insisting: fine
    loading.refuse_cpu_by_default(str(tmp_path / "missing"), None)  # the loader says "not found"
    with pytest.raises(UsageError, match="no CUDA device on this machine: owner/name needs about 33 GB"):
        loading.refuse_cpu_by_default("owner/name", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    loading.refuse_cpu_by_default("owner/name", None)  # a GPU: the default is fine


# --- the prefix-cache engine on a hand-built DynamicCache ------------------------------------------------------

def _cache(n: int, batch: int = 1):
    from transformers import DynamicCache

    c = DynamicCache()
    for layer in range(2):
        k = torch.arange(batch * n, dtype=torch.float32).view(batch, 1, n, 1).expand(batch, 2, n, 4).clone()
        c.update(k + layer, -k, layer)
    return c


def test_common_prefix():
    assert common_prefix([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2 and common_prefix([[5], [6]]) == 0
    assert common_prefix([]) == 0 and common_prefix([[1, 2]]) == 2


def test_crop_keeps_exactly_the_prefix_and_never_empties_by_accident():
    pc = PrefixCache(_cache(6), [10, 11, 12, 13, 14, 15, 16])
    assert pc.length == 6 and pc.ids == [10, 11, 12, 13, 14, 15]  # ids cut to what the cache holds
    pc.crop(6)  # the whole cached sequence still a prefix: nothing changes (crop(0) once emptied a cache)
    assert pc.length == 6 and pc.cache.layers[0].keys.shape[2] == 6
    pc.crop(4)
    assert pc.length == 4 and pc.ids == [10, 11, 12, 13]
    assert pc.cache.layers[1].keys[0, 0, :, 0].tolist() == [1.0, 2.0, 3.0, 4.0]
    with pytest.raises(ValueError):
        pc.crop(5)
    pc.crop(0)
    assert pc.cache is None and pc.length == 0 and pc.empty


def test_reusable_backs_off_media_runs_and_feeds_one_token():
    pc = PrefixCache(_cache(5), [1, 9, 9, 9, 2])
    assert pc.reusable([1, 9, 9, 9, 2, 3, 4]) == 5  # all of it
    assert pc.reusable([1, 9, 9, 9, 2]) == 4  # the same sequence: one token must still run
    assert pc.reusable([1, 9, 9, 7], atomic={9}) == 3
    assert pc.reusable([1, 9, 9, 9, 9], atomic={9}) == 1  # not into a run of media tokens
    assert pc.reusable([1, 9, 9, 9, 9]) == 4
    assert PrefixCache().reusable([1, 2, 3]) == 0  # nothing cached


def test_fork_and_split_are_independent():
    pc = PrefixCache(_cache(4), [1, 2, 3, 4])
    other = pc.fork()
    other.crop(2)
    assert pc.length == 4 and other.length == 2
    rows = PrefixCache.split(_cache(3, batch=2), [[1, 2, 3, 4], [5, 6, 7, 8]])
    assert [r.length for r in rows] == [3, 3] and [r.ids for r in rows] == [[1, 2, 3], [5, 6, 7]]
    assert rows[0].cache.layers[0].keys.shape[0] == rows[1].cache.layers[0].keys.shape[0] == 1
    assert rows[1].cache.layers[0].keys[0, 0, 0, 0].item() == 3.0  # row 1 of the batch


def test_a_small_local_model_runs_on_the_cpu_unasked_and_sizes_read_in_their_unit(monkeypatch, tmp_path):
    """A model that fits easily in RAM is not refused without --device cpu; a big one is, its size in GB/MB."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    small = tmp_path / "tiny"
    small.mkdir()
    (small / "model.safetensors").write_bytes(b"\0" * 3_000_000)  # 3 MB of bf16 weights: 6 MB in fp32
    (small / "config.json").write_text(json.dumps({"dtype": "bfloat16"}))
    loading.refuse_cpu_by_default(str(small), None)  # runs: no refusal
    monkeypatch.setattr(loading, "small_enough_for_cpu_gb", lambda: 0.001)  # a machine with almost no RAM free
    with pytest.raises(UsageError, match=r"needs about 6 MB of memory in float32 on the CPU \(3 MB in bfloat16"):
        loading.refuse_cpu_by_default(str(small), None)
    assert loading.human_size(0.0123) == "12.3 MB" and loading.human_size(3.42) == "3.4 GB"
    assert loading.human_size(33.1) == "33 GB"
    assert 0 < loading.small_enough_for_cpu_gb() <= 4.0
