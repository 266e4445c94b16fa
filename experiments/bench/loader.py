"""Offline data loader benchmark (JSON output): sampling speed and memory of marl.data.loader.

    python experiments/bench/loader.py [--episodes 2000] [--others 300] [--threads 1] [--out FILE]

Builds a 3-task SMAC dataset (marine-hard's training tasks 3m, 5m_vs_6m, 9m_vs_10m) from files it
records itself: SMAX with uniformly random available actions (``envs.make`` + ``random_actions``),
written with ``marl.data.format.write_dataset`` into a temporary data directory laid out by
``dataset_path``. 3m gets ``--episodes`` episodes and the two larger maps ``--others`` (both
2000 by default, ODIS's per-task size; recording all three takes about half a minute). With fewer,
memory per 2000 episodes is extrapolated linearly (memory is linear in stored steps) and the JSON
says so. Random-policy episodes are short (about 20 steps: the random team loses fast), shorter
than a trained policy's, so the ODIS 3m medium sample file (``../shared/data/odis``), when
present, is measured too: real lengths (26 steps on average), real memory.

Measures: recording and writing time, load (read + verify + entity conversion) time, bytes per
task (``memory_report``) against the file's padded float32 obs+state for comparison, and
batches/s of ``sample(32)`` for each task alone and for all tasks (32 per task, padded to
9m_vs_10m's sizes). Torch runs with ``--threads`` intra-op threads (default 1: on a shared
2-core machine two threads stall each other on small gathers); the load average is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("XLA_FLAGS",
                      "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(REPO))

TASKS = ("smac:3m", "smac:5m_vs_6m", "smac:9m_vs_10m")
ODIS_3M = REPO.parent / "shared/data/odis/3m/medium/qmix_2022-04-03_12-49-45/part_0.h5"


def record_random(task: str, episodes: int, seed: int = 0, num_envs: int = 64):
    """``episodes`` random-action episodes in the ODIS layout (vectorised over copies), wins."""
    import envs
    from envs.core import random_actions
    from marl.data.episodes import record_episodes

    env = envs.make(task, num_envs=num_envs, seed=seed)
    rng = np.random.default_rng(seed)
    arrays, wins = record_episodes(env, lambda ts: random_actions(ts.avail_actions, rng), episodes)
    env.close()
    return arrays, wins, env.info


def rate(fn, seconds: float = 3.0) -> float:
    """Calls per second of ``fn`` over about ``seconds`` (after 5 warm-up calls)."""
    for _ in range(5):
        fn()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        n += 1
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=2000, help="episodes of 3m")
    parser.add_argument("--others", type=int, default=2000, help="episodes of the other maps")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(REPO / "experiments/bench/results/loader.json"))
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from marl.data.format import write_dataset
    from marl.data.loader import MultiTaskDataset
    from marl.data.paths import dataset_path

    results: dict = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                    "loadavg_before": os.getloadavg()},
        "batch_size": args.batch, "policy": "uniformly random available actions (SMAX)",
        "tasks": {},
    }
    with tempfile.TemporaryDirectory() as root:
        for task in TASKS:
            episodes = args.episodes if task == TASKS[0] else args.others
            start = time.perf_counter()
            arrays, wins, info = record_random(task, episodes)
            recorded = time.perf_counter() - start
            start = time.perf_counter()
            path = dataset_path(root, task, "medium")
            write_dataset(path, arrays, task=task, backend="smax", quality="medium",
                          behavior_policy={"id": "random"}, seed=0, env_info=info,
                          battle_won=wins)
            written = time.perf_counter() - start
            lengths = arrays["filled"][..., 0].sum(1)
            padded = arrays["obs"].nbytes + arrays["state"].nbytes
            results["tasks"][task] = {
                "episodes": episodes, "record_s": round(recorded, 1),
                "write_s": round(written, 1), "file_mb": round(path.stat().st_size / 2**20, 1),
                "mean_filled_steps": round(float(lengths.mean()), 1),
                "padded_steps": int(arrays["filled"].shape[1]),
                "win_rate": round(float(wins.mean()), 3),
                "raw_padded_obs_state_mb_per_2000": round(padded / episodes * 2000 / 2**20, 1),
            }
            del arrays
            print(task, results["tasks"][task], flush=True)

        start = time.perf_counter()
        ds = MultiTaskDataset.from_dir(root, TASKS, "medium")
        results["load_all_s"] = round(time.perf_counter() - start, 1)
        for task, nbytes in ds.memory_report().items():
            r = results["tasks"][task]
            per_episode = nbytes / ds.data[task].n_episodes
            r["memory_mb"] = round(nbytes / 2**20, 1)
            r["memory_mb_per_2000_episodes"] = round(per_episode * 2000 / 2**20, 1)
            r["memory_measured_or_extrapolated"] = (
                "measured" if ds.data[task].n_episodes == 2000 else "extrapolated linearly")
            g = torch.Generator().manual_seed(0)
            r["single_task_batches_per_s"] = round(
                rate(lambda: ds.sample(args.batch, task=task, generator=g)), 1)
            print(task, {k: r[k] for k in ("memory_mb_per_2000_episodes",
                                           "single_task_batches_per_s")}, flush=True)
        g = torch.Generator().manual_seed(0)
        batch = ds.sample(args.batch, generator=g)
        t_max = [ds.sample(args.batch, generator=g).max_t for _ in range(50)]
        token_bytes = sum(t.numel() * t.element_size() for part in (batch.obs, batch.state)
                          for t in vars(part).values())
        results["multi_task"] = {
            "batch": f"{args.batch} per task x {len(TASKS)} tasks = {batch.batch_size} episodes",
            "padded_agents": int(batch.agent_mask.shape[1]),
            "padded_enemies": int(batch.obs.enemy_mask.shape[-1]),
            "mean_t_max": round(float(np.mean(t_max)), 1),
            "token_mb_per_step": round(token_bytes / batch.max_t / 2**20, 2),
            "batches_per_s": round(rate(lambda: ds.sample(args.batch, generator=g)), 1),
        }
        print("multi-task", results["multi_task"], flush=True)
        del ds

    if ODIS_3M.exists():
        start = time.perf_counter()
        ds = MultiTaskDataset({"smac:3m": [ODIS_3M]})
        loaded = time.perf_counter() - start
        g = torch.Generator().manual_seed(0)
        td = ds.data["smac:3m"]
        results["odis_3m_medium_sample"] = {
            "episodes": td.n_episodes,
            "mean_filled_steps": round(float(td.lengths.float().mean()), 1),
            "load_s": round(loaded, 1),
            "memory_mb": round(ds.memory_report()["smac:3m"] / 2**20, 1),
            "raw_padded_obs_state_mb": round(2000 * 61 * (3 * 30 + 48) * 4 / 2**20, 1),
            "batches_per_s": round(rate(lambda: ds.sample(args.batch, generator=g)), 1),
        }
        print("odis 3m medium", results["odis_3m_medium_sample"], flush=True)

    results["machine"]["loadavg_after"] = os.getloadavg()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(out)  # atomic: a killed run never leaves a half-written file
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
