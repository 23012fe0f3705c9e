"""What training optimises: the encoder and its training-only heads in one module, whose forward returns the
weighted losses of a batch (losses.py), and the optimisers that update it."""

from __future__ import annotations

import torch
from torch import nn

from emsearch.config import TrainConfig
from emsearch.model import EMSEncoder, EMSHeads
from emsearch.train.losses import batch_vocabulary, contrastive_loss, distill_loss, xtr_loss


class Trainee(nn.Module):
    """Encoder + heads in one module, so DDP sees a single forward that returns the losses."""

    def __init__(self, encoder: EMSEncoder, heads: EMSHeads, eng_index: int):
        super().__init__()
        self.encoder, self.heads, self.eng_index = encoder, heads, eng_index

    def forward(self, src: torch.Tensor, tgt: torch.Tensor, src_lang: torch.Tensor, duplicates: torch.Tensor,
                teacher: torch.Tensor | None, has_teacher: torch.Tensor | None, *,
                cfg: TrainConfig) -> dict[str, torch.Tensor]:
        B = src.shape[0]
        width = max(src.shape[1], tgt.shape[1])
        both = torch.cat([nn.functional.pad(src, (0, width - src.shape[1])),
                          nn.functional.pad(tgt, (0, width - tgt.shape[1]))])  # (2B, T)
        u = self.encoder(both)  # (2B, C)
        zero = u.new_zeros(())
        xtr = con = distill = zero
        if cfg.xtr_weight:
            n = min(B, cfg.xtr_pairs) if cfg.xtr_pairs else B
            s, t = src[:n], tgt[:n]
            pieces = batch_vocabulary(s, t)  # (P,): one softmax over the pieces of both sides
            eng = torch.full_like(src_lang[:n], self.eng_index)
            xtr = (xtr_loss(self.heads.xtr_logits(u[:n], eng, pieces), t, pieces) +
                   xtr_loss(self.heads.xtr_logits(u[B:B + n], src_lang[:n], pieces), s, pieces)) / 2
        if cfg.contrastive_weight:
            z = self.heads.project(u)
            con = contrastive_loss(z[:B], z[B:], cfg.temperature, duplicates, cfg.margin)
        if cfg.distill_weight:
            mapped = self.heads.distill(u)  # (2B, D): both sides towards the teacher's English vector
            distill = (distill_loss(mapped[:B], teacher, has_teacher) +
                       distill_loss(mapped[B:], teacher, has_teacher)) / 2
        loss = cfg.xtr_weight * xtr + cfg.contrastive_weight * con + cfg.distill_weight * distill
        return {"loss": loss, "xtr": xtr, "contrastive": con, "distill": distill}


def make_optimizers(module: nn.Module, cfg: TrainConfig) -> list[torch.optim.Optimizer]:
    """AdamW for dense parameters; SparseAdam for embedding tables with sparse gradients (only the rows a batch
    touches are updated, so a wide vocabulary table costs per step what its batch uses, not its size)."""
    sparse = [m.weight for m in module.modules() if isinstance(m, nn.Embedding) and m.sparse]
    sparse_ids = {id(p) for p in sparse}
    dense = [(n, p) for n, p in module.named_parameters() if id(p) not in sparse_ids]
    decay = [p for n, p in dense if p.dim() >= 2 and "emb" not in n]
    no_decay = [p for n, p in dense if not (p.dim() >= 2 and "emb" not in n)]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    opts: list[torch.optim.Optimizer] = [torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)]
    if sparse:
        opts.append(torch.optim.SparseAdam(sparse, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6))
    return opts
