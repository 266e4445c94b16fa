"""Environment adapters: simulators behind one batched multi-agent API (see ``envs.core``).

``envs.make("smac:3m", num_envs=64, seed=0)`` builds a task named ``family:map``. Simulators are
imported only when a task of theirs is built, so ``import envs`` is cheap.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from dataclasses import dataclass
from typing import Any

from envs.core import (BackendUnavailableError, BatchedEnv, EnvError, EnvInfo, Outcomes, TimeStep,
                       UserError, play)


@dataclass(frozen=True)
class Family:
    """One task family: its backends and the module that knows its map names. That module
    (``module``) provides ``parse_map(map_name)`` (a layout, or EnvError) and
    ``layout_from_name(map_name, options) -> dict`` (what a dataset file records about a task,
    known from its name without starting a simulator)."""

    name: str
    description: str
    backends: dict[str, str]  # backend name -> "module:Class"
    default_backend: str
    map_help: str  # what map names are accepted
    module: str  # e.g. "envs.smac"
    reports_wins: bool = False  # episodes end won or not (``info["battle_won"]``)
    max_return: float | None = None  # the largest return an episode can earn, where it is fixed

    def parse_map(self, map_name: str):
        return importlib.import_module(self.module).parse_map(map_name)

    def layout_from_name(self, map_name: str, options: dict | None = None) -> dict:
        return importlib.import_module(self.module).layout_from_name(map_name, dict(options or {}))

    def check_values(self, map_name: str, key: str, values):
        """Recorded ``obs`` or ``state`` rows ``[..., features]`` outside the ranges the family
        documents: (bool mask over the leading axes, what was expected), or None. Families
        whose module defines no ``check_values`` document no ranges."""
        check = getattr(importlib.import_module(self.module), "check_values", None)
        return None if check is None else check(map_name, key, values)


FAMILIES: dict[str, Family] = {
    "smac": Family(
        name="smac",
        description="StarCraft multi-agent battles in SMAC's observation/state/action layout",
        backends={"smax": "envs.smax:SmaxEnv", "sc2": "envs.sc2:SC2Env"},
        default_backend="smax",
        map_help="Nm, Nm_vs_Mm, XsYz or XsYz_vs_XsYz (e.g. 3m, 5m_vs_6m, 2s3z, 3s5z_vs_3s6z)",
        module="envs.smac",
        reports_wins=True,
        max_return=20.0,  # SMAC scales its reward so that a won battle returns exactly 20
    ),
    "mamujoco": Family(
        name="mamujoco",
        description="multi-agent MuJoCo robots (gymnasium-robotics mamujoco_v1), continuous actions",
        backends={"mujoco": "envs.mamujoco:MaMuJoCoEnv"},
        default_backend="mujoco",
        map_help="Robot-PARTITION, e.g. HalfCheetah-2x3, Ant-4x2, Hopper-3x1, "
        "ManySegmentAnt-3x2, or a custom factorization HalfCheetah-3x2",
        module="envs.mamujoco",
    ),
    "mpe": Family(
        name="mpe",
        description="multi-agent particle worlds (PettingZoo mpe2), cooperative navigation",
        backends={"mpe2": "envs.mpe:MPEEnv"},
        default_backend="mpe2",
        map_help="spread-N with N agents and N landmarks, e.g. spread-3",
        module="envs.mpe",
    ),
    "grid": Family(
        name="grid",
        description="ODIS's grid cooperative navigation: N agents reach N landmarks on a grid",
        backends={"numpy": "envs.grid:GridEnv"},
        default_backend="numpy",
        map_help="cn-N with N in 2-12 or 15 (ODIS's map table), e.g. cn-4",
        module="envs.grid",
        reports_wins=True,
        max_return=1.0,  # one reward of 1, at the win
    ),
}


def split_task(task: str) -> tuple[Family, str]:
    """``"smac:3m" -> (FAMILIES["smac"], "3m")`` with a clear error for bad names."""
    if not isinstance(task, str) or task.count(":") != 1 or not all(task.split(":")):
        raise EnvError(
            f"task name {task!r} is not of the form 'family:map'; families: {sorted(FAMILIES)} "
            "(e.g. 'smac:3m', 'mamujoco:HalfCheetah-2x3', 'mpe:spread-3', 'grid:cn-4')"
        )
    family_name, map_name = task.split(":")
    if family_name not in FAMILIES:
        close = difflib.get_close_matches(family_name, FAMILIES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise EnvError(f"unknown task family {family_name!r}{hint}; known: {sorted(FAMILIES)}")
    return FAMILIES[family_name], map_name


def _backend_class(task: str, backend: str | None) -> tuple[type, str]:
    family, _ = split_task(task)
    backend = family.default_backend if backend is None else backend
    if backend not in family.backends:
        raise EnvError(
            f"unknown backend {backend!r} for family {family.name!r}; "
            f"available: {sorted(family.backends)}"
        )
    module_name, class_name = family.backends[backend].split(":")
    return getattr(importlib.import_module(module_name), class_name), backend


def option_defaults(task: str, backend: str | None = None) -> dict[str, Any]:
    """The simulator options a task's backend accepts, with their defaults (read from its
    constructor), e.g. SMAX: ``{"enemy_attack_mode": "closest", "enemy_reaction": 1.0, ...}``."""
    cls, _ = _backend_class(task, backend)
    return {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
            if p.default is not inspect.Parameter.empty
            and name not in ("num_envs", "seed", "check_actions")}


def make(
    task: str, backend: str | None = None, num_envs: int = 1, seed: int = 0, **options: Any
) -> BatchedEnv:
    """Build ``num_envs`` auto-resetting copies of ``task`` on ``backend`` (the family's default
    when None). ``options`` are family-specific simulator settings (e.g. SMAC's
    ``enemy_attack_mode``); unknown ones are rejected by the backend."""
    _, map_name = split_task(task)
    cls, backend = _backend_class(task, backend)
    return cls(map_name, num_envs=num_envs, seed=seed, **options)


__all__ = [
    "BackendUnavailableError",
    "BatchedEnv",
    "EnvError",
    "EnvInfo",
    "FAMILIES",
    "Family",
    "Outcomes",
    "TimeStep",
    "UserError",
    "make",
    "option_defaults",
    "play",
    "split_task",
]
