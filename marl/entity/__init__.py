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

import torch


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
