"""The transformer mixer: per-agent values and state tokens in, a monotonic team value out.

A QMIX-style two-layer monotonic mix (as ODIS's and HiSSD's ``mt_qattn``) whose weights come
from an entity transformer over the state tokens, so any number of agents and enemies fits::

    h     = EntityTransformer(state tokens)            # agent tokens h_i, pooled context e
    w1_i  = |W1 h_i|                 [mixing_dim]      # per agent, from its own state token
    b1    = B1 e,  w2 = |W2 e|,  b2 = V(e)
    V_tot = w2 . elu(sum_i w1_i V_i + b1) + b2

The weights are non-negative, so dV_tot/dV_i >= 0 (monotonic); padded agents are dropped from
the sum and from the pooled context. ``mean_agents`` divides the agent sum by the number of real
agents, so a team value does not grow with team size (SMAC's team reward is shared, not summed
over agents); without it the sum is QMIX's.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from marl.entity import Tokens
from marl.nets.transformer import EntityTransformer, mlp


class TransformerMixer(nn.Module):
    def __init__(self, state_dims: tuple[int, int], dim: int = 32, mixing_dim: int = 32,
                 heads: int = 1, depth: int = 1, mean_agents: bool = False):
        super().__init__()
        self.mean_agents = mean_agents
        self.encoder = EntityTransformer(state_dims, dim, heads, depth)
        self.w1 = nn.Linear(dim, mixing_dim)
        self.b1 = nn.Linear(dim, mixing_dim)
        self.w2 = nn.Linear(dim, mixing_dim)
        self.b2 = mlp(dim, dim, 1)

    def forward(self, values: torch.Tensor, state: Tokens) -> torch.Tensor:
        """``values [..., A]`` per agent, ``state`` tokens ``[agents [..., A, F], others]`` ->
        ``V_tot [...]``."""
        agent_mask = state.masks[0]
        h_agents, h_others = self.encoder(state.groups, state.masks)
        h = torch.cat([h_agents, h_others], dim=-2)
        valid = torch.cat(state.masks, dim=-1)[..., None].to(h.dtype)
        context = (h * valid).sum(-2) / valid.sum(-2).clamp(min=1.0)
        w1 = self.w1(h_agents).abs() * agent_mask[..., None].to(h.dtype)
        mixed = (w1 * values[..., None]).sum(-2)
        if self.mean_agents:
            mixed = mixed / agent_mask.sum(-1, keepdim=True).clamp(min=1).to(h.dtype)
        hidden = F.elu(mixed + self.b1(context))
        return (self.w2(context).abs() * hidden).sum(-1) + self.b2(context)[..., 0]
