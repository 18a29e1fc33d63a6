"""The tuner: a LoRA adapter for the judge, trained with DPO (TRL + PEFT) on a person's A/B selections.

One run: decide whether to train (the sleeptime rule), get the judge's whole conversations on each
selection, greedy and sampled (replayed from the store, or run with the judge the run starts from, `max_turns`
limiting them), build DPO rows where one ends in the person's label and one in the other (dqa.tune.sampling),
split by question (dqa.tune.split: a fixed hash rule), train with `trl.DPOTrainer`
and dqa.tune.dataset's collator (images and the `training` profile's video item; TRL's fused LM head scores
the completion tokens only; QLoRA: 4-bit base + gradient checkpointing on CUDA, or the quantization asked
for; plain LoRA on CPU; from a given adapter instead of a fresh one when asked), keep the adapter with the
lowest validation loss (early stopping), measure agreement (the whole conversation's final label) on the
validation questions before and after, save the adapter with tune_config.json and data.jsonl, record the
run in `tune_runs` and what else it found (row kinds, split, model confidence, failure patterns from
dqa.tune.patterns) in `tune_run_details`.

Context: rows are cut by dqa.tune.dataset's truncation rule at `max_length` tokens (default: the profile's own
`max_context_tokens`, the limit its judge applies; else DEFAULT_MAX_LENGTH); the longest row's tokens and
an estimate of the training peak (`estimate_peak_gb`) are logged before training.

Sleeptime rule: a run trains only when at least `min_new` (at least 1) usable selections arrived after
the last selection used by the last successful run for the same base model; otherwise it does nothing
(no model load, no row written). Each run trains a fresh adapter from the base model on every usable
selection so far, so one adapter always reflects all of a person's choices.

Memory: a run is not a `dqa.score.scheduler` worker, so it keeps to the one-model-at-a-time rule by itself:
the judge used to generate replies is loaded, used and freed (del + gc + torch.cuda.empty_cache)
before the training model is loaded, and that one is freed before returning.
"""
from __future__ import annotations

import gc
import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vrthinker.errors import UsageError
from vrthinker.loading import load_qwen, pick_device
from vrthinker.protocol import resolve
from vrthinker.store import ModelIdentity

from dqa.tune import dataset as ds
from dqa.tune import patterns as pt
from dqa.tune import sampling
from dqa.tune import split as question_split
from dqa.tune.selections import Selection, open_store, usable

# the language model's attention projections (the vision tower names its own qkv/proj, so it is left alone)
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
# rows of a profile without its own context limit (card): ~16k tokens keep a QLoRA step of the 7B model
# (chosen + rejected, gradient checkpointing) within 24 GB by estimate_peak_gb
DEFAULT_MAX_LENGTH = 16384
GB = 1024 ** 3
CONFIDENCE_WINDOW = 20  # model confidence: the most recent validation selections it is measured on


@dataclass
class TuneSettings:
    max_steps: int = 50
    learning_rate: float = 5e-5
    beta: float = 0.1
    batch_size: int = 1
    grad_accum: int = 1
    lora_r: int = 16
    lora_alpha: int = 32
    val_fraction: float = 0.2
    eval_steps: int | None = None  # None: about 5 evaluations per run
    patience: int = 2  # evaluations without a lower validation loss before stopping
    seed: int = 0  # the trainer's seed, and the one each sampled conversation derives its own from
    max_length: int | None = None  # the truncation rule's limit; None: the profile's, else DEFAULT_MAX_LENGTH
    samples: int = sampling.DEFAULT_SAMPLES  # conversations per selection, the greedy one included
    temperature: float = sampling.DEFAULT_TEMPERATURE
    allow_label_swap: bool = False  # rows built the old way (synthetic) where no sample reached a label


@dataclass
class RunResult:
    status: str  # "done" | "skipped"
    detail: str = ""
    run_id: int | None = None
    new_selections: int = 0
    n_train: int = 0
    n_val: int = 0
    steps: int = 0
    train_loss: float | None = None
    val_loss: float | None = None
    agreement_before: float | None = None
    agreement_after: float | None = None
    skipped: list[tuple[int, str]] = field(default_factory=list)
    contradicted: list[int] = field(default_factory=list)
    adapter: str = ""
    endings: dict[str, int] = field(default_factory=dict)  # rows per ending: answer@k or the reason
    longest_tokens: int | None = None
    estimated_peak_gb: float | None = None
    measured_peak_gb: float | None = None  # CUDA only
    seconds_per_step: float | None = None
    kinds: dict[str, int] = field(default_factory=dict)  # selections per kind of row: sampled, label_swap, none
    why: list[tuple[int, str, str]] = field(default_factory=list)  # per selection: (id, kind, why)
    val_questions: int = 0
    model_confidence: dict | None = None
    new_patterns: list[dict] = field(default_factory=list)
    patterns_note: str = ""


def last_run(store, base_model: str) -> dict | None:
    row = store.db.execute("SELECT * FROM tune_runs WHERE base_model=? AND status='done' ORDER BY id DESC LIMIT 1",
                           (base_model,)).fetchone()
    return dict(row) if row else None


def runs(store) -> list[dict]:
    return [dict(r) for r in store.db.execute("SELECT * FROM tune_runs ORDER BY id")]


def pending(store, base_model: str) -> tuple[list[Selection], list[Selection], set[int]]:
    """(all usable selections, the ones after the last successful run, contradicted ids)."""
    sels, bad = usable(store)
    last = last_run(store, base_model)
    after = (last or {}).get("last_id") or 0
    return sels, [s for s in sels if s.id > after], bad


def split(meta: list[dict], val_ids: set[int]) -> tuple[list[int], list[int]]:
    """Row positions for training and validation: a row is on its selection's question's side."""
    val = [i for i, m in enumerate(meta) if m["selection_id"] in val_ids]
    return [i for i, m in enumerate(meta) if m["selection_id"] not in val_ids], val


def details(store, run_id: int) -> dict:
    row = store.db.execute("SELECT details FROM tune_run_details WHERE run_id=?", (run_id,)).fetchone()
    return json.loads(row[0]) if row else {}


def history(store) -> list[dict]:
    """Every run, oldest first: steps, losses, agreement before and after, and what else it recorded."""
    out = []
    for r in runs(store):
        d = details(store, r["id"])
        out.append({"run_id": r["id"], "status": r["status"], "base_model": r["base_model"], "adapter": r["adapter"],
                    "started": r["started"], "steps": r["steps"], "train_loss": r["train_loss"],
                    "val_loss": r["val_loss"], "agreement_before": r["agreement_before"],
                    "agreement_after": r["agreement_after"], "n_train": r["n_train"], "n_val": r["n_val"],
                    "val_questions": d.get("split", {}).get("val_questions"), "kinds": d.get("kinds"),
                    "model_confidence": d.get("model_confidence"), "new_patterns": d.get("new_patterns", [])})
    return out


def previous_patterns(store, before_run: int) -> list[dict]:
    """The patterns the last successful run before `before_run` stored (empty when none did)."""
    row = store.db.execute("SELECT d.details FROM tune_run_details d JOIN tune_runs r ON r.id = d.run_id "
                           "WHERE r.status='done' AND r.id < ? ORDER BY r.id DESC LIMIT 1", (before_run,)).fetchone()
    return json.loads(row[0]).get("patterns", []) if row else []


def confidence(outcomes: list[dict], window: int = CONFIDENCE_WINDOW) -> dict | None:
    """Agreement with the person on the most recent validation selections, and the mean probability the
    judge gave the person's label where its verdicts carry probabilities."""
    recent = sorted(outcomes, key=lambda o: o["selection_id"])[-window:]
    if not recent:
        return None
    probs = [o["probability"] for o in recent if o.get("probability") is not None]
    return {"agreement": sum(o["agreed"] for o in recent) / len(recent), "n": len(recent),
            "mean_probability": sum(probs) / len(probs) if probs else None, "with_probability": len(probs)}


def free() -> None:
    """Give memory back once the caller has dropped its references (the one-model-at-a-time rule)."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass


def load_for_training(model: str, device: str | None, dtype: str | None, revision: str | None = None,
                      quantize: str | None = None, adapter: str | None = None):
    """(model, processor, device, quantized): 4-bit NF4 (or `quantize`) + k-bit preparation on CUDA, full
    precision on CPU unless `quantize` is given; `adapter` loaded trainable to go on from it."""
    loaded = load_qwen(model, device=device, dtype=dtype, revision=revision, quantize=quantize, adapter=adapter,
                       training=True)
    return loaded.model, loaded.processor, loaded.device, loaded.quantized


def _callback(patience: int):
    from transformers import TrainerCallback

    class BestOnValidation(TrainerCallback):
        """Early stopping on the validation loss; keeps the best adapter weights in memory (no checkpoints)."""

        def __init__(self):
            self.best, self.best_step, self.state, self.bad = math.inf, 0, None, 0

        def on_evaluate(self, args, state, control, metrics=None, model=None, **kw):
            from peft import get_peft_model_state_dict

            loss = (metrics or {}).get("eval_loss")
            if loss is None or not math.isfinite(loss):
                return
            if loss < self.best - 1e-12:
                self.best, self.best_step, self.bad = loss, state.global_step, 0
                self.state = {k: v.detach().to("cpu", copy=True) for k, v in get_peft_model_state_dict(model).items()}
            else:
                self.bad += 1
                if self.bad >= patience:
                    control.should_training_stop = True

    return BestOnValidation()


def estimate_peak_gb(model: Any, tokens: int, batch: int = 1, checkpointing: bool = True) -> float:
    """A rough training peak: the loaded weights, plus activations for 2 x `batch` sequences (chosen and
    rejected) of `tokens`: with gradient checkpointing each layer keeps its input (hidden) and one layer is
    recomputed at a time (8 x hidden + 3 x intermediate per token); without it every layer keeps about
    that much. The fused LM head scores completion tokens only, so no vocabulary-sized logits are counted."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    c = model.config.get_text_config()
    width = 2 if str(getattr(model, "dtype", "")).endswith(("bfloat16", "float16")) else 4
    layer = 8 * c.hidden_size + 3 * c.intermediate_size
    per_token = (c.num_hidden_layers * c.hidden_size + layer) if checkpointing else c.num_hidden_layers * layer
    return (weights + 2 * batch * tokens * per_token * width) / GB


def train(rows: list[dict], val_rows: list[dict], model: str, out: Path, settings: TuneSettings, *,
          device: str | None = None, dtype: str | None = None, revision: str | None = None,
          quantize: str | None = None, adapter: str | None = None,
          after: Callable[[Any, Any], Any] | None = None, log: Callable[[str], None] = lambda s: None) -> dict:
    """Train a LoRA adapter with DPO on `rows` (a fresh one, or `adapter` trained on); save it to `out`.
    `after(model, processor)` runs before the model is freed (agreement after training). Returns steps,
    losses, log history, the longest row's tokens, the estimated and (CUDA) measured peak, and `after`'s."""
    from peft import LoraConfig, set_peft_model_state_dict
    from trl import DPOConfig, DPOTrainer

    net, processor, dev, _ = load_for_training(model, device, dtype, revision, quantize, adapter)
    cuda = dev.startswith("cuda")
    work = Path(tempfile.mkdtemp(prefix="dqa-tune-"))
    trainer = None
    try:
        sizes = [ds.row_tokens(processor, r) for r in [*rows, *val_rows]]
        longest = max(sizes)
        estimate = estimate_peak_gb(net, longest, settings.batch_size, checkpointing=cuda)
        log(f"longest row: {longest:,} tokens (mean {sum(sizes) / len(sizes):,.0f}); estimated peak "
            f"{estimate:.2f} GB ({'gradient checkpointing' if cuda else 'no checkpointing'})")
        if cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
        eval_steps = settings.eval_steps or max(1, settings.max_steps // 5)
        args = DPOConfig(
            output_dir=str(work), max_steps=settings.max_steps, learning_rate=settings.learning_rate,
            beta=settings.beta, per_device_train_batch_size=settings.batch_size, per_device_eval_batch_size=1,
            gradient_accumulation_steps=settings.grad_accum, max_length=None,  # rows are cut by dqa.tune.dataset
            eval_strategy="steps" if val_rows else "no", eval_steps=eval_steps, save_strategy="no",
            logging_steps=1, report_to="none", seed=settings.seed, use_cpu=not dev.startswith("cuda"),
            bf16=cuda, gradient_checkpointing=cuda, remove_unused_columns=False,  # the collator reads the rows
            gradient_checkpointing_kwargs={"use_reentrant": False} if cuda else None,
            dataloader_num_workers=0, disable_tqdm=True)
        lora = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=0.05,
                          target_modules=LORA_TARGETS, task_type="CAUSAL_LM")
        stopper = _callback(settings.patience)
        every = [*rows, *val_rows]
        trainer = DPOTrainer(model=net, args=args, train_dataset=ds.to_dataset(range(len(rows))),
                             eval_dataset=ds.to_dataset(range(len(rows), len(every))) if val_rows else None,
                             processing_class=processor, data_collator=ds.Collator(processor, every),
                             peft_config=None if adapter else lora, callbacks=[stopper])
        result = trainer.train()
        if stopper.state is not None:  # the adapter with the lowest validation loss
            set_peft_model_state_dict(trainer.model, stopper.state)
        out.mkdir(parents=True, exist_ok=True)
        trainer.model.save_pretrained(str(out))
        history = trainer.state.log_history
        train_losses = [h["loss"] for h in history if "loss" in h]
        steps = trainer.state.global_step
        runtime = next((h["train_runtime"] for h in history if "train_runtime" in h), None)
        info = {"steps": steps,
                "train_loss": train_losses[-1] if train_losses else result.training_loss,
                "val_loss": None if stopper.state is None else stopper.best, "best_step": stopper.best_step,
                "history": history, "longest_tokens": longest, "row_tokens": sizes,
                "estimated_peak_gb": round(estimate, 3),
                "seconds_per_step": round(runtime / steps, 3) if runtime and steps else None,
                "measured_peak_gb": None}
        if cuda:
            import torch

            info["measured_peak_gb"] = round(torch.cuda.max_memory_allocated() / GB, 3)
        if after is not None:
            info["after"] = after(trainer.model, processor)
        return info
    finally:
        shutil.rmtree(work, ignore_errors=True)
        trainer = net = None
        free()


def agreement_on(judge, selections: list[Selection], profile) -> float | None:
    """Agreement of `judge` with the person on `selections`: the final label of its whole conversation
    (a conversation without that label disagrees)."""
    outcomes = agreement_details(judge, selections, profile)
    return sum(o["agreed"] for o in outcomes) / len(outcomes) if outcomes else None


def agreement_details(judge, selections: list[Selection], profile) -> list[dict]:
    """Per selection: the judge's final label, whether it is the person's, and the probability the verdict
    gave the person's label (None where the verdict carries no probabilities)."""
    from vrthinker.judge import load_videos

    out = []
    for s in selections:
        v = judge.compare(s.video_a, s.video_b, s.prompt, grids=load_videos(profile, s.video_a, s.video_b))
        said = v.labels.get(s.dimension)
        probs = (getattr(v, "probabilities", None) or {}).get(s.dimension) or {}
        p = probs.get(str(s.label))
        out.append({"selection_id": s.id, "said": said, "agreed": said == s.label,
                    "probability": None if p is None else float(p)})
    return out


def tune(db: str, model: str, out: str | Path, *, settings: TuneSettings | None = None, min_new: int = 1,
         device: str | None = None, dtype: str | None = None, revision: str | None = None,
         protocol: str | None = None, max_new_tokens: int | None = None, quantize: str | None = None,
         adapter: str | None = None, max_turns: int | None = None, find_patterns: bool = True,
         log: Callable[[str], None] = lambda s: None) -> RunResult:
    """One tuner run (see the module doc). Returns what happened; a skipped run writes nothing.

    `quantize` loads the base model that way, for the conversations and for training (QLoRA); `adapter`
    starts from that adapter (its conversations, then trained on) instead of a fresh one; `max_turns`
    limits the judge's conversations (as `judge --max-turns` does)."""
    settings = settings or TuneSettings()
    if settings.max_steps < 1:
        raise UsageError("--max-steps must be at least 1")
    if max_turns is not None and max_turns < 1:
        raise UsageError("--max-turns must be at least 1")
    if settings.max_length is not None and settings.max_length < 1:
        raise UsageError("--max-length must be at least 1")
    if settings.samples < 1:
        raise UsageError("--samples must be at least 1")
    if not (settings.temperature > 0 and math.isfinite(settings.temperature)):
        raise UsageError("--temperature must be above 0")
    if not 0 <= settings.val_fraction < 1:
        raise UsageError("--val-fraction must be at least 0 and below 1")
    if adapter and not Path(adapter).expanduser().is_dir():
        raise UsageError(f"--adapter {adapter}: adapter directory not found")
    adapter = str(Path(adapter).expanduser().resolve()) if adapter else None
    if quantize is not None and quantize not in ("4bit", "8bit"):
        raise UsageError(f"--quantize {quantize}: use 4bit or 8bit")
    out = Path(out)
    store = open_store(db)
    try:
        sels, new, bad = pending(store, model)
        need = max(1, min_new)
        if len(new) < need:
            return RunResult("skipped", f"{len(new)} new selection(s) since the last adapter; need {need}",
                             new_selections=len(new), contradicted=sorted(bad))
        profile, source = resolve(model, protocol)  # as `judge` picks it: an unknown checkpoint is refused
        log(f"profile {profile.version} ({source})")
        max_length = settings.max_length or profile.max_context_tokens or DEFAULT_MAX_LENGTH
        # the conversations of the model the run starts from, named as dqa.tune.dataset.judge_identity names a
        # loaded judge
        identity = ModelIdentity(model_id=model, protocol=profile.version, adapter=adapter or "").label
        loaded: list[Any] = []

        def load_judge():
            log(f"judging with the {'adapter' if adapter else 'base model'} (whole conversations)")
            from vrthinker.judge import Judge

            # the device is settled here: the tuner runs where it is told or where it can (CPU included)
            loaded.append(Judge.from_pretrained(
                model, protocol=protocol, max_new_tokens=max_new_tokens, max_turns=max_turns,
                **{k: v for k, v in dict(device=pick_device(device), dtype=dtype, revision=revision,
                                         quantize=quantize, adapter=adapter).items() if v}))
            return loaded[0]

        built = sampling.build(store, profile, sels, judge=load_judge, identity=identity,
                               samples=settings.samples, temperature=settings.temperature, seed=settings.seed,
                               allow_label_swap=settings.allow_label_swap, max_turns=max_turns,
                               max_length=max_length, progress=log)
        if loaded:
            loaded.clear()
            free()
        kinds = built.kind_counts
        log("selections per kind of row: " + ", ".join(f"{k} {v}" for k, v in kinds.items())
            + ("" if settings.allow_label_swap else " (label_swap is off: --allow-label-swap)"))
        if not built.rows:
            raise UsageError("no usable DPO pairs: " + "; ".join(f"#{i}: {why}" for i, _, why in built.kinds[:3]))
        log(f"{len(built.rows)} row(s) from {len(sels)} selection(s); endings: "
            + ", ".join(f"{k} {v}" for k, v in built.endings.items()))
        qs = question_split.split(sels, settings.val_fraction)
        val_ids = set(qs.val)
        tr, va = split(built.meta, val_ids)
        if not tr:
            raise UsageError(f"every row falls on the validation side ({qs.val_questions} validation question(s) at "
                             f"--val-fraction {settings.val_fraction}): add selections or lower --val-fraction")
        train_rows, val_rows = [built.rows[i] for i in tr], [built.rows[i] for i in va]
        val_sel = [s for s in sels if s.id in val_ids]  # validation questions, with or without a row
        seen = [s for s in val_sel if built.greedy.get(s.id, -1) != -1]
        before = sum(built.greedy[s.id] == s.label for s in seen) / len(seen) if seen else None
        log(f"split by question: {qs.train_questions} train, {qs.val_questions} validation question(s) "
            f"({len(val_sel)} validation selection(s))")
        ids = [m["selection_id"] for m in built.meta]
        started = time.time()
        with store.transaction():
            run_id = store.db.execute(
                "INSERT INTO tune_runs (base_model, adapter, status, first_id, last_id, n_train, n_val, started)"
                " VALUES (?,?,?,?,?,?,?,?)",
                (model, str(out.resolve()), "running", min(ids), max(s.id for s in sels), len(tr), len(va),
                 started)).lastrowid

        def after(trained, processor):
            if not val_sel:
                return None
            from vrthinker.backends.hf import HFBackend
            from vrthinker.judge import Judge

            trained.eval()
            j = Judge(HFBackend(trained, processor, model_id=model), ds.limited(profile, max_length),
                      max_turns=max_turns, max_new_tokens=max_new_tokens)
            try:
                import torch

                with torch.no_grad():
                    return agreement_details(j, val_sel, profile)
            finally:
                j = None

        try:
            log(f"training on {len(tr)} pair(s), validating on {len(va)}")
            info = train(train_rows, val_rows, model, out, settings, device=device, dtype=dtype,
                         revision=revision, quantize=quantize, adapter=adapter, after=after, log=log)
        except BaseException as e:
            with store.transaction():
                store.db.execute("UPDATE tune_runs SET status='failed', detail=?, finished=? WHERE id=?",
                                 (f"{type(e).__name__}: {e}"[:500], time.time(), run_id))
            raise
        outcomes = info.get("after") or []
        after_agreement = sum(o["agreed"] for o in outcomes) / len(outcomes) if outcomes else None
        conf = confidence(outcomes)
        found = pt.find(store, sels, progress=log) if find_patterns else None
        current = [p.to_dict() for p in found.patterns] if found else []
        fresh = pt.new_patterns(current, previous_patterns(store, run_id))
        extra = {"kinds": kinds, "why": [list(k) for k in built.kinds], "split": qs.to_dict(),
                 "agreement_n": len(val_sel), "model_confidence": conf, "patterns": current, "new_patterns": fresh,
                 "patterns_note": found.note if found else "not looked for"}
        write_outputs(out, model, revision, profile, settings, built, tr, va, info, run_id,
                      quantize=quantize, adapter=adapter, max_turns=max_turns, max_length=max_length, extra=extra)
        with store.transaction():
            store.db.execute(
                "UPDATE tune_runs SET status='done', steps=?, train_loss=?, val_loss=?, losses=?, agreement_before=?,"
                " agreement_after=?, finished=? WHERE id=?",
                (info["steps"], info["train_loss"], info["val_loss"], json.dumps(info["history"]), before,
                 after_agreement, time.time(), run_id))
            store.db.execute("INSERT OR REPLACE INTO tune_run_details VALUES (?,?)", (run_id, json.dumps(extra)))
        return RunResult("done", f"adapter saved to {out}", run_id, len(new), len(tr), len(va), info["steps"],
                         info["train_loss"], info["val_loss"], before, after_agreement, built.skipped,
                         sorted(bad), str(out), built.endings, info["longest_tokens"],
                         info["estimated_peak_gb"], info["measured_peak_gb"], info["seconds_per_step"],
                         kinds, list(built.kinds), qs.val_questions, conf, fresh, extra["patterns_note"])
    finally:
        store.close()


def write_outputs(out: Path, model: str, revision: str | None, profile, settings: TuneSettings, built: ds.Built,
                  tr: list[int], va: list[int], info: dict, run_id: int, quantize: str | None = None,
                  adapter: str | None = None, max_turns: int | None = None, max_length: int | None = None,
                  extra: dict | None = None) -> None:
    """tune_config.json (what the adapter is for and how it was made) and data.jsonl (what it saw, no images)."""
    from dataclasses import asdict

    config = {"base_model": model, "revision": revision or "", "profile": profile.name,
              "profile_version": profile.version, "run_id": run_id, "created": time.time(),
              "settings": asdict(settings), "lora_targets": LORA_TARGETS,
              "steps": info["steps"], "best_step": info.get("best_step"), "val_loss": info["val_loss"],
              "train_loss": info["train_loss"],
              "data": {"train": [built.meta[i]["selection_id"] for i in tr],
                       "val": [built.meta[i]["selection_id"] for i in va],
                       "keys": sorted({f"{m['hash_a']}:{m['hash_b']}:{m['dimension']}" for m in built.meta})},
              "skipped": [{"selection_id": i, "why": why} for i, why in built.skipped],
              "max_turns": max_turns or profile.max_turns, "max_length": max_length, "endings": built.endings,
              "longest_tokens": info.get("longest_tokens"), "estimated_peak_gb": info.get("estimated_peak_gb"),
              "measured_peak_gb": info.get("measured_peak_gb"), "seconds_per_step": info.get("seconds_per_step")}
    extra = extra or {}
    config.update({k: extra[k] for k in ("kinds", "split", "model_confidence") if k in extra})
    config["data"]["split"] = extra.get("split", {}).get("rule")
    if quantize:
        config["quantize"] = quantize
    if adapter:
        config["start_adapter"] = adapter
    (out / "tune_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    sizes = info.get("row_tokens") or []  # in training order: the train rows, then the validation rows
    tokens = {k: sizes[j] for j, k in enumerate(tr + va) if j < len(sizes)}
    with open(out / "data.jsonl", "w", encoding="utf-8") as f:
        for k, m in enumerate(built.meta):
            row = dict(m, split="val" if k in set(va) else "train", tokens=tokens.get(k),
                       chosen_reply=built.rows[k]["chosen"][0]["content"],
                       rejected_reply=built.rows[k]["rejected"][0]["content"])
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
