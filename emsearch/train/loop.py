"""Train an EMS encoder: one readable loop, the same on a laptop CPU, one GPU, or many (torchrun).

    emsearch train training/default.json                   # a recipe
    emsearch train --data pairs.parquet --preset tiny --steps 200 --out runs/try
    torchrun --nproc-per-node 8 -m emsearch.cli train training/gpu.json

Each step: encode both sides, then loss = xtr_weight · XTR(both directions) + contrastive_weight · InfoNCE
(+ distill_weight · distance to a cached teacher vector of the English side, an optional stage:
teacher_cache.py). The run directory holds train_config.json (recipe.py), tokenizer.model, checkpoint/ (model,
heads, optimisers; atomic), log.jsonl (metrics) and model/ (the encoder bundle, refreshed at every checkpoint).
`--resume` continues the same run exactly: same batches (see data.py), same LR schedule, same dropout masks
(seeded per step).
"""

from __future__ import annotations

import copy
import json
import math
import os
import platform
import signal
import threading
import time
from collections.abc import Callable, Collection
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from emsearch.config import TrainConfig, resolve_model_config
from emsearch.encoder import Encoder
from emsearch.evaluate import retrieval_accuracy
from emsearch.model import EMSEncoder, EMSHeads
from emsearch.progress import step_bar
from emsearch.tokenizer import Tokenizer
from emsearch.train.checkpoint import load_checkpoint, save_checkpoint
from emsearch.train.data import Batch, PairDataset, read_pairs
from emsearch.train.mono import MonoSentences, distil_mono, map_sentences, read_mono
from emsearch.train.recipe import checked, save_run_config
from emsearch.train.teacher_cache import TeacherVectors
from emsearch.train.token_table import bundle_start, load_piece_vectors, piece_prior, run_tokenizer, teacher_start
from emsearch.train.trainee import Trainee, make_optimizers


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup, then cosine decay to min_lr_ratio · lr."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


# --- setup ---------------------------------------------------------------------------------------------------

@dataclass
class Run:
    """Everything a training run holds between steps."""

    cfg: TrainConfig
    out: Path
    data: PairDataset
    tokenizer: Tokenizer
    trainee: Trainee
    model: nn.Module  # the trainee, or its DDP wrapper
    opts: list[torch.optim.Optimizer]
    device: torch.device
    rank: int
    world: int
    eval_langs: list[str]
    say: Callable[..., None]
    piece_prior: tuple[np.ndarray, np.ndarray] | None  # teacher_prior's piece vectors and counts, for each export
    mono: MonoSentences | None  # the mono stage's sentences, for the last export
    state: dict = field(default_factory=lambda: {"step": 0, "position": [0, 0], "elapsed": 0.0, "pairs": 0})


def _distributed() -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = dist.get_rank() if world > 1 else 0
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


def _machine(device: torch.device, world: int) -> str:
    """What the run trains on, for the model card: the GPU model, or the CPU model and its threads."""
    count = f"{world} × " if world > 1 else ""
    if device.type == "cuda":
        return f"{count}{torch.cuda.get_device_name(device)}, bf16 autocast"
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in (cpuinfo.read_text().splitlines() if cpuinfo.is_file() else [])
             if line.startswith("model name")]
    return f"{count}{torch.get_num_threads()} threads of {names[0] if names else platform.machine()}, fp32"


def setup(cfg: TrainConfig, *, resume: bool, given: Collection[str] | None = None, console=None) -> Run:
    """Read and tokenize the data, build model and optimisers, restore a checkpoint when resuming (`given`: as
    `recipe.checked`)."""
    out = Path(cfg.out)
    cfg = checked(cfg, resume=resume, given=given)
    model_cfg = resolve_model_config(cfg)
    rank, world, device = _distributed()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    say = (console.print if console else print) if rank == 0 else (lambda *a, **k: None)
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.time()
    pairs = read_pairs(cfg.data)
    say(f"read {len(pairs):,} pairs in {len(set(pairs.lang))} languages"
        + (f"; skipped {dict(pairs.skipped)}" if pairs.skipped else "") + f" ({time.time() - t0:.0f}s)")
    tokenizer = run_tokenizer(cfg, model_cfg, pairs, out, rank, world, say)
    # Read before minutes of tokenizing: a tokenizer without its piece vectors fails here.
    needs_pieces = cfg.teacher_prior or (cfg.teacher_init and not resume)
    piece_vectors = load_piece_vectors(cfg.teacher_cache, tokenizer.path) if needs_pieces else None
    languages = sorted(set(pairs.lang) | {"eng"})
    teacher = TeacherVectors.load(cfg.teacher_cache) if cfg.distill_weight or cfg.mono else None
    mono = MonoSentences.load(read_mono(cfg.mono), map_sentences(pairs, cfg.alpha), teacher) if cfg.mono else None
    model_cfg = replace(model_cfg, vocab_size=tokenizer.vocab_size, n_langs=len(languages),
                        teacher_dim=teacher.dim if cfg.distill_weight else 0)
    cfg = replace(cfg, model=model_cfg)
    if rank == 0 and not resume:
        save_run_config(out, cfg)
    data = PairDataset(pairs, tokenizer, languages, cfg.max_length_ratio, teacher if cfg.distill_weight else None)
    del pairs
    say(f"{len(data):,} pairs tokenized; skipped {dict(data.skipped)} ({time.time() - t0:.0f}s)")
    if data.teacher is not None:
        say(f"teacher vectors for {data.teacher_share:.0%} of the pairs ({len(teacher.keys):,} "
            f"English sentences in {cfg.teacher_cache})")

    torch.manual_seed(cfg.seed)
    sparse = world == 1  # DDP all-reduces dense gradients only
    trainee = Trainee(EMSEncoder(model_cfg, sparse), EMSHeads(model_cfg, sparse), languages.index("eng")).to(device)
    if cfg.init_from and not resume:
        bundle_start(trainee.encoder, cfg.init_from, say)
    if cfg.teacher_init and not resume:
        started = teacher_start(trainee.encoder, piece_vectors, cfg.teacher_init)
        say(f"token table started from the teacher's vectors of {started:,} pieces")
    opts = make_optimizers(trainee, cfg)
    model = nn.parallel.DistributedDataParallel(trainee) if world > 1 else trainee
    eval_langs = list(cfg.eval_langs) or [
        lang for lang, _ in data.counts.most_common() if lang != "eng"][: cfg.eval_max_langs]
    prior = (piece_vectors, data.piece_counts(len(piece_vectors))) if cfg.teacher_prior else None  # counted once
    run = Run(cfg, out, data, tokenizer, trainee, model, opts, device, rank, world, eval_langs, say, prior, mono)
    if resume:
        run.state = load_checkpoint(out / "checkpoint", trainee, opts)
        say(f"resumed at step {run.state['step']}")
    return run


# --- the loop ------------------------------------------------------------------------------------------------

def step(run: Run, batch: Batch) -> dict[str, torch.Tensor]:
    """One optimiser step on one batch; dropout masks depend on the step number only, so resume replays them."""
    cfg, n = run.cfg, run.state["step"]
    torch.manual_seed(cfg.seed * 1_000_003 + n)
    for opt in run.opts:
        for group in opt.param_groups:
            group["lr"] = lr_at(n, cfg)
    tensors = tuple(None if a is None else torch.from_numpy(a).to(run.device, non_blocking=True)
                    for a in (batch.src, batch.tgt, batch.src_lang, batch.duplicates, batch.teacher,
                              batch.has_teacher))
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if run.device.type == "cuda" else nullcontext()
    with amp:
        losses = run.model(*tensors, cfg=cfg)
    for opt in run.opts:
        opt.zero_grad(set_to_none=True)
    losses["loss"].backward()
    dense = [p for p in run.trainee.parameters() if p.grad is not None and not p.grad.is_sparse]
    nn.utils.clip_grad_norm_(dense, cfg.grad_clip)
    for opt in run.opts:
        opt.step()
    return losses


def export(run: Run) -> Path:
    """The encoder bundle of the run so far, in OUT/model; with teacher_prior, its table shrunk towards the
    teacher's, and after the last step the mono stage (training goes on from the unchanged table)."""
    info = {"languages": dict(run.data.counts), "train_steps": run.state["step"],
            "trained_on": _machine(run.device, run.world)}
    if run.data.teacher is not None:
        info["teacher_pairs"] = round(run.data.teacher_share, 4)
    encoder = run.trainee.encoder
    if run.piece_prior is not None:
        encoder = copy.deepcopy(encoder)
        shrunk = piece_prior(encoder.tok_emb.weight.detach().cpu().numpy(), *run.piece_prior, run.cfg.teacher_prior)
        with torch.no_grad():
            encoder.tok_emb.weight.copy_(torch.from_numpy(shrunk))
    bundle = Encoder(encoder, run.tokenizer, info, device=str(run.device))
    if run.mono is not None and run.state["step"] >= run.cfg.steps:
        loss = distil_mono(bundle, run.mono, run.piece_prior[1], run.cfg.teacher_prior, run.cfg.mono_epochs,
                           run.cfg.seed)
        info["mono_sentences"] = len(run.mono.texts)
        run.say(f"mono stage: {len(run.mono.texts):,} sentences, {run.cfg.mono_epochs} epochs, loss {loss:.3f}")
    path = bundle.save(run.out / "model")
    run.trainee.train()
    return path


def checkpoint(run: Run) -> None:
    if run.rank == 0:
        save_checkpoint(run.out / "checkpoint", run.trainee, run.opts, run.state)
        export(run)


def evaluate(run: Run) -> None:
    """Dev retrieval accuracy of the encoder so far, logged next to the training metrics."""
    encoder = Encoder(run.trainee.encoder, run.tokenizer, {"model_id": "training"}, device=str(run.device))
    report = retrieval_accuracy(encoder, run.cfg.eval_file, langs=run.eval_langs)
    run.trainee.train()
    per_lang = {s.lang: round(s.mean, 4) for s in report.scores}
    _log(run.out, {"step": run.state["step"], "elapsed": run.state["elapsed"], "eval_accuracy": report.average,
                   "eval_per_lang": per_lang})
    run.say(f"step {run.state['step']}: dev retrieval accuracy {report.average:.3f} over {len(per_lang)} languages")


def train(cfg: TrainConfig, *, resume: bool = False, given: Collection[str] | None = None, progress: bool = True,
          console=None) -> Path:
    """Run (or resume) training; returns the path of the exported encoder bundle. On resume, the fields named in
    `given` (default: those `cfg` sets away from the defaults) must agree with the run's record (recipe.py)."""
    run = setup(cfg, resume=resume, given=given, console=console)
    cfg, state = run.cfg, run.state
    stream = run.data.stream(seed=cfg.seed, alpha=cfg.alpha, batch_tokens=cfg.batch_tokens,
                             batch_pairs=cfg.batch_pairs, batch_langs=cfg.batch_langs,
                             start=tuple(state["position"]),
                             rank=run.rank, world=run.world)
    meter = _Meter(run, progress and run.rank == 0)
    run.trainee.train()
    restore_sigterm = _sigterm_like_ctrl_c()
    try:
        while state["step"] < cfg.steps:
            position, batch = next(stream)
            losses = step(run, batch)
            state["step"] += 1
            state["position"] = list(position)
            state["pairs"] += len(batch.src_lang) * run.world
            meter.add(batch, losses)
            if state["step"] % cfg.checkpoint_every == 0:
                checkpoint(run)
            if cfg.eval_file and run.rank == 0 and state["step"] % cfg.eval_every == 0:
                evaluate(run)
                meter.restart_clock()
    except KeyboardInterrupt:
        checkpoint(run)
        run.say(f"interrupted at step {state['step']}: checkpoint saved; continue with --resume")
        raise
    finally:
        restore_sigterm()
        meter.close()
    checkpoint(run)
    if cfg.eval_file and run.rank == 0 and state["step"] % cfg.eval_every:
        evaluate(run)
    if run.world > 1:
        dist.destroy_process_group()
    return run.out / "model"


class _Meter:
    """Throughput and loss logging every log_every steps (log.jsonl), and the live progress line."""

    def __init__(self, run: Run, show: bool):
        self.run = run
        self.bar = step_bar("training", run.cfg.steps, run.state["step"]) if show else None
        self.restart_clock()

    def restart_clock(self) -> None:
        self.t, self.pairs, self.tokens = time.time(), 0, 0

    def add(self, batch: Batch, losses: dict[str, torch.Tensor]) -> None:
        run, state = self.run, self.run.state
        self.pairs += len(batch.src_lang) * run.world
        self.tokens += (batch.src.size + batch.tgt.size) * run.world
        if state["step"] % run.cfg.log_every and state["step"] != run.cfg.steps:
            return
        now = time.time()
        state["elapsed"] += now - self.t
        rate = self.pairs / (now - self.t)
        record = {"step": state["step"], "lr": lr_at(state["step"] - 1, run.cfg), "pairs_per_s": rate,
                  "tokens_per_s": self.tokens / (now - self.t), "elapsed": state["elapsed"],
                  **{k: v.item() for k, v in losses.items()}}
        self.restart_clock()
        if run.rank == 0:
            _log(run.out, record)
            if self.bar:
                self.bar.update(self.bar.task_ids[0], completed=state["step"],
                                info=f"loss {record['loss']:.3f} xtr {record['xtr']:.2f} "
                                     f"con {record['contrastive']:.3f} "
                                     + (f"distill {record['distill']:.3f} " if run.cfg.distill_weight else "")
                                     + f"{rate:.0f} pairs/s")

    def close(self) -> None:
        if self.bar:
            self.bar.stop()


def _log(out: Path, record: dict) -> None:
    with open(out / "log.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def _sigterm_like_ctrl_c() -> Callable[[], None]:
    """Make SIGTERM (Slurm, Kubernetes, `kill`) stop training as Ctrl-C does: checkpoint, then exit.

    Returns the function that puts the previous handler back (a no-op off the main thread, where Python cannot
    handle signals).
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    return lambda: signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
