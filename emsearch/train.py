"""Train an EMS encoder: one readable loop, the same on a laptop CPU, one GPU, or many (torchrun).

    emsearch train training/default.json                   # a recipe
    emsearch train --data pairs.parquet --preset tiny --steps 200 --out runs/try
    torchrun --nproc-per-node 8 -m emsearch.cli train training/gpu.json

Each step: encode both sides, then loss = xtr_weight · XTR(both directions) + contrastive_weight · InfoNCE.
The run directory holds train_config.json, tokenizer.model, checkpoint/ (model, heads, optimiser; atomic),
log.jsonl (metrics) and model/ (the encoder bundle, refreshed at every checkpoint). `--resume` continues the
same run exactly: same batches (see data.py), same LR schedule, same dropout masks (seeded per step).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch import nn

from emsearch.config import TrainConfig, load_json, resolve_model_config, to_json
from emsearch.data import Batch, PairDataset, read_pairs
from emsearch.encoder import Encoder
from emsearch.evaluate import retrieval_accuracy
from emsearch.losses import contrastive_loss, xtr_loss
from emsearch.model import EMSEncoder, EMSHeads
from emsearch.tokenizer import Tokenizer, train_tokenizer


class Trainee(nn.Module):
    """Encoder + heads in one module, so DDP sees a single forward that returns the losses."""

    def __init__(self, encoder: EMSEncoder, heads: EMSHeads, eng_index: int):
        super().__init__()
        self.encoder, self.heads, self.eng_index = encoder, heads, eng_index

    def forward(self, src: torch.Tensor, tgt: torch.Tensor, src_lang: torch.Tensor, duplicates: torch.Tensor,
                temperature: float, xtr_weight: float, contrastive_weight: float) -> dict[str, torch.Tensor]:
        B = src.shape[0]
        width = max(src.shape[1], tgt.shape[1])
        both = torch.cat([nn.functional.pad(src, (0, width - src.shape[1])),
                          nn.functional.pad(tgt, (0, width - tgt.shape[1]))])  # (2B, T)
        u = self.encoder(both)  # (2B, C)
        u_src, u_tgt = u[:B], u[B:]
        zero = u.new_zeros(())
        xtr = zero
        if xtr_weight:
            eng = torch.full_like(src_lang, self.eng_index)
            xtr = (xtr_loss(self.heads.xtr_logits(u_src, eng), tgt) +
                   xtr_loss(self.heads.xtr_logits(u_tgt, src_lang), src)) / 2
        con = zero
        if contrastive_weight:
            z = self.heads.project(u)
            con = contrastive_loss(z[:B], z[B:], temperature, duplicates)
        return {"loss": xtr_weight * xtr + contrastive_weight * con, "xtr": xtr, "contrastive": con}


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup, then cosine decay to min_lr_ratio · lr."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(module: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    decay = [p for n, p in module.named_parameters() if p.dim() >= 2 and "emb" not in n]
    no_decay = [p for n, p in module.named_parameters() if not (p.dim() >= 2 and "emb" not in n)]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)


# --- checkpoints: tensors in safetensors, the rest in JSON; written to a temp dir, then renamed -------------

def save_checkpoint(path: Path, trainee: Trainee, opt: torch.optim.Optimizer, state: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in trainee.state_dict().items()}
    opt_state = opt.state_dict()
    for idx, slots in opt_state["state"].items():
        for name, value in slots.items():
            tensors[f"opt.{idx}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    save_file(tensors, str(tmp / "state.safetensors"))
    groups = [{k: v for k, v in g.items()} for g in opt_state["param_groups"]]
    (tmp / "state.json").write_text(json.dumps({**state, "param_groups": groups}, indent=2) + "\n")
    old = path.with_name(path.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(path: Path, trainee: Trainee, opt: torch.optim.Optimizer) -> dict:
    meta = json.loads((path / "state.json").read_text())
    tensors = load_file(str(path / "state.safetensors"))
    trainee.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, idx, name = key.split(".", 2)
            slots.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": slots, "param_groups": meta.pop("param_groups")})
    return meta


# --- the run --------------------------------------------------------------------------------------------------

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


def _log(out: Path, record: dict) -> None:
    with open(out / "log.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def _eval_langs(cfg: TrainConfig, counts: Counter) -> list[str]:
    if cfg.eval_langs:
        return list(cfg.eval_langs)
    return [lang for lang, _ in counts.most_common() if lang != "eng"][: cfg.eval_max_langs]


def train(cfg: TrainConfig, *, resume: bool = False, progress: bool = True, console=None) -> Path:
    """Run (or resume) training; returns the path of the exported encoder bundle."""
    out = Path(cfg.out)
    if resume:
        if not (out / "checkpoint" / "state.json").is_file():
            raise FileNotFoundError(f"nothing to resume in {out}: no checkpoint/ (start without --resume)")
        cfg = load_json(TrainConfig, out / "train_config.json")
    elif (out / "checkpoint").exists():
        raise FileExistsError(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
    if min(cfg.xtr_weight, cfg.contrastive_weight) < 0 or not (cfg.xtr_weight or cfg.contrastive_weight):
        raise ValueError("xtr_weight and contrastive_weight must be >= 0 and not both 0 (nothing would train)")
    model_cfg = resolve_model_config(cfg)  # an unknown preset fails before minutes of reading data
    rank, world, device = _distributed()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    say = (console.print if console else print) if rank == 0 else (lambda *a, **k: None)
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.time()
    pairs = read_pairs(cfg.data)
    say(f"read {len(pairs):,} pairs in {len(set(pairs.lang))} languages"
        + (f"; skipped {dict(pairs.skipped)}" if pairs.skipped else "") + f" ({time.time() - t0:.0f}s)")
    tok_path = out / "tokenizer.model"
    if not tok_path.is_file():
        if cfg.tokenizer_path:
            shutil.copyfile(cfg.tokenizer_path, tok_path)
        elif rank == 0:
            by_lang: dict[str, list[str]] = {}
            for lang, text in zip(pairs.lang, pairs.text):
                by_lang.setdefault(lang, []).append(text)
            by_lang.setdefault("eng", []).extend(sorted(set(pairs.eng)))
            tok_cfg = replace(cfg.tokenizer, vocab_size=model_cfg.vocab_size)
            say(f"training a {tok_cfg.vocab_size}-piece SentencePiece model")
            train_tokenizer(by_lang, tok_cfg, tok_path)
        if world > 1:
            dist.barrier()
    tokenizer = Tokenizer(tok_path, model_cfg.max_len)
    languages = sorted(set(pairs.lang) | {"eng"})
    model_cfg = replace(model_cfg, vocab_size=tokenizer.vocab_size, n_langs=len(languages))
    cfg = replace(cfg, model=model_cfg)
    if rank == 0 and not resume:
        tmp = out / "train_config.json.tmp"
        tmp.write_text(to_json(cfg) + "\n", encoding="utf-8")
        os.replace(tmp, out / "train_config.json")

    data = PairDataset(pairs, tokenizer, languages, cfg.max_length_ratio)
    del pairs
    say(f"{len(data):,} pairs tokenized; skipped {dict(data.skipped)} ({time.time() - t0:.0f}s)")

    torch.manual_seed(cfg.seed)
    trainee = Trainee(EMSEncoder(model_cfg), EMSHeads(model_cfg), languages.index("eng")).to(device)
    opt = make_optimizer(trainee, cfg)
    state = {"step": 0, "position": [0, 0], "elapsed": 0.0, "pairs": 0}
    if resume:
        state = load_checkpoint(out / "checkpoint", trainee, opt)
        say(f"resumed at step {state['step']}")
    model = nn.parallel.DistributedDataParallel(trainee) if world > 1 else trainee
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    eval_langs = _eval_langs(cfg, data.counts)

    def export() -> Path:
        enc = Encoder(trainee.encoder, tokenizer, {"languages": dict(data.counts), "train_steps": state["step"]},
                      device=str(device))
        path = enc.save(out / "model")
        trainee.train()
        return path

    def checkpoint() -> None:
        if rank == 0:
            save_checkpoint(out / "checkpoint", trainee, opt, state)
            export()

    stream = data.stream(seed=cfg.seed, alpha=cfg.alpha, batch_tokens=cfg.batch_tokens,
                         start=tuple(state["position"]), rank=rank, world=world)
    bar = _progress_bar(cfg.steps, state["step"]) if progress and rank == 0 else None
    trainee.train()
    window = {"t": time.time(), "pairs": 0, "tokens": 0}
    restore_sigterm = _sigterm_like_ctrl_c()
    try:
        while state["step"] < cfg.steps:
            position, batch = next(stream)
            step = state["step"]
            torch.manual_seed(cfg.seed * 1_000_003 + step)  # dropout masks depend on the step only
            for group in opt.param_groups:
                group["lr"] = lr_at(step, cfg)
            tensors = _to_device(batch, device)
            with amp:
                losses = model(*tensors, temperature=cfg.temperature, xtr_weight=cfg.xtr_weight,
                               contrastive_weight=cfg.contrastive_weight)
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            nn.utils.clip_grad_norm_(trainee.parameters(), cfg.grad_clip)
            opt.step()
            state["step"] = step + 1
            state["position"] = list(position)
            state["pairs"] += len(batch.src_lang) * world
            window["pairs"] += len(batch.src_lang) * world
            window["tokens"] += (batch.src.size + batch.tgt.size) * world
            if state["step"] % cfg.log_every == 0 or state["step"] == cfg.steps:
                now = time.time()
                state["elapsed"] += now - window["t"]
                rate = window["pairs"] / (now - window["t"])
                record = {"step": state["step"], "lr": lr_at(step, cfg), "pairs_per_s": rate,
                          "tokens_per_s": window["tokens"] / (now - window["t"]), "elapsed": state["elapsed"],
                          **{k: v.item() for k, v in losses.items()}}
                window = {"t": now, "pairs": 0, "tokens": 0}
                if rank == 0:
                    _log(out, record)
                    if bar:
                        bar.update(bar.task_ids[0], completed=state["step"],
                                   info=f"loss {record['loss']:.3f} xtr {record['xtr']:.2f} "
                                        f"con {record['contrastive']:.3f} {rate:.0f} pairs/s")
            if state["step"] % cfg.checkpoint_every == 0:
                checkpoint()
            if cfg.eval_file and rank == 0 and state["step"] % cfg.eval_every == 0:
                _evaluate(out, trainee, tokenizer, data, cfg, eval_langs, state, device, say)
                window["t"] = time.time()
    except KeyboardInterrupt:
        checkpoint()
        say(f"interrupted at step {state['step']}: checkpoint saved; continue with --resume")
        raise
    finally:
        restore_sigterm()
        if bar:
            bar.stop()
    checkpoint()
    if cfg.eval_file and rank == 0 and state["step"] % cfg.eval_every:
        _evaluate(out, trainee, tokenizer, data, cfg, eval_langs, state, device, say)
    if world > 1:
        dist.destroy_process_group()
    return out / "model"


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


def _to_device(batch: Batch, device: torch.device) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(a).to(device, non_blocking=True)
                 for a in (batch.src, batch.tgt, batch.src_lang, batch.duplicates))


def _evaluate(out, trainee, tokenizer, data, cfg, eval_langs, state, device, say) -> None:
    encoder = Encoder(trainee.encoder, tokenizer, {"model_id": "training"}, device=str(device))
    report = retrieval_accuracy(encoder, cfg.eval_file, langs=eval_langs)
    trainee.train()
    per_lang = {s.lang: round(s.mean, 4) for s in report.scores}
    _log(out, {"step": state["step"], "elapsed": state["elapsed"], "eval_accuracy": report.average,
               "eval_per_lang": per_lang})
    say(f"step {state['step']}: dev retrieval accuracy {report.average:.3f} over {len(per_lang)} languages")


def _progress_bar(total: int, done: int):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   TextColumn("{task.fields[info]}"))
    bar.add_task("train", total=total, completed=done, info="")
    bar.start()
    return bar

