"""Where a model comes from and where it runs: device, dtype, attention, quantization, hub, local dirs, adapters.

The one place that decides how weights are found (a local dir, the Hugging Face cache, the hub when it can
be reached: one quick network check instead of minutes of retries), how big they are, and how the judge's
Qwen2.5-VL is loaded, for judging or for training (`load_qwen`). Every scorer and the tuner use it too.
"""
from __future__ import annotations

import importlib.util
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from vrthinker.errors import ModelLoadError, UsageError, arg

HF_EXTRA = "pip install 'vrthinker[hf]'"  # the one line that fixes a missing in-process model stack
HUB_HINT = "pass --model DIR"  # how the offline message says to use a local copy (dqa names its own flag)
# Qwen2.5-VL-7B (the default judge): 8.29 B parameters, so about 16 GB in bf16 and 31 GB in fp32
DEFAULT_PARAMS_B = 8.29
_DTYPES = {"bfloat16": "bfloat16", "bf16": "bfloat16", "float16": "float16", "fp16": "float16",
           "float32": "float32", "fp32": "float32"}


def pick_device(device: str | None) -> str:
    """cuda when there is one and nothing was asked, else the device asked for (checked). Without torch (the
    light core) only the CPU exists: the weight-free parts run, and a model load says which extra it needs."""
    try:
        import torch
    except ModuleNotFoundError:
        if device in (None, "", "auto", "cpu"):
            return "cpu"
        raise ModelLoadError(f"{arg('device', device)} needs torch: {HF_EXTRA}") from None

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"{arg('device', device)}: CUDA is not available on this machine")
    return device


def pick_dtype(dtype: str | None, device: str):
    """The torch dtype for a `--dtype` name; auto is bf16 on CUDA, fp32 elsewhere."""
    import torch

    if dtype in (None, "", "auto"):
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        return getattr(torch, _DTYPES[dtype])
    except KeyError:
        raise ModelLoadError(f"{arg('dtype', dtype)}: use auto, bfloat16, float16 or float32") from None


def pick_attention(device: str) -> str:
    """flash_attention_2 when the package is importable and we are on CUDA, else PyTorch's sdpa."""
    if device.startswith("cuda") and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def quant_config(quantize: str, compute_dtype):
    """bitsandbytes 4-bit (NF4, double quantization) or 8-bit, the vision tower and output head left as they are."""
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModelLoadError(f"{arg('quantize', quantize)} needs bitsandbytes: pip install 'vrthinker[quant]'")
    from transformers import BitsAndBytesConfig

    # The vision tower (~0.7B of 8.3B) and the output head stay unquantized: they are small, and
    # quantizing the vision tower costs visual fidelity, which is what a video judge needs.
    skip = ["model.visual", "visual", "lm_head"]  # matched from the start of module names
    if quantize == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", llm_int8_skip_modules=skip,
                                  bnb_4bit_compute_dtype=compute_dtype, bnb_4bit_use_double_quant=True)
    if quantize == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    raise ModelLoadError(f"{arg('quantize', quantize)}: use 4bit or 8bit")


def reachable(host: str, port: int = 443, timeout: float = 5.0) -> bool:
    """Whether a TCP connection to host:port opens within `timeout` seconds: the one network check.

    Download libraries retry an unreachable host for minutes; this answers in seconds.
    """
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def offline() -> bool:
    """HF_HUB_OFFLINE is set."""
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def hub_host() -> str:
    return urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"


def hub_access(model: str, revision: str | None = None, hint: str = HUB_HINT) -> dict:
    """from_pretrained kwargs for a hub id, decided before loading so an offline machine fails at once, clearly:
    {} when the hub can be reached, {"local_files_only": True} when it cannot but the model is cached,
    else a ModelLoadError ending with `hint` (how to pass a local copy)."""
    from huggingface_hub import try_to_load_from_cache

    cached = isinstance(try_to_load_from_cache(model, "config.json", revision=revision), str)
    if offline():
        if cached:
            return {"local_files_only": True}
        raise ModelLoadError(f"{model} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set: "
                             f"download it first (hf download ID) or {hint}")
    host = hub_host()
    if reachable(host, timeout=5.0):
        return {}
    if cached:
        return {"local_files_only": True}
    raise ModelLoadError(f"{model} is not in the local Hugging Face cache and {host} cannot be reached: "
                         f"download it where there is network (hf download ID) or {hint}")


def looks_local(model: str) -> bool:
    """A path rather than a hub id ("owner/name")."""
    return model.startswith((".", "/", "~")) or Path(model).exists() or model.count("/") != 1


def source_kwargs(source: str, revision: str | None = None, hint: str = HUB_HINT) -> tuple[str, dict]:
    """(path or id, from_pretrained kwargs) for a hub id or a local file or dir, failing fast when offline."""
    if looks_local(source):
        path = Path(source).expanduser()
        if not path.exists():
            raise ModelLoadError(f"model not found: {source}")
        return str(path), {}
    return source, hub_access(source, revision, hint)


def weights_gb(source: str, bytes_per_param: float | None = None, fallback_gb: float = 1.0) -> float:
    """Size of a local checkpoint's weight files in GB, rescaled to `bytes_per_param` from the dtype it is
    stored in (config.json's dtype, else fp32); `fallback_gb` (the declared size of the default model)
    for a hub id, which is not downloaded just to plan."""
    path = Path(source).expanduser()
    if not path.exists():
        return fallback_gb
    files = list(path.glob("*.safetensors")) + list(path.glob("*.bin")) + list(path.glob("*.pth")) \
        if path.is_dir() else [path]
    size = sum(f.stat().st_size for f in files) / 1e9
    if bytes_per_param is not None:
        size *= bytes_per_param / stored_bytes_per_param(path)
    return size


def _config_bytes_per_param(cfg: dict) -> float:
    dtype = str(cfg.get("dtype") or cfg.get("torch_dtype") or "float32")
    return 2.0 if dtype in ("bfloat16", "float16") else 4.0


def stored_bytes_per_param(path: Path) -> float:
    """Bytes per parameter a local checkpoint is stored in (config.json's dtype; fp32 when it names none)."""
    try:
        cfg = json.loads((path / "config.json").read_text()) if path.is_dir() else {}
    except (OSError, ValueError):
        cfg = {}
    return _config_bytes_per_param(cfg)


def bytes_per_param(dtype, quantize: str | None = None) -> float:
    """Average bytes per weight once loaded: the dtype's size, or bitsandbytes' 4/8-bit (plus their scales)."""
    if quantize in ("4bit", "8bit"):
        return {"4bit": 0.55, "8bit": 1.05}[quantize]
    return float(dtype.itemsize)


def memory_needed_gb(model: str, bpp: float, revision: str | None = None) -> float | None:
    """GB the weights of `model` take at `bpp` bytes per parameter: from a local checkpoint's files, or a hub
    checkpoint's cached weight index and config (nothing is downloaded); None when neither is known."""
    if looks_local(model):
        path = Path(model).expanduser()
        return weights_gb(str(path), bpp) if path.is_dir() and any(path.glob("*.safetensors")) else None
    try:
        from huggingface_hub import try_to_load_from_cache

        index = try_to_load_from_cache(model, "model.safetensors.index.json", revision=revision)
        config = try_to_load_from_cache(model, "config.json", revision=revision)
        if not (isinstance(index, str) and isinstance(config, str)):
            return None
        total = json.loads(Path(index).read_text())["metadata"]["total_size"]
        stored = _config_bytes_per_param(json.loads(Path(config).read_text()))
        return total / 1e9 * bpp / stored
    except (ImportError, OSError, ValueError, KeyError, TypeError):
        return None


def human_size(gb: float) -> str:
    """A size given in GB, in the unit a person reads: '12 MB', '3.4 GB', '33 GB'."""
    if gb < 1:
        return f"{max(gb * 1000, 0.1):.3g} MB"
    return f"{gb:.1f} GB" if gb < 10 else f"{gb:.0f} GB"


def refuse_cpu_by_default(model: str, device: str | None, dtype: str | None = None, quantize: str | None = None,
                          revision: str | None = None) -> None:
    """On a machine without CUDA, a model is only run on the CPU when asked (`--device cpu`): otherwise one
    UsageError line, before any download or load, naming the memory the model needs and the two ways on."""
    if device not in (None, "", "auto") or pick_device(device) != "cpu":
        return
    if looks_local(model) and not Path(model).expanduser().is_dir():
        return  # the loader says it is not found
    torch_dtype = pick_dtype(dtype, "cpu")
    bpp = bytes_per_param(torch_dtype, quantize)
    need = memory_needed_gb(model, bpp, revision)
    gpu = memory_needed_gb(model, 2.0, revision)
    if need is not None and need <= small_enough_for_cpu_gb():
        return  # a small model (a test model, a distilled judge) runs on the CPU without being asked
    if need is None or gpu is None:
        need, gpu = DEFAULT_PARAMS_B * bpp, DEFAULT_PARAMS_B * 2.0  # the default 7B's size
    how = quantize or str(torch_dtype).removeprefix("torch.")
    raise UsageError(f"no CUDA device on this machine: {model} needs about {human_size(need)} of memory in {how} "
                     f"on the CPU ({human_size(gpu)} in bfloat16 on a GPU); use {arg('backend', 'metrics')} "
                     f"(weight-free, offline, seconds) or pass {arg('device', 'cpu')} to run it on the CPU anyway")


def small_enough_for_cpu_gb() -> float:
    """The largest model (GB of weights) that runs on the CPU unasked: one that fits easily, at most a quarter
    of the memory available now and at most 4 GB (past that a CPU judge is too slow to start silently)."""
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 1e9
    except (ValueError, OSError, AttributeError):
        available = 0.0
    return min(4.0, available / 4)


def load_adapter(net: Any, adapter: str, trainable: bool = False) -> Any:
    """`net` wrapped with the PEFT (LoRA) adapter `adapter` (a dir or hub id); trainable to go on training it."""
    try:
        from peft import PeftModel
    except ImportError:
        raise ModelLoadError(f"{arg('adapter')} needs peft: pip install 'vrthinker[tune]'") from None
    return PeftModel.from_pretrained(net, adapter, is_trainable=trainable)


@dataclass(frozen=True)
class Loaded:
    """A loaded Qwen2.5-VL: the model (PEFT-wrapped with an adapter), its processor, where it runs, and
    whether its weights are quantized."""

    model: Any
    processor: Any
    device: str
    quantized: bool


def load_qwen(model: str, *, device: str | None = None, dtype: str | None = None, quantize: str | None = None,
              device_map: str | dict | None = None, attn_implementation: str | None = None,
              trust_remote_code: bool = False, revision: str | None = None, adapter: str | None = None,
              training: bool = False) -> Loaded:
    """Load the judge's model + processor from a hub id or a local dir (bf16 on GPU, fp32 on CPU by default).

    For judging: eval mode, gradients off. For `training` (the tuner's QLoRA): on CUDA 4-bit NF4 unless
    `quantize` says otherwise, k-bit preparation with gradient checkpointing, the whole model on one GPU,
    gradients on; an `adapter` is loaded trainable, to go on from it.
    """
    local = looks_local(model)
    if local and not Path(model).expanduser().is_dir():
        raise ModelLoadError(f"model directory not found: {model}")
    try:
        import torch
        from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration
    except ImportError as e:  # pragma: no cover - a broken install
        raise ModelLoadError(f"transformers/torch are not importable: {e}") from None
    dev = pick_device(device)
    cuda = dev.startswith("cuda")
    kw: dict[str, Any] = dict(dtype=pick_dtype(dtype, dev), revision=revision, trust_remote_code=trust_remote_code,
                              attn_implementation=attn_implementation or pick_attention(dev))
    if training and cuda and quantize is None:
        quantize = "4bit"  # QLoRA: NF4 weights, bf16 compute
    if training and device_map is None and (cuda or quantize):
        device_map = {"": dev if ":" in dev or not cuda else "cuda:0"}  # trainers want the model on one device
    if quantize:
        kw["quantization_config"] = quant_config(quantize, kw["dtype"])
        device_map = device_map or ("auto" if cuda else {"": dev})
    elif cuda and device_map is None:
        device_map = "auto" if dev == "cuda" else {"": dev}
    if device_map is not None:
        kw["device_map"] = device_map
    path = str(Path(model).expanduser()) if local else model
    if not local:
        kw.update(hub_access(model, revision))
    try:
        processor = AutoProcessor.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code,
                                                  local_files_only=kw.get("local_files_only", False))
        net = Qwen2_5_VLForConditionalGeneration.from_pretrained(path, **kw)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(f"could not load model {model!r}: {first}") from None
    if device_map is None:
        net = net.to(dev)
    if training and quantize:
        from peft import prepare_model_for_kbit_training

        net = prepare_model_for_kbit_training(net, use_gradient_checkpointing=cuda,
                                              gradient_checkpointing_kwargs={"use_reentrant": False})
    if adapter:
        net = load_adapter(net, adapter, trainable=training)
    if training:
        torch.set_grad_enabled(True)  # the judge turns gradients off globally when it loads
    else:
        net.eval()
        torch.set_grad_enabled(False)
    return Loaded(net, processor, dev, bool(quantize))
