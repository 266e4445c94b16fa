"""How hard is SMAX's scripted opponent? Win rates of scripted focus fire per enemy reaction.

    python experiments/opponent_calibration.py [--maps 3m,5m_vs_6m,9m_vs_10m,13m_vs_15m]
        [--reactions 1,0.9,0.8,0.7,0.6,0.5] [--episodes 256] [--seed 1]
        [--out runs/opponent_calibration.json]

Every agent shoots the weakest enemy in range, else walks toward the enemy
(``envs.smac.focus_fire_actions``); the enemy is SMAX's heuristic with the option
``enemy_reaction`` (the probability that an enemy unit re-decides on a step). This is the
measurement behind marine-hard's ``enemy_reaction: 0.8`` (docs/datasets.md). It prints a
Markdown table and writes JSON; each cell is the first ``episodes`` battles of one batched env.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--maps", default="3m,5m_vs_6m,9m_vs_10m,13m_vs_15m")
    parser.add_argument("--reactions", default="1,0.9,0.8,0.7,0.6,0.5")
    parser.add_argument("--episodes", type=int, default=256)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default="runs/opponent_calibration.json")
    args = parser.parse_args()
    maps = args.maps.split(",")
    reactions = [float(r) for r in args.reactions.split(",")]
    start = time.perf_counter()
    import envs
    from envs.smac import focus_fire_win_rate

    table = {r: {m: focus_fire_win_rate(envs.make(f"smac:{m}", num_envs=args.episodes,
                                                  seed=args.seed, enemy_reaction=r), args.seed)
                 for m in maps} for r in reactions}
    print("| enemy_reaction | " + " | ".join(maps) + " |")
    print("|---" * (len(maps) + 1) + "|")
    for r, row in table.items():
        print(f"| {r:g} | " + " | ".join(f"{row[m]:.0%}" for m in maps) + " |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "policy": "scripted focus fire", "episodes": args.episodes, "seed": args.seed,
        "win_rate": {f"{r:g}": row for r, row in table.items()},
        "seconds": time.perf_counter() - start, "load_average": os.getloadavg()}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
