"""A behaviour run's settings: one dataclass, the single source of its defaults. ``marl behavior
train`` reads its flags' defaults from it and merges ``key=value`` overrides onto it through
OmegaConf, as ``marl train`` does; the run folder keeps it as ``config.json``. No torch here, so
the command line stays quick to start."""

from __future__ import annotations

from dataclasses import dataclass

ENGINES = ("auto", "torch", "jax")


@dataclass
class BehaviorConfig:
    task: str
    total_env_steps: int = 2_000_000
    num_envs: int = 64
    rollout_steps: int = 128
    epochs: int = 4
    minibatches: int = 4
    lr: float = 5e-4
    anneal_lr: bool = False  # lr falls linearly to 0 at total_env_steps (JaxMARL's ANNEAL_LR)
    clip: float = 0.2
    entropy_coef: float = 0.01
    value_coef: float = 0.5
    max_grad_norm: float = 0.5
    gamma: float = 0.99
    gae_lambda: float = 0.95
    reward_scale: float = 0.1
    hidden: int = 64
    snapshot_every: int = 10  # updates
    eval_episodes: int = 128
    seed: int = 0
    threads: int = 1
    env_options: dict | None = None
    # "jax": SMAC maps on SMAX with rollout and update compiled together (marl.behavior.jax_ppo);
    # "auto": jax for SMAC on SMAX, torch otherwise (and a resumed run keeps its engine)
    engine: str = "auto"
    algo: str = "mappo"  # "ippo": per-agent values V(o_i) (jax engine only)
    recurrent: bool = False  # a GRU cell on the actor's context, trained through time (jax engine only)
    # jax engine: write the training rollouts (sampled actions, as played) to DIR/replay/ for
    # medium-replay, for at most this many env steps and until a snapshot passes the medium band
    record_replay: int = 0
