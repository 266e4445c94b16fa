"""Zero-shot evaluation: a trained policy plays a task greedily, decentralised, in one batch.

``evaluate_task`` runs ``episodes`` battles of one task at once (one batched environment with
``episodes`` copies, each contributing its first episode) and returns the win rate (SMAC), the
mean, standard deviation and 95 % confidence interval of the return, and the mean episode
length. Each agent acts from its own observation only (``model.act``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

import envs


def _parser(family: str):
    from marl.data.loader import _family

    return _family(family).parse_obs


def evaluate_task(model, task: str, episodes: int = 32, seed: int = 0,
                  env_options: dict | None = None, device: str = "cpu") -> dict:
    env = envs.make(task, num_envs=episodes, seed=seed, **(env_options or {}))
    try:
        info = env.info
        if info.family != model.spec.name:
            raise envs.EnvError(f"{task} is of family {info.family!r}, but the model was "
                                f"trained on family {model.spec.name!r}")
        parse = _parser(info.family)
        returns = np.zeros(episodes)
        lengths = np.zeros(episodes)
        wins = np.zeros(episodes)
        finished = np.zeros(episodes, dtype=bool)
        ts = env.reset()
        was_training = model.training
        model.eval()
        while not finished.all():
            view = parse(torch.from_numpy(ts.obs).to(device), info.layout)
            avail = (None if ts.avail_actions is None
                     else torch.from_numpy(ts.avail_actions).to(device).bool())
            actions = model.act(view, avail).cpu().numpy()
            ts = env.step(actions)
            new = ts.done & ~finished
            if new.any():
                returns[new] = ts.info["episode_return"][new]
                lengths[new] = ts.info["episode_length"][new]
                if "battle_won" in ts.info:
                    wins[new] = ts.info["battle_won"][new]
                finished |= new
        model.train(was_training)
    finally:
        env.close()
    std = float(returns.std(ddof=1)) if episodes > 1 else 0.0
    half = 1.96 * std / math.sqrt(episodes)
    out = {"task": task, "episodes": episodes, "seed": seed,
           "return_mean": float(returns.mean()), "return_std": std,
           "return_ci95": [float(returns.mean() - half), float(returns.mean() + half)],
           "length_mean": float(lengths.mean())}
    if info.family == "smac":
        rate = float(wins.mean())
        # Wilson interval: well-behaved at 0 % and 100 %
        z, n = 1.96, episodes
        centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
        spread = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        out["win_rate"] = rate
        out["win_rate_ci95"] = [max(0.0, centre - spread), min(1.0, centre + spread)]
    if env_options:
        out["env_options"] = dict(env_options)
    return out
