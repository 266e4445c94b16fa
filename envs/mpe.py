"""MPE cooperative navigation (PettingZoo ``mpe2.simple_spread_v3``) behind the batched API.

Task names are ``spread-N``: N agents must cover N landmarks without colliding. Each copy is one
``simple_spread_v3.parallel_env(N=N, local_ratio, max_cycles, continuous_actions=False)``; the
copies are stepped in a Python loop and their arrays stacked.

* Observation of agent i (6N floats, ``MpeLayout.slices``)::

      [ own velocity (2) | own position (2) | N x landmark position relative to i (2)
      | (N-1) x other agent position relative to i (2) | (N-1) x other agent's message (2) ]

  Agents in simple_spread are silent, so the message slots are always zero; they are kept so
  that the vectors are exactly mpe2's.
* State: mpe2's ``env.state()``, the concatenation of all agents' observations (N x 6N).
* Actions: ``Discrete(5)`` = no-op, left, right, down, up; all are always available.
* Team reward: the **mean** of the agents' rewards. With ``local_ratio`` r every agent gets
  ``(1 - r) * global + r * own collision penalty``, so the mean is the shared coverage term plus
  the average collision penalty: it stays on one agent's scale whatever N is, which keeps returns
  of spread-3 and spread-8 comparable in a multi-task dataset.
* Episodes never terminate early; they are truncated after ``max_cycles`` steps.
* Seeding: copy i is seeded with ``seed + i`` by ``reset``; later episodes of a copy continue its
  own random stream, so the same seed gives the same trajectories.
"""

from __future__ import annotations

import numbers
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from envs.core import EnvError, EnvInfo, EpisodeStats, LoopedEnv, TimeStep, check_num_envs

MAX_AGENTS = 20
N_ACTIONS = 5
ACTION_NAMES = ("no-op", "left", "right", "down", "up")
MAP_GRAMMAR = f"spread-N with N agents and N landmarks, N in 1..{MAX_AGENTS} (e.g. spread-3)"
OPTIONS = {
    "max_cycles": "positive int, steps per episode (default 25)",
    "local_ratio": "float in [0, 1], weight of the local collision penalty (default 0.5)",
    "check_actions": "bool, validate actions before stepping (default True)",
}
_SPREAD = re.compile(r"^spread-(\d+)$")


@dataclass(frozen=True)
class MpeLayout:
    """Where each part of a simple_spread observation lives (see the module docstring)."""

    n_agents: int
    n_landmarks: int

    @property
    def obs_dim(self) -> int:
        return 4 + 2 * self.n_landmarks + 4 * (self.n_agents - 1)

    @property
    def state_dim(self) -> int:
        return self.n_agents * self.obs_dim

    @property
    def slices(self) -> dict[str, slice]:
        """Name -> slice of the flat per-agent observation."""
        lm_end = 4 + 2 * self.n_landmarks
        others_end = lm_end + 2 * (self.n_agents - 1)
        return {
            "vel": slice(0, 2),
            "pos": slice(2, 4),
            "landmarks": slice(4, lm_end),
            "others": slice(lm_end, others_end),
            "comm": slice(others_end, self.obs_dim),
        }

    def summary(self) -> dict:
        out: dict[str, Any] = {"n_agents": self.n_agents, "n_landmarks": self.n_landmarks}
        out.update({f"slice.{k}": f"{s.start}:{s.stop}" for k, s in self.slices.items()})
        return out


def layout_from_name(map_name: str, options: dict) -> dict:
    """What a dataset records about an MPE task, from its name (``max_cycles``, 25 by default,
    is its episode limit)."""
    lay = parse_map(map_name)
    out = dict(lay.summary())
    out.update(n_agents=lay.n_agents, n_enemies=lay.n_landmarks, obs_dim=lay.obs_dim,
               state_dim=lay.state_dim, n_actions=N_ACTIONS, action_type="discrete",
               episode_limit=int(options.get("max_cycles", 25)))
    return out


def parse_map(map_name: str) -> MpeLayout:
    """Layout of an MPE task name, or EnvError saying what names are accepted."""
    m = _SPREAD.match(map_name) if isinstance(map_name, str) else None
    if m is None or not 1 <= int(m.group(1)) <= MAX_AGENTS:
        raise EnvError(f"MPE map name {map_name!r} is not understood; accepted: {MAP_GRAMMAR}")
    n = int(m.group(1))
    return MpeLayout(n_agents=n, n_landmarks=n)


class MPEEnv(LoopedEnv):
    """``num_envs`` auto-resetting simple_spread worlds with N agents and N landmarks."""

    def __init__(self, map_name: str, num_envs: int = 1, seed: int = 0, max_cycles: int = 25,
                 local_ratio: float = 0.5, check_actions: bool = True, **unknown: Any):
        if unknown:
            raise EnvError(f"mpe/mpe2: unknown option(s) {sorted(unknown)}; accepted: {OPTIONS}")
        layout = parse_map(map_name)
        if isinstance(max_cycles, bool) or not isinstance(max_cycles, (int, np.integer)) \
                or max_cycles < 1:
            raise EnvError(f"mpe/mpe2: max_cycles must be a positive int, got {max_cycles!r}")
        if isinstance(local_ratio, bool) or not isinstance(local_ratio, numbers.Real) \
                or not 0.0 <= local_ratio <= 1.0:
            raise EnvError(f"mpe/mpe2: local_ratio must be a number in [0, 1], got {local_ratio!r}")
        from mpe2 import simple_spread_v3

        self.num_envs = check_num_envs(num_envs)
        self.check_actions = check_actions
        self._envs = [
            simple_spread_v3.parallel_env(N=layout.n_agents, local_ratio=float(local_ratio),
                                          max_cycles=int(max_cycles), continuous_actions=False)
            for _ in range(self.num_envs)
        ]
        self._agents = list(self._envs[0].possible_agents)
        self.info = EnvInfo(
            task=f"mpe:{map_name}", family="mpe", map_name=map_name, backend="mpe2",
            n_agents=layout.n_agents, n_enemies=layout.n_landmarks, obs_dim=layout.obs_dim,
            state_dim=layout.state_dim, action_type="discrete", n_actions=N_ACTIONS,
            episode_limit=int(max_cycles), layout=layout,
            options={"max_cycles": int(max_cycles), "local_ratio": float(local_ratio)},
        )
        # Every action is always available in simple_spread.
        self._avail_all = np.ones((self.num_envs, layout.n_agents, N_ACTIONS), dtype=bool)
        self._seed = seed
        self._stats = EpisodeStats(self.num_envs)
        self.reset(seed)

    def _stack(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return np.stack([obs[a] for a in self._agents]).astype(np.float32, copy=False)

    def reset(self, seed: int | None = None) -> TimeStep:
        if seed is not None:
            self._seed = seed
        return self._started([self._stack(env.reset(seed=self._seed + i)[0])
                              for i, env in enumerate(self._envs)])

    # ------------------------------------------------------------------ LoopedEnv's hooks
    def _copy_actions(self, actions: np.ndarray) -> list:
        if self.check_actions:
            actions = self._check_discrete_actions(actions, self._avail)
        return np.asarray(actions).tolist()

    def _step_copy(self, i: int, action: list) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs, rewards, _, truncations, _ = self._envs[i].step(dict(zip(self._agents, action)))
        # Episodes never terminate early; the team reward is the agents' mean (module doc).
        return (self._stack(obs), float(np.mean([rewards[a] for a in self._agents])), False,
                any(truncations.values()), {})

    def _restart_copy(self, i: int) -> np.ndarray:
        return self._stack(self._envs[i].reset()[0])

    def _arrays(self, raws: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        obs = np.stack(raws)
        # mpe2's env.state() is exactly the agents' observations concatenated in agent order;
        # reusing the observations saves computing them twice.
        return obs, obs.reshape(obs.shape[0], -1), self._avail_all.copy()

    def close(self) -> None:
        for env in self._envs:
            env.close()
