"""The entity side of each task family, in one registry: how a task's layout is found and how
its flat observations and states become entity views (``marl.entity.smac``, ``.mpe``,
``.grid``, ``.mamujoco``). The env side of a family is ``envs.FAMILIES``; training data, evaluation and
the skill figures all look a family up here, by name."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any, Callable

import torch

import envs
from marl.entity import EntityObs, FamilySpec


@dataclass(frozen=True)
class EntityFamily:
    """How one task family's flat vectors become entity-view tensors."""

    name: str
    layout: Callable[[str, dict], Any]  # (task, env_options) -> parser layout
    parse_obs: Callable[[torch.Tensor, Any], Any]  # [N, A, obs_dim] -> EntityObs | JointObs
    parse_state: Callable[[torch.Tensor, Any], Any] | None  # [N, S] -> EntityState; None: raw
    obs_type: type
    n_entities: Callable[[Any], int]  # enemies (SMAC), landmarks (MPE), joint tokens (MuJoCo)
    spec: FamilySpec  # how the algorithms' networks see it: token widths, actions, token makers
    # the same with what each joint is on every joint token (``model.joint_identity``); None
    # where a family has no such tokens
    identity_spec: FamilySpec | None = None


def _smac_layout(task: str, env_options: dict):
    from envs.smac import parse_map

    return parse_map(envs.split_task(task)[1])


def _mpe_layout(task: str, env_options: dict):
    from envs.mpe import parse_map

    return parse_map(envs.split_task(task)[1])


def _grid_layout(task: str, env_options: dict):
    from envs.grid import parse_map

    return parse_map(envs.split_task(task)[1])


@functools.lru_cache(maxsize=None)
def _mujoco_layout_cached(task: str, options_json: str):
    env = envs.make(task, num_envs=1, seed=0, **json.loads(options_json))
    try:
        return env.layout
    finally:
        env.close()


def _mujoco_layout(task: str, env_options: dict):
    # The MuJoCo layout needs the model: build the env once per (task, options).
    keep = {k: v for k, v in env_options.items() if k == "agent_obsk"}
    return _mujoco_layout_cached(task, json.dumps(keep, sort_keys=True))


@functools.lru_cache(maxsize=None)
def entity_family(name: str) -> EntityFamily:
    if name == "smac":
        from marl.entity.smac import SPEC, parse_smac_obs, parse_smac_state

        return EntityFamily("smac", _smac_layout, parse_smac_obs, parse_smac_state, EntityObs,
                            lambda lay: lay.n_enemies, SPEC)
    if name == "mpe":
        from marl.entity.mpe import SPEC, parse_mpe_obs

        return EntityFamily("mpe", _mpe_layout, parse_mpe_obs, None, EntityObs,
                            lambda lay: lay.n_landmarks, SPEC)
    if name == "grid":
        from marl.entity.grid import SPEC, parse_grid_obs

        return EntityFamily("grid", _grid_layout, parse_grid_obs, None, EntityObs,
                            lambda lay: lay.n_landmarks, SPEC)
    if name == "mamujoco":
        from marl.entity.mamujoco import IDENTITY_SPEC, SPEC, JointObs, parse_mujoco_obs

        def n_tokens(lay) -> int:
            return int(parse_mujoco_obs(torch.zeros(lay.n_agents, max(lay.obs_dims)), lay)
                       .joints.shape[-2])

        return EntityFamily("mamujoco", _mujoco_layout, parse_mujoco_obs, None, JointObs, n_tokens,
                            SPEC, IDENTITY_SPEC)
    raise envs.EnvError(f"no entity view is known for task family {name!r}")


def task_family(task: str) -> str:
    return envs.split_task(task)[0].name
