"""A trained policy playing a task: greedy, decentralised, every copy of a batched env at once.

``GreedyPolicy`` turns a model into the ``choose(timestep)`` that ``envs.play`` steps with:
each agent parses its own observation into the entity view of its family and acts from it and
from what it remembers (``model.act`` / ``model.remember``). ``evaluate_task`` plays the first
episode of ``episodes`` copies and summarises them; training's periodic evaluation, ``marl
evaluate`` and the quickstart all call it, and ``marl visualize`` steps the same chooser.
"""

from __future__ import annotations

import math

import numpy as np
import torch

import envs
from marl.entity.families import entity_family


def score(result: dict) -> float:
    """The figure a result is ranked by: the win rate where the task has battles (SMAC), else
    the mean return."""
    return result.get("win_rate", result["return_mean"])


class GreedyPolicy:
    """``choose(ts) -> actions [N, n_agents]`` for ``envs.play``: the model's greedy actions,
    with its memory carried from step to step (each copy plays only its first episode, so the
    memory is never reset). ``view``, ``avail`` and ``acted_with`` (the memory the last actions
    were chosen with) of the last call stay readable for ``envs.play``'s ``on_step`` hook."""

    def __init__(self, model, info: envs.EnvInfo, device: str = "cpu"):
        if info.family != model.spec.name:
            raise envs.EnvError(f"{info.task} is of family {info.family!r}, but the model was "
                                f"trained on family {model.spec.name!r}")
        self.model, self.info, self.device = model, info, device
        self.parse = entity_family(info.family).parse_obs
        self.memory = self.acted_with = self.view = self.avail = None

    @torch.no_grad()
    def __call__(self, ts: envs.TimeStep) -> np.ndarray:
        self.view = self.parse(torch.from_numpy(ts.obs).to(self.device), self.info.layout)
        self.avail = (None if ts.avail_actions is None
                      else torch.from_numpy(ts.avail_actions).to(self.device).bool())
        self.acted_with = self.memory
        actions = self.model.act(self.view, self.avail, self.memory)
        self.memory = self.model.remember(self.memory, self.view, actions)
        return actions.cpu().numpy()


def wilson_interval(rate: float, n: int, z: float = 1.96) -> list[float]:
    """95 % interval of a rate over ``n`` battles: well-behaved at 0 % and 100 %."""
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    spread = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, centre - spread), min(1.0, centre + spread)]


def evaluate_task(model, task: str, episodes: int = 32, seed: int = 0,
                  env_options: dict | None = None, device: str = "cpu") -> dict:
    """``episodes`` greedy episodes of ``task`` (one per copy): the win rate and its Wilson
    interval (SMAC), the mean, standard deviation and 95 % interval of the return, the mean
    length, and every episode's figures."""
    env = envs.make(task, num_envs=episodes, seed=seed, **(env_options or {}))
    was_training = model.training
    model.eval()
    try:
        outcomes = envs.play(env, GreedyPolicy(model, env.info, device))
    finally:
        model.train(was_training)
        env.close()
    returns = outcomes.returns
    std = float(returns.std(ddof=1)) if episodes > 1 else 0.0
    half = 1.96 * std / math.sqrt(episodes)
    out = {"task": task, "episodes": episodes, "seed": seed,
           "return_mean": float(returns.mean()), "return_std": std,
           "return_ci95": [float(returns.mean() - half), float(returns.mean() + half)],
           "length_mean": float(outcomes.lengths.mean()),
           "episode_returns": returns.tolist(), "episode_lengths": outcomes.lengths.tolist()}
    if outcomes.wins is not None:
        out["win_rate"] = float(outcomes.wins.mean())
        out["win_rate_ci95"] = wilson_interval(out["win_rate"], episodes)
        out["episode_wins"] = outcomes.wins.astype(int).tolist()
    if env_options:
        out["env_options"] = dict(env_options)
    return out
