"""Zero-shot evaluation benchmark (JSON output): one checkpoint on every map of a task set.

    python experiments/bench/evaluate.py RUN_DIR [--taskset marine-hard] [--episodes 32]
                                         [--workers 2] [--out experiments/bench/results/evaluate.json]

Runs ``marl.evaluate.evaluate_run`` twice on the task set's test maps: first with an empty JAX
compilation cache (a fresh ``MARL_JAX_CACHE`` folder: first-time compilation included), then
again with that cache filled (the target: 12 marine-hard maps x 32 episodes within 60 s on a
2-core CPU once compiled). Worker start-up (imports, model load) is included in both. The load
average before each pass is recorded: time it alone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run")
    p.add_argument("--taskset", default="marine-hard")
    p.add_argument("--episodes", type=int, default=32)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default=str(REPO / "experiments" / "bench" / "results" /
                                        "evaluate.json"))
    args = p.parse_args()
    os.environ["MARL_JAX_CACHE"] = tempfile.mkdtemp(prefix="marl-jax-cache-")
    from marl.evaluate import evaluate_run

    passes = []
    for name in ("cold cache (compilation included)", "warm cache"):
        load = os.getloadavg()
        start = time.perf_counter()
        report = evaluate_run(args.run, taskset=args.taskset, episodes=args.episodes,
                              workers=args.workers, log=lambda s: None)
        seconds = time.perf_counter() - start
        passes.append({"pass": name, "seconds": seconds, "load_average_before": load,
                       "maps": len(report["results"]), "errors": report["errors"],
                       "unseen_mean": report["summary"]["unseen_mean"]})
        print(json.dumps(passes[-1]), flush=True)
    result = {"benchmark": "zero-shot evaluation", "run": args.run, "taskset": args.taskset,
              "episodes": args.episodes, "workers": args.workers, "cpu_count": os.cpu_count(),
              "passes": passes}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
