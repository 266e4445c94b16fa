"""The entity transformer: token groups of different feature sizes -> one sequence -> outputs.

Each token group (own, allies, enemies, skill tokens, ...) has its own linear embedding plus a
learned group embedding, so the transformer knows what each token is without positional codes:
the sequence is a *set* per group, and any number of tokens per group fits. Padding tokens are
excluded through the attention's key-padding mask. Every leading batch dimension (episodes,
time, agents) is flattened into one batch, so one call covers a whole batch of episodes.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint


def mlp(n_in: int, hidden: int, n_out: int, out_act: nn.Module | None = None) -> nn.Sequential:
    """Linear -> ReLU -> Linear (+ optional output activation). Regression heads keep a linear
    output (the released HiSSD code regresses raw targets through LayerNorm+Tanh)."""
    layers: list[nn.Module] = [nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out)]
    if out_act is not None:
        layers.append(out_act)
    return nn.Sequential(*layers)


class EntityTransformer(nn.Module):
    """``groups``: feature size of each token group, in call order. ``forward(tokens, masks)``
    takes one ``[..., n_g, F_g]`` tensor and one ``[..., n_g]`` bool mask per group and returns
    the outputs ``[..., n_g, dim]`` of each group, in order.

    ``recompute``: keep only the blocks' input for the backward pass and recompute the rest
    there (activation checkpointing), for about one more forward pass of compute; the rows
    (every leading position: episode, step, agent) then also go through the blocks in chunks of
    ``RECOMPUTE_ROWS``, so neither the forward nor the backward pass ever materialises the
    activations of a whole batch at once (at the released sizes, each feed-forward activation
    of one 9m_vs_10m task-batch is about 0.1 GB). Rows are independent, so chunking changes no
    result."""

    RECOMPUTE_ROWS = 4096

    def __init__(self, groups: Sequence[int], dim: int, heads: int = 1, depth: int = 1,
                 ffn_mult: int = 4, recompute: bool = False):
        super().__init__()
        self.recompute = recompute
        self.embed = nn.ModuleList(nn.Linear(f, dim) for f in groups)
        self.group = nn.Parameter(torch.randn(len(groups), dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, ffn_mult * dim, dropout=0.0,
                                           batch_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.dim = dim

    def forward(self, tokens: Sequence[torch.Tensor], masks: Sequence[torch.Tensor]
                ) -> list[torch.Tensor]:
        batch = tokens[0].shape[:-2]
        x = torch.cat([emb(t) + self.group[i] for i, (emb, t) in enumerate(zip(self.embed, tokens))],
                      dim=-2)
        valid = torch.cat(list(masks), dim=-1)
        # a batch row whose every token is padding (a padded agent) attends to its first token
        # instead, so softmax stays finite; its outputs are masked out of every loss anyway
        valid = valid | ~valid.any(-1, keepdim=True) & (torch.arange(valid.shape[-1],
                                                                     device=valid.device) == 0)
        x, padding = x.reshape(-1, *x.shape[-2:]), ~valid.reshape(-1, valid.shape[-1])
        if self.recompute:
            rows = self.RECOMPUTE_ROWS
            grad = torch.is_grad_enabled()
            out = torch.cat([
                checkpoint(self.blocks, xc, src_key_padding_mask=pc, use_reentrant=False) if grad
                else self.blocks(xc, src_key_padding_mask=pc)
                for xc, pc in zip(x.split(rows), padding.split(rows))])
        else:
            out = self.blocks(x, src_key_padding_mask=padding)
        out = out.reshape(*batch, *out.shape[-2:])
        return list(out.split([t.shape[-2] for t in tokens], dim=-2))
