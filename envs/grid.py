"""ODIS's grid cooperative navigation (``cn-N``) behind the batched API, vectorised over copies.

The rules are those of ``src/envs/grid_mpe/grid_mpe.py`` in LAMDA-RL/ODIS, the environment
ODIS's ``cn`` datasets were recorded in; the numbers of each map are its ``map_config``:

* N agents and N landmarks on a square grid whose side grows with N (``MAPS``). Agents start on
  distinct cells; landmarks start on free cells out of every agent's reach.
* Actions ``Discrete(5)``: stay, north (row - 1), south (row + 1), west (col - 1), east
  (col + 1); a move off the grid is unavailable. Agents whose target cells coincide (a staying
  agent targets its own cell) all stay; every other agent moves, so two agents may swap or end
  on one cell, as in ODIS.
* An agent *reaches* a landmark within ``REACH_RANGE`` cells in both directions (Chebyshev
  distance 2). The episode is won, with reward 1, when the agents can be matched one to one
  with landmarks they reach (ODIS solves the assignment with Munkres; so does this module, with
  ``scipy.optimize.linear_sum_assignment``); reward is 0 otherwise, and the episode is truncated
  after ``episode_limit`` steps. ``info["battle_won"]`` reports the success, as in ODIS.
* Observation of agent i (4N floats, ``GridLayout.slices``)::

      [ own (row, col) | (N-1) x other agent (row, col) | N x landmark (row, col) ]

  with every coordinate plus one; an entity farther than ``sight`` cells is ``(0, 0)``. In
  every map of the table ``sight`` is the grid side minus one, so all are seen.
* State: all agents' then all landmarks' (row, col), plus one (4N floats).

Two differences from ODIS's code, neither visible in its data: ODIS places each new episode's
agents avoiding the cells the later agents held in the previous episode (here every start is
uniform over distinct cells), and ODIS fails when no free cell is out of every agent's reach
(cn-2's 6 x 6 grid can be all within reach of two agents); here such a start is redrawn.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from envs.core import BatchedEnv, EnvError, EnvInfo, EpisodeStats, TimeStep, check_num_envs

# ODIS's map_config: agents -> (grid side, sight, episode limit)
MAPS = {2: (6, 5, 50), 3: (8, 7, 50), 4: (10, 9, 50), 5: (12, 11, 50), 6: (15, 14, 50),
        7: (15, 14, 70), 8: (15, 14, 70), 9: (15, 14, 70), 10: (15, 14, 70), 11: (18, 17, 70),
        12: (18, 17, 70), 15: (20, 19, 80)}
REACH_RANGE = 2
N_ACTIONS = 5
ACTION_NAMES = ("stay", "north", "south", "west", "east")
MOVES = np.array([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]], np.int64)  # (row, col) per action
MAP_GRAMMAR = f"cn-N with N in {sorted(MAPS)} (ODIS's map table, e.g. cn-2)"
OPTIONS = {"check_actions": "bool, validate actions before stepping (default True)"}
_CN = re.compile(r"^cn-(\d+)$")


@dataclass(frozen=True)
class GridLayout:
    """One ``cn-N`` map: its sizes, and where each part of an observation lives."""

    n_agents: int
    size: int  # the grid is size x size
    sight: int
    episode_limit: int
    reach_range: int = REACH_RANGE

    @property
    def n_landmarks(self) -> int:
        return self.n_agents

    @property
    def obs_dim(self) -> int:
        return 4 * self.n_agents

    @property
    def state_dim(self) -> int:
        return 4 * self.n_agents

    @property
    def slices(self) -> dict[str, slice]:
        """Name -> slice of the flat per-agent observation."""
        n = self.n_agents
        return {"own": slice(0, 2), "others": slice(2, 2 * n), "landmarks": slice(2 * n, 4 * n)}

    def summary(self) -> dict:
        out: dict[str, Any] = {"n_agents": self.n_agents, "n_landmarks": self.n_landmarks,
                               "size": self.size, "sight": self.sight,
                               "reach_range": self.reach_range}
        out.update({f"slice.{k}": f"{s.start}:{s.stop}" for k, s in self.slices.items()})
        return out


def parse_map(map_name: str) -> GridLayout:
    """Layout of a ``cn-N`` name, or EnvError saying which names exist."""
    m = _CN.match(map_name) if isinstance(map_name, str) else None
    if m is None or int(m.group(1)) not in MAPS:
        raise EnvError(f"grid map name {map_name!r} is not understood; accepted: {MAP_GRAMMAR}")
    n = int(m.group(1))
    size, sight, limit = MAPS[n]
    return GridLayout(n_agents=n, size=size, sight=sight, episode_limit=limit)


def layout_from_name(map_name: str, options: dict) -> dict:
    """What a dataset records about a ``cn-N`` task, from its name."""
    lay = parse_map(map_name)
    out = dict(lay.summary())
    out.update(n_agents=lay.n_agents, n_enemies=lay.n_landmarks, obs_dim=lay.obs_dim,
               state_dim=lay.state_dim, n_actions=N_ACTIONS, action_type="discrete",
               episode_limit=lay.episode_limit)
    return out


def check_values(map_name: str, key: str, values: np.ndarray) -> tuple[np.ndarray, str] | None:
    """Recorded ``obs`` or ``state`` rows (``[..., features]``) that do not fit ``map_name``'s
    grid (coordinates plus one: whole numbers in 1..side, 0 for an unseen entity), as a bool
    mask over the leading axes and what was expected; None where every row fits."""
    size = parse_map(map_name).size
    bad = ((values < 0) | (values > size) | (values != np.round(values))).any(-1)
    if not bad.any():
        return None
    return bad, (f"{key} holds {values[tuple(np.argwhere(bad)[0])].tolist()}, but grid "
                 f"coordinates of {map_name} are whole numbers in 1..{size} (0: unseen); the "
                 f"data do not fit its {size} x {size} grid")


class GridEnv(BatchedEnv):
    """``num_envs`` auto-resetting ``cn-N`` grids, stepped as arrays (no loop over copies except
    the one-to-one matching, solved only for copies where every agent reaches a landmark)."""

    def __init__(self, map_name: str, num_envs: int = 1, seed: int = 0,
                 check_actions: bool = True, **unknown: Any):
        if unknown:
            raise EnvError(f"grid/numpy: unknown option(s) {sorted(unknown)}; accepted: {OPTIONS}")
        self.layout = layout = parse_map(map_name)
        self.num_envs = check_num_envs(num_envs)
        self.check_actions = check_actions
        self.info = EnvInfo(
            task=f"grid:{map_name}", family="grid", map_name=map_name, backend="numpy",
            n_agents=layout.n_agents, n_enemies=layout.n_landmarks, obs_dim=layout.obs_dim,
            state_dim=layout.state_dim, action_type="discrete", n_actions=N_ACTIONS,
            episode_limit=layout.episode_limit, layout=layout, options={})
        n = layout.n_agents
        # agent i observes entity _seen[i, k]: itself, the other agents in order, the landmarks
        self._seen = np.array([[i] + [j for j in range(n) if j != i] + list(range(n, 2 * n))
                               for i in range(n)])
        self._stats = EpisodeStats(self.num_envs)
        self._seed = seed
        self.reset(seed)

    # ------------------------------------------------------------------ the rules
    def _spawn(self, copies: np.ndarray) -> None:
        """New starts for ``copies``: agents on distinct cells, landmarks on distinct free cells
        out of every agent's reach (a start with too few such cells is drawn again)."""
        lay, rng = self.layout, self._rng
        n, cells = lay.n_agents, lay.size * lay.size
        grid = np.stack(np.divmod(np.arange(cells), lay.size), -1)  # [cells, 2]
        todo = np.asarray(copies)
        while len(todo):
            agents = rng.random((len(todo), cells)).argsort(1)[:, :n]  # [c, n] distinct cells
            apos = grid[agents]
            near = np.abs(grid[None, None] - apos[:, :, None]).max(-1) <= lay.reach_range
            free = ~near.any(1)  # [c, cells]: out of every agent's reach (so not an agent's)
            ok = free.sum(1) >= n
            scores = np.where(free, rng.random(free.shape), -1.0)
            landmarks = (-scores).argsort(1)[:, :n]
            done = todo[ok]
            self._pos[done], self._landmarks[done] = apos[ok], grid[landmarks[ok]]
            self._t[done] = 0
            todo = todo[~ok]

    def _reached(self) -> np.ndarray:
        """[N, landmarks, agents] bool: agent within reach of landmark."""
        gap = np.abs(self._landmarks[:, :, None] - self._pos[:, None]).max(-1)
        return gap <= self.layout.reach_range

    def _succeeded(self) -> np.ndarray:
        """[N] bool: the agents can be matched one to one with landmarks they reach."""
        from scipy.optimize import linear_sum_assignment

        reach = self._reached()
        # a perfect matching needs every agent and every landmark covered; solve only those
        won = reach.any(1).all(1) & reach.any(2).all(1)
        for e in np.flatnonzero(won):
            rows, cols = linear_sum_assignment((~reach[e]).astype(np.float64))
            won[e] = bool(reach[e][rows, cols].all())
        return won

    def _avail(self) -> np.ndarray:
        row, col = self._pos[..., 0], self._pos[..., 1]
        last = self.layout.size - 1
        stay = np.ones_like(row, bool)
        return np.stack([stay, row > 0, row < last, col > 0, col < last], -1)

    def _vectors(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        entities = np.concatenate([self._pos, self._landmarks], 1)  # [N, 2n, 2]
        seen = entities[:, self._seen]  # [N, n, 2n, 2]
        visible = np.abs(seen - seen[:, :, :1]).max(-1) <= self.layout.sight
        obs = np.where(visible[..., None], seen + 1, 0).reshape(self.num_envs, self.layout.n_agents, -1)
        state = (entities + 1).reshape(self.num_envs, -1)
        return obs.astype(np.float32), state.astype(np.float32), self._avail()

    # ------------------------------------------------------------------ batched API
    def reset(self, seed: int | None = None) -> TimeStep:
        if seed is not None:
            self._seed = seed
        self._rng = np.random.default_rng(self._seed)
        n, agents = self.num_envs, self.layout.n_agents
        self._pos = np.zeros((n, agents, 2), np.int64)
        self._landmarks = np.zeros((n, agents, 2), np.int64)
        self._t = np.zeros(n, np.int64)
        self._spawn(np.arange(n))
        self._stats.reset()
        obs, state, self._avail_now = self._vectors()
        return self._first_timestep(obs, state, self._avail_now, ("battle_won",))

    def step(self, actions: np.ndarray) -> TimeStep:
        if self.check_actions:
            actions = self._check_discrete_actions(actions, self._avail_now)
        actions = np.asarray(actions, np.int64)
        target = self._pos + MOVES[actions]
        same = (target[:, :, None] == target[:, None]).all(-1).sum(-1)  # [N, n] incl. itself
        self._pos = np.where((same == 1)[..., None], target, self._pos)
        self._t += 1
        won = self._succeeded()
        truncated = ~won & (self._t >= self.layout.episode_limit)
        done = won | truncated
        reward = won.astype(np.float32)
        final_obs, final_state, final_avail = self._vectors()
        if done.any():  # same-step auto-reset
            self._spawn(np.flatnonzero(done))
            obs, state, avail = self._vectors()
        else:
            obs, state, avail = final_obs.copy(), final_state.copy(), final_avail.copy()
        self._avail_now = avail
        info = {"battle_won": won, **self._stats.step(reward, done), "final_obs": final_obs,
                "final_state": final_state, "final_avail_actions": final_avail}
        return TimeStep(obs=obs, state=state, avail_actions=avail, reward=reward,
                        terminated=won, truncated=truncated, info=info)

    # ------------------------------------------------------------------ introspection
    def set_positions(self, agents: np.ndarray, landmarks: np.ndarray) -> TimeStep:
        """Place every copy's agents and landmarks (``[N, n, 2]`` (row, col), zero-based) and
        return what the agents now observe: hand-built grids for tests and demonstrations."""
        agents, landmarks = np.asarray(agents, np.int64), np.asarray(landmarks, np.int64)
        shape = (self.num_envs, self.layout.n_agents, 2)
        for name, arr in (("agents", agents), ("landmarks", landmarks)):
            if arr.shape != shape or (arr < 0).any() or (arr >= self.layout.size).any():
                raise EnvError(f"{self.info.task}: {name} must be {shape} cells inside the "
                               f"{self.layout.size} x {self.layout.size} grid")
        self._pos, self._landmarks = agents.copy(), landmarks.copy()
        self._t[:] = 0
        self._stats.reset()
        obs, state, self._avail_now = self._vectors()
        return self._first_timestep(obs, state, self._avail_now, ("battle_won",))
