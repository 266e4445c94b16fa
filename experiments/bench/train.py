"""HiSSD training-speed benchmark (JSON output): updates/s, samples/s and peak memory.

    python experiments/bench/train.py [--data DIR] [--taskset marine-easy] [--threads 1 2]
                                      [--updates 30] [--config experiments/hissd/marine-easy.yaml]
                                      [--out experiments/bench/results/train.json]

Uses a dataset root built by ``marl datasets build TASKSET --quality expert`` (``--data``; the
quickstart's ``runs/quickstart/data`` works for marine-easy). For each thread count it builds
the model of ``--config``, samples ``batch_size`` episodes of every training task per update
(as ``marl train`` does), and times ``--updates`` updates after 5 warm-up updates: loss,
backward, AdamW step. Also times the same with every transition of every episode
(``steps_per_episode=0``), the released code's regime, and records the load average before the
run: time benchmarks alone, two heavy jobs on 2 cores slow each other several-fold.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


def bench(config: str, data: str, taskset: str, threads: int, updates: int,
          overrides: list[str]) -> dict:
    import torch

    from marl.config import load_config
    from marl.train import build_model, load_dataset

    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    cfg = load_config(config, [f"data.root={data}", f"data.taskset={taskset}", *overrides])
    _, ds = load_dataset(cfg)
    torch.manual_seed(0)
    model = build_model(cfg, ds.family)
    optim = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(0)

    def one_update():
        batches = [ds.sample(cfg.batch_size, task=t, generator=gen) for t in ds.tasks]
        loss, _ = model.loss(batches, gen)
        optim.zero_grad()
        loss.backward()
        optim.step()

    for _ in range(5):
        one_update()
    start = time.perf_counter()
    for _ in range(updates):
        one_update()
    seconds = time.perf_counter() - start
    return {"threads": threads, "overrides": overrides, "updates": updates,
            "updates_per_s": updates / seconds,
            "episodes_per_s": updates * cfg.batch_size * len(ds.tasks) / seconds,
            "batch_size_per_task": cfg.batch_size, "tasks": list(ds.tasks),
            "parameters": sum(p.numel() for p in model.parameters()),
            "steps_per_episode": cfg.model.steps_per_episode}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(REPO / "runs" / "quickstart" / "data"))
    p.add_argument("--taskset", default="marine-easy")
    p.add_argument("--config", default=str(REPO / "experiments" / "hissd" / "marine-easy.yaml"))
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--updates", type=int, default=30)
    p.add_argument("--out", default=str(REPO / "experiments" / "bench" / "results" / "train.json"))
    args = p.parse_args()
    load_before = os.getloadavg()
    runs = []
    for threads in args.threads:
        for overrides in ([], ["model.steps_per_episode=0", "batch_size=8"]):
            r = bench(args.config, args.data, args.taskset, threads, args.updates, overrides)
            print(json.dumps(r), flush=True)
            runs.append(r)
    result = {"benchmark": "hissd-train", "config": args.config, "data": args.data,
              "load_average_before": load_before, "cpu_count": os.cpu_count(),
              "machine": platform.machine(), "python": platform.python_version(),
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "runs": runs}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
