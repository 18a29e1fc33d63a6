"""Build a tiny random-weight Qwen2.5-VL checkpoint with the real processor files.

The architecture comes from the real Qwen2.5-VL-7B config (tests/fixtures/qwen2_5_vl/config.json, vendored)
cut down to a few layers, so the tokenizer, chat template, image processor and special token ids are
the real ones and only the weights are fake. Used by the test fixtures and the benchmark; nothing it
writes is committed. `--size 7b` keeps the full 7B shape (random init) for GPU speed/memory checks.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "qwen2_5_vl"
PROCESSOR_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json", "chat_template.json",
                   "preprocessor_config.json", "generation_config.json")


def tiny_config_dict(fixtures: Path = FIXTURES, size: str = "tiny") -> dict:
    cfg = json.loads((fixtures / "config.json").read_text())
    if size == "7b":
        return cfg
    hidden, heads = 64, 4  # head_dim 16 -> mrope_section must sum to 8
    cfg.update(hidden_size=hidden, intermediate_size=128, num_hidden_layers=2, num_attention_heads=heads,
               num_key_value_heads=2, max_window_layers=2, tie_word_embeddings=False)
    cfg["rope_scaling"] = {"type": "mrope", "mrope_section": [2, 3, 3]}
    cfg["vision_config"].update(depth=2, hidden_size=32, intermediate_size=64, num_heads=2,
                                out_hidden_size=hidden, fullatt_block_indexes=[1])
    return cfg


def build(out: Path, fixtures: Path = FIXTURES, size: str = "tiny", seed: int = 0,
          protocol: str | None = None) -> Path:
    """Write config, random weights and the real processor files to `out`; return `out`."""
    import torch
    from transformers import AutoProcessor, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = Qwen2_5_VLConfig(**tiny_config_dict(fixtures, size))
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.save_pretrained(out)
    processor = AutoProcessor.from_pretrained(fixtures)
    processor.save_pretrained(out)
    # the checkpoint's own decoding settings (repetition_penalty 1.05) travel with it
    (out / "generation_config.json").write_bytes((fixtures / "generation_config.json").read_bytes())
    if protocol:
        (out / "judge_protocol.json").write_text(json.dumps({"profile": protocol}) + "\n")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--size", choices=["tiny", "7b"], default="tiny")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fixtures", type=Path, default=FIXTURES)
    p.add_argument("--protocol", help="also save judge_protocol.json naming this profile")
    a = p.parse_args()
    print(build(a.out, a.fixtures, a.size, a.seed, a.protocol))


if __name__ == "__main__":
    main()
