"""MaMuJoCo observations (``envs.mamujoco`` layout) -> per-joint tokens.

Each agent's flat observation becomes one token per joint it observes plus one root vector,
with the same widths for every robot, partition and segment count, so HalfCheetah-2x3, -6x1 and
-3x2, or ManySegmentAnt with any number of segments, all feed one model:

* joint token (``JOINT_DIM``)::

      qpos, qvel, cfrc_ext of up to MAX_JOINT_BODIES bodies (6 each; Ant-like robots),
      controlled-by-me, hop distance, has qpos, has qvel, has cfrc_ext of body 0, 1, 2

* root vector (``ROOT_DIM``), the torso's unactuated coordinates::

      qpos by coordinate (ROOT_QPOS slots: free joint x y z qw qx qy qz; planar roots x z angle),
      qvel by coordinate (ROOT_QVEL), cfrc_ext of the torso, then one has-flag per value

Values the agent does not observe (a neighbour's velocity, the x position) are zero and the
flags say which are present (per value for the root, whose observed coordinates vary with the
agent in Swimmer). Contact forces follow the bodies the layout assigns to each joint, so a joint
carries the same features whichever agent, partition or hop observes it.

* joint identity (``IDENTITY_DIM``, on the learners' tokens with ``model.joint_identity``,
  ``IDENTITY_SPEC``): what the joint is on the robot, the same in every partition
  (``MujocoLayout``): ahead of or behind the torso (+1, -1, 0) and to its left or right, its
  depth from the torso over the robot's deepest, its depth over 4, and whether it ends a limb.
  Without it the joints differ only by their values; with it a model can tell a back thigh
  from a front one whatever the partition (what that did to transfer: ``docs/hissd.md``).

Tokens are ordered: the agent's controlled joints in action order, then the other observed
joints by hop distance and joint id. ``action_index`` maps each entry of the env's action vector
to its token, so a model can emit one action per controlled-joint token (``tokens_to_actions``
/ ``actions_to_tokens``). ``joint_id`` names the physical joint, e.g. for joint embeddings.

Parsing is one gather through index tables built once per layout: no loop over agents or joints.
Values are copied, never rescaled.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, fields
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from envs.mamujoco import CFRC_DIM, OBS_KINDS, ROOT, MujocoLayout
from marl.entity import FamilySpec, Tokens

MAX_JOINT_BODIES = 3  # ManySegmentAnt's hip1 moves its leg, its leg mount and its segment's torso
JOINT_VALUES = 2 + CFRC_DIM * MAX_JOINT_BODIES
JOINT_FLAGS = (
    "controlled", "hop", "has_qpos", "has_qvel",
    *(f"has_cfrc_ext{b}" for b in range(MAX_JOINT_BODIES)),
)
JOINT_DIM = JOINT_VALUES + len(JOINT_FLAGS)
IDENTITY_CODES = ("side_x", "side_y", "depth", "max_depth", "leaf")  # integers per joint token
IDENTITY_DIM = 5  # side x, side y, depth / max depth, depth / 4, leaf (``joint_identity``)

ROOT_QPOS = 7  # a free joint's coordinates
ROOT_QVEL = 6
MAX_ROOT_BODIES = 1
ROOT_VALUES = ROOT_QPOS + ROOT_QVEL + CFRC_DIM * MAX_ROOT_BODIES
ROOT_DIM = 2 * ROOT_VALUES  # values, then one has-flag per value

_QPOS, _QVEL, _CFRC = (OBS_KINDS.index(k) for k in ("qpos", "qvel", "cfrc_ext"))


@dataclass
class JointObs:
    """Per-joint tokens of every agent (any leading batch dims ``...``)."""

    joints: torch.Tensor  # [..., n_agents, T, JOINT_DIM]
    joint_mask: torch.Tensor  # [..., n_agents, T] bool, False = padding
    joint_id: torch.Tensor  # [..., n_agents, T] long, index into layout.joint_names (-1: padding)
    root: torch.Tensor  # [..., n_agents, ROOT_DIM]
    action_index: torch.Tensor  # [..., n_agents, n_actions] long: token of each action entry
    action_mask: torch.Tensor  # [..., n_agents, n_actions] bool, False beyond the agent's act_dim
    token_action: torch.Tensor  # [..., n_agents, T] long: action entry a token drives (-1: none)
    identity: torch.Tensor  # [..., n_agents, T, len(IDENTITY_CODES)] long (0: padding)

    def pad(self, n_tokens: int) -> "JointObs":
        """Pad the token count (masked zeros) so tasks with different counts stack."""
        have = self.joints.shape[-2]
        if n_tokens < have:
            raise ValueError(f"cannot pad {have} joint tokens down to {n_tokens}")
        extra = n_tokens - have
        return JointObs(
            joints=F.pad(self.joints, (0, 0, 0, extra)),
            joint_mask=F.pad(self.joint_mask, (0, extra), value=False),
            joint_id=F.pad(self.joint_id, (0, extra), value=-1),
            root=self.root,
            action_index=self.action_index,
            action_mask=self.action_mask,
            token_action=F.pad(self.token_action, (0, extra), value=-1),
            identity=F.pad(self.identity, (0, 0, 0, extra)),
        )

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "JointObs":
        """Apply ``fn`` to every tensor (``.to(device)``, indexing a batch, ...)."""
        return JointObs(*(fn(getattr(self, f.name)) for f in fields(self)))


@dataclass(frozen=True)
class _Tables:
    """Index tables of one layout (numpy), see ``_build_tables``."""

    source: np.ndarray  # [A, T * JOINT_VALUES + ROOT_VALUES] obs index, obs_dim = zero
    joint_flags: np.ndarray  # [A, T, len(JOINT_FLAGS)] float32
    root_flags: np.ndarray  # [A, ROOT_VALUES] float32
    joint_mask: np.ndarray  # [A, T] bool
    joint_id: np.ndarray  # [A, T] int64
    action_index: np.ndarray  # [A, n_actions] int64
    action_mask: np.ndarray  # [A, n_actions] bool
    token_action: np.ndarray  # [A, T] int64
    identity: np.ndarray  # [A, T, len(IDENTITY_CODES)] int64


def _slot(entity: int, kind: int, component: int, where: str) -> int:
    """Column of one observation entry in its token's value vector (joint) or the root's."""
    if entity != ROOT:
        if kind == _CFRC and component >= CFRC_DIM * MAX_JOINT_BODIES:
            raise ValueError(f"{where}: a joint with more than {MAX_JOINT_BODIES} bodies")
        return {_QPOS: 0, _QVEL: 1}.get(kind, 2 + component)
    start, size = {
        _QPOS: (0, ROOT_QPOS),
        _QVEL: (ROOT_QPOS, ROOT_QVEL),
        _CFRC: (ROOT_QPOS + ROOT_QVEL, CFRC_DIM * MAX_ROOT_BODIES),
    }[kind]
    if component >= size:
        raise ValueError(f"{where}: root {OBS_KINDS[kind]} component {component} beyond {size}")
    return start + component


def _build_tables(layout: MujocoLayout) -> _Tables:
    n_agents, obs_dim, n_actions = layout.n_agents, max(layout.obs_dims), max(layout.act_dims)
    where = f"{layout.robot}-{layout.partition}"

    # Token order per agent: controlled joints in action order, then the other observed joints.
    obs_entity, obs_kind, obs_component = layout.obs_entity, layout.obs_kind, layout.obs_component
    tokens: list[list[int]] = []
    for a, controlled in enumerate(layout.agent_joints):
        seen = {e for e in obs_entity[a] if e != ROOT} - set(controlled)
        hops = layout.joint_hops[a]
        tokens.append(list(controlled) + sorted(seen, key=lambda j: (hops[j], j)))
    n_tokens = max(len(t) for t in tokens)

    joint_src = np.full((n_agents, n_tokens, JOINT_VALUES), obs_dim, dtype=np.int64)
    root_src = np.full((n_agents, ROOT_VALUES), obs_dim, dtype=np.int64)
    joint_flags = np.zeros((n_agents, n_tokens, len(JOINT_FLAGS)), dtype=np.float32)
    root_flags = np.zeros((n_agents, ROOT_VALUES), dtype=np.float32)
    joint_mask = np.zeros((n_agents, n_tokens), dtype=bool)
    joint_id = np.full((n_agents, n_tokens), -1, dtype=np.int64)
    token_action = np.full((n_agents, n_tokens), -1, dtype=np.int64)
    action_index = np.zeros((n_agents, n_actions), dtype=np.int64)
    action_mask = np.zeros((n_agents, n_actions), dtype=bool)
    for a in range(n_agents):
        token_of = {j: t for t, j in enumerate(tokens[a])}
        n_controlled = layout.act_dims[a]
        joint_mask[a, : len(tokens[a])] = True
        joint_id[a, : len(tokens[a])] = tokens[a]
        token_action[a, :n_controlled] = np.arange(n_controlled)
        action_index[a, :n_controlled] = np.arange(n_controlled)
        action_mask[a, :n_controlled] = True
        joint_flags[a, :n_controlled, 0] = 1.0
        joint_flags[a, : len(tokens[a]), 1] = [layout.joint_hops[a][j] for j in tokens[a]]
        for i, (entity, kind, component, state_index) in enumerate(
            zip(obs_entity[a], obs_kind[a], obs_component[a], layout.obs_state_index[a])
        ):
            slot = _slot(entity, kind, component, where)
            if entity == ROOT:
                target, flags, flag = root_src[a], root_flags[a], slot
            else:
                target, flags = joint_src[a, token_of[entity]], joint_flags[a, token_of[entity]]
                flag = {_QPOS: 2, _QVEL: 3}.get(kind, 4 + component // CFRC_DIM)
            if target[slot] != obs_dim:  # the same state entry observed twice: keep the first
                if layout.obs_state_index[a][target[slot]] != state_index:
                    raise ValueError(f"{where}: agent {a} has two different values for one slot")
                continue
            target[slot] = i
            flags[flag] = 1.0

    return _Tables(
        source=np.concatenate([joint_src.reshape(n_agents, -1), root_src], axis=1),
        joint_flags=joint_flags,
        root_flags=root_flags,
        joint_mask=joint_mask,
        joint_id=joint_id,
        action_index=action_index,
        action_mask=action_mask,
        token_action=token_action,
        identity=_identity_codes(layout, tokens, n_tokens),
    )


def _identity_codes(layout: MujocoLayout, tokens: list[list[int]], n_tokens: int) -> np.ndarray:
    """[A, T, len(IDENTITY_CODES)]: each token's joint's identity codes (zeros on padding)."""
    out = np.zeros((layout.n_agents, n_tokens, len(IDENTITY_CODES)), dtype=np.int64)
    deepest = max(layout.joint_depth, default=1)
    codes = [(*side, depth, deepest, int(leaf)) for side, depth, leaf in
             zip(layout.joint_side, layout.joint_depth, layout.joint_leaf)]
    for a, joints in enumerate(tokens):
        if codes:
            out[a, : len(joints)] = [codes[j] for j in joints]
    return out


@functools.lru_cache(maxsize=None)
def _tables(layout: MujocoLayout, device: torch.device) -> dict[str, torch.Tensor]:
    tables = _build_tables(layout)
    out = {f.name: torch.from_numpy(getattr(tables, f.name)).to(device) for f in fields(tables)}
    out["agent"] = torch.arange(layout.n_agents, device=device)[:, None]
    return out


def parse_mujoco_obs(obs: torch.Tensor, layout: MujocoLayout) -> JointObs:
    """Flat observations ``[..., n_agents, obs_dim]`` -> per-joint tokens of every agent."""
    expected = (layout.n_agents, max(layout.obs_dims))
    if tuple(obs.shape[-2:]) != expected:
        raise ValueError(
            f"{layout.robot}-{layout.partition}: observations end in shape "
            f"{tuple(obs.shape[-2:])}, expected {expected} (n_agents, obs_dim)"
        )
    t = _tables(layout, obs.device)
    batch = obs.shape[:-2]
    n_agents, n_tokens = t["joint_mask"].shape
    # One gather for every value of every token; index obs_dim reads the appended zero.
    values = F.pad(obs, (0, 1))[..., t["agent"], t["source"]]
    joint_values = values[..., : n_tokens * JOINT_VALUES].reshape(
        *batch, n_agents, n_tokens, JOINT_VALUES
    )

    def expand(table: torch.Tensor) -> torch.Tensor:
        return table.expand(*batch, *table.shape)

    return JointObs(
        joints=torch.cat([joint_values, expand(t["joint_flags"].to(obs.dtype))], dim=-1),
        joint_mask=expand(t["joint_mask"]),
        joint_id=expand(t["joint_id"]),
        root=torch.cat(
            [values[..., n_tokens * JOINT_VALUES :], expand(t["root_flags"].to(obs.dtype))], dim=-1
        ),
        action_index=expand(t["action_index"]),
        action_mask=expand(t["action_mask"]),
        token_action=expand(t["token_action"]),
        identity=expand(t["identity"]),
    )


def tokens_to_actions(token_actions: torch.Tensor, joint_obs: JointObs) -> torch.Tensor:
    """One action per token ``[..., n_agents, T]`` -> the env's ``[..., n_agents, n_actions]``
    (entries beyond an agent's act_dim are zero)."""
    picked = torch.gather(token_actions, -1, joint_obs.action_index)
    return picked * joint_obs.action_mask


def actions_to_tokens(actions: torch.Tensor, joint_obs: JointObs) -> torch.Tensor:
    """The env's ``[..., n_agents, n_actions]`` -> one action per token ``[..., n_agents, T]``
    (zero on tokens the agent does not control)."""
    driven = joint_obs.token_action >= 0
    picked = torch.gather(actions, -1, joint_obs.token_action.clamp(min=0))
    return picked * driven


# ------------------------------------------------------------------------- the token view
def _mujoco_last_action(last: torch.Tensor, view) -> list:
    return [None, actions_to_tokens(last, view)[..., None]]


def joint_identity(view) -> torch.Tensor:
    """``[..., n_agents, T, IDENTITY_DIM]`` features of what each token's joint is (module doc),
    from the integer codes of ``view.identity``; zeros on padding."""
    code = view.identity.to(view.joints.dtype)
    side, depth, deepest, leaf = code[..., :2], code[..., 2:3], code[..., 3:4], code[..., 4:5]
    return torch.cat([side, depth / deepest.clamp(min=1.0), depth / 4.0, leaf], dim=-1)


def _mujoco_obs(view) -> Tokens:
    return Tokens([view.root[..., None, :], view.joints],
                  [torch.ones_like(view.joint_mask[..., :1]), view.joint_mask])


def _mujoco_state(state, view) -> Tokens:
    m = view.joint_mask[..., None].to(view.joints.dtype)
    pooled = (view.joints * m).sum(-2) / m.sum(-2).clamp(min=1.0)
    agents = torch.cat([pooled, view.root], dim=-1)
    return Tokens([agents, view.joints.flatten(-3, -2)],
                  [view.joint_mask.any(-1), view.joint_mask.flatten(-2)])


def _with_identity(view):
    """``view`` whose joint tokens end in their identity features."""
    return dataclasses.replace(view, joints=torch.cat([view.joints, joint_identity(view)], -1))


SPEC = FamilySpec("mamujoco", (ROOT_DIM, JOINT_DIM), (JOINT_DIM + ROOT_DIM, JOINT_DIM), False, 0, 1,
                  _mujoco_obs, _mujoco_state, others_per_agent=True, last_action_dims=(0, 1),
                  last_action_features=_mujoco_last_action)
TOKEN_DIM = JOINT_DIM + IDENTITY_DIM  # a joint token with its identity (model.joint_identity)
IDENTITY_SPEC = dataclasses.replace(
    SPEC, obs_dims=(ROOT_DIM, TOKEN_DIM), state_dims=(TOKEN_DIM + ROOT_DIM, TOKEN_DIM),
    obs_tokens=lambda view: _mujoco_obs(_with_identity(view)),
    state_tokens=lambda state, view: _mujoco_state(state, _with_identity(view)))
