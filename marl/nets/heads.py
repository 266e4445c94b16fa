"""Action heads on entity-transformer outputs, for any number of entities.

Discrete: ``n_own_actions`` logits from the own token, then one logit per token of the
family's entity group (SMAC: attack enemy j), so the action count follows the enemy count.
Continuous: one Gaussian mean per joint token, scattered onto each agent's action vector
(``marl.entity.mamujoco.tokens_to_actions``), with one learned log standard deviation.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from marl.entity import FamilySpec
from marl.nets.transformer import mlp


class ActionHead(nn.Module):
    def __init__(self, spec: FamilySpec, in_dim: int, hidden: int):
        super().__init__()
        self.spec = spec
        self.own = mlp(in_dim, hidden, spec.n_own_actions) if spec.n_own_actions else None
        self.entity = mlp(in_dim, hidden, 1) if spec.entity_group is not None else None
        self.log_std = None if spec.discrete else nn.Parameter(torch.full((), -0.5))

    def forward(self, own: torch.Tensor, entities: torch.Tensor | None, view=None
                ) -> torch.Tensor:
        """``own [..., in_dim]``, ``entities [..., n, in_dim]`` -> discrete logits
        ``[..., n_own + n]`` or continuous means ``[..., n_actions]`` (needs the MuJoCo view)."""
        if self.spec.discrete:
            parts = [self.own(own)] if self.own is not None else []
            if self.entity is not None:
                parts.append(self.entity(entities)[..., 0])
            return torch.cat(parts, dim=-1)
        from marl.entity.mamujoco import tokens_to_actions

        return tokens_to_actions(self.entity(entities)[..., 0], view)
