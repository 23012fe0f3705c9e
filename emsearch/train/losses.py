"""The two EMS objectives as plain functions on tensors.

XTR (cross-lingual token reconstruction): from the sentence vector of one side and the target language,
predict the bag of tokens of the other side. The target is the uniform distribution over the target
sentence's tokens (a token occurring twice gets twice the mass); the loss is KL(target || prediction). The
softmax runs over the batch's vocabulary (every piece that occurs in the batch's targets) rather than all V
pieces: each target is still scored against thousands of competing pieces, at a fraction of the cost.

Contrastive: in-batch InfoNCE over translation pairs, symmetric, on cosine similarity / temperature, with an
optional additive margin on the true pair (Yang et al., IJCAI 2019): the pair must beat every negative by the
margin, which separates near-duplicates that a plain softmax is already content with.

Distillation (optional, not an EMS objective): the cosine distance between the student's mapped vector and
a teacher's vector of the same meaning (Reimers & Gurevych 2020, with cosine in place of MSE: both vectors are
compared by direction only at search time).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from emsearch.tokenizer import EOS_ID, PAD_ID


def batch_vocabulary(*ids: torch.Tensor) -> torch.Tensor:
    """The sorted distinct non-special pieces of token-id tensors: the classes of an in-batch XTR softmax."""
    flat = torch.cat([t.reshape(-1) for t in ids])
    return torch.unique(flat[(flat != PAD_ID) & (flat != EOS_ID)])


def bag_of_tokens(ids: torch.Tensor, pieces: torch.Tensor) -> torch.Tensor:
    """ids (B, T) → target distribution (B, P) over `pieces` (sorted, containing every non-special id)."""
    keep = ((ids != PAD_ID) & (ids != EOS_ID)).to(torch.float32)  # (B, T)
    column = torch.searchsorted(pieces, ids).clamp(max=len(pieces) - 1)  # (B, T); pad/EOS land anywhere, weight 0
    counts = torch.zeros(ids.shape[0], len(pieces), device=ids.device).scatter_add_(1, column, keep)
    return counts / counts.sum(1, keepdim=True).clamp(min=1.0)


def xtr_loss(logits: torch.Tensor, target_ids: torch.Tensor, pieces: torch.Tensor) -> torch.Tensor:
    """KL(q || softmax(logits)) averaged over the batch; logits (B, P) over `pieces` (P,), target_ids (B, T)."""
    q = bag_of_tokens(target_ids, pieces)  # (B, P)
    log_p = F.log_softmax(logits.float(), dim=-1)
    kl = torch.special.xlogy(q, q) - q * log_p  # (B, P); 0 where q = 0
    return kl.sum(1).mean()


def contrastive_loss(
    a: torch.Tensor, b: torch.Tensor, temperature: float, duplicates: torch.Tensor | None = None,
    margin: float = 0.0,
) -> torch.Tensor:
    """Symmetric InfoNCE: a[i] and b[i] are a translation pair, every other b[j] a negative for a[i].

    a, b (B, P). `duplicates` (B, B) bool marks pairs i≠j that share a side (the same English verse with two
    translations): those are not negatives, so they are left out of the softmax. `margin` is subtracted from
    the true pair's cosine before the softmax.
    """
    cos = F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).T  # (B, B)
    if margin:
        cos = cos - margin * torch.eye(len(cos), device=cos.device)
    sim = cos / temperature
    if duplicates is not None:
        off_diagonal = duplicates & ~torch.eye(len(sim), dtype=torch.bool, device=sim.device)
        sim = sim.masked_fill(off_diagonal, float("-inf"))
    labels = torch.arange(len(sim), device=sim.device)
    return (F.cross_entropy(sim, labels) + F.cross_entropy(sim.T, labels)) / 2


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, has_teacher: torch.Tensor) -> torch.Tensor:
    """Mean of 1 - cos(student[i], teacher[i]) over the rows that have a teacher vector; student (B, D) through
    the distillation head, teacher (B, D), has_teacher (B,) bool. Rows without one count 0 but stay in the graph
    (a data-parallel step needs every parameter used on every rank)."""
    distance = 1 - F.cosine_similarity(student.float(), teacher.float(), dim=-1)  # (B,)
    return (distance * has_teacher).sum() / has_teacher.sum().clamp(min=1)
