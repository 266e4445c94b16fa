"""The entity view: flat per-agent vectors -> tokens, so one model fits any number of units.

Every family's parser turns an observation ``[..., obs_dim]`` into an :class:`EntityObs`:
``own [..., F_own]``, ``allies [..., A, F]`` and ``enemies [..., E, F]`` (for MPE the "enemies"
are landmarks) with boolean masks that are False only for padding slots. Feature vectors are
canonical within a family (e.g. one unit-type vocabulary for every SMAC map), so maps with
different team sizes share one model: only the token counts change. Parsers are pure tensor
indexing, with tables built once per layout: no Python loop over agents or entities.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable

import torch

AGENT_ID_BITS = 4  # binary agent id of i + 1 (the released code's binary_embed): 15 agents


def _pad_tokens(tokens: torch.Tensor, mask: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    have = tokens.shape[-2]
    if n < have:
        raise ValueError(f"cannot pad {have} tokens down to {n}")
    if n == have:
        return tokens, mask
    pad_shape = tokens.shape[:-2] + (n - have, tokens.shape[-1])
    tokens = torch.cat([tokens, tokens.new_zeros(pad_shape)], dim=-2)
    mask = torch.cat([mask, mask.new_zeros(pad_shape[:-1])], dim=-1)
    return tokens, mask


@dataclass
class EntityObs:
    """One agent's observation as tokens (any leading batch dims)."""

    own: torch.Tensor  # [..., F_own]
    allies: torch.Tensor  # [..., A, F]
    enemies: torch.Tensor  # [..., E, F]
    ally_mask: torch.Tensor  # [..., A] bool, False = padding
    enemy_mask: torch.Tensor  # [..., E] bool

    def pad(self, n_allies: int, n_enemies: int) -> "EntityObs":
        """Pad token counts (with masked zeros) so different maps stack into one batch."""
        allies, ally_mask = _pad_tokens(self.allies, self.ally_mask, n_allies)
        enemies, enemy_mask = _pad_tokens(self.enemies, self.enemy_mask, n_enemies)
        return EntityObs(self.own, allies, enemies, ally_mask, enemy_mask)

    def map(self, fn) -> "EntityObs":
        """Apply ``fn`` to every tensor (``.to(device)``, indexing a batch, ...)."""
        return EntityObs(*(fn(getattr(self, f.name)) for f in fields(self)))


@dataclass
class EntityState:
    """The global state as ally and enemy tokens (for critics and mixers)."""

    allies: torch.Tensor  # [..., n_agents, F_state]
    enemies: torch.Tensor  # [..., n_enemies, F_state]
    ally_mask: torch.Tensor  # [..., n_agents] bool, False = padding
    enemy_mask: torch.Tensor  # [..., n_enemies] bool

    def pad(self, n_allies: int, n_enemies: int) -> "EntityState":
        allies, ally_mask = _pad_tokens(self.allies, self.ally_mask, n_allies)
        enemies, enemy_mask = _pad_tokens(self.enemies, self.enemy_mask, n_enemies)
        return EntityState(allies, enemies, ally_mask, enemy_mask)

    def map(self, fn) -> "EntityState":
        return EntityState(*(fn(getattr(self, f.name)) for f in fields(self)))


# ------------------------------------------------------------------- token views of a family
@dataclass
class Tokens:
    """Token groups ``[..., n_g, F_g]`` with their bool masks ``[..., n_g]``."""

    groups: list[torch.Tensor]
    masks: list[torch.Tensor]

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "Tokens":
        return Tokens([fn(g) for g in self.groups], [fn(m) for m in self.masks])


@dataclass(frozen=True)
class FamilySpec:
    """How an algorithm's networks see one family: token widths, actions, and the functions
    that make observation, state and last-action tokens (``marl.nets.tokens`` says more)."""

    name: str
    obs_dims: tuple[int, ...]
    state_dims: tuple[int, int]
    discrete: bool
    n_own_actions: int  # logits from the own token (discrete families)
    entity_group: int | None  # obs group whose tokens each drive one action entry
    obs_tokens: Callable[[Any], Tokens]
    state_tokens: Callable[[Any, Any], Tokens]  # (state, obs view) -> [agents, others]
    # how the state's "others" line up with the agents' last observation group: False, one
    # state token per observed entity, seen by several agents (SMAC enemies, MPE landmarks);
    # True, every agent's observed entities in agent order (MuJoCo joints)
    others_per_agent: bool = False
    # features each observation group gains from an agent's last action (agent tokens), and
    # the function (last actions, view) -> one tensor per group (None where a group gains none)
    last_action_dims: tuple[int, ...] = ()
    last_action_features: Callable[[torch.Tensor, Any], list] | None = None

    def agent_token_dims(self) -> tuple[int, ...]:
        """``obs_dims`` with the agent tokens' features added (``with_agent_tokens``)."""
        extra = (AGENT_ID_BITS + self.last_action_dims[0],) + self.last_action_dims[1:]
        return tuple(f + e for f, e in zip(self.obs_dims, extra))


def own_tokens(view) -> Tokens:
    """SMAC and MPE observation tokens: [own (1), allies (A-1), enemies or landmarks (E)]."""
    return Tokens([view.own[..., None, :], view.allies, view.enemies],
                  [torch.ones_like(view.ally_mask[..., :1]), view.ally_mask, view.enemy_mask])
