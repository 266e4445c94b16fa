"""Behaviour policies for making offline datasets: shared-parameter MAPPO on the entity view.

``train`` picks the engine: SMAC maps train compiled with SMAX (``jax_ppo``: rollout and PPO
update in one XLA program), MPE and MuJoCo on the host (``torch_ppo``); a resumed run keeps the
engine it was started with. Both write the same run folder (``checkpoint.pt``, ``config.json``,
``snapshots/``, ``tb/``), and their snapshots load into the same torch actor (``policy``), which
collection and evaluation use. Data qualities (``marl.data.qualities``) are cut from the
snapshots. The settings are ``config.BehaviorConfig``; the torch parts load on first use.
"""

from __future__ import annotations

from pathlib import Path

from marl.behavior.config import ENGINES, BehaviorConfig

_FROM_POLICY = ("act", "evaluate", "family_adapter", "learning_rate", "load_policy", "make_actor",
                "partition_bridge",
                "resolve_engine", "save_snapshot")


def __getattr__(name: str):
    if name in _FROM_POLICY:  # torch loads here, not when the command line starts
        from marl.behavior import policy

        return getattr(policy, name)
    raise AttributeError(f"module 'marl.behavior' has no attribute {name!r}")


def train(cfg: BehaviorConfig, out: str | Path, log=print) -> dict:
    """Train (or resume) a behaviour policy; returns the last snapshot's metadata."""
    from marl.behavior.policy import resolve_engine

    out = Path(out)
    cfg = resolve_engine(cfg, out)
    if cfg.engine == "jax":
        from marl.behavior import jax_ppo  # jax compiles on import: only when asked for

        return jax_ppo.train(cfg, out, log)
    from marl.behavior import torch_ppo

    return torch_ppo.train(cfg, out, log)


__all__ = ["ENGINES", "BehaviorConfig", "train", *_FROM_POLICY]
