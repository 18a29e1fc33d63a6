"""The client's own token count needs no torch: the tokenizer, the chat template and the image processor's sizes.

The reference is today's processor path (transformers' AutoProcessor, which needs torchvision for Qwen2.5-VL);
the light path runs in a subprocess where torch, torchvision and qwen_vl_utils cannot be imported.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

BLOCK = '''
import importlib.abc, sys
BLOCKED = ("torch", "torchvision", "qwen_vl_utils")
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None
sys.meta_path.insert(0, Refuse())
for name in BLOCKED:
    sys.modules[name] = None  # find_spec() says "not installed", as on a core-only install
'''

CONVERSATIONS = '''
import json, sys
from vrthinker.judge import load_videos
from vrthinker.protocol import Conversation, Profile

def conversations(clip_a, clip_b, render):
    out = []
    for name in ("card", "training"):
        p = Profile.load(name)
        conv = Conversation(p, "a cat  jumps\\n over  ", list(load_videos(p, clip_a, clip_b)))
        lo, hi = p.index_range
        for turn, indices in enumerate(([lo + 3, (lo + hi) // 2], [hi, lo + 7, hi - 1])):
            messages, media = conv.request()
            out.append(render(messages, media))
            conv.add_reply(f"<think> step {turn} </think>\\n<tool_call>{{\\"name\\": \\"select_frames\\", "
                           f"\\"arguments\\": {{\\"frame_indices\\": {indices}}}}}</tool_call>")
            conv.add_tool_response(indices)
    return out
'''


def _light_ids(source: Path, clips) -> dict:
    script = BLOCK + CONVERSATIONS + f'''
from vrthinker.backends.openai.tokens import load_renderer
renderer, settings, source = load_renderer([{str(source)!r}])
ids = conversations({str(clips["a"])!r}, {str(clips["b"])!r}, lambda m, media: renderer.render(m, media)[1])
loaded = sorted(n for n in ("torch", "torchvision", "qwen_vl_utils") if sys.modules.get(n) is not None)
print(json.dumps({{"ids": ids, "settings": settings, "source": source, "loaded": loaded,
                   "count": renderer.count("<Answer>TA=1</Answer> and more")}}))
'''
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT), TOKENIZERS_PARALLELISM="false")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("checkpoint", ["fixtures", "tiny"])
def test_token_ids_without_torch_equal_the_processors(checkpoint, request, clips):
    """The hub's files (preprocessor_config.json, chat_template.json) and a transformers-5 save (processor_config.json
    with the image processor nested, chat_template.jinja) both give the processor's ids, torch blocked."""
    from transformers import AutoProcessor

    from vrthinker.backends.openai import Renderer

    source = request.getfixturevalue("fixtures_dir" if checkpoint == "fixtures" else "tiny_model_dir")
    got = _light_ids(source, clips)
    assert got["loaded"] == [] and got["source"] == str(source)
    if checkpoint == "fixtures":  # generation_config.json, read as JSON
        assert got["settings"] == {"repetition_penalty": 1.05}
    processor = AutoProcessor.from_pretrained(source)
    ref = Renderer.from_processor(processor)
    scope: dict = {}
    exec(CONVERSATIONS, scope)
    want = scope["conversations"](clips["a"], clips["b"], lambda m, media: ref.render(m, media)[1])
    assert len(want) == 4 and all(len(ids) > 500 for ids in want)
    assert got["ids"] == want
    assert got["count"] == len(processor.tokenizer("<Answer>TA=1</Answer> and more", add_special_tokens=False)
                               ["input_ids"])


def test_processor_resize_equals_transformers():
    """The pad count uses transformers' image-processor sizing (what the server runs), thin images included."""
    tf = pytest.importorskip("transformers.models.qwen2_vl.image_processing_qwen2_vl")
    from vrthinker.backends.openai.tokens import processor_resize

    rng = np.random.default_rng(3)
    sizes = [(28, 28), (10, 10), (5, 300), (443, 11), (1080, 1920), (448, 448), (96, 160)]
    sizes += [tuple(int(x) for x in rng.integers(1, 4000, 2)) for _ in range(600)]
    sizes += [(int(h), int(h * r)) for h, r in zip(rng.integers(1, 60, 200), rng.uniform(1, 150, 200))]
    checked = 0
    for h, w in sizes:
        if max(h, w) / min(h, w) > 200:
            continue
        for lo, hi in ((3136, 12845056), (448 * 448, 448 * 448), (256 * 784, 1280 * 784), (3136, 1003520)):
            assert processor_resize(h, w, 28, lo, hi) == tf.smart_resize(h, w, factor=28, min_pixels=lo,
                                                                         max_pixels=hi), (h, w, lo, hi)
            checked += 1
    assert checked > 2500
    with pytest.raises(ValueError):
        processor_resize(1, 500, 28, 3136, 12845056)


def test_vision_from_config_equals_the_processors(fixtures_dir, tmp_path):
    """preprocessor_config.json read as JSON gives the processor's sizes, with min/max_pixels overriding size."""
    import shutil

    from transformers import AutoImageProcessor

    from vrthinker.backends.openai.tokens import Vision

    base = json.loads((fixtures_dir / "preprocessor_config.json").read_text())
    variants = [base, {**base, "min_pixels": 56 * 56 * 4, "max_pixels": 448 * 448},
                {k: v for k, v in base.items() if k not in ("min_pixels", "max_pixels")},
                {**{k: v for k, v in base.items() if k not in ("min_pixels", "max_pixels")},
                 "size": {"shortest_edge": 6272, "longest_edge": 802816}}]
    for i, cfg in enumerate(variants):
        d = tmp_path / f"v{i}"
        d.mkdir()
        shutil.copy(fixtures_dir / "config.json", d)
        (d / "preprocessor_config.json").write_text(json.dumps(cfg))
        ip = AutoImageProcessor.from_pretrained(d)
        got = Vision.from_config(cfg)
        assert got.image_bounds == (ip.size["shortest_edge"], ip.size["longest_edge"]), cfg
        assert (got.patch, got.merge, got.temporal) == (ip.patch_size, ip.merge_size, 2)


def test_a_whole_comparison_over_a_server_without_torch(fixtures_dir, clips):
    """The light core's `--backend openai`: connect, count tokens with the checkpoint's tokenizer, judge a pair
    over a (fake) server and read the verdict, with torch, torchvision and qwen_vl_utils impossible to import."""
    script = BLOCK + f'''
import json, sys
sys.path.insert(0, {str(ROOT / "tests")!r})
from fake_openai import Fake
from vrthinker.backends.openai import OpenAIBackend
from vrthinker.judge import Judge

f = Fake([])
b = OpenAIBackend([f.url], processor_source={str(fixtures_dir)!r})
v = Judge(b, b.resolve_profile("card")[0], max_turns=1, max_new_tokens=16).compare(
    {str(clips["a"])!r}, {str(clips["b"])!r}, "a red fox", orders="both")
f.close()
loaded = sorted(n for n in ("torch", "torchvision", "qwen_vl_utils") if sys.modules.get(n) is not None)
print(json.dumps({{"labels": [dict(o.labels) for o in v.per_order],
                   "prompt_tokens": [o.turns[0].prompt_tokens for o in v.per_order], "loaded": loaded,
                   "settings": b.checkpoint_generation}}))
'''
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT), TOKENIZERS_PARALLELISM="false")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["loaded"] == [] and got["labels"] == [{"TA": 1, "VQ": 1, "MQ": 1, "OA": 1}] * 2
    assert all(n > 1000 for n in got["prompt_tokens"]) and got["settings"] == {"repetition_penalty": 1.05}
