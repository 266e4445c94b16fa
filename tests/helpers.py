"""Helpers the tests share (the fixtures are in ``conftest.py``): random-action episodes and
files, a tiny trained run, and a fixed-batch fitting loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import envs
from envs.core import random_actions
from marl.data.episodes import record_episodes
from marl.data.format import write_dataset

N_EPISODES = 12


def record_random(task: str, episodes: int, seed: int, num_envs: int = 4, **options):
    """``episodes`` finished random-action episodes of ``task`` in the ODIS layout, the wins
    (SMAC; else None) and the EnvInfo."""
    env = envs.make(task, num_envs=num_envs, seed=seed, **options)
    info, rng = env.info, np.random.default_rng(seed)
    if info.action_type == "discrete":
        def choose(ts):
            return random_actions(ts.avail_actions, rng)
    else:
        act_mask = np.arange(info.n_actions)[None, :] < np.array(info.layout.act_dims)[:, None]

        def choose(ts):
            return (rng.uniform(-1, 1, (num_envs, info.n_agents, info.n_actions)) * act_mask).astype(np.float32)
    arrays, wins = record_episodes(env, choose, episodes)
    env.close()
    return arrays, wins, info


def write_random(path: Path, task: str, episodes: int = N_EPISODES, seed: int = 0,
                 quality: str = "medium", arrays=None) -> Path:
    if arrays is None:
        arrays, wins, info = record_random(task, episodes, seed)
    else:
        arrays, wins, info = arrays
    write_dataset(path, arrays, task=task, backend=info.backend, quality=quality,
                  behavior_policy={"id": "random"}, seed=seed, env_info=info, battle_won=wins)
    return path


TINY_HISSD = ["model.dim=16", "model.ffn_mult=2", "model.hidden=32", "model.skill_dim=16",
              "model.mixer_dim=8", "model.contrastive_samples=16", "model.steps_per_episode=4"]


def tiny_run_of(tiny_data, run, algo: str = "hissd", updates: int = 3):
    """A tiny trained run of ``algo`` on the tiny data."""
    from marl.config import load_config
    from marl.train import train

    taskset, root = tiny_data
    model = TINY_HISSD if algo == "hissd" else ["model.dim=16", "model.ffn_mult=2",
                                                "model.hidden=32", "model.steps_per_episode=4"]
    if algo == "odis":
        model = model + ["model.pretrain_updates=1"]
    cfg = load_config(None, [f"algo={algo}", f"data.taskset={taskset}", f"data.root={root}",
                             "data.episodes=24", "batch_size=4", "threads=1",
                             f"updates={updates}", *model])
    train(cfg, run, log=lambda s: None)
    return run


def fit(model, batches, updates: int, start: int = 0, lr: float = 3e-3) -> list[dict]:
    """``updates`` AdamW steps of ``model`` on fixed ``batches`` (the same transitions each
    time); the loss stats of every update."""
    optim = torch.optim.AdamW(model.parameters(), lr=lr)
    history = []
    for update in range(start + 1, start + updates + 1):
        loss, stats = model.loss(batches, torch.Generator().manual_seed(1))
        optim.zero_grad()
        loss.backward()
        optim.step()
        model.after_update(update)
        history.append(stats)
    return history
