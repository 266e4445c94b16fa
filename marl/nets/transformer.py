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
import torch.nn.functional as F
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
    the outputs ``[..., n_g, dim]`` of each group, in order; ``forward(..., outputs=(0, 2))``
    returns only those groups' outputs, in that order.

    Rows (the leading positions: episode, step, agent) whose tokens and masks are identical
    have identical outputs, so each distinct row is computed once and its outputs are shared:
    SMAC gives a dead agent an all-zero observation, and 42 % of the agent-steps of marine-hard's
    9m_vs_10m data are dead agents'. Gradients are the same sums as without sharing. Finding
    the shared rows has a fixed cost of about half a millisecond, more than a forward pass of a
    few hundred rows can save, so batches under ``SHARE_MIN_ROWS`` rows (acting in 64 copies of
    a small team) skip it (docs/performance.md).

    Asking only for the outputs a caller uses is the cheap way: every token is still a key and
    value of every layer, but the last layer's queries, output projection and feed-forward (two
    thirds of a layer's arithmetic) run on the asked tokens alone. A value or an encoder that
    reads one agent's own token pays for 1 of its 19 tokens there (9m_vs_10m).

    ``recompute``: keep only the blocks' input for the backward pass and recompute the rest
    there (activation checkpointing), for about one more forward pass of compute; the rows
    (every leading position: episode, step, agent) then also go through the blocks in chunks of
    ``RECOMPUTE_ROWS``, so neither the forward nor the backward pass ever materialises the
    activations of a whole batch at once (at the released sizes, each feed-forward activation
    of one 9m_vs_10m task-batch is about 0.1 GB). Rows are independent, so chunking changes no
    result."""

    RECOMPUTE_ROWS = 4096
    SHARE_MIN_ROWS = 256

    def __init__(self, groups: Sequence[int], dim: int, heads: int = 1, depth: int = 1,
                 ffn_mult: int = 4, recompute: bool = False):
        super().__init__()
        self.recompute = recompute
        self.embed = nn.ModuleList(nn.Linear(f, dim) for f in groups)
        self.group = nn.Parameter(torch.randn(len(groups), dim) * 0.02)
        # torch's post-norm layers hold the parameters (and so fix the checkpoint format); the
        # forward pass is ``_layer``, which can run the queries of a subset of the tokens
        layer = nn.TransformerEncoderLayer(dim, heads, ffn_mult * dim, dropout=0.0,
                                           batch_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.dim = dim

    def forward(self, tokens: Sequence[torch.Tensor], masks: Sequence[torch.Tensor],
                outputs: Sequence[int] | None = None) -> list[torch.Tensor]:
        outputs = list(range(len(tokens))) if outputs is None else list(outputs)
        # attention has no positions, so the asked groups go first and the last layer's
        # queries are a prefix of the sequence
        order = outputs + [g for g in range(len(tokens)) if g not in outputs]
        batch = tokens[0].shape[:-2]
        tokens = [t.reshape(-1, *t.shape[-2:]) for t in tokens]
        masks = [m.reshape(-1, m.shape[-1]) for m in masks]
        distinct = (distinct_rows([*tokens, *masks]) if len(tokens[0]) >= self.SHARE_MIN_ROWS
                    else None)
        if distinct is not None:
            tokens, masks = [t[distinct[0]] for t in tokens], [m[distinct[0]] for m in masks]
        x = torch.cat([self.embed[g](tokens[g]) + self.group[g] for g in order], dim=-2)
        # a batch row whose every token is padding (a padded agent) attends to its first token
        # instead, so softmax stays finite; its outputs are masked out of every loss anyway
        empty = ~torch.stack([m.any(-1) for m in masks]).any(0)
        masks[0] = masks[0] | empty[:, None] & (torch.arange(masks[0].shape[-1],
                                                             device=empty.device) == 0)
        valid = torch.cat([masks[g] for g in order], dim=-1)[:, None, None, :]
        n_out = sum(tokens[g].shape[-2] for g in outputs)
        if self.recompute:
            rows = self.RECOMPUTE_ROWS
            grad = torch.is_grad_enabled()
            out = torch.cat([
                checkpoint(self._blocks, xc, vc, n_out, use_reentrant=False) if grad
                else self._blocks(xc, vc, n_out)
                for xc, vc in zip(x.split(rows), valid.split(rows))])
        else:
            out = self._blocks(x, valid, n_out)
        if distinct is not None:
            out = out[distinct[1]]
        out = out.reshape(*batch, *out.shape[-2:])
        return list(out.split([tokens[g].shape[-2] for g in outputs], dim=-2))

    def own_and_entities(self, tokens: Sequence[torch.Tensor], masks: Sequence[torch.Tensor],
                         entity_group: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """What an action head reads: the own token's output ``[..., dim]`` (group 0 is the
        own token) and the outputs of ``entity_group`` ``[..., n, dim]`` (None without one)."""
        if entity_group is None:
            return self(tokens, masks, outputs=(0,))[0][..., 0, :], None
        own, entities = self(tokens, masks, outputs=(0, entity_group))
        return own[..., 0, :], entities

    def _blocks(self, x: torch.Tensor, valid: torch.Tensor, n_out: int) -> torch.Tensor:
        """``x [R, L, dim]``, key mask ``valid [R, 1, 1, L]`` -> outputs of the first ``n_out``
        tokens ``[R, n_out, dim]``."""
        layers = self.blocks.layers
        for i, layer in enumerate(layers):
            x = _layer(layer, x, valid, n_out if i == len(layers) - 1 else x.shape[1])
        return x


def distinct_rows(tensors: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Rows that are equal in every tensor of ``tensors`` (each ``[R, ...]``): the index of one
    row per distinct content ``[U]`` and, for every row, the position of its content among those
    ``[R]``; None when all rows differ. Rows are hashed by their bits in wrapping integer
    arithmetic (exact and independent of summation order), and every row is then compared with
    the row it was matched to, so a hash collision only costs a row its sharing."""
    n = tensors[0].shape[0]
    gen = torch.Generator().manual_seed(0)
    bits = [x.reshape(n, -1) for x in tensors]
    bits = [b.contiguous().view({2: torch.int16, 4: torch.int32, 8: torch.int64}[b.element_size()])
            if b.is_floating_point() else b for b in bits]
    key = torch.zeros(n, dtype=torch.int64, device=bits[0].device)
    for b in bits:
        weights = torch.randint(-2**62, 2**62, (b.shape[1],), generator=gen) | 1
        key += (b.to(torch.int64) * weights.to(b.device)).sum(1)
    keys, position = torch.unique(key, return_inverse=True)
    first = torch.full((len(keys),), n, device=key.device)
    first = first.scatter_reduce(0, position, torch.arange(n, device=key.device), "amin")
    matched = first[position]
    same = torch.stack([(b == b[matched]).all(1) for b in bits]).all(0)
    if not bool(same.all()):  # collisions: those rows keep their own computation
        own = (~same).nonzero()[:, 0]
        position = position.clone()
        position[own] = len(first) + torch.arange(len(own), device=key.device)
        first = torch.cat([first, own])
    return None if len(first) == n else (first, position)


def _layer(layer: nn.TransformerEncoderLayer, x: torch.Tensor, valid: torch.Tensor,
           n_queries: int) -> torch.Tensor:
    """One post-norm encoder layer (torch's, with ReLU and no dropout) whose queries are the
    first ``n_queries`` tokens: every token is a key and value."""
    attn, dim = layer.self_attn, x.shape[-1]
    heads = attn.num_heads
    w, b = attn.in_proj_weight, attn.in_proj_bias
    xq = x[:, :n_queries]
    q = F.linear(xq, w[:dim], b[:dim])
    k, v = F.linear(x, w[dim:], b[dim:]).split(dim, dim=-1)
    q, k, v = (t.unflatten(-1, (heads, dim // heads)).transpose(1, 2) for t in (q, k, v))
    a = F.scaled_dot_product_attention(q, k, v, attn_mask=valid).transpose(1, 2).flatten(-2)
    xq = layer.norm1(xq + attn.out_proj(a))
    return layer.norm2(xq + layer.linear2(F.relu(layer.linear1(xq))))
