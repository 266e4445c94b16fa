"""Collection throughput benchmark (JSON output): episodes/s of ``marl collect`` on SMAX.

    python experiments/bench/collect.py [--task smac:9m_vs_10m] [--policy DIR]
        [--episodes 2000] [--num-envs 64] [--out FILE]

The policy defaults to the task's shipped behaviour policy (``marl/policies/<task>``), which
plays the opponent it was trained against (9m_vs_10m: marine-hard's ``enemy_reaction`` 0.8), so
the default run is the issue's target: 2000 expert episodes of 9m_vs_10m. Any policy of the
family acts on any map; speed depends on the policy only through episode length, which is
reported. Run it alone; the load average is recorded.
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
    parser.add_argument("--out", default=str(REPO / "experiments/bench/results/collect.json"))
    args = parser.parse_args()
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
    result = {
        "task": args.task, "quality": args.quality, "policy": policy,
        "env_options": data.attrs.get("env_options"),
        "episodes": args.episodes, "num_envs": args.num_envs, "torch_threads": args.threads,
        "seconds_incl_compile_and_write": round(seconds, 1),
        "episodes_per_s": round(args.episodes / seconds, 1),
        "mean_episode_length": float(data.lengths.mean() - 1),
        "win_rate": None if data.wins is None else float(data.wins.mean()),
        "file_mb": round(size / 2**20, 2), "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }
    print(json.dumps(result, indent=2))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".tmp")
    tmp_out.write_text(json.dumps(result, indent=2))
    tmp_out.replace(out)


if __name__ == "__main__":
    main()
