"""The EMS encoder and its two training-only heads (XTR, contrastive).

The encoder is token embeddings, `layers` transformer blocks over them (0 = none: a bag of sub-word
embeddings), then pooling over non-pad tokens: a plain mean, or a mean weighted by a learned scalar per
vocabulary piece (like SIF weights, but trained). Shapes: B sentences, T tokens, C = config.dim,
V = vocabulary, L = XTR language table. The encoder is all that ships; the heads exist only to train it
(Mao et al., TASLP 2024, §III).

Embedding tables use sparse gradients (unless built with sparse=False, as for DDP): a step touches only the rows
of the tokens in its batch, which is what makes wide embeddings cheap to train (see `train.make_optimizers`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from emsearch.config import ModelConfig


class Block(nn.Module):
    """Pre-LayerNorm transformer block: self-attention over non-pad tokens, then a GELU FFN."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.heads = cfg.heads
        self.ln1 = nn.LayerNorm(cfg.dim)
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim)
        self.out = nn.Linear(cfg.dim, cfg.dim)
        self.ln2 = nn.LayerNorm(cfg.dim)
        self.ffn = nn.Sequential(nn.Linear(cfg.dim, cfg.ffn), nn.GELU(), nn.Linear(cfg.ffn, cfg.dim))
        self.dropout = nn.Dropout(cfg.dropout)
        self.attn_dropout = cfg.dropout

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))  # (B, H, T, C/H)
        att = F.scaled_dot_product_attention(
            q, k, v, attn_mask=keep[:, None, None, :], dropout_p=self.attn_dropout if self.training else 0.0
        )
        x = x + self.dropout(self.out(att.transpose(1, 2).reshape(B, T, C)))
        return x + self.dropout(self.ffn(self.ln2(x)))


class EMSEncoder(nn.Module):
    """Token ids → one L2-normalisable sentence vector per sentence (pooled over non-pad tokens)."""

    def __init__(self, cfg: ModelConfig, sparse: bool = True):
        super().__init__()
        if cfg.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {cfg.pooling!r}: choose one of {', '.join(POOLINGS)}")
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.dim, padding_idx=0, sparse=sparse)
        if cfg.pooling == "weighted":
            self.tok_weight = nn.Embedding(cfg.vocab_size, 1, sparse=sparse)  # log-weight per piece, 0 = mean
        if cfg.layers:
            self.pos_emb = nn.Embedding(cfg.max_len, cfg.dim)
            self.dropout = nn.Dropout(cfg.dropout)
            self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
            self.ln_f = nn.LayerNorm(cfg.dim)
        self.apply(_init_weights)
        if cfg.pooling == "weighted":
            nn.init.zeros_(self.tok_weight.weight)
        for block in self.blocks if cfg.layers else ():
            # Residual branches start at zero, so blocks added over trained embeddings start as the identity.
            nn.init.zeros_(block.out.weight)
            nn.init.zeros_(block.ffn[2].weight)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, T), 0 = padding → sentence vectors (B, C), not normalised."""
        keep = ids != 0  # (B, T)
        if not self.cfg.layers:
            return self._bag(ids[keep], keep.sum(1))
        w = keep.to(self.tok_emb.weight.dtype)  # (B, T)
        if self.cfg.pooling == "weighted":
            w = w * self.tok_weight(ids).squeeze(-1).clamp(-10.0, 10.0).exp()
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = self.dropout(self.tok_emb(ids) + self.pos_emb(pos))  # (B, T, C)
        for block in self.blocks:
            x = block(x, keep)
        x = self.ln_f(x)
        return (x * w.unsqueeze(-1)).sum(1) / w.sum(1, keepdim=True).clamp(min=1e-6)

    def _bag(self, flat_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Weighted mean of token embeddings per sentence over the unpadded tokens (no (B, T, C) tensor).

        The batch's distinct pieces are looked up once: the tables' gradients then hold one row per distinct
        piece instead of one per token, so backward and the sparse optimiser step have far less to sort and
        sum (a training step ~25% faster), and the per-token sums run over that small dense block.
        """
        pieces, slot = torch.unique(flat_ids, return_inverse=True)  # (U,), (N,)
        rows = self.tok_emb(pieces)  # (U, C)
        if self.cfg.pooling == "weighted":
            w = self.tok_weight(pieces).squeeze(-1).clamp(-10.0, 10.0).exp()[slot]  # (N,)
        else:
            w = torch.ones(len(slot), dtype=rows.dtype, device=rows.device)
        offsets = torch.zeros_like(lengths)
        offsets[1:] = lengths.cumsum(0)[:-1]
        total = F.embedding_bag(slot, rows, offsets, mode="sum", per_sample_weights=w)  # (B, C)
        norm = torch.zeros(len(lengths), dtype=w.dtype, device=w.device).index_add_(
            0, torch.repeat_interleave(torch.arange(len(lengths), device=w.device), lengths), w)
        return total / norm.clamp(min=1e-6).unsqueeze(1)


POOLINGS = ("mean", "weighted")


class EMSHeads(nn.Module):
    """Training-only heads over the sentence vector u (B, C).

    XTR: [u; lang_emb(target)] → Linear → GELU → LayerNorm → logits over a set of vocabulary pieces (the output
    table is an embedding, so scoring only the pieces a batch needs costs only those rows).
    Contrastive: u → Linear → ReLU → Linear → (B, proj_dim), compared by cosine; with proj_dim 0, u itself.
    Distillation (teacher_dim > 0): u → Linear → (B, teacher_dim), compared with the teacher's vector; a linear
    map, so the student keeps its own width and the teacher's geometry is asked of u up to a rotation and scale.
    """

    def __init__(self, cfg: ModelConfig, sparse: bool = True):
        super().__init__()
        self.lang_emb = nn.Embedding(cfg.n_langs, cfg.lang_dim)
        self.xtr = nn.Sequential(nn.Linear(cfg.dim + cfg.lang_dim, cfg.dim), nn.GELU(), nn.LayerNorm(cfg.dim))
        self.vocab_emb = nn.Embedding(cfg.vocab_size, cfg.dim, sparse=sparse)
        self.vocab_bias = nn.Embedding(cfg.vocab_size, 1, sparse=sparse)
        self.proj = (nn.Sequential(nn.Linear(cfg.dim, cfg.dim), nn.ReLU(), nn.Linear(cfg.dim, cfg.proj_dim))
                     if cfg.proj_dim else nn.Identity())
        self.distill = nn.Linear(cfg.dim, cfg.teacher_dim) if cfg.teacher_dim else None
        self.apply(_init_weights)
        nn.init.zeros_(self.vocab_bias.weight)

    def xtr_logits(self, u: torch.Tensor, target_lang: torch.Tensor, pieces: torch.Tensor) -> torch.Tensor:
        """Logits (B, P) of the vocabulary pieces `pieces` (P,) for the sentences u in their target languages."""
        h = self.xtr(torch.cat([u, self.lang_emb(target_lang)], dim=-1))  # (B, C)
        return h @ self.vocab_emb(pieces).T + self.vocab_bias(pieces).T  # (B, P)

    def project(self, u: torch.Tensor) -> torch.Tensor:
        return self.proj(u)  # (B, proj_dim or C)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
        if module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def forward_flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    """Matmul FLOPs of one token's encoder forward pass (2 per multiply-add), attention included."""
    per_layer = 2 * (4 * cfg.dim * cfg.dim + 2 * cfg.dim * cfg.ffn) + 2 * 2 * seq_len * cfg.dim
    return cfg.layers * per_layer
