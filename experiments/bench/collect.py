"""Collection throughput benchmark (JSON output): ``marl collect`` beside raw stepping and
greedy evaluation, on one task.

    python experiments/bench/collect.py [--task smac:9m_vs_10m] [--policy DIR]
        [--episodes 2000] [--num-envs 64] [--out FILE]
    python experiments/bench/collect.py --task mamujoco:HalfCheetah-2x3 --episodes 64

The policy defaults to the task's shipped behaviour policy (``marl/policies/<task>``), which
plays the opponent it was trained against (9m_vs_10m: marine-hard's ``enemy_reaction`` 0.8), so
the default run is the issue's target: 2000 expert episodes of 9m_vs_10m. Any policy of the
family acts on any map; speed depends on the policy only through episode length, which is
reported. Beside collection, the same number of copies is stepped twice more, each for one
episode per copy: with uniformly random actions (``raw_stepping``: the simulator and the env
adapter alone) and with an untrained HiSSD of the family's CPU config acting greedily through
``marl.rollout.evaluate_task`` (``evaluation``: the path of ``marl evaluate`` and ``marl
visualize``). Each reports env steps per second (copies x steps). The output defaults to
``results/collect.json`` for the default task and ``results/collect-<family>_<map>.json`` for
others. Run it alone; the load average is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


# the HiSSD config whose (untrained) model the evaluation pass acts with, per family
EVAL_CONFIGS = {"smac": "marine-hard", "mamujoco": "mujoco-partitions", "mpe": "spread",
                "grid": "cn"}


def raw_stepping(task: str, num_envs: int, seed: int = 0) -> dict:
    """One episode per copy with uniformly random actions: env steps per second."""
    import numpy as np

    import envs

    env = envs.make(task, num_envs=num_envs, seed=seed)
    rng = np.random.default_rng(seed)
    info = env.info

    def choose(ts):
        if info.action_type == "discrete":
            return envs.random_actions(ts.avail_actions, rng)
        return rng.uniform(-1, 1, (num_envs, info.n_agents, info.n_actions)).astype(np.float32)

    start = time.perf_counter()
    outcomes = envs.play(env, choose)
    seconds = time.perf_counter() - start
    env.close()
    steps = int(outcomes.lengths.max()) * num_envs  # every copy steps until the last one ends
    return {"seconds": round(seconds, 2), "env_steps": steps,
            "env_steps_per_s": round(steps / seconds)}


def evaluation(task: str, num_envs: int, seed: int = 0) -> dict:
    """``evaluate_task`` (one greedy episode per copy) with an untrained HiSSD of the family's
    CPU config: env steps per second of the evaluation path."""
    import envs
    from marl.config import load_config
    from marl.rollout import evaluate_task
    from marl.runs import build_model

    family = envs.split_task(task)[0].name
    cfg = load_config(REPO / "experiments" / "hissd" / f"{EVAL_CONFIGS[family]}.yaml")
    model = build_model(cfg, family)
    start = time.perf_counter()
    result = evaluate_task(model, task, episodes=num_envs, seed=seed)
    seconds = time.perf_counter() - start
    steps = int(max(result["episode_lengths"])) * num_envs
    return {"config": f"experiments/hissd/{EVAL_CONFIGS[family]}.yaml (untrained)",
            "seconds": round(seconds, 2), "env_steps": steps,
            "env_steps_per_s": round(steps / seconds)}


def main() -> None:
    import torch

    from marl import SHIPPED_POLICIES
    from marl.collect import collect
    from marl.data.format import read_dataset

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", default=None, help="default: the task's shipped policy")
    parser.add_argument("--task", default="smac:9m_vs_10m")
    parser.add_argument("--quality", default="expert")
    parser.add_argument("--episodes", type=int, default=2000)
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None,
                        help="default: results/collect.json, or collect-<family>_<map>.json")
    args = parser.parse_args()
    if args.out is None:
        name = ("collect.json" if args.task == "smac:9m_vs_10m"
                else f"collect-{args.task.replace(':', '_')}.json")
        args.out = str(REPO / "experiments" / "bench" / "results" / name)
    torch.set_num_threads(args.threads)
    policy = args.policy or str(Path(SHIPPED_POLICIES) / args.task.replace(":", "_"))

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.h5"
        start = time.perf_counter()
        collect(args.task, policy, args.quality, args.episodes, path, num_envs=args.num_envs,
                shard_episodes=args.episodes, show_progress=False)
        seconds = time.perf_counter() - start
        data = read_dataset(path)
        size = path.stat().st_size
    steps = int((data.lengths - 1).sum())  # transitions recorded
    result = {
        "task": args.task, "quality": args.quality, "policy": policy,
        "env_options": data.attrs.get("env_options"),
        "episodes": args.episodes, "num_envs": args.num_envs, "torch_threads": args.threads,
        "seconds_incl_compile_and_write": round(seconds, 1),
        "episodes_per_s": round(args.episodes / seconds, 1),
        "env_steps_per_s": round(steps / seconds),
        "mean_episode_length": float(data.lengths.mean() - 1),
        "win_rate": None if data.wins is None else float(data.wins.mean()),
        "file_mb": round(size / 2**20, 2),
        "raw_stepping": raw_stepping(args.task, args.num_envs),
        "evaluation": evaluation(args.task, args.num_envs),
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
    }
    print(json.dumps(result, indent=2))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".tmp")
    tmp_out.write_text(json.dumps(result, indent=2))
    tmp_out.replace(out)


if __name__ == "__main__":
    main()
