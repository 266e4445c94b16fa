"""How far a MuJoCo behaviour policy moves the robot: the return alone can hide standing still
(Ant's healthy bonus pays 1 per step, about 1000 per episode, for not falling over).

    python experiments/forward_progress.py mamujoco:Ant-2x4 [--policy marl/policies/mamujoco_Ant-2x4]
        [--roles poor medium expert] [--runs RUN ...] [--episodes 16] [--seed 0]

Plays each snapshot of the shipped folder greedily (as its data were collected), or with
``--runs`` each trained run's last checkpoint greedily (as ``marl evaluate`` does), and prints
per row: the mean return, the episode length, how far the robot's root moved along x (metres,
first to last step) and its mean forward speed (metres per second of simulated time).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import envs
from marl.behavior.policy import act, family_adapter, load_policy
from marl.rollout import GreedyPolicy
from marl.runs import load_run_model

REPO = Path(__file__).resolve().parents[1]


def forward_progress(task: str, source: Path, episodes: int, seed: int) -> dict:
    """``source``: a behaviour snapshot (.safetensors) or a training run's folder."""
    env = envs.make(task, num_envs=episodes, seed=seed)
    if source.is_dir():
        _, model, _, _ = load_run_model(source)
        choose = GreedyPolicy(model, env.info)
    else:
        actor, fam = load_policy(source, env.info), family_adapter(env.info)

        def choose(ts):
            return act(actor, fam, ts.obs, ts.avail_actions, True)[0]
    start, last, dt = None, None, env.control_dt

    def on_step(ts, actions, playing):
        # seen before each step; the position after it is extrapolated with the root's x
        # velocity, so an episode's last step counts too (the env resets a finished copy)
        nonlocal start, last
        physics = env.physics_snapshot()
        if start is None:  # the first call sees every copy's start
            start = last = physics["qpos"][:, 0].copy()
        last = np.where(playing, physics["qpos"][:, 0] + physics["qvel"][:, 0] * dt, last)

    outcomes = envs.play(env, choose, seed, on_step=on_step)
    env.close()
    moved = last - start
    seconds = outcomes.lengths * env.control_dt
    return {"return": float(outcomes.returns.mean()), "length": float(outcomes.lengths.mean()),
            "x_moved": float(moved.mean()), "x_moved_sd": float(moved.std()),
            "speed": float((moved / seconds).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task")
    parser.add_argument("--policy", help="shipped folder (default marl/policies/<task>)")
    parser.add_argument("--roles", nargs="+", default=["poor", "medium", "expert"])
    parser.add_argument("--runs", nargs="+", default=[], help="trained runs instead of snapshots")
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    folder = Path(args.policy or REPO / "marl" / "policies" / args.task.replace(":", "_"))
    sources = ({run: Path(run) for run in args.runs} if args.runs
               else {role: folder / f"{role}.safetensors" for role in args.roles})
    print("| policy | return | length | x moved (m) | forward speed (m/s) |")
    print("|---|---|---|---|---|")
    for name, source in sources.items():
        if not source.exists():
            parser.error(f"{source}: no such run folder or snapshot")
        try:
            row = forward_progress(args.task, source, args.episodes, args.seed)
        except envs.EnvError as exc:  # a policy of another robot, a run of another family, ...
            parser.error(str(exc))
        print(f"| {name} | {row['return']:.0f} | {row['length']:.0f} | {row['x_moved']:.1f} "
              f"± {row['x_moved_sd']:.1f} | {row['speed']:.2f} |")


if __name__ == "__main__":
    main()
