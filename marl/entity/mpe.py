"""MPE simple_spread observations (``envs.mpe`` layout) -> entity tokens (``EntityObs``).

An agent's 6N-float observation becomes:

* ``own`` ``[..., 4]``: own velocity and position;
* ``allies`` ``[..., N-1, 4]``: each other agent's position relative to the observer and its
  2-float message (always zero in simple_spread, kept so the token matches mpe2's data);
* ``enemies`` ``[..., N, 4]``: the landmarks (MPE's "enemy" tokens), each landmark's relative
  position zero-padded to the ally width so that one token size serves both kinds of entity.

Every entity is observed in simple_spread (full observability), so the masks are all true;
``EntityObs.pad`` adds masked slots when maps with different N share a batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from envs.mpe import MpeLayout
from marl.entity import EntityObs, FamilySpec, Tokens, own_tokens

OWN_DIM = 4  # velocity (2) + position (2)
ENTITY_DIM = 4  # relative position (2) + message (2)


def parse_mpe_obs(obs: torch.Tensor, layout: MpeLayout) -> EntityObs:
    """Split flat observations ``[..., obs_dim]`` into tokens (reshapes only, no loops)."""
    if obs.shape[-1] != layout.obs_dim:
        raise ValueError(f"MPE observation has {obs.shape[-1]} features, expected "
                         f"{layout.obs_dim} for {layout.n_agents} agents / "
                         f"{layout.n_landmarks} landmarks")
    sl = layout.slices
    batch = obs.shape[:-1]
    n_others = layout.n_agents - 1
    landmark_pos = obs[..., sl["landmarks"]].reshape(*batch, layout.n_landmarks, 2)
    other_pos = obs[..., sl["others"]].reshape(*batch, n_others, 2)
    comm = obs[..., sl["comm"]].reshape(*batch, n_others, 2)
    return EntityObs(
        own=obs[..., :OWN_DIM],
        allies=torch.cat([other_pos, comm], dim=-1),
        enemies=F.pad(landmark_pos, (0, ENTITY_DIM - 2)),
        ally_mask=torch.ones(*batch, n_others, dtype=torch.bool, device=obs.device),
        enemy_mask=torch.ones(*batch, layout.n_landmarks, dtype=torch.bool, device=obs.device),
    )


# ------------------------------------------------------------------------- the token view
def _mpe_last_action(last: torch.Tensor, view) -> list:
    return [(F.one_hot(last.clamp(min=0), 5) * (last >= 0)[..., None])[..., None, :], None, None]


def _mpe_state(state, view) -> Tokens:
    # agents' own tokens (absolute velocity and position); landmarks made absolute from agent 0
    landmarks = view.enemies[..., 0, :, :].clone()
    landmarks[..., :2] += view.own[..., 0, None, 2:4]
    agent_mask = view.own.abs().sum(-1) > 0  # padded agents have all-zero tokens
    return Tokens([view.own, landmarks], [agent_mask, view.enemy_mask[..., 0, :]])


SPEC = FamilySpec("mpe", (OWN_DIM, ENTITY_DIM, ENTITY_DIM), (OWN_DIM, ENTITY_DIM), True, 5, None,
                  own_tokens, _mpe_state, last_action_dims=(5, 0, 0),
                  last_action_features=_mpe_last_action)
