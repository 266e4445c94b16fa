"""HiSSD learner benchmark (JSON output): seconds per task-batch, FLOPs, GFLOP/s, memory.

    python experiments/bench/train.py [--data datasets/data] [--taskset marine-hard]
        [--threads 2] [--repeats 5] [--out experiments/bench/results/train.json]

Needs the task set's expert datasets (``marl datasets build marine-hard --quality expert``).
Two settings, both on this process's data (2000 episodes per task, as ODIS/HiSSD load):

* **released sizes** (``experiments/hissd/paper-size.yaml``: 64-d tokens, 32 whole episodes per
  task-batch, every transition): the time of one task-batch update (loss, backward, AdamW step)
  for each training task alone, the comparison the issue sets against the released learner
  (2.0 s for 3m, about 25 s for 9m_vs_10m, 12-18 s for a marine-hard task-batch on average),
  for the repaired defaults and, side by side in the same process, the earlier setting
  (``marl.algos.hissd.EARLIER``: bootstrapped expectile value, state-conditioned predictor);
* **the CPU config** (``experiments/hissd/<taskset>.yaml``): updates/s and episodes/s of a
  full multi-task update, as ``marl train`` runs it.

FLOPs per update are counted with ``torch.utils.flop_counter`` (forward and backward) and
reported as achieved GFLOP/s against a 2048 x 2048 float32 matmul timed in the same run. Peak
memory is the process's maximum RSS, datasets included. The load average before the run is
recorded: time it alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n ** 3 * repeats / (time.perf_counter() - start) / 1e9


def time_updates(model, optim, make_batches, gen, repeats: int) -> tuple[float, float]:
    """Median seconds of one update and its FLOPs (forward + backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    def step(batches):
        loss, _ = model.loss(batches, gen)
        optim.zero_grad()
        loss.backward()
        optim.step()

    step(make_batches())  # warm-up
    with FlopCounterMode(display=False) as counter:
        step(make_batches())
    flops = counter.get_total_flops()
    times = []
    for _ in range(repeats):
        batches = make_batches()
        start = time.perf_counter()
        step(batches)
        times.append(time.perf_counter() - start)
    return statistics.median(times), float(flops)


def main() -> None:
    import torch

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(REPO / "datasets" / "data"))
    p.add_argument("--taskset", default="marine-hard")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=str(REPO / "experiments" / "bench" / "results" / "train.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    load = os.getloadavg()
    from marl.config import load_config
    from marl.runs import build_model, load_dataset

    rate = matmul_gflops()
    print(f"matmul: {rate:.1f} GFLOP/s with {args.threads} thread(s)", flush=True)
    result = {"benchmark": "hissd-learner", "taskset": args.taskset, "threads": args.threads,
              "load_average_before": load, "cpu_count": os.cpu_count(),
              "machine": platform.machine(), "torch": torch.__version__,
              "matmul_gflops": rate, "released_sizes": {}, "cpu_config": {}}
    from marl.algos.hissd import EARLIER

    earlier = [f"model.{k}={v}" for k, v in EARLIER.items()]
    result["released_sizes_earlier"] = {}
    for name, config, extra in (("released_sizes", "paper-size.yaml", []),
                                ("released_sizes_earlier", "paper-size.yaml", earlier),
                                ("cpu_config", f"{args.taskset}.yaml", [])):
        cfg = load_config(REPO / "experiments" / "hissd" / config,
                          [f"data.root={args.data}", f"data.taskset={args.taskset}",
                           "data.episodes=2000", *extra])
        _, ds = load_dataset(cfg)
        torch.manual_seed(0)
        model = build_model(cfg, ds.family)
        optim = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
        gen = torch.Generator().manual_seed(0)
        out = result[name]
        out["parameters"] = sum(p.numel() for p in model.parameters())
        out["dataset_mb"] = {t: round(b / 2**20, 1) for t, b in ds.memory_report().items()}
        groups = [[t] for t in ds.tasks] if name.startswith("released") else [list(ds.tasks)]
        for tasks in groups:
            seconds, flops = time_updates(
                model, optim, lambda ds=ds, tasks=tasks: [
                    ds.sample(cfg.batch_size, task=t, generator=gen) for t in tasks],
                gen, args.repeats)
            key = tasks[0] if len(tasks) == 1 else "all tasks"
            out[key] = {"seconds_per_update": seconds, "gflop_per_update": flops / 1e9,
                        "achieved_gflops": flops / 1e9 / seconds,
                        "share_of_matmul_rate": flops / 1e9 / seconds / rate,
                        "episodes_per_update": cfg.batch_size * len(tasks),
                        "updates_per_s": 1 / seconds}
            print(f"{name} {key}: {seconds:.3f} s/update, {flops / 1e9:.1f} GFLOP, "
                  f"{flops / 1e9 / seconds:.1f} GFLOP/s", flush=True)
        del ds, model, optim
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {result['peak_rss_mb']:.0f} MB")
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
