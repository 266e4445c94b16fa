"""Episodes in the dataset layout, recorded from a batched env as it steps: each copy's steps
go into its own buffer ``[T+1, ...]`` (ODIS's keys, ``marl.data.schema``), and an episode is
handed out, with its post-terminal step, the moment its copy finishes."""

from __future__ import annotations

import numpy as np


class EpisodeWriter:
    """Writes batched steps into per-copy episode buffers [N, T+1, ...] in ODIS layout and hands
    out finished episodes; vectorised over copies, no per-agent work."""

    def __init__(self, info, num_envs: int):
        self.discrete = info.action_type == "discrete"
        n, t, a = num_envs, info.episode_limit + 1, info.n_agents
        shapes = {"obs": ((n, t, a, info.obs_dim), np.float32), "state": ((n, t, info.state_dim), np.float32),
                  "reward": ((n, t, 1), np.float32), "terminated": ((n, t, 1), np.uint8),
                  "filled": ((n, t, 1), np.int64)}
        if self.discrete:
            shapes.update(actions=((n, t, a, 1), np.int64),
                          actions_onehot=((n, t, a, info.n_actions), np.float32),
                          avail_actions=((n, t, a, info.n_actions), np.int32))
        else:
            shapes["actions"] = ((n, t, a, info.n_actions), np.float32)
        self.buf = {k: np.zeros(shape, dtype) for k, (shape, dtype) in shapes.items()}
        self.t = np.zeros(n, np.int64)
        self.rows = np.arange(n)
        self.n_actions = info.n_actions

    def _write(self, rows, t, obs, state, avail, actions):
        self.buf["obs"][rows, t], self.buf["state"][rows, t] = obs, state
        self.buf["filled"][rows, t] = 1
        if self.discrete:
            self.buf["avail_actions"][rows, t] = avail
            self.buf["actions"][rows, t, :, 0] = actions
            self.buf["actions_onehot"][rows, t] = np.eye(self.n_actions, dtype=np.float32)[actions]
        else:
            self.buf["actions"][rows, t] = actions

    def step(self, ts_before, actions, ts_after) -> list[dict[str, np.ndarray]]:
        """Record one batched transition; return the episodes that ended with it."""
        self._write(self.rows, self.t, ts_before.obs, ts_before.state, ts_before.avail_actions, actions)
        self.buf["reward"][self.rows, self.t, 0] = ts_after.reward
        self.buf["terminated"][self.rows, self.t, 0] = ts_after.terminated
        self.t += 1
        done = np.flatnonzero(ts_after.done)
        if not len(done):
            return []
        # the post-terminal step: final vectors and a placeholder action (first available / zeros)
        info = ts_after.info
        final_avail = info["final_avail_actions"][done] if self.discrete else None
        placeholder = (final_avail.argmax(-1) if self.discrete
                       else np.zeros_like(self.buf["actions"][done, 0]))
        self._write(done, self.t[done], info["final_obs"][done], info["final_state"][done],
                    final_avail, placeholder)
        episodes = [{k: v[i].copy() for k, v in self.buf.items()} for i in done]
        for v in self.buf.values():
            v[done] = 0
        self.t[done] = 0
        return episodes


def record_episodes(env, choose_actions, episodes: int, seed: int | None = None):
    """Reset ``env`` (with ``seed``) and step it with ``choose_actions(timestep) -> actions``
    until ``episodes`` episodes have finished; return them as ODIS-layout arrays
    [episodes, T+1, ...] and their battle_won (None outside SMAC). Episodes still running at
    the end are dropped."""
    recorder = EpisodeWriter(env.info, env.num_envs)
    kept, wins = [], []
    ts = env.reset(seed)
    while len(kept) < episodes:
        actions = choose_actions(ts)
        after = env.step(actions)
        finished = recorder.step(ts, actions, after)[: episodes - len(kept)]
        kept += finished
        if "battle_won" in after.info:
            wins += after.info["battle_won"][np.flatnonzero(after.done)][: len(finished)].tolist()
        ts = after
    arrays = {k: np.stack([ep[k] for ep in kept]) for k in kept[0]}
    return arrays, (np.array(wins) if wins else None)
