"""Behaviour policies for making offline datasets: shared-parameter MAPPO on the entity view.

``train`` picks the engine: SMAC maps train compiled with SMAX (``jax_ppo``: rollout and PPO
update in one XLA program), MPE and MuJoCo on the host (``torch_ppo``); a resumed run keeps the
engine it was started with. Both write the same run folder (``checkpoint.pt``, ``config.json``,
``snapshots/``, ``tb/``), and their snapshots load into the same torch actor (``policy``), which
collection and evaluation use. Data qualities (``marl.data.qualities``) are cut from the
snapshots.
"""

from __future__ import annotations

from pathlib import Path

from marl.behavior.policy import (ENGINES, BehaviorConfig, act, evaluate, family_adapter,
                                  learning_rate, load_policy, make_actor, resolve_engine,
                                  save_snapshot)


def train(cfg: BehaviorConfig, out: str | Path, log=print) -> dict:
    """Train (or resume) a behaviour policy; returns the last snapshot's metadata."""
    out = Path(out)
    cfg = resolve_engine(cfg, out)
    if cfg.engine == "jax":
        from marl.behavior import jax_ppo  # jax compiles on import: only when asked for

        return jax_ppo.train(cfg, out, log)
    from marl.behavior import torch_ppo

    return torch_ppo.train(cfg, out, log)


__all__ = ["ENGINES", "BehaviorConfig", "act", "evaluate", "family_adapter", "learning_rate",
           "load_policy", "make_actor", "resolve_engine", "save_snapshot", "train"]
