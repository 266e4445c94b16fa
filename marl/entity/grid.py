"""Grid cooperative navigation observations (``envs.grid`` layout) -> entity tokens.

ODIS's observations hold absolute grid coordinates (plus one; ``(0, 0)``: not seen), on grids
whose side grows with the team (6 for cn-2, 12 for cn-5). Absolute coordinates would give an
unseen map values never met in training, so tokens are relative and in cells, which mean the
same on every grid (the reach range is 2 cells in every map):

* ``own`` ``[..., 4]``: the cells between the agent and the north, west, south and east walls,
  divided by ``CELL_SCALE``;
* ``allies`` ``[..., N-1, 4]`` and ``enemies`` (the landmarks) ``[..., N, 4]``: the entity's
  offset (rows, cols) from the agent and its Chebyshev distance, divided by ``CELL_SCALE``, and
  1 where it is within reach of the agent; the mask is False where the entity is not seen.

The state tokens (for mixers and critics) are the agents' own tokens and each landmark's
distances to the four walls, found from the first agent's view.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from envs.grid import REACH_RANGE, GridLayout
from marl.entity import EntityObs, FamilySpec, Tokens, own_tokens

CELL_SCALE = 4.0  # cells per unit of a token feature
OWN_DIM = 4  # distances to the north, west, south and east walls
ENTITY_DIM = 4  # row offset, column offset, Chebyshev distance, within reach


def _entity_tokens(pos: torch.Tensor, own: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens and seen-mask of entities at ``pos [..., k, 2]`` (coordinates plus one) seen from
    ``own [..., 2]``."""
    seen = pos.abs().sum(-1) > 0
    offset = (pos - own[..., None, :]) * seen[..., None]
    gap = offset.abs().amax(-1, keepdim=True)
    reached = (gap <= REACH_RANGE) & seen[..., None]
    return torch.cat([offset / CELL_SCALE, gap / CELL_SCALE, reached.to(pos.dtype)], -1), seen


def parse_grid_obs(obs: torch.Tensor, layout: GridLayout) -> EntityObs:
    """Split flat observations ``[..., 4N]`` into tokens (tensor arithmetic, no loops)."""
    if obs.shape[-1] != layout.obs_dim:
        raise ValueError(f"grid observation has {obs.shape[-1]} features, expected "
                         f"{layout.obs_dim} for {layout.n_agents} agents and landmarks")
    sl, batch, n = layout.slices, obs.shape[:-1], layout.n_agents
    own = obs[..., sl["own"]]
    walls = torch.cat([own - 1, layout.size - own], -1) / CELL_SCALE  # north, west, south, east
    allies, ally_mask = _entity_tokens(obs[..., sl["others"]].reshape(*batch, n - 1, 2), own)
    landmarks, landmark_mask = _entity_tokens(obs[..., sl["landmarks"]].reshape(*batch, n, 2), own)
    return EntityObs(own=walls, allies=allies, enemies=landmarks, ally_mask=ally_mask,
                     enemy_mask=landmark_mask)


# ------------------------------------------------------------------------- the token view
def _grid_last_action(last: torch.Tensor, view) -> list:
    return [(F.one_hot(last.clamp(min=0), 5) * (last >= 0)[..., None])[..., None, :], None, None]


def _grid_state(state, view) -> Tokens:
    # a landmark's wall distances: the first agent's, moved by the landmark's offset from it
    offset = view.enemies[..., 0, :, :2]
    landmarks = view.own[..., 0, None, :] + torch.cat([offset, -offset], -1)
    agent_mask = view.own.abs().sum(-1) > 0  # padded agents have all-zero tokens
    return Tokens([view.own, landmarks], [agent_mask, view.enemy_mask[..., 0, :]])


SPEC = FamilySpec("grid", (OWN_DIM, ENTITY_DIM, ENTITY_DIM), (OWN_DIM, OWN_DIM), True, 5, None,
                  own_tokens, _grid_state, last_action_dims=(5, 0, 0),
                  last_action_features=_grid_last_action)
