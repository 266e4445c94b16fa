"""Token views of each task family, for the algorithms' networks.

An algorithm sees two token sets per step:

* **observation tokens** (one agent's local view, what it acts from): SMAC and MPE give
  ``[own (1), allies (A-1), enemies/landmarks (E)]``; MuJoCo gives ``[root (1), joints (J)]``.
* **state tokens** (the global view, for mixers and forward models): ``[agents (A), others (M)]``
  with exactly one token per agent in agent order, so per-agent values line up with them. SMAC:
  ally and enemy state tokens; MPE: the agents' own tokens and the landmarks in absolute
  coordinates; MuJoCo: each agent's pooled joints with the root, and every joint token.

**Agent tokens** (``model.agent_tokens``, the released HiSSD's and ODIS's inputs): the own token
also carries the agent's binary id (``AGENT_ID_BITS`` bits of ``i + 1``, so at most 15 agents)
and its last action, and the tokens an action acts on say so (``with_agent_tokens``). SMAC: the
own token gets the last action's no-op/stop/move one-hot and an "attacked" bit (the released
code's compact 7 values), each enemy token a bit "I attacked it last step"; MPE: the own token
gets the 5-way one-hot; MuJoCo: each joint token the command it received. Before the first step
there is no last action, and its features are zero.

Actions: SMAC has ``n_own_actions = 6`` logits from the own token plus one attack logit per
enemy token (``entity_group = 2``); MPE has 5 own logits; MuJoCo has one Gaussian mean per
joint token (``entity_group = 1``) mapped onto the agent's action vector.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

AGENT_ID_BITS = 4  # binary agent id of i + 1 (the released code's binary_embed): 15 agents


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
    # features each observation group gains from an agent's last action (agent tokens), and
    # the function (last actions, view) -> one tensor per group (None where a group gains none)
    last_action_dims: tuple[int, ...] = ()
    last_action_features: Callable[[torch.Tensor, Any], list] | None = None

    def agent_token_dims(self) -> tuple[int, ...]:
        """``obs_dims`` with the agent tokens' features added (``with_agent_tokens``)."""
        extra = (AGENT_ID_BITS + self.last_action_dims[0],) + self.last_action_dims[1:]
        return tuple(f + e for f, e in zip(self.obs_dims, extra))


def with_agent_tokens(spec: FamilySpec, obs: Tokens, view, last_actions: torch.Tensor
                      ) -> Tokens:
    """``obs`` with each agent's binary id on its own token and its last action on the tokens
    ``spec.last_action_features`` gives. ``last_actions``: ``[..., A]`` action ids (discrete;
    -1 before the first step) or ``[..., A, n_actions]`` commands (continuous; zeros)."""
    own = obs.groups[0]
    n_agents = own.shape[-3]
    if n_agents >= 2 ** AGENT_ID_BITS:
        raise ValueError(f"agent tokens carry {AGENT_ID_BITS}-bit agent ids, at most "
                         f"{2 ** AGENT_ID_BITS - 1} agents; this task has {n_agents}")
    ids = torch.arange(1, n_agents + 1, device=own.device)
    bits = ((ids[:, None] >> torch.arange(AGENT_ID_BITS, device=own.device)) & 1).to(own.dtype)
    extra = spec.last_action_features(last_actions, view)
    ids = bits[:, None, :].expand(*own.shape[:-1], AGENT_ID_BITS)
    extra[0] = ids if extra[0] is None else torch.cat([ids, extra[0].to(own.dtype)], dim=-1)
    groups = [g if e is None else torch.cat([g, e.to(g.dtype)], dim=-1)
              for g, e in zip(obs.groups, extra)]
    return Tokens(groups, obs.masks)


def _smac_last_action(last: torch.Tensor, view) -> list:
    """Own: one-hot of no-op/stop/move (6) and "attacked" (1); enemies: "I attacked it"."""
    n_enemies = view.enemies.shape[-2]
    some = last >= 0
    move = F.one_hot(last.clamp(0, 5), 6) * ((last < 6) & some)[..., None]
    attack = last - 6
    attacked = F.one_hot(attack.clamp(0, max(n_enemies - 1, 0)), max(n_enemies, 1))
    attacked = attacked[..., :n_enemies] * (attack >= 0)[..., None]
    return [torch.cat([move, (attack >= 0)[..., None]], -1)[..., None, :], None,
            attacked[..., None]]


def _mpe_last_action(last: torch.Tensor, view) -> list:
    return [(F.one_hot(last.clamp(min=0), 5) * (last >= 0)[..., None])[..., None, :], None, None]


def _mujoco_last_action(last: torch.Tensor, view) -> list:
    from marl.entity.mamujoco import actions_to_tokens

    return [None, actions_to_tokens(last, view)[..., None]]


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
                          _own_tokens, _smac_state, last_action_dims=(7, 0, 1),
                          last_action_features=_smac_last_action)
    if family == "mpe":
        from marl.entity.mpe import ENTITY_DIM, OWN_DIM

        return FamilySpec("mpe", (OWN_DIM, ENTITY_DIM, ENTITY_DIM), (OWN_DIM, ENTITY_DIM), True,
                          5, None, _own_tokens, _mpe_state, last_action_dims=(5, 0, 0),
                          last_action_features=_mpe_last_action)
    if family == "mamujoco":
        from marl.entity.mamujoco import JOINT_DIM, ROOT_DIM

        return FamilySpec("mamujoco", (ROOT_DIM, JOINT_DIM), (JOINT_DIM + ROOT_DIM, JOINT_DIM),
                          False, 0, 1, _mujoco_obs, _mujoco_state, others_per_agent=True,
                          last_action_dims=(0, 1), last_action_features=_mujoco_last_action)
    raise ValueError(f"no token view for task family {family!r} (smac, mpe, mamujoco)")
