"""One prepared GPU check: the figures only a GPU can give, measured in one short, time-capped run.

    python3 scripts/gpu_check.py --out DIR [--size 7b|tiny] [--device cuda|cpu] [--budget-s 480]

One process runs each measurement in turn, each under its own deadline (SIGALRM) worked out from the
budget left, keeping enough for the ones after it. A measurement that fails, cannot import what it needs
or runs past its deadline is recorded as such (status failed / skipped / timeout, with the reason) and the
rest still run. DIR/gpu_check.json (every figure) and DIR/gpu_check.md (a table for the README) are
rewritten after every measurement, so a run killed from outside keeps what it had. Nothing is installed.

Measurements (models are random-init from the real Qwen2.5-VL-7B config, or the tiny one with --size tiny):
  judge_bf16    the judge in bf16 (fp32 on a CPU) built on the device, sdpa or flash-attn as detected: build
                seconds, peak memory, the scripted six-turn conversation (scripts/bench_judge.py) forced
                through it, ours against the reference procedure (one pair), both orders batched vs one by one
  tune_sampling the tuner's sampled conversations (dqa.tune.sampling) on that model: one selection, K = 4
                (greedy + 3 at temperature 0.7), replies of at most 64 tokens: seconds per selection, kinds
  checkpoint    that model saved once to the work dir (the reference, NF4, QLoRA and DQA loaders read a dir),
                then loaded back through HFBackend.from_pretrained: load seconds and peak
  judge_nf4     4-bit NF4 (bitsandbytes): load seconds, peak, the same six-turn conversation
  qlora_dpo     one DPO step of dqa.tune.train (QLoRA on CUDA) on a real tuner row (the judge's first turn):
                its token count, peak memory against the 24 GB budget
  dqa_workers   every DQA worker with random-init full-size models, one by one through dqa's Scheduler on
                one clip: load, score, unload, peak, memory back at baseline after unloading
  frame_access  our decode against the reference's open-and-seek per frame, the bench_judge clips, all cores
  qlora_dpo_six_turn  the DPO step again on a row the size of a whole six-turn conversation (128 frames)

GB are 10^9 bytes. Memory is torch.cuda.max_memory_allocated on a GPU, resident set size on a CPU.
"""
from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

GB = 1e9
STATUSES = ("ok", "skipped", "failed", "timeout")
VRAM_PROMISE_GB = 24.0
PROMPT = "A robot rides a unicorn across a rainbow bridge."
INITIAL = [16, 48, 80, 112]  # the card's four initial indices


class Skip(Exception):
    """The measurement cannot run here (a package, the device, an earlier step); the message says why."""


class Timeout(BaseException):
    """Raised by the alarm: a BaseException, so library code catching Exception cannot swallow it."""


# ---------------------------------------------------------------------------------------------- recording

def _round(v: Any) -> Any:
    return round(v, 4) if isinstance(v, float) else v


@dataclass
class Recorder:
    """Figures of one measurement as they are made (a timeout keeps those already recorded)."""

    name: str
    log: Callable[[str], None]
    figures: dict = field(default_factory=dict)
    rows: list = field(default_factory=list)  # (label, value text) for the markdown table
    notes: list = field(default_factory=list)

    def put(self, key: str, value: Any, label: str | None = None, fmt: str = "{}") -> Any:
        self.figures[key] = _round(value)
        if label is not None:
            text = "?" if value is None else (fmt.format(value) if not isinstance(value, str) else value)
            self.rows.append((label, text))
            self.log(f"  {label}: {text}")
        return value

    def note(self, text: str) -> None:
        self.notes.append(text)
        self.log(f"  note: {text}")


class Memory:
    """Peak memory over one measurement: CUDA allocator figures on a GPU, and resident set size always
    (sampled every 20 ms by a thread, since the process-wide maximum cannot be reset)."""

    def __init__(self, device: str):
        self.cuda = None
        if device.startswith("cuda"):
            import torch

            self.cuda = torch.cuda if torch.cuda.is_available() else None
        self._stop = threading.Event()
        self._thread = None
        self.rss_peak = 0.0

    @staticmethod
    def rss_gb() -> float:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / GB
        except (OSError, ValueError, IndexError):
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.rss_peak = max(self.rss_peak, self.rss_gb())

    def allocated_gb(self) -> float | None:
        if self.cuda is None:
            return None
        self.cuda.synchronize()
        return self.cuda.memory_allocated() / GB

    def peak_gb(self) -> float:
        """Peak since the last reset: allocated on a GPU, resident on a CPU."""
        if self.cuda is not None:
            self.cuda.synchronize()
            return self.cuda.max_memory_allocated() / GB
        return max(self.rss_peak, self.rss_gb())

    def reset_peak(self) -> None:
        if self.cuda is not None:
            self.cuda.synchronize()
            self.cuda.reset_peak_memory_stats()
        self.rss_peak = self.rss_gb()

    def start(self) -> dict:
        self.reset_peak()
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return {"baseline_gb": self.allocated_gb(), "rss_baseline_gb": self.rss_gb()}

    def stop(self) -> dict:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        out = {"rss_peak_gb": max(self.rss_peak, self.rss_gb())}
        if self.cuda is not None:
            self.cuda.synchronize()
            out.update(peak_gb=self.cuda.max_memory_allocated() / GB,
                       reserved_peak_gb=self.cuda.max_memory_reserved() / GB)
        return out

    def after(self) -> dict:
        free_memory()
        return {"after_gb": self.allocated_gb(), "rss_after_gb": self.rss_gb()}


def free_memory() -> None:
    gc.collect()
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.empty_cache()


@dataclass(frozen=True)
class Measurement:
    """A named check: `run(ctx, rec)` records figures or raises Skip; `reserve` is the share of the budget
    kept back for it while the measurements before it run."""

    name: str
    title: str
    run: Callable[["Context", Recorder], None]
    reserve: float


@dataclass(frozen=True)
class Outcome:
    name: str
    title: str
    status: str
    reason: str | None
    seconds: float
    cap_s: float
    figures: dict
    rows: tuple
    notes: tuple
    memory: dict
    trace: str | None = None

    def to_dict(self) -> dict:
        return {"title": self.title, "status": self.status, "reason": self.reason, "seconds": round(self.seconds, 2),
                "cap_s": round(self.cap_s, 1), "figures": self.figures,
                "memory": {k: _round(v) for k, v in self.memory.items()}, "notes": list(self.notes),
                **({"trace": self.trace} if self.trace else {})}


def _alarm(signum, frame):
    raise Timeout("ran past its time cap")


def run_measurements(measurements: list[Measurement], ctx: "Context", budget_s: float,
                     on_update: Callable[[list[Outcome]], None] = lambda o: None,
                     log: Callable[[str], None] = print) -> list[Outcome]:
    """Run each measurement under a deadline: the budget left, less the reserves of those still to come.
    Every one ends as ok, skipped, failed or timeout; `on_update` gets the outcomes after each."""
    t0 = time.monotonic()
    outcomes: list[Outcome] = []
    for k, m in enumerate(measurements):
        left = budget_s - (time.monotonic() - t0)
        later = sum(x.reserve for x in measurements[k + 1:]) * budget_s
        cap = max(left - later, min(left, m.reserve * budget_s))
        rec = Recorder(m.name, log)
        if cap <= 0.01:
            outcomes.append(Outcome(m.name, m.title, "timeout", f"no budget left ({left:.0f} s of {budget_s:.0f} s)",
                                    0.0, cap, {}, (), (), {}))
            on_update(outcomes)
            continue
        log(f"[{time.monotonic() - t0:6.1f}s] {m.name}: {m.title} (cap {cap:.0f} s)")
        mem = Memory(ctx.device)
        memory = mem.start()
        ctx.mem = mem
        status, reason, trace = "ok", None, None
        t = time.monotonic()
        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, cap)
        try:
            m.run(ctx, rec)
        except Skip as e:
            status, reason = "skipped", str(e)
        except Timeout:
            status, reason = "timeout", f"ran past its {cap:.0f} s cap"
        except Exception as e:  # a bug or an out-of-memory error: recorded, and the next one runs
            status, reason = "failed", (f"{type(e).__name__}: {e}".strip().splitlines() or ["?"])[0][:500]
            trace = "".join(traceback.format_exception(type(e), e, e.__traceback__)[-6:])[-3000:]
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        seconds = time.monotonic() - t
        try:
            memory.update(mem.stop())
            ctx.release(m.name)
            memory.update(mem.after())
        except Exception as e:  # noqa: BLE001 - memory figures must never lose the outcome
            rec.note(f"memory figures incomplete: {type(e).__name__}: {e}")
        ctx.mem = None
        out = Outcome(m.name, m.title, status, reason, seconds, cap, dict(rec.figures), tuple(rec.rows),
                      tuple(rec.notes), memory, trace)
        outcomes.append(out)
        log(f"[{time.monotonic() - t0:6.1f}s] {m.name}: {status}" + (f" ({reason})" if reason else "")
            + f" in {seconds:.1f} s")
        on_update(outcomes)
    return outcomes


# ---------------------------------------------------------------------------------------------- shared state

class Context:
    """What measurements share: device, size, work dir, the clips, the processor, the judge model held in
    memory between judge_bf16 and checkpoint, and the saved checkpoint dir (or why there is none)."""

    def __init__(self, size: str, device: str, work: Path, log: Callable[[str], None] = print):
        self.size, self.device, self.work, self.log = size, device, Path(work), log
        self.mem: Memory | None = None
        self.model = None  # the random-init judge model, until the checkpoint step has saved it
        self.checkpoint_dir: Path | None = None
        self.checkpoint_error: str | None = None
        self._clips = None

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")

    def release(self, name: str) -> None:
        """After a measurement: everything it held goes, except the model the checkpoint step still needs."""
        if name != "judge_bf16":
            self.model = None

    def clips(self) -> tuple[str, str]:
        """bench_judge's two clips (1280x720, 5 s, 24 fps, one GOP); smaller for --size tiny (same scenes)."""
        if self._clips is None:
            d = self.work / "clips"
            d.mkdir(parents=True, exist_ok=True)
            if self.size == "7b":
                from bench_judge import make_clips

                self._clips = make_clips(d)
            else:
                from vrthinker_eval.synth import render_scene, write_video

                a = write_video(d / "v1.mp4", render_scene("shapes", 256, 144, 120, seed=3), fps=24, gop=250)
                b = write_video(d / "v2.mp4", render_scene("pan", 256, 144, 120, seed=4), fps=24, gop=250)
                self._clips = (str(a), str(b))
        return self._clips

    def profile(self):
        """The card profile; --size tiny shows 56-pixel frames so the CPU rehearsal stays within a minute."""
        from dataclasses import replace

        from vrthinker.protocol import Profile

        card = Profile.load("card")
        if self.size == "7b":
            return card
        # the tiny rehearsal: 56-pixel frames and a one-line system text (the tiny model keeps the real
        # 152k vocabulary, so a DPO step costs in proportion to the row's tokens)
        return replace(card, name="card-tiny", version="card-tiny/1", image_side=56,
                       system="Compare the two videos frame by frame, then answer.")

    def script(self) -> tuple[list[str], list[list[int]]]:
        """bench_judge's six-turn script (five select_frames calls of 12 indices, then the answer); --size tiny
        keeps one short call and a bare answer, which walks the same code in a few seconds on a CPU."""
        from bench_judge import six_turn_script

        if self.size == "7b":
            return six_turn_script()
        call = [1, 3]
        return ['<tool_call>{"name": "select_frames", "arguments": {"frame_indices": %s}}</tool_call>' % call,
                self.answer()], [call]

    def answer(self) -> str:
        """The one-turn reply (bench_judge's ANSWER; its bare <Answer> at --size tiny)."""
        from bench_judge import ANSWER

        return ANSWER if self.size == "7b" else "<Answer>TA=0, VQ=1, MQ=1, OA=1</Answer>"

    def options(self) -> dict:
        """DQA worker options: the defaults at 7b; a few frames and small sides for the tiny rehearsal."""
        return {} if self.size == "7b" else {"frames": 2, "image_side": 56, "n_frames": 2, "iters": 2,
                                             "max_side": 64}

    def processor(self):
        from transformers import AutoProcessor

        from make_tiny_model import FIXTURES

        return AutoProcessor.from_pretrained(FIXTURES)

    def dtype(self):
        import torch

        return torch.bfloat16 if self.cuda else torch.float32

    def need_checkpoint(self) -> Path:
        if self.checkpoint_dir is None:
            raise Skip(f"no saved checkpoint ({self.checkpoint_error or 'the checkpoint step did not run'})")
        return self.checkpoint_dir


def _import_or_skip(*names: str) -> None:
    missing = [n for n in names if importlib.util.find_spec(n) is None]
    if missing:
        raise Skip(f"{', '.join(missing)} not importable here")
    for n in names:
        try:
            __import__(n)
        except Exception as e:  # an installed package can still fail to import (a missing CUDA library)
            raise Skip(f"{n} does not import: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") \
                from None


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    _sync()
    t = time.perf_counter()
    out = fn()
    _sync()
    return time.perf_counter() - t, out


def build_judge_model(ctx: Context):
    """The random-init Qwen2.5-VL (7B or tiny shape) constructed straight on the device: no weights file."""
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from make_tiny_model import FIXTURES, tiny_config_dict
    from vrthinker.loading import pick_attention  # the judge loader's choice: flash_attention_2 or sdpa

    torch.manual_seed(0)
    config = Qwen2_5_VLConfig(**tiny_config_dict(FIXTURES, ctx.size))
    with torch.device(ctx.device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(
            config, dtype=ctx.dtype(), attn_implementation=pick_attention(ctx.device))
    model.generation_config = GenerationConfig.from_pretrained(FIXTURES)  # repetition_penalty 1.05, eos ids
    return model.eval()


def _forced(processor, replies):
    from bench_judge import forced

    return forced(processor, replies)


def six_turn(backend, ctx: Context, rec: Recorder):
    """Warm up (on CUDA) with one forced one-turn pair, then time the forced scripted conversation from cold
    caches (a fresh Judge decodes the clips again; the warm-up's image features are dropped). Returns the judge."""
    from vrthinker.judge import Judge

    v1, v2 = ctx.clips()
    replies, _ = ctx.script()
    n = len(replies)
    if ctx.cuda:  # the first CUDA kernels and cuBLAS handles cost seconds that belong to no pair
        _, lp1 = _forced(backend.processor, [ctx.answer()])
        backend.generate_kwargs = {"logits_processor": lp1}
        rec.put("warmup_s", _timed(lambda: Judge(backend, ctx.profile()).compare(v1, v2, PROMPT))[0],
                "warm-up: one one-turn pair, first kernels (s)", "{:.2f}")
        backend.features = type(backend.features)(backend)
    judge = Judge(backend, ctx.profile())
    _, lp = _forced(backend.processor, replies)
    backend.generate_kwargs = {"logits_processor": lp}
    ctx.mem.reset_peak()
    seconds, verdict = _timed(lambda: judge.compare(v1, v2, PROMPT))
    rec.put("conversation_s", seconds, f"{n}-turn pair, ours: decode + {n} turns (s)", "{:.2f}")
    rec.put("conversation_peak_gb", ctx.mem.peak_gb(), f"peak during the {n}-turn pair (GB)", "{:.2f}")
    rec.put("turns", len(verdict.turns))
    rec.put("labels", dict(verdict.labels))
    rec.put("prefill_tokens", sum(t.prefill_tokens for t in verdict.turns),
            f"tokens prefilled over the {n} turns, ours", "{:,}")
    last = verdict.turns[-1]
    rec.put("final_tokens", last.prefill_tokens + last.reused_tokens, "final conversation length (tokens)",
            "{:,}")
    if len(verdict.turns) != n:
        rec.note(f"the conversation took {len(verdict.turns)} turns, not {n}")
    return judge


# ---------------------------------------------------------------------------------------------- measurements

def m_judge_bf16(ctx: Context, rec: Recorder) -> None:
    import torch

    import reference_infer as ref
    from vrthinker.backends.hf import HFBackend

    seconds, model = _timed(lambda: build_judge_model(ctx))
    ctx.model = model
    rec.put("dtype", str(ctx.dtype()).replace("torch.", ""), "dtype")
    rec.put("attention", model.config._attn_implementation, "attention")
    rec.put("params_b", sum(p.numel() for p in model.parameters()) / 1e9, "parameters (billions)", "{:.2f}")
    rec.put("build_s", seconds, "random init built on the device (s)", "{:.1f}")
    rec.put("weights_gb", ctx.mem.allocated_gb() if ctx.cuda else Memory.rss_gb(), "memory after build (GB)",
            "{:.2f}")
    ctx.clips()
    processor = ctx.processor()
    with torch.no_grad():
        backend = HFBackend(model, processor, model_id=f"random-init:{ctx.size}")
        judge = six_turn(backend, ctx, rec)

        # the reference procedure, one pair: its own re-encode of every image every turn and its per-frame
        # seeks; its per-pair model load is left out here (see checkpoint's load_s for what that costs)
        replies, _ = ctx.script()
        _, lp = _forced(processor, replies)
        stats: dict = {}
        saved = ref.AutoProcessor, ref.Qwen2_5_VLForConditionalGeneration

        class Loaded:
            @staticmethod
            def from_pretrained(*a, **kw):
                return model

        class LoadedProcessor:
            @staticmethod
            def from_pretrained(*a, **kw):
                return processor

        side = ref.IMAGE_SIDE
        ref.AutoProcessor, ref.Qwen2_5_VLForConditionalGeneration = LoadedProcessor, Loaded
        ref.IMAGE_SIDE = judge.profile.image_side  # 448 as the card has it; 56 for the tiny rehearsal
        try:
            v1, v2 = ctx.clips()
            ctx.mem.reset_peak()
            ref_s, labels = _timed(lambda: ref.run(v1, v2, PROMPT, dtype=ctx.dtype(), device_map=None,
                                                   generate_kwargs={"logits_processor": lp}, stats=stats))
        finally:
            ref.AutoProcessor, ref.Qwen2_5_VLForConditionalGeneration = saved
            ref.IMAGE_SIDE = side
        rec.put("reference_conversation_s", ref_s, f"{len(replies)}-turn pair, reference procedure, load excluded (s)",
                "{:.2f}")
        rec.put("reference_peak_gb", ctx.mem.peak_gb(), "peak during the reference pair (GB)", "{:.2f}")
        rec.put("reference_prefill_tokens", stats.get("prefill_tokens"), "tokens prefilled, reference", "{:,}")
        ours = rec.figures.get("conversation_s")
        if ours:
            rec.put("reference_over_ours", ref_s / ours, f"reference / ours, {len(replies)}-turn pair", "{:.2f}x")
        rec.put("labels_match_reference", labels == {k: rec.figures["labels"].get(k) for k in ("TA", "MQ", "VQ", "OA")})

        # both orders of a one-turn pair: one batched generate against one conversation after the other
        f1, lp1 = _forced(processor, [ctx.answer()])
        backend.generate_kwargs = {"logits_processor": lp1}

        def both(batch: bool, repeats: int = 2 if ctx.size == "7b" else 1) -> float:
            backend.batch = batch
            try:
                t = time.perf_counter()
                for _ in range(repeats):
                    f1.reset()
                    judge.compare(v1, v2, PROMPT, orders="both")
                _sync()
                return (time.perf_counter() - t) / repeats
            finally:
                backend.batch = True

        batched, sequential = both(True), both(False)
        rec.put("both_orders_batched_s", batched, "both orders, one turn, batched (s)", "{:.2f}")
        rec.put("both_orders_sequential_s", sequential, "both orders, one turn, one after the other (s)", "{:.2f}")
        rec.put("both_orders_speedup", sequential / batched, "sequential / batched", "{:.2f}x")


def m_tune_sampling(ctx: Context, rec: Recorder) -> None:
    """dqa tune's K = 4 conversations for one selection on the judge_bf16 model (random init: its replies
    rarely call a tool, so each conversation is about one turn of up to 64 tokens; a trained judge's run
    as many turns as judge_bf16's scripted conversation, so K x its conversation_s is the realistic cost)."""
    import torch

    from dqa.tune import sampling
    from dqa.tune.selections import add, all_selections, normalize, open_store
    from vrthinker.backends.hf import HFBackend
    from vrthinker.judge import Judge

    if ctx.model is None:
        raise Skip("judge_bf16 left no model")
    v1, v2 = ctx.clips()
    with open_store(ctx.work / "tune.sqlite") as store, torch.no_grad():
        add(store, [normalize(PROMPT, v1, v2, "a", "OA")])
        judge = Judge(HFBackend(ctx.model, ctx.processor(), model_id=f"random-init:{ctx.size}"), ctx.profile(),
                      max_new_tokens=64)
        ctx.mem.reset_peak()
        seconds, built = _timed(lambda: sampling.build(store, judge.profile, all_selections(store), judge=judge,
                                                       samples=4, temperature=0.7, seed=0))
        turns = store.db.execute("SELECT reply FROM tune_samples").fetchall()
    rec.put("seconds_per_selection", seconds, "K = 4 conversations of one selection (s)", "{:.2f}")
    rec.put("peak_gb", ctx.mem.peak_gb(), "peak while sampling (GB)", "{:.2f}")
    rec.put("kinds", built.kind_counts)
    rec.put("sampled_turns", sum(len(json.loads(r[0])["turns"]) for r in turns), "turns of the 3 sampled ones")
    rec.put("distinct_replies", len({r[0] for r in turns}), "distinct sampled conversations (of 3)")


def m_checkpoint(ctx: Context, rec: Recorder) -> None:
    from make_tiny_model import FIXTURES
    from vrthinker.backends.hf import HFBackend

    out = ctx.work / f"qwen2_5_vl-{ctx.size}-random"
    model = ctx.model
    try:
        if model is None:
            rec.note("judge_bf16 left no model: building it again")
            model = build_judge_model(ctx)
        need = sum(p.numel() * p.element_size() for p in model.parameters()) / GB
        free = shutil.disk_usage(ctx.work).free / GB
        rec.put("disk_free_gb", free)
        if free < need * 1.1 + 1:
            raise Skip(f"needs {need:.1f} GB of disk in {ctx.work}, {free:.1f} GB free")
        seconds, _ = _timed(lambda: model.save_pretrained(out))
        ctx.processor().save_pretrained(out)
        shutil.copyfile(FIXTURES / "generation_config.json", out / "generation_config.json")
        rec.put("save_s", seconds, "checkpoint saved (s)", "{:.1f}")
        rec.put("size_gb", sum(f.stat().st_size for f in out.glob("*.safetensors")) / GB, "weights on disk (GB)",
                "{:.2f}")
    except BaseException as e:
        ctx.checkpoint_error = str(e) or type(e).__name__
        raise
    finally:
        model = ctx.model = None
        free_memory()
    ctx.checkpoint_dir = out
    ctx.mem.reset_peak()
    seconds, backend = _timed(lambda: HFBackend.from_pretrained(str(out), device=ctx.device))
    rec.put("load_s", seconds, "HFBackend.from_pretrained of the saved dir (s)", "{:.1f}")
    rec.put("load_peak_gb", ctx.mem.peak_gb(), "peak while loading (GB)", "{:.2f}")
    rec.put("attention", backend.model.config._attn_implementation, "attention as loaded")
    backend = None


def m_judge_nf4(ctx: Context, rec: Recorder) -> None:
    _import_or_skip("bitsandbytes")
    import torch

    from vrthinker.backends.hf import HFBackend

    path = ctx.need_checkpoint()
    ctx.clips()
    seconds, backend = _timed(lambda: HFBackend.from_pretrained(str(path), device=ctx.device, quantize="4bit"))
    rec.put("load_s", seconds, "load with quantize=4bit (s)", "{:.1f}")
    rec.put("load_peak_gb", ctx.mem.peak_gb(), "peak while loading (GB)", "{:.2f}")
    rec.put("weights_gb", ctx.mem.allocated_gb() if ctx.cuda else Memory.rss_gb(), "memory after load (GB)",
            "{:.2f}")
    rec.put("attention", backend.model.config._attn_implementation, "attention")
    if not ctx.cuda:  # bitsandbytes' CPU kernels are slow (over a second per token here): rehearse the load
        rec.note("no conversation on a CPU: it is judge_bf16's code, and bitsandbytes' CPU kernels are slow")
        return
    with torch.no_grad():
        six_turn(backend, ctx, rec)


def _selection(v1: str, v2: str):
    from dqa.tune.selections import Selection

    return Selection(id=1, prompt=PROMPT, video_a=v1, video_b=v2, hash_a="a" * 64, hash_b="b" * 64, chosen="a",
                     dimension="OA")


def _row_tokens(processor, row: dict) -> tuple[int, int]:
    text = processor.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
    prompt = processor(text=[text], images=row["images"], return_tensors="pt")["input_ids"].shape[1]
    completion = len(processor.tokenizer(row["chosen"][0]["content"], add_special_tokens=False)["input_ids"])
    return int(prompt), completion


def _dpo_step(ctx: Context, rec: Recorder, row: dict) -> None:
    import torch

    from dqa.tune.train import TuneSettings, train

    path = ctx.need_checkpoint()
    prompt, completion = _row_tokens(ctx.processor(), row)
    rec.put("images", len(row["images"]), "images in the row")
    rec.put("prompt_tokens", prompt, "prompt tokens", "{:,}")
    rec.put("completion_tokens", completion, "completion tokens (chosen)", "{:,}")
    ctx.mem.reset_peak()
    settings = TuneSettings(max_steps=1, val_fraction=0.0)
    try:
        seconds, info = _timed(lambda: train([row], [], str(path), ctx.work / "adapter", settings,
                                             device=ctx.device))
    finally:
        torch.set_grad_enabled(False)
    rec.put("base", "4-bit NF4 (QLoRA)" if ctx.cuda else "full precision (plain LoRA, no CUDA)", "base weights")
    rec.put("load_and_step_s", seconds, "load + one DPO step + save (s)", "{:.1f}")
    runtime = next((h["train_runtime"] for h in info["history"] if "train_runtime" in h), None)
    rec.put("step_s", runtime, "trainer runtime, one step (s)", "{:.1f}")
    rec.put("train_loss", info["train_loss"])
    peak = ctx.mem.peak_gb()
    rec.put("peak_gb", peak, "peak allocated (GB)", "{:.2f}")
    if ctx.cuda:  # what the card must hold: the allocator's reserve (+ the CUDA context, ~0.5 GB, not counted)
        reserved = torch.cuda.max_memory_reserved() / GB
        rec.put("reserved_peak_gb", reserved, "peak reserved by the allocator (GB)", "{:.2f}")
        rec.put("within_24gb", reserved <= VRAM_PROMISE_GB, f"within the {VRAM_PROMISE_GB:g} GB budget", "{}")


def m_qlora_dpo(ctx: Context, rec: Recorder) -> None:
    _import_or_skip("trl", "peft", "datasets", *(("bitsandbytes",) if ctx.cuda else ()))
    from dqa.tune import dataset as ds
    from vrthinker.judge import load_videos

    ctx.need_checkpoint()
    v1, v2 = ctx.clips()
    profile = ctx.profile()
    sel = _selection(v1, v2)
    messages, images = ds.first_turn(profile, sel, load_videos(profile, v1, v2))
    row, _ = ds.row_for(sel, messages, images, ctx.answer())
    rec.note("the tuner's own row: the judge's first turn (8 frames) and its reply")
    _dpo_step(ctx, rec, row)


def m_qlora_dpo_six_turn(ctx: Context, rec: Recorder) -> None:
    _import_or_skip("trl", "peft", "datasets", *(("bitsandbytes",) if ctx.cuda else ()))
    import reference_infer as ref
    from dqa.tune import dataset as ds

    ctx.need_checkpoint()
    v1, v2 = ctx.clips()
    replies, calls = ctx.script()
    side = ref.IMAGE_SIDE
    ref.IMAGE_SIDE = ctx.profile().image_side
    try:
        images = ref.initial_frames(v1, v2)
        tools = [ref.tool_frames(v1, v2, call) for call in calls]
    finally:
        ref.IMAGE_SIDE = side
    messages = [{"role": "system", "content": [{"type": "text", "text": ref.SYSTEM_PROMPT}]},
                {"role": "user", "content": [{"type": "image"}] * len(images)
                 + [{"type": "text", "text": ref.user_text(PROMPT)}]}]
    for reply, call, new in zip(replies, calls, tools):
        images += new
        messages += [{"role": "assistant", "content": [{"type": "text", "text": reply}]},
                     {"role": "user", "content": [{"type": "image"}] * len(new)
                      + [{"type": "text", "text": ref.tool_response_text(call)}]}]
    row, _ = ds.row_for(_selection(v1, v2), messages, images, ctx.answer())
    rec.note(f"a row the size of a whole {len(replies)}-turn conversation (the reference's messages, "
             f"{len(images)} frames)")
    if ctx.size != "7b":
        prompt, completion = _row_tokens(ctx.processor(), row)
        rec.put("images", len(row["images"]), "images in the row")
        rec.put("prompt_tokens", prompt, "prompt tokens", "{:,}")
        raise Skip("--size tiny builds this row only: qlora_dpo rehearses the step, which runs here at 7b")
    _dpo_step(ctx, rec, row)


def full_size_dqa_models(root: Path, device: str) -> dict[str, str]:
    """Random-init checkpoints of every DQA role at the default models' real sizes (ViT-B/16 DINO, CLIP
    B/32, L/14 and B/16, DINOv2-base, RAFT-large, the 768-wide aesthetic head), built on `device`."""
    import torch
    from torchvision.models.optical_flow import raft_large
    from transformers import CLIPConfig, CLIPModel, Dinov2Config, Dinov2Model, ViTConfig, ViTModel

    import make_tiny_dqa_models as tiny

    root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    out: dict[str, Path] = {}

    def clip(name: str, vision: dict, text: dict, proj: int, tokenizer: bool = False) -> None:
        path = root / name
        text = dict(text)
        if tokenizer:  # the tiny byte-level tokenizer: its ids are valid in the full vocabulary
            tiny.clip(path, tokenizer=True)
            small = CLIPConfig.from_pretrained(path).text_config
            text.update(bos_token_id=small.bos_token_id, eos_token_id=small.eos_token_id,
                        pad_token_id=small.pad_token_id)
        with torch.device(device):
            CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=proj)).save_pretrained(path)
        out[name] = path

    b_text = dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8)
    base = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)
    with torch.device(device):
        ViTModel(ViTConfig(**base, image_size=224, patch_size=16, qkv_bias=True),
                 add_pooling_layer=False).save_pretrained(root / "dino")
        Dinov2Model(Dinov2Config(**base, image_size=518, patch_size=14)).save_pretrained(root / "vfm")
    out["dino"], out["vfm"] = root / "dino", root / "vfm"
    clip("clip_b32", dict(base, image_size=224, patch_size=32), b_text, 512)
    clip("clip_l14", dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                          image_size=224, patch_size=14),
         dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12), 768)
    clip("proxy_clip", dict(base, image_size=224, patch_size=16), b_text, 512, tokenizer=True)
    out["aesthetic_head"] = tiny.aesthetic_head(root / "aesthetic", dim=768)
    raft = root / "raft" / "raft_large.pth"
    raft.parent.mkdir(parents=True, exist_ok=True)
    torch.save(raft_large(weights=None).state_dict(), raft)
    out["raft"] = raft
    return {k: str(v) for k, v in out.items()}


def m_dqa_workers(ctx: Context, rec: Recorder) -> None:
    from dqa.score.scheduler import Item, Scheduler
    from dqa.score.scoring import build_workers, resolve_components

    root = ctx.work / "dqa-models"
    if ctx.size == "7b":
        seconds, models = _timed(lambda: full_size_dqa_models(root, ctx.device))
        rec.note("random-init checkpoints at the default models' full sizes")
    else:
        from make_tiny_dqa_models import build_all

        seconds, models = _timed(lambda: build_all(root, vlm=False))
    rec.put("build_models_s", seconds, "random-init checkpoints written (s)", "{:.1f}")
    free_memory()
    comps = [c for c in resolve_components(["all"]) if c != "preference"]  # preference needs a trained adapter
    if ctx.checkpoint_dir is not None:
        models["vlm"] = str(ctx.checkpoint_dir)
    else:
        comps = [c for c in comps if c not in ("visionreward", "semantic")]
        rec.note(f"vlm worker left out: no saved judge checkpoint ({ctx.checkpoint_error or 'not built'})")
    if ctx.size == "7b":
        clip = ctx.clips()[0]
    else:  # a short small clip keeps the CPU rehearsal quick
        from vrthinker_eval.synth import render_scene, write_video

        clip = str(write_video(ctx.work / "clips" / "dqa.mp4", render_scene("shapes", 160, 96, 8, seed=1), fps=8))
    workers = build_workers(comps, device=ctx.device, models=models, **ctx.options())
    cache = None  # the first scheduler's video cache, shared: the clip is decoded once, as `dqa score` does
    phases = {}
    rec.put("workers", [w.name for w in workers])
    for w in workers:
        sched = Scheduler([w], budget_gb=1e6, cache=cache, wanted=comps, log=lambda s: ctx.log(f"    {s}"))
        cache = sched.cache
        report = sched.run([Item(clip, PROMPT)])
        ph = report.phases[0]
        got = report.results.get(0, {})
        phases[w.name] = {**ph.to_dict(), "scored": sorted(k for k, v in got.items() if hasattr(v, "unit")),
                          "missing": {k: v.reason for k, v in got.items() if not hasattr(v, "unit")}}
        rec.figures["phases"] = phases
        if ph.error:
            text = f"not loaded: {ph.error}"
        else:
            back = "yes" if ph.freed else "NO"
            text = (f"load {ph.load_s:.1f} s, score {ph.score_s:.1f} s, peak {_gb(ph.peak_gb)}, after unload "
                    f"{_gb(ph.after_gb)} (baseline {_gb(ph.baseline_gb)}, back: {back})")
            if phases[w.name]["missing"]:
                text += "; missing " + ", ".join(f"{k}: {r}" for k, r in phases[w.name]["missing"].items())
        rec.rows.append((w.name, text))
        ctx.log(f"  {w.name}: {text}")
        free_memory()
    rec.put("all_back_at_baseline", all(p["freed"] for p in phases.values() if not p["error"] and p["models"]),
            "every loaded worker back at baseline", "{}")


def _gb(x: float | None) -> str:
    return "?" if x is None else f"{x:.2f} GB"


def m_frame_access(ctx: Context, rec: Recorder) -> None:
    import cv2
    import numpy as np

    from bench_frames import run_ours, run_reference
    from bench_judge import six_turn_script

    v1, v2 = ctx.clips()
    _, calls = six_turn_script()
    turns = [INITIAL] + calls
    rec.put("cpu_cores", os.cpu_count(), "CPU cores")
    rec.put("cv2_threads", cv2.getNumThreads())
    ours_s, ours = min((_timed(lambda: run_ours(v1, v2, turns)) for _ in range(2 if ctx.size == "7b" else 1)),
                       key=lambda r: r[0])
    rec.put("images", len(ours), "images fetched (both videos)")
    rec.put("ours_s", ours_s, "ours: decode once, both videos in parallel (s)", "{:.3f}")
    ref_s, ref = _timed(lambda: run_reference(v1, v2, turns))
    rec.put("reference_s", ref_s, "reference: open + seek per index (s)", "{:.3f}")
    rec.put("speedup", ref_s / ours_s, "reference / ours", "{:.1f}x")
    same = sum(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(ours, ref))
    rec.put("pixel_identical", f"{same}/{len(ref)}", "pixel-identical to the reference")


MEASUREMENTS = [
    Measurement("judge_bf16", "the judge, bf16, random init, six-turn pair ours vs reference", m_judge_bf16, 0.30),
    Measurement("tune_sampling", "the tuner's K = 4 sampled conversations, one selection", m_tune_sampling, 0.05),
    Measurement("checkpoint", "the judge saved once, loaded back through HFBackend", m_checkpoint, 0.10),
    Measurement("judge_nf4", "the judge in 4-bit NF4, same six-turn pair", m_judge_nf4, 0.15),
    Measurement("qlora_dpo", "one QLoRA DPO step of dqa.tune.train on a real tuner row", m_qlora_dpo, 0.12),
    Measurement("dqa_workers", "every DQA worker: load, score one clip, unload", m_dqa_workers, 0.15),
    Measurement("frame_access", "frame access, ours vs the reference's seeks, all cores", m_frame_access, 0.04),
    Measurement("qlora_dpo_six_turn", "the DPO step on a six-turn-sized row (128 frames)", m_qlora_dpo_six_turn,
                0.04),
]


def _injected(m: Measurement, how: str) -> Measurement:
    """A measurement replaced by one that raises or overruns its cap (to rehearse the runner)."""
    def run(ctx, rec):
        rec.put("injected", how)
        if how == "raise":
            raise RuntimeError(f"injected failure in {m.name}")
        while True:
            time.sleep(0.05)

    return Measurement(m.name, m.title, run, m.reserve)


# ---------------------------------------------------------------------------------------------- output

def environment(device: str) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    def ver(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    env: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                           "cpu_cores": os.cpu_count(), "device": device}
    for name in ("torch", "transformers", "accelerate", "peft", "trl", "bitsandbytes", "datasets", "flash-attn",
                 "opencv-python-headless", "torchvision", "pyiqa"):
        env[name] = ver(name)
    env["flash_attn_importable"] = importlib.util.find_spec("flash_attn") is not None
    try:
        import torch

        env["cuda_available"] = torch.cuda.is_available()
        env["cuda_version"] = torch.version.cuda
        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            env.update(device_name=p.name, device_memory_gb=round(p.total_memory / GB, 1),
                       capability=f"{p.major}.{p.minor}")
    except Exception as e:  # noqa: BLE001 - the record must be written anyway
        env["torch_error"] = f"{type(e).__name__}: {e}"
    env.setdefault("device_name", platform.processor() or platform.machine())
    try:
        import subprocess

        env["commit"] = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                       text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        env["commit"] = None
    return env


def to_markdown(doc: dict) -> str:
    env, a = doc["environment"], doc["args"]
    lines = [f"GPU check: `--size {a['size']} --device {a['device']}` on {env.get('device_name')}, "
             f"{env.get('cpu_cores')} CPU cores; torch {env.get('torch')} (CUDA {env.get('cuda_version')}), "
             f"transformers {env.get('transformers')}, flash-attn {env.get('flash-attn') or 'absent'}, "
             f"bitsandbytes {env.get('bitsandbytes') or 'absent'}, trl {env.get('trl') or 'absent'}; "
             f"{doc['elapsed_s']:.0f} s of a {a['budget_s']:g} s budget, commit {env.get('commit')}. "
             "GB = 10^9 bytes.", "",
             "| measurement | status | figure | value |", "| --- | --- | --- | --- |"]
    cell = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    for name, m in doc["measurements"].items():
        head = f"{name}: {m['title']}"
        rows = list(m.get("rows") or [])
        if m["status"] != "ok":
            rows.insert(0, ("reason", m["reason"]))
        mem = m.get("memory") or {}
        if mem.get("peak_gb") is not None:
            rows.append(("peak over the whole measurement (GB)", f"{mem['peak_gb']:.2f}"))
        elif mem.get("rss_peak_gb") is not None:
            rows.append(("peak resident memory over the measurement (GB)", f"{mem['rss_peak_gb']:.2f}"))
        rows.append(("seconds (cap)", f"{m['seconds']:.1f} ({m['cap_s']:.0f})"))
        for k, (label, value) in enumerate(rows):
            lines.append(f"| {cell(head) if k == 0 else ''} | {m['status'] if k == 0 else ''} | {cell(label)} | "
                         f"{cell(value)} |")
    return "\n".join(lines) + "\n"


def quiet() -> None:
    """No progress bars or deprecation chatter from the libraries in the log."""
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass


def write(out: Path, doc: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "gpu_check.json.tmp"
    tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    tmp.replace(out / "gpu_check.json")
    (out / "gpu_check.md").write_text(to_markdown(doc))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="where gpu_check.json and gpu_check.md go")
    p.add_argument("--size", choices=["7b", "tiny"], default="7b")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument("--budget-s", type=float, default=480.0, help="seconds for all measurements together")
    p.add_argument("--workdir", type=Path, default=None, help="for checkpoints and clips (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the work dir")
    p.add_argument("--only", default=None, help=argparse.SUPPRESS)  # comma list of measurement names
    p.add_argument("--fail-inject", action="append", default=[], help=argparse.SUPPRESS)  # NAME=raise|hang
    a = p.parse_args(argv)
    try:
        sys.stdout.reconfigure(line_buffering=True)
    except AttributeError:  # pragma: no cover
        pass
    t0 = time.monotonic()

    def log(s: str) -> None:
        print(s, flush=True)

    device = a.device
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    inject = dict(x.split("=", 1) for x in a.fail_inject)
    chosen = [m for m in MEASUREMENTS if not a.only or m.name in a.only.split(",")]
    unknown = set(a.only.split(",")) - {m.name for m in MEASUREMENTS} if a.only else set()
    unknown |= set(inject) - {m.name for m in MEASUREMENTS}
    if unknown:
        p.error(f"unknown measurement(s): {', '.join(sorted(unknown))}")
    chosen = [_injected(m, inject[m.name]) if m.name in inject else m for m in chosen]
    work = a.workdir or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"schema": 1, "args": {"size": a.size, "device": device, "budget_s": a.budget_s},
                           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "elapsed_s": 0.0,
                           "environment": environment(device), "measurements": {}}
    env = doc["environment"]
    log(f"gpu_check: size {a.size}, device {device} ({env.get('device_name')}), budget {a.budget_s:g} s, "
        f"work dir {work}; torch {env.get('torch')} CUDA {env.get('cuda_version')}, transformers "
        f"{env.get('transformers')}, flash-attn {env.get('flash-attn') or 'absent'}")
    pending = {m.name: m for m in chosen}

    def update(outcomes: list[Outcome]) -> None:
        for o in outcomes:
            doc["measurements"][o.name] = {**o.to_dict(), "rows": [list(r) for r in o.rows]}
            pending.pop(o.name, None)
        doc["elapsed_s"] = round(time.monotonic() - t0, 1)
        write(a.out, doc)

    # a last resort for a measurement stuck in native code where the alarm cannot reach it: at the end of
    # the budget (plus grace) write what there is, the stuck one as a timeout, and leave
    def watchdog() -> None:
        time.sleep(a.budget_s + 45)
        for name, m in pending.items():
            doc["measurements"].setdefault(name, {"title": m.title, "status": "timeout", "figures": {}, "rows": [],
                                                  "reason": "the run's budget ended first (stuck in native code?)",
                                                  "seconds": 0.0, "cap_s": 0.0, "memory": {}, "notes": []})
        doc["elapsed_s"] = round(time.monotonic() - t0, 1)
        write(a.out, doc)
        log("gpu_check: budget exhausted; wrote partial results")
        os._exit(124)

    threading.Thread(target=watchdog, daemon=True).start()
    quiet()
    write(a.out, doc)
    ctx = Context(a.size, device, work, log)
    try:
        outcomes = run_measurements(chosen, ctx, a.budget_s, update, log)
    finally:
        ctx.model = None
        if not a.keep and a.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    counts = {s: sum(o.status == s for o in outcomes) for s in STATUSES}
    log(f"gpu_check: done in {time.monotonic() - t0:.0f} s: " + ", ".join(f"{n} {s}" for s, n in counts.items())
        + f"; wrote {a.out / 'gpu_check.json'} and {a.out / 'gpu_check.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
