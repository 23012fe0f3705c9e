"""Where a training run starts: its tokenizer, and the first values of its token table.

The table starts at random (the model's own init), from another bundle's trained table (`init_from`: stage 2 of a
staged recipe), or from the teacher's vector of each piece (`teacher_init`). Those two starts apply to a fresh
run only; `--resume` restores the checkpoint instead.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file

from emsearch.config import ConfigError, ModelConfig, TokenizerConfig, TrainConfig
from emsearch.encoder import unpack_weights
from emsearch.model import EMSEncoder
from emsearch.teacher import piece_start
from emsearch.teacher_pieces import join_teacher_pieces, teacher_words
from emsearch.tokenizer import Tokenizer, train_tokenizer


def run_tokenizer(cfg: TrainConfig, model_cfg: ModelConfig, pairs, out: Path, rank: int = 0, world: int = 1,
                  say=print) -> Tokenizer:
    """The run's SentencePiece model (OUT/tokenizer.model, made once): copied from tokenizer_path or init_from's
    bundle, or trained on the pairs (and then joined with the teacher's pieces where the recipe asks)."""
    path = out / "tokenizer.model"
    given = cfg.tokenizer_path or (str(Path(cfg.init_from) / "tokenizer.model") if cfg.init_from else None)
    if not path.is_file():
        if given:
            shutil.copyfile(given, path)
        elif rank == 0:
            by_lang: dict[str, list[str]] = {}
            for lang, text in zip(pairs.lang, pairs.text):
                by_lang.setdefault(lang, []).append(text)
            by_lang.setdefault("eng", []).extend(sorted(set(pairs.eng)))
            tok_cfg = replace(cfg.tokenizer, vocab_size=model_cfg.vocab_size)
            say(f"training a {tok_cfg.vocab_size}-piece SentencePiece model")
            if not (tok_cfg.teacher_pieces or tok_cfg.teacher_words):
                train_tokenizer(by_lang, tok_cfg, path)
            else:  # the run's tokenizer appears only once joined: a killed run never keeps a half-made one
                _joined_tokenizer(train_tokenizer(by_lang, tok_cfg, out / "tokenizer-own.model"), tok_cfg, path, say)
        if world > 1:
            dist.barrier()
    return Tokenizer(path, model_cfg.max_len)


def _joined_tokenizer(own: Path, cfg: TokenizerConfig, path: Path, say) -> None:
    """Our trained SentencePiece model with the teacher's pieces for the weak scripts, then its whole words that
    ours cuts up, joined (teacher_pieces.py), written to `path`."""
    scripts = path.with_name("tokenizer-scripts.model")
    joined = join_teacher_pieces(own, scripts, cfg.teacher_pieces, cfg.teacher_pieces_below)
    say(f"joined {sum(joined.values()):,} of the teacher's pieces: "
        + (", ".join(f"{script.title()} {n:,}" for script, n in joined.items()) or "no script was short"))
    if cfg.teacher_words:
        words = join_teacher_pieces(scripts, scripts, cfg.teacher_words, sys.maxsize,
                                    teacher=teacher_words(scripts, cfg.teacher_words_cut))
        say(f"joined {sum(words.values()):,} of the teacher's whole words that ours cuts into "
            f"{cfg.teacher_words_cut}+ pieces")
    scripts.replace(path)


def bundle_start(encoder: EMSEncoder, bundle: str, say) -> None:
    """Start from another bundle's token embeddings (and token weights): stage 2 of a staged recipe. The bundle
    may store its table as int8 rows (the shipped model does)."""
    weights = unpack_weights(load_file(str(Path(bundle) / "model.safetensors")))
    own = encoder.state_dict()
    taken = [k for k in ("tok_emb.weight", "tok_weight.weight") if k in weights and k in own
             and weights[k].shape == own[k].shape]
    if "tok_emb.weight" not in taken:
        raise ConfigError(f"init_from {bundle}: its token embeddings do not fit this model (other vocabulary or width)")
    encoder.load_state_dict({k: weights[k] for k in taken}, strict=False)
    say(f"token embeddings from {bundle} ({', '.join(taken)})")


def teacher_start(encoder: EMSEncoder, piece_vectors: np.ndarray, std: float) -> int:
    """Start the token table from the teacher's vector of each piece (`teacher.load_piece_vectors`), reduced to
    the model's width by PCA, at standard deviation `std`: translations of a piece start near each other, which
    pays most for the pieces training sees too rarely to place. Pieces with no text keep their random start.
    Returns how many rows were set."""
    table = encoder.tok_emb.weight
    rows, start = piece_start(piece_vectors, table.shape[1], std)
    with torch.no_grad():
        table[torch.from_numpy(rows), : start.shape[1]] = torch.from_numpy(start).to(table.dtype)
    return len(rows)
