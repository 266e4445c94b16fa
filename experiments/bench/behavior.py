"""Behaviour-training throughput, side by side (JSON): env steps/s with learning, torch against jax.

    python experiments/bench/behavior.py [--maps 3m 10m] [--updates 6] [--num-envs 64]
        [--engines torch jax] [--out FILE]

Each engine trains MAPPO on each map from scratch with the same PPO settings (``num_envs``
copies x 128 steps per update, 4 epochs x 4 minibatches, hidden 64) for ``--updates`` updates,
one thread (XLA single-threaded, torch 1 thread), and reports the trainer's own speed figure:
env steps per second over the updates after the first (the jax engine compiles during its
first update; the torch engine's figure covers all of them). Run it alone; the load average
is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def main() -> None:
    from marl.behavior import BehaviorConfig, train

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--maps", nargs="+", default=["3m", "10m"])
    parser.add_argument("--engines", nargs="+", default=["torch", "jax"])
    parser.add_argument("--updates", type=int, default=6)
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--out", default=str(REPO / "experiments/bench/results/behavior.json"))
    args = parser.parse_args()

    load_before = os.getloadavg()
    rows = []
    for map_name in args.maps:
        for engine in args.engines:
            cfg = BehaviorConfig(task=f"smac:{map_name}", engine=engine, num_envs=args.num_envs,
                                 total_env_steps=args.updates * args.num_envs * 128,
                                 snapshot_every=args.updates, eval_episodes=8, threads=1)
            lines: list[str] = []
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                train(cfg, tmp, log=lines.append)
                wall = time.perf_counter() - start
            rate = float(re.search(r"\(([\d,]+)/s\)", lines[-1]).group(1).replace(",", ""))
            rows.append({"map": map_name, "engine": engine, "env_steps_per_s": rate,
                         "updates": args.updates, "num_envs": args.num_envs, "rollout_steps": 128,
                         "env_steps": cfg.total_env_steps, "wall_s_incl_start_and_compile": round(wall, 1)})
            print(json.dumps(rows[-1]), flush=True)
    for map_name in args.maps:
        by = {r["engine"]: r["env_steps_per_s"] for r in rows if r["map"] == map_name}
        if {"torch", "jax"} <= set(by):
            print(f"{map_name}: jax / torch = {by['jax'] / by['torch']:.1f}x")
    result = {"rows": rows, "threads": 1, "xla_flags": os.environ["XLA_FLAGS"],
              "loadavg_before": load_before, "cpu_count": os.cpu_count()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
