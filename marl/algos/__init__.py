"""Offline multi-task algorithms, one file each, registered by name with their config class.

An algorithm is an ``nn.Module`` built from a ``FamilySpec`` and its config, with
``loss(batch, generator) -> (loss, stats)``, ``after_update(update)`` (target networks) and
``act(view, avail)`` (greedy decentralised actions); ``has_skills`` says whether
``skills(view)`` exists.
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
    return algos[name].model(spec, cfg)
