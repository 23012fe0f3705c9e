"""The two EMS objectives as plain functions on tensors.

XTR (cross-lingual token reconstruction): from the sentence vector of one side and the target language,
predict the bag of tokens of the other side. The target is the uniform distribution over the target
sentence's tokens (a token occurring twice gets twice the mass); the loss is KL(target || prediction).

Contrastive: in-batch InfoNCE over translation pairs, symmetric, on cosine similarity / temperature.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from emsearch.tokenizer import EOS_ID, PAD_ID


def bag_of_tokens(ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """ids (B, T) → target distribution (B, V): token counts over non-special tokens, normalised per row."""
    keep = ((ids != PAD_ID) & (ids != EOS_ID)).to(torch.float32)  # (B, T)
    counts = torch.zeros(ids.shape[0], vocab_size, device=ids.device).scatter_add_(1, ids, keep)
    return counts / counts.sum(1, keepdim=True).clamp(min=1.0)


def xtr_loss(logits: torch.Tensor, target_ids: torch.Tensor) -> torch.Tensor:
    """KL(q || softmax(logits)) averaged over the batch; logits (B, V), target_ids (B, T)."""
    q = bag_of_tokens(target_ids, logits.shape[1])  # (B, V)
    log_p = F.log_softmax(logits.float(), dim=-1)
    kl = torch.special.xlogy(q, q) - q * log_p  # (B, V); 0 where q = 0
    return kl.sum(1).mean()


def contrastive_loss(
    a: torch.Tensor, b: torch.Tensor, temperature: float, duplicates: torch.Tensor | None = None
) -> torch.Tensor:
    """Symmetric InfoNCE: a[i] and b[i] are a translation pair, every other b[j] a negative for a[i].

    a, b (B, P). `duplicates` (B, B) bool marks pairs i≠j that share a side (the same English verse with two
    translations): those are not negatives, so they are left out of the softmax.
    """
    sim = F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).T / temperature  # (B, B)
    if duplicates is not None:
        off_diagonal = duplicates & ~torch.eye(len(sim), dtype=torch.bool, device=sim.device)
        sim = sim.masked_fill(off_diagonal, float("-inf"))
    labels = torch.arange(len(sim), device=sim.device)
    return (F.cross_entropy(sim, labels) + F.cross_entropy(sim.T, labels)) / 2
