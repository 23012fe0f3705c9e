"""The EMS encoder (a transformer with mean pooling) and its two training-only heads (XTR, contrastive).

Shapes: B sentences, T tokens, C = config.dim, V = vocabulary, L = XTR language table.
The encoder is all that ships; the heads exist only to train it (Mao et al., TASLP 2024, §III).
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
    """Token ids → one L2-normalisable sentence vector per sentence (mean over non-pad tokens)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.dim, padding_idx=0)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.dim)
        self.dropout = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.ln_f = nn.LayerNorm(cfg.dim)
        self.apply(_init_weights)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, T), 0 = padding → sentence vectors (B, C), not normalised."""
        keep = ids != 0  # (B, T)
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = self.dropout(self.tok_emb(ids) + self.pos_emb(pos))  # (B, T, C)
        for block in self.blocks:
            x = block(x, keep)
        x = self.ln_f(x)
        w = keep.unsqueeze(-1).to(x.dtype)  # (B, T, 1)
        return (x * w).sum(1) / w.sum(1).clamp(min=1.0)


class EMSHeads(nn.Module):
    """Training-only heads over the sentence vector u (B, C).

    XTR: [u; lang_emb(target)] → Linear → GELU → LayerNorm → vocabulary logits (B, V).
    Contrastive: u → Linear → ReLU → Linear → (B, proj_dim), compared by cosine.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.lang_emb = nn.Embedding(cfg.n_langs, cfg.lang_dim)
        self.xtr = nn.Sequential(nn.Linear(cfg.dim + cfg.lang_dim, cfg.dim), nn.GELU(), nn.LayerNorm(cfg.dim))
        self.vocab = nn.Linear(cfg.dim, cfg.vocab_size)
        self.proj = nn.Sequential(nn.Linear(cfg.dim, cfg.dim), nn.ReLU(), nn.Linear(cfg.dim, cfg.proj_dim))
        self.apply(_init_weights)

    def xtr_logits(self, u: torch.Tensor, target_lang: torch.Tensor) -> torch.Tensor:
        return self.vocab(self.xtr(torch.cat([u, self.lang_emb(target_lang)], dim=-1)))  # (B, V)

    def project(self, u: torch.Tensor) -> torch.Tensor:
        return self.proj(u)  # (B, proj_dim)


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
