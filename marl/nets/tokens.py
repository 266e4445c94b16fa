"""Token views of each task family, for the algorithms' networks.

An algorithm sees two token sets per step:

* **observation tokens** (one agent's local view, what it acts from): SMAC and MPE give
  ``[own (1), allies (A-1), enemies/landmarks (E)]``; MuJoCo gives ``[root (1), joints (J)]``.
* **state tokens** (the global view, for mixers and forward models): ``[agents (A), others (M)]``
  with exactly one token per agent in agent order, so per-agent values line up with them. SMAC:
  ally and enemy state tokens; MPE: the agents' own tokens and the landmarks in absolute
  coordinates; MuJoCo: each agent's pooled joints with the root, and every joint token.

Actions: SMAC has ``n_own_actions = 6`` logits from the own token plus one attack logit per
enemy token (``entity_group = 2``); MPE has 5 own logits; MuJoCo has one Gaussian mean per
joint token (``entity_group = 1``) mapped onto the agent's action vector.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch


@dataclass
class Tokens:
    """Token groups ``[..., n_g, F_g]`` with their bool masks ``[..., n_g]``."""

    groups: list[torch.Tensor]
    masks: list[torch.Tensor]

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "Tokens":
        return Tokens([fn(g) for g in self.groups], [fn(m) for m in self.masks])


@dataclass(frozen=True)
class FamilySpec:
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


def _own_tokens(view) -> Tokens:
    return Tokens([view.own[..., None, :], view.allies, view.enemies],
                  [torch.ones_like(view.ally_mask[..., :1]), view.ally_mask, view.enemy_mask])


def _smac_state(state, view) -> Tokens:
    return Tokens([state.allies, state.enemies], [state.ally_mask, state.enemy_mask])


def _mpe_state(state, view) -> Tokens:
    # agents' own tokens (absolute velocity and position); landmarks made absolute from agent 0
    landmarks = view.enemies[..., 0, :, :].clone()
    landmarks[..., :2] += view.own[..., 0, None, 2:4]
    agent_mask = view.own.abs().sum(-1) > 0  # padded agents have all-zero tokens
    return Tokens([view.own, landmarks], [agent_mask, view.enemy_mask[..., 0, :]])


def _mujoco_obs(view) -> Tokens:
    return Tokens([view.root[..., None, :], view.joints],
                  [torch.ones_like(view.joint_mask[..., :1]), view.joint_mask])


def _mujoco_state(state, view) -> Tokens:
    m = view.joint_mask[..., None].to(view.joints.dtype)
    pooled = (view.joints * m).sum(-2) / m.sum(-2).clamp(min=1.0)
    agents = torch.cat([pooled, view.root], dim=-1)
    return Tokens([agents, view.joints.flatten(-3, -2)],
                  [view.joint_mask.any(-1), view.joint_mask.flatten(-2)])


def family_spec(family: str) -> FamilySpec:
    if family == "smac":
        from marl.entity.smac import F_ENTITY, F_OWN, F_STATE

        return FamilySpec("smac", (F_OWN, F_ENTITY, F_ENTITY), (F_STATE, F_STATE), True, 6, 2,
                          _own_tokens, _smac_state)
    if family == "mpe":
        from marl.entity.mpe import ENTITY_DIM, OWN_DIM

        return FamilySpec("mpe", (OWN_DIM, ENTITY_DIM, ENTITY_DIM), (OWN_DIM, ENTITY_DIM), True,
                          5, None, _own_tokens, _mpe_state)
    if family == "mamujoco":
        from marl.entity.mamujoco import JOINT_DIM, ROOT_DIM

        return FamilySpec("mamujoco", (ROOT_DIM, JOINT_DIM), (JOINT_DIM + ROOT_DIM, JOINT_DIM),
                          False, 0, 1, _mujoco_obs, _mujoco_state, others_per_agent=True)
    raise ValueError(f"no token view for task family {family!r} (smac, mpe, mamujoco)")
