"""The batched multi-agent environment API every family implements.

One object steps ``num_envs`` copies of a task at once and speaks arrays:

* ``reset() -> TimeStep`` and ``step(actions) -> TimeStep``;
* ``obs [N, n_agents, obs_dim]``, ``state [N, state_dim]``,
  ``avail_actions [N, n_agents, n_actions]`` (bool; ``None`` for continuous actions),
  team ``reward [N]``, ``terminated [N]`` (the episode really ended: a team was wiped out, the
  robot fell) and ``truncated [N]`` (the episode limit was reached).

Auto-reset is *same-step*: when copy ``i`` finishes during ``step``, the returned ``obs[i]``,
``state[i]`` and ``avail_actions[i]`` already belong to the first step of its next episode, and
what the finished episode ended on is in ``info["final_obs"]``, ``info["final_state"]`` and
``info["final_avail_actions"]``. Per-episode results (``episode_return``, ``episode_length`` and,
for SMAC, ``battle_won``) are in ``info`` and are meaningful where ``done`` is true. This is what
data collection needs: the final observation of every episode is kept, and no step is wasted on a
separate reset call.

``reset()`` returns the same ``info`` keys as ``step`` (zero returns and lengths, no wins, and
``final_*`` equal to the first observation), so a consumer reads every TimeStep one way.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np


class UserError(ValueError):
    """A mistake in what the user gave (a name, option, file or folder): the CLI prints its one
    line and exits 2, with no traceback. Every package's user-facing error derives from it, so
    nothing re-raises one error as another only for the CLI to catch it."""


class EnvError(UserError):
    """A user mistake in a task name, backend, option or action: one clear message, no traceback
    from the simulator underneath."""


class BackendUnavailableError(EnvError, ImportError):
    """A backend whose simulator is not installed (e.g. real StarCraft II)."""


@dataclass(frozen=True)
class EnvInfo:
    """What a task looks like: everything a dataset writer, model or parser needs to know."""

    task: str  # "family:map", e.g. "smac:3m"
    family: str
    map_name: str
    backend: str
    n_agents: int
    obs_dim: int  # per agent (the largest, where agents differ; smaller ones are zero-padded)
    state_dim: int
    action_type: str  # "discrete" | "continuous"
    n_actions: int  # discrete: actions per agent; continuous: largest action size of an agent
    episode_limit: int
    layout: Any  # family-specific description the entity parser needs (SmacLayout, ...)
    n_enemies: int = 0  # SMAC: enemy units; MPE: landmarks; MuJoCo: 0
    options: Mapping[str, Any] = field(default_factory=dict)  # simulator settings in force

    def summary(self) -> dict:
        """A flat, JSON-friendly description (for `marl envs check` and dataset attributes)."""
        out = {
            "task": self.task,
            "backend": self.backend,
            "n_agents": self.n_agents,
            "n_enemies": self.n_enemies,
            "obs_dim": self.obs_dim,
            "state_dim": self.state_dim,
            "action_type": self.action_type,
            "n_actions": self.n_actions,
            "episode_limit": self.episode_limit,
        }
        out.update({f"option.{k}": v for k, v in self.options.items()})
        if hasattr(self.layout, "summary"):
            out.update({f"layout.{k}": v for k, v in self.layout.summary().items()})
        return out


@dataclass
class TimeStep:
    """One batched transition result (or the result of ``reset``)."""

    obs: np.ndarray  # [N, n_agents, obs_dim] float32
    state: np.ndarray  # [N, state_dim] float32
    avail_actions: np.ndarray | None  # [N, n_agents, n_actions] bool, None for continuous
    reward: np.ndarray  # [N] float32 team reward (0 after reset)
    terminated: np.ndarray  # [N] bool
    truncated: np.ndarray  # [N] bool
    info: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def done(self) -> np.ndarray:
        return self.terminated | self.truncated


class BatchedEnv(abc.ABC):
    """Base class: ``num_envs`` copies of one task, stepped together, auto-reset (see module doc)."""

    info: EnvInfo
    num_envs: int

    @abc.abstractmethod
    def reset(self, seed: int | None = None) -> TimeStep:
        """Start a fresh episode in every copy (``seed`` re-seeds the whole batch)."""

    @abc.abstractmethod
    def step(self, actions: np.ndarray) -> TimeStep:
        """Discrete: int actions ``[N, n_agents]``; continuous: floats ``[N, n_agents, n_actions]``."""

    def close(self) -> None:
        """Release simulator resources (processes, renderers)."""

    def __enter__(self) -> "BatchedEnv":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _first_timestep(self, obs: np.ndarray, state: np.ndarray, avail: np.ndarray | None,
                        outcome_keys: tuple[str, ...] = ()) -> TimeStep:
        """What ``reset`` returns: the first observations, with the info keys of ``step``."""
        n = self.num_envs
        info: dict[str, np.ndarray] = {key: np.zeros(n, bool) for key in outcome_keys}
        info.update(episode_return=np.zeros(n, np.float32), episode_length=np.zeros(n, np.int64),
                    final_obs=obs.copy(), final_state=state.copy())
        if avail is not None:
            info["final_avail_actions"] = avail.copy()
        return TimeStep(obs=obs, state=state, avail_actions=avail, reward=np.zeros(n, np.float32),
                        terminated=np.zeros(n, bool), truncated=np.zeros(n, bool), info=info)

    # ---------------------------------------------------------------- shared validation
    def _check_discrete_actions(self, actions: Any, avail: np.ndarray) -> np.ndarray:
        """Return ``actions`` as int64 ``[N, n_agents]``; raise EnvError naming the first
        unavailable (env, agent, action) and what that agent could do instead."""
        actions = np.asarray(actions)
        expected = (self.num_envs, self.info.n_agents)
        if actions.shape != expected:
            raise EnvError(
                f"{self.info.task}: actions have shape {actions.shape}, expected {expected} "
                "(num_envs, n_agents) of integer action ids"
            )
        if not np.issubdtype(actions.dtype, np.integer):
            raise EnvError(f"{self.info.task}: actions must be integers, got dtype {actions.dtype}")
        actions = actions.astype(np.int64, copy=False)
        n = self.info.n_actions
        out_of_range = (actions < 0) | (actions >= n)
        if out_of_range.any():
            e, a = np.argwhere(out_of_range)[0]
            raise EnvError(
                f"{self.info.task}: env {e} agent {a} chose action {actions[e, a]}, "
                f"outside 0..{n - 1}"
            )
        ok = np.take_along_axis(avail, actions[..., None], axis=-1)[..., 0]
        if not ok.all():
            e, a = np.argwhere(~ok)[0]
            allowed = np.flatnonzero(avail[e, a]).tolist()
            raise EnvError(
                f"{self.info.task}: env {e} agent {a} chose unavailable action {actions[e, a]}; "
                f"available actions are {allowed}"
            )
        return actions

    def _check_continuous_actions(self, actions: Any) -> np.ndarray:
        actions = np.asarray(actions, dtype=np.float32)
        expected = (self.num_envs, self.info.n_agents, self.info.n_actions)
        if actions.shape != expected:
            raise EnvError(
                f"{self.info.task}: actions have shape {actions.shape}, expected {expected} "
                "(num_envs, n_agents, n_actions) of floats in [-1, 1]"
            )
        if not np.isfinite(actions).all():
            raise EnvError(f"{self.info.task}: actions contain NaN or infinity")
        return actions


class EpisodeStats:
    """Running return and length of every copy (``LoopedEnv``'s bookkeeping)."""

    def __init__(self, num_envs: int):
        self.returns = np.zeros(num_envs, np.float64)
        self.lengths = np.zeros(num_envs, np.int64)

    def reset(self) -> None:
        self.returns[:] = 0
        self.lengths[:] = 0

    def step(self, reward: np.ndarray, done: np.ndarray) -> dict[str, np.ndarray]:
        """Count one step; returns this step's ``episode_return`` and ``episode_length`` (the
        finished episodes' totals where ``done``) and restarts the finished copies' counts."""
        self.returns += reward
        self.lengths += 1
        out = {"episode_return": self.returns.astype(np.float32),
               "episode_length": self.lengths.copy()}
        self.returns[done] = 0
        self.lengths[done] = 0
        return out


class LoopedEnv(BatchedEnv):
    """Base of the backends whose simulator runs one copy at a time (MPE, MuJoCo, StarCraft II;
    SMAX compiles all of this into one program). A backend says how one copy steps and restarts
    and how a list of its raw frames becomes arrays; this class does the rest once: the loop over
    copies, the same-step auto-reset, the episode statistics, the ``final_*`` entries and a reset
    TimeStep with the same info keys (JaxMARL's base ``step`` does the same for its envs).

    A backend implements ``_copy_actions``, ``_step_copy``, ``_restart_copy``, ``_arrays`` and
    its own ``reset`` (seeding differs by simulator), which ends in ``_started(raws)``."""

    outcome_keys: tuple[str, ...] = ()  # per-episode flags the backend reports, e.g. battle_won
    _stats: EpisodeStats
    _avail: np.ndarray | None = None
    _running = False

    def _copy_actions(self, actions: Any) -> Any:
        """Validate ``actions`` and return something indexable by copy (the simulator's form)."""
        raise NotImplementedError

    def _step_copy(self, i: int, action: Any) -> tuple[Any, float, bool, bool, dict]:
        """Step copy ``i``: (raw frame after the step, reward, terminated, truncated, outcome
        flags of ``outcome_keys`` where the episode ended)."""
        raise NotImplementedError

    def _restart_copy(self, i: int) -> Any:
        """Start copy ``i``'s next episode (its random stream continues); its raw frame."""
        raise NotImplementedError

    def _arrays(self, raws: list) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(obs [N, A, D], state [N, S], avail [N, A, n] or None) of one raw frame per copy."""
        raise NotImplementedError

    def _started(self, raws: list) -> TimeStep:
        """The TimeStep ``reset`` returns, from every copy's first raw frame."""
        obs, state, avail = self._arrays(raws)
        self._avail, self._running = avail, True
        self._stats.reset()
        return self._first_timestep(obs, state, avail, self.outcome_keys)

    def step(self, actions: Any) -> TimeStep:
        if not self._running:
            raise EnvError(f"{self.info.task}: call reset() before step()")
        per_copy = self._copy_actions(actions)
        n = self.num_envs
        reward = np.zeros(n, np.float64)
        terminated, truncated = np.zeros(n, bool), np.zeros(n, bool)
        outcomes = {key: np.zeros(n, bool) for key in self.outcome_keys}
        final = []
        for i in range(n):
            raw, reward[i], terminated[i], truncated[i], outcome = self._step_copy(i, per_copy[i])
            for key, value in outcome.items():
                outcomes[key][i] = value
            final.append(raw)
        truncated &= ~terminated  # a real end on the last step is an end, not a time-out
        done = terminated | truncated
        # Same-step auto-reset: a finished copy's next episode starts now.
        after = [self._restart_copy(i) if done[i] else raw for i, raw in enumerate(final)]
        obs, state, avail = self._arrays(after)
        if done.any():
            final_obs, final_state, final_avail = self._arrays(final)
        else:
            final_obs, final_state = obs.copy(), state.copy()
            final_avail = None if avail is None else avail.copy()
        self._avail = avail
        info = {**outcomes, **self._stats.step(reward, done),
                "final_obs": final_obs, "final_state": final_state}
        if avail is not None:
            info["final_avail_actions"] = final_avail
        return TimeStep(obs=obs, state=state, avail_actions=avail, reward=reward.astype(np.float32),
                        terminated=terminated, truncated=truncated, info=info)


def check_num_envs(num_envs: Any) -> int:
    if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
        raise EnvError(f"num_envs must be a positive integer, got {num_envs!r}")
    return int(num_envs)


def random_actions(avail_actions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Uniformly random available actions ``[N, n_agents]`` from a boolean mask, vectorised."""
    scores = rng.random(avail_actions.shape) * avail_actions
    return scores.argmax(-1)


@dataclass
class Outcomes:
    """Per-episode results of ``play``: one entry per copy."""

    returns: np.ndarray  # [N] float
    lengths: np.ndarray  # [N] int
    wins: np.ndarray | None  # [N] bool where the task reports ``battle_won`` (SMAC), else None


def play(env: BatchedEnv, choose, seed: int | None = None, on_step=None) -> Outcomes:
    """Play the first episode of every copy of ``env``, each to its end.

    ``choose(ts) -> actions`` picks the actions of all copies from a TimeStep; ``on_step(ts,
    actions, playing)``, if given, sees each step before it is taken (``playing`` [N]: copies
    still in their first episode). Copies that finish early keep stepping (auto-reset) until the
    last one ends, but only their first episode counts, so long episodes are not under-counted."""
    ts = env.reset(seed)
    n = env.num_envs
    returns, lengths = np.zeros(n), np.zeros(n, dtype=int)
    wins = np.zeros(n, dtype=bool)
    finished = np.zeros(n, dtype=bool)
    while not finished.all():
        actions = choose(ts)
        if on_step is not None:
            on_step(ts, actions, ~finished)
        ts = env.step(actions)
        new = ts.done & ~finished
        returns[new] = ts.info["episode_return"][new]
        lengths[new] = ts.info["episode_length"][new]
        if "battle_won" in ts.info:
            wins[new] = ts.info["battle_won"][new]
        finished |= new
    return Outcomes(returns, lengths, wins if "battle_won" in ts.info else None)
