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

import torch

from marl.entity import AGENT_ID_BITS, FamilySpec, Tokens
from marl.entity.families import entity_family


def family_spec(family: str, joint_identity: bool = False) -> FamilySpec:
    """The token view of ``family``: its entry in the entity registry (``joint_identity``: the
    view whose joint tokens say what each joint is, for families that have one)."""
    fam = entity_family(family)
    if not joint_identity:
        return fam.spec
    if fam.identity_spec is None:
        raise ValueError(f"model.joint_identity is for families with joint tokens, not {family!r}")
    return fam.identity_spec


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
