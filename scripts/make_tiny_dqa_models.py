"""Build tiny random-weight checkpoints for every DQA worker, loadable through the real loaders.

Same architectures as the defaults (ViT for DINO, CLIP, DINOv2, RAFT-small, the LAION linear head, the
Qwen2.5-VL judge with its real processor), cut to a few layers. Used by tests and by bench_dqa.py; never
committed. Prints `--models` arguments for `dqa score`:

    python scripts/make_tiny_dqa_models.py OUT_DIR
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

AESTHETIC_FILE = "sa_0_4_vit_l_14_linear.pth"


def vit(path: Path, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """A DINO-style ViT-B/16 shape (224 px, 16 px patches), tiny."""
    import torch
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(seed)
    cfg = ViTConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=2 * hidden,
                    image_size=224, patch_size=16, qkv_bias=True)
    ViTModel(cfg, add_pooling_layer=False).save_pretrained(path)
    return path


def clip(path: Path, patch_size: int = 32, image_size: int = 224, seed: int = 1, tokenizer: bool = False) -> Path:
    """A full CLIPModel (text tower too, as on the hub) with a 16-wide projection; optionally a byte-level
    CLIP tokenizer of ~500 tokens so text prompts can be encoded."""
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    merges = [("c", "a"), ("ca", "t</w>"), ("d", "o"), ("do", "g</w>")]
    vocab = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    torch.manual_seed(seed)
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    text = dict(small, vocab_size=len(vocab), max_position_embeddings=77, bos_token_id=len(vocab) - 2,
                eos_token_id=len(vocab) - 1, pad_token_id=len(vocab) - 1)
    cfg = CLIPConfig(text_config=text, vision_config=dict(small, image_size=image_size, patch_size=patch_size),
                     projection_dim=16)
    CLIPModel(cfg).save_pretrained(path)
    if tokenizer:
        CLIPTokenizer(vocab={t: i for i, t in enumerate(vocab)}, merges=merges).save_pretrained(path)
    return path


def dinov2(path: Path, seed: int = 0) -> Path:
    import torch
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(seed)
    Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=56,
                             patch_size=14)).save_pretrained(path)
    return path


def aesthetic_head(folder: Path, dim: int = 16, seed: int = 2) -> Path:
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    torch.save(torch.nn.Linear(dim, 1).state_dict(), folder / AESTHETIC_FILE)
    return folder


def raft_small(path: Path, seed: int = 0) -> Path:
    import torch
    from torchvision.models.optical_flow import raft_small as build

    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(build(weights=None).state_dict(), path)
    return path


def build_all(root: Path, vlm: bool = True) -> dict[str, str]:
    """Every role's tiny checkpoint under `root`; returns role -> path (the `--models` mapping)."""
    root = Path(root)
    models = {
        "dino": vit(root / "dino"),
        "clip_b32": clip(root / "clip_b32"),
        "clip_l14": clip(root / "clip_l14", patch_size=14, seed=3),
        "aesthetic_head": aesthetic_head(root / "aesthetic"),
        "raft": raft_small(root / "raft" / "raft_small.pth"),
        "proxy_clip": clip(root / "proxy_clip", patch_size=16, image_size=64, seed=0, tokenizer=True),
        "vfm": dinov2(root / "vfm"),
    }
    if vlm:
        from make_tiny_model import build

        models["vlm"] = build(root / "vlm")
    return {k: str(v) for k, v in models.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--no-vlm", action="store_true", help="skip the tiny Qwen2.5-VL (needs tests/fixtures/qwen2_5_vl)")
    a = p.parse_args()
    models = build_all(a.out, vlm=not a.no_vlm)
    print(" ".join(f"--models {k}={v}" for k, v in models.items()))


if __name__ == "__main__":
    main()
