"""Offline multi-task algorithms, one file each, registered by name with their config class.

Each is a ``marl.algos.common.Algorithm`` (the contract: ``loss``, ``after_update``, ``act``
with the episode's ``Memory``, ``remember``, and ``skills`` where ``has_skills``) built from a
``FamilySpec`` and its config dataclass, which declares what it supports
(``CONTINUOUS_ACTIONS``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AlgoEntry:
    config: type
    model: type


def registry() -> dict[str, AlgoEntry]:
    from marl.algos.bc import BC, BCConfig
    from marl.algos.hissd import HiSSD, HissdConfig
    from marl.algos.odis import ODIS, OdisConfig
    from marl.algos.updet import UPDeT, UpdetConfig

    return {"hissd": AlgoEntry(HissdConfig, HiSSD), "bc": AlgoEntry(BCConfig, BC),
            "odis": AlgoEntry(OdisConfig, ODIS), "updet": AlgoEntry(UpdetConfig, UPDeT)}


def build(name: str, spec, cfg: Any):
    algos = registry()
    if name not in algos:
        raise KeyError(f"unknown algorithm {name!r}; known: {sorted(algos)}")
    if not spec.discrete and not cfg.CONTINUOUS_ACTIONS:
        raise ValueError(f"{name} needs discrete actions; {spec.name} tasks are continuous")
    return algos[name].model(spec, cfg)
