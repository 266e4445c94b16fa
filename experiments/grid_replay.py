"""Replay ODIS's cn files through marl's grid world (``envs/grid.py``): every recorded episode's
start is placed on the grid, its recorded actions are played, and each step's next state,
reward and win are compared with the file's. Prints the mismatches per file (all zero means the
rules are ODIS's, step for step).

    python experiments/grid_replay.py PATH/TO/ODIS/dataset     # folders cn-N/<quality>/<run>/
"""

from __future__ import annotations

import argparse
from pathlib import Path

import h5py
import numpy as np

import envs


def replay(part: Path) -> dict:
    map_name, quality = part.parts[-4], part.parts[-3]
    with h5py.File(part) as f:
        state, actions = f["state"][...], f["actions"][..., 0]
        reward, terminated, filled = f["reward"][..., 0], f["terminated"][..., 0], f["filled"][..., 0]
    n_episodes = len(state)
    env = envs.make(f"grid:{map_name}", num_envs=n_episodes, seed=0, check_actions=False)
    n = env.layout.n_agents
    start = state[:, 0].reshape(n_episodes, 2 * n, 2).astype(int) - 1
    env.set_positions(start[:, :n], start[:, n:])
    steps = filled.sum(1) - 1  # pymarl marks the final observation's slot filled too
    bad = {"next state": 0, "reward": 0, "won": 0}
    for t in range(int(steps.max())):
        real = t < steps
        ts = env.step(np.where(real[:, None], actions[:, t], 0))
        bad["next state"] += int((real & (ts.info["final_state"] != state[:, t + 1]).any(1)).sum())
        bad["reward"] += int((real & (ts.reward != reward[:, t])).sum())
        # ODIS's env reports no episode_limit, so its files mark time-outs terminated too
        won = (reward[:, t] > 0) & (terminated[:, t] > 0)
        bad["won"] += int((real & (ts.info["battle_won"] != won)).sum())
    timed_out = (steps == env.layout.episode_limit) & (reward.sum(1) == 0)
    return {"file": f"{map_name}/{quality}", "episodes": n_episodes, "steps": int(steps.sum()),
            "mismatches": bad, "won": float((reward.sum(1) > 0).mean()),
            "mean_steps": float(steps.mean()),
            "timed_out_marked_terminated": int((timed_out & (terminated.max(1) > 0)).sum()),
            "timed_out": int(timed_out.sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="ODIS's dataset folder (cn-N/<quality>/<run>/part_<k>.h5)")
    root = Path(parser.parse_args().root)
    for part in sorted(root.glob("cn-*/*/*/part_*.h5")):
        print(replay(part))


if __name__ == "__main__":
    main()
