"""What every command line of the project shares: model flags, loading a judge from them, one-line errors.

`judge` (vrthinker.cli and vrthinker.commands) and `dqa` (dqa.cli) both build on these; nothing here
parses a whole command line or prints a result.
"""
from __future__ import annotations

import argparse
import os
import sys

from vrthinker.errors import JudgeError, UsageError, set_cli_spelling

EXIT_OK, EXIT_USAGE, EXIT_INCOMPLETE = 0, 2, 3
BATCH_CONCURRENCY = 8  # conversations in flight for batch / rank / eval on a served backend (--concurrency)
NAMES = {"TA": "Text Alignment", "VQ": "Visual Quality", "MQ": "Motion Quality", "OA": "Overall"}
# load option -> the flag that sets it (add_model_args), for messages that name what the user typed
MODEL_FLAGS = {"protocol": "--protocol", "max_turns": "--max-turns", "max_new_tokens": "--max-new-tokens",
               "device": "--device", "dtype": "--dtype", "quantize": "--quantize", "revision": "--revision",
               "adapter": "--adapter", "trust_remote_code": "--trust-remote-code",
               "server": "--server", "served_model": "--served-model", "api_key": "--api-key",
               "concurrency": "--concurrency", "timeout": "--timeout", "check_rendering": "--check-rendering",
               "turn_deadline": "--turn-deadline", "connect_timeout": "--connect-timeout",
               "client_cache_mb": "--client-cache-mb"}


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Flags shared by every command that loads a judge."""
    from vrthinker.judge import DEFAULT_MODEL, backend_names

    g = p.add_argument_group("model")
    g.add_argument("--model", default=None, metavar="ID_OR_DIR",
                   help=f"hub id or local checkpoint dir (default {DEFAULT_MODEL})")
    g.add_argument("--backend", default="hf", choices=backend_names(),
                   help="hf: the Qwen2.5-VL judge; metrics: weight-free VQ/MQ; scripted: replies from a JSON file")
    g.add_argument("--protocol", default=None,
                   help="conversation profile when the checkpoint declares none (card, training)")
    g.add_argument("--max-turns", type=int, default=None,
                   help="assistant turns at most (profile default: card 6, training 4)")
    g.add_argument("--max-new-tokens", type=int, default=None,
                   help="new tokens per turn at most (profile default: 2048)")
    g.add_argument("--device", default=None, help="auto (default), cpu, cuda or cuda:N")
    g.add_argument("--dtype", default=None, help="auto (bf16 on GPU, fp32 on CPU), bfloat16, float16, float32")
    g.add_argument("--quantize", choices=["4bit", "8bit"], default=None, help="load weights with bitsandbytes")
    g.add_argument("--revision", default=None, help="hub revision (branch, tag or commit) of --model")
    g.add_argument("--adapter", default=None, metavar="DIR", help="a LoRA adapter dir to apply (needs peft)")
    g.add_argument("--trust-remote-code", action="store_true",
                   help="allow code from the checkpoint repo to run (off unless you ask)")
    s = p.add_argument_group("server (--backend openai)")
    s.add_argument("--server", action="append", default=None, metavar="URL",
                   help="an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (repeat to share the work)")
    s.add_argument("--served-model", default=None, metavar="NAME",
                   help="the served model's name (default: the server's only model)")
    s.add_argument("--api-key", default=None, metavar="KEY", help="bearer token (default: env VRTHINKER_API_KEY)")
    s.add_argument("--concurrency", type=int, default=None, metavar="N",
                   help="conversations in flight (default 8 for batch/rank/eval, 1 for one comparison)")
    add_client_args(s)
    s.add_argument("--check-rendering", action="store_true",
                   help="compare the server's tokens for turn 1 with ours (vLLM /tokenize); stop if they differ")


CLIENT_OPTIONS = ("timeout", "turn_deadline", "connect_timeout", "client_cache_mb")  # add_client_args' flags


def add_client_args(g) -> None:
    """The OpenAI client's time limits and cache budget (CLIENT_OPTIONS), on a parser or argument group:
    `judge`'s model flags and `dqa score --backend openai` both take them, spelled and defaulted alike."""
    g.add_argument("--timeout", type=float, default=None, metavar="S", help="seconds per request (default 600)")
    g.add_argument("--turn-deadline", type=float, default=None, metavar="S",
                   help="seconds for one turn, every retry and wait included (default twice --timeout)")
    g.add_argument("--connect-timeout", type=float, default=None, metavar="S",
                   help="seconds to open a connection; a host that does not answer is skipped (default 5)")
    g.add_argument("--client-cache-mb", type=float, default=None, metavar="MB",
                   help="one memory budget for the client's caches: encoded frames, clips, token pieces (default 256)")


def model_options(a: argparse.Namespace) -> dict:
    """The load options the model flags of `a` set (None: not given)."""
    return {k: getattr(a, k, None) for k in MODEL_FLAGS} | {"trust_remote_code": a.trust_remote_code or None,
                                                            "check_rendering": getattr(a, "check_rendering", None)
                                                            or None}


def check_model_args(a: argparse.Namespace) -> None:
    """A model flag the chosen backend does not use is a usage error naming the flag (before any work)."""
    from vrthinker.judge import unused_options

    unused = unused_options(a.backend, model_options(a))
    if unused:
        flags = ", ".join(MODEL_FLAGS[k] for k in unused)
        raise UsageError(f"{flags} {'does' if len(unused) == 1 else 'do'} not apply to --backend {a.backend}; "
                         "leave it out")


def load_judge(a: argparse.Namespace):
    """The judge the model flags of `a` describe, loaded once."""
    from vrthinker.judge import Judge

    check_model_args(a)
    opts = model_options(a)
    kw = {k: v for k, v in opts.items() if v is not None and k not in ("protocol", "max_turns", "max_new_tokens")}
    return Judge.from_pretrained(a.model, backend=a.backend, protocol=a.protocol, max_turns=a.max_turns,
                                 max_new_tokens=a.max_new_tokens, **kw)


def quiet_libraries() -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # corrupt files: our one-line error, not ffmpeg's
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        from huggingface_hub.utils import logging as hub_logging

        hub_logging.set_verbosity_error()
    except ImportError:  # pragma: no cover
        pass


def error(message: str, prog: str = "judge") -> None:
    """One plain line on stderr (never wrapped, never a traceback)."""
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr)


# the optional stacks, by the top-level module a missing import names, and the extra that installs each
EXTRAS = {"torch": "hf", "torchvision": "hf", "transformers": "hf", "accelerate": "hf", "qwen_vl_utils": "hf",
          "trl": "tune", "peft": "tune", "datasets": "tune", "mcp": "serve", "bitsandbytes": "quant",
          "flash_attn": "gpu", "pyiqa": "iqa", "decord": "decord", "playwright": "browser"}


def missing_extra(module: str | None) -> str | None:
    """The one line that fixes a missing optional package (None for a module no extra installs)."""
    top = (module or "").split(".")[0]
    if top not in EXTRAS:
        return None
    return f"this needs {top}, which the light install leaves out: pip install 'vrthinker[{EXTRAS[top]}]'"


# What Ctrl-C should tell the user: a long command sets it to a function that says what is saved and how to resume
_interrupt_note: list = [None]


def on_interrupt(note) -> None:
    """Register `note() -> str` (e.g. "12 of 40 pairs are saved in j.sqlite; ..."): printed after Ctrl-C."""
    _interrupt_note[0] = note


def guarded(run, prog: str = "judge") -> int:
    """Run a command; a user mistake or Ctrl-C becomes one line and an exit status, not a traceback."""
    set_cli_spelling(True)  # errors name --flags here, Python arguments elsewhere
    try:
        return run()
    except JudgeError as e:
        error(str(e), prog)
        return EXIT_USAGE
    except ModuleNotFoundError as e:
        fix = missing_extra(e.name)
        if fix is None:
            raise
        error(fix, prog)
        return EXIT_USAGE
    except KeyboardInterrupt:
        note = _interrupt_note[0]
        error("interrupted" + (f": {note()}" if note else ""), prog)
        return 130
    except BrokenPipeError:  # `... --json | head`
        sys.stderr.close()
        return EXIT_OK
    finally:
        _interrupt_note[0] = None
        set_cli_spelling(False)
