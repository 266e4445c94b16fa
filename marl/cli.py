"""The ``marl`` command.

    marl envs list                         families, backends and task sets
    marl envs check TASK [--backend B] [--num-envs N] [--steps S] [--seed S]
                                           build TASK, print its layout and measured env-steps/s

User mistakes (a bad task name, backend or option) end with one ``marl: error: ...`` line and
exit status 2, never a traceback from the simulator underneath.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def _envs_list(args: argparse.Namespace) -> None:
    from envs import FAMILIES
    from envs.tasksets import list_tasksets, load_taskset

    print("Task families (task names are family:map):")
    for fam in FAMILIES.values():
        backends = ", ".join(f"{b}{' (default)' if b == fam.default_backend else ''}"
                             for b in fam.backends)
        print(f"  {fam.name:<9} {fam.description}\n"
              f"            backends: {backends}\n            maps: {fam.map_help}")
    print("\nTask sets (datasets/tasksets/):")
    for name in list_tasksets():
        ts = load_taskset(name)
        print(f"  {name:<18} {ts.family:<9} train {len(ts.train_tasks)}, unseen "
              f"{len(ts.unseen_tasks)}: {ts.description}")


def measure_steps_per_second(env, steps: int, seed: int = 0) -> tuple[float, dict]:
    """Step ``env`` with uniformly random actions for ``steps`` batched steps (after one warm-up
    step, which may compile); return env-steps/s (copies x steps / s) and episode statistics."""
    from envs.core import random_actions

    rng = np.random.default_rng(seed)
    info = env.info

    def act(ts):
        if info.action_type == "discrete":
            return random_actions(ts.avail_actions, rng)
        return rng.uniform(-1, 1, (env.num_envs, info.n_agents, info.n_actions)).astype(np.float32)

    ts = env.step(act(env.reset(seed)))
    returns, lengths, wins = [], [], []
    start = time.perf_counter()
    for _ in range(steps):
        ts = env.step(act(ts))
        done = ts.done
        if done.any():
            returns += ts.info["episode_return"][done].tolist()
            lengths += ts.info["episode_length"][done].tolist()
            if "battle_won" in ts.info:
                wins += ts.info["battle_won"][done].tolist()
    elapsed = time.perf_counter() - start
    stats = {"episodes": len(returns)}
    if returns:
        stats.update(mean_return=float(np.mean(returns)), mean_length=float(np.mean(lengths)))
    if wins:
        stats["win_rate"] = float(np.mean(wins))
    return steps * env.num_envs / elapsed, stats


def _envs_check(args: argparse.Namespace) -> None:
    import envs

    start = time.perf_counter()
    env = envs.make(args.task, backend=args.backend, num_envs=args.num_envs, seed=args.seed)
    build_s = time.perf_counter() - start
    with env:
        print(f"{args.task} on backend {env.info.backend}, {env.num_envs} copies "
              f"(built in {build_s:.1f} s, compilation included)")
        for key, value in env.info.summary().items():
            print(f"  {key:<24} {value}")
        rate, stats = measure_steps_per_second(env, args.steps, args.seed)
    print(f"random actions: {rate:,.0f} env-steps/s over {args.steps} batched steps; "
          f"episodes {json.dumps(stats)}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="marl", description=__doc__.split("\n\n")[0])
    groups = parser.add_subparsers(dest="group", required=True)

    envs_parser = groups.add_parser("envs", help="environments: list families, check a task")
    envs_cmds = envs_parser.add_subparsers(dest="command", required=True)
    envs_cmds.add_parser("list", help="families, backends and task sets").set_defaults(func=_envs_list)
    check = envs_cmds.add_parser("check", help="build a task, print its layout and speed")
    check.add_argument("task", help="family:map, e.g. smac:3m, mamujoco:HalfCheetah-2x3, mpe:spread-3")
    check.add_argument("--backend", default=None, help="backend (default: the family's default)")
    check.add_argument("--num-envs", type=int, default=64, help="copies stepped together (64)")
    check.add_argument("--steps", type=int, default=200, help="batched steps to time (200)")
    check.add_argument("--seed", type=int, default=0)
    check.set_defaults(func=_envs_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    from envs import EnvError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except EnvError as err:
        print(f"marl: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
