"""All algorithms x seeds on one task set and quality, ending in a `marl compare` table.

    python experiments/compare.py --taskset marine-hard --quality expert
        [--algos hissd bc bc-matched odis updet] [--seeds 0 1 2 3 4] [--parallel 2]
        [--updates N] [--data datasets/data] [--out runs/compare/marine-hard-expert]
        [--episodes 128] [--variant NAME ALGO KEY=VALUE ...]

Every algorithm trains on the same data with the same budget and token view: the training, data
and evaluation keys of ``experiments/hissd/<taskset>.yaml`` (updates, batch size, episodes per
task) and its ``model.joint_identity`` (MuJoCo), and each
algorithm's model from ``experiments/hissd/<taskset>.yaml`` (HiSSD) or
``experiments/baselines/<algo>.yaml`` (``bc-matched``: BC with the parameter count of HiSSD's
acting path). Runs go to ``OUT/<algo>-seed<S>`` and run ``--parallel`` at a time (one torch
thread each); each is then evaluated zero-shot on every test task of the task set (``marl
evaluate``, ``--episodes`` battles per map) on battles of its own: the evaluation seed is
``EVAL_SEED_BASE + training seed``, so runs of one training seed share their battles (the
pairing of ``marl compare``) and runs of different seeds do not. ``marl compare`` then writes
``OUT/compare.md`` and ``.json`` with each row's difference to BC, paired by seed.
Re-running resumes: finished runs and reports are kept, unfinished runs resume; a run trained
further (a larger ``--updates``) is evaluated again.
An ablation is a ``--variant``: a named algorithm with config overrides, trained and reported
beside the others, e.g. ``--variant hissd-no-adv hissd model.advantage_weighting=false``.
Build the data first: ``marl datasets build TASKSET --quality QUALITY``.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from omegaconf import OmegaConf

from marl.checkpoint import load as load_checkpoint

REPO = Path(__file__).resolve().parents[1]
EVAL_SEED_BASE = 10_000  # evaluation seed of a run = this + its training seed
SHARED_KEYS = ("updates", "batch_size", "log_interval", "checkpoint_interval", "data", "eval")


def shared_overrides(taskset: str, quality: str, data: str, updates: int | None) -> list[str]:
    """The budget and data keys of the task set's HiSSD config, as overrides for every algo."""
    base = OmegaConf.load(REPO / "experiments" / "hissd" / f"{taskset}.yaml")
    keep = OmegaConf.masked_copy(base, [k for k in SHARED_KEYS if k in base])
    flat = []

    def walk(node, prefix=""):
        for key, value in node.items():
            if OmegaConf.is_dict(value):
                walk(value, f"{prefix}{key}.")
            else:
                flat.append(f"{prefix}{key}={value}")

    walk(keep)
    # the token view is the data's, not a learner's: every algorithm sees joints as HiSSD does
    if base.get("model", {}).get("joint_identity"):
        flat.append("model.joint_identity=true")
    flat += [f"data.quality={quality}", f"data.root={data}", "eval.interval=0", "threads=1"]
    if updates:
        flat.append(f"updates={updates}")
    return flat


def config_of(algo: str, taskset: str) -> Path:
    return (REPO / "experiments" / "hissd" / f"{taskset}.yaml" if algo == "hissd"
            else REPO / "experiments" / "baselines" / f"{algo}.yaml")


def run_table(algos: list[str], variants: list[list[str]], taskset: str
              ) -> dict[str, tuple[str, list[str]]]:
    """Row name -> (algorithm, its extra overrides): each algorithm as itself, then each
    ``--variant NAME ALGO KEY=VALUE ...``."""
    table = {}
    for algo in algos:
        if not config_of(algo, taskset).is_file():
            raise ValueError(f"--algos {algo}: no config {config_of(algo, taskset)}")
        table[algo] = (algo, [])
    for name, *rest in variants:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name in table:
            raise ValueError(f"--variant {name}: NAME must be new and made of letters, digits, "
                             "'_', '.' or '-' (it names folders and table rows)")
        if not rest or not config_of(rest[0], taskset).is_file():
            raise ValueError(f"--variant {name} {' '.join(rest)}: expected an algorithm after "
                             "NAME (hissd, bc, bc-matched, odis, updet)")
        if any("=" not in kv for kv in rest[1:]):
            raise ValueError(f"--variant {name} {' '.join(rest)}: overrides must be KEY=VALUE")
        table[name] = (rest[0], rest[1:])
    return table


def finished(run: Path, updates: int) -> bool:
    last = run / "checkpoints" / "last.pt"
    return last.exists() and load_checkpoint(last).get("update", 0) >= updates


def evaluated(run: Path, episodes: int, seed: int) -> bool:
    """Whether the run's report is of this protocol (never a stale one of another)."""
    path = run / "eval" / "zero_shot.json"
    if not path.is_file():
        return False
    report = json.loads(path.read_text())
    return report.get("episodes") == episodes and report.get("seeds") == [seed]


def run(cmd: list[str], log: Path) -> int:
    with open(log, "a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        return subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--taskset", required=True)
    p.add_argument("--quality", default="expert")
    p.add_argument("--algos", nargs="*", default=["hissd", "bc", "bc-matched", "odis", "updet"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--updates", type=int, default=None)
    p.add_argument("--episodes", type=int, default=128, help="battles per map and run (128)")
    p.add_argument("--data", default="datasets/data")
    p.add_argument("--out", default=None)
    p.add_argument("--variant", nargs="+", action="append", default=[],
                   metavar="NAME ALGO KEY=VALUE", help="an ablation: NAME ALGO [KEY=VALUE ...]")
    args = p.parse_args()
    try:
        algos = run_table(args.algos, args.variant, args.taskset)
    except ValueError as exc:
        p.error(str(exc))
    out = Path(args.out or f"runs/compare/{args.taskset}-{args.quality}")
    out.mkdir(parents=True, exist_ok=True)
    shared = shared_overrides(args.taskset, args.quality, args.data, args.updates)
    updates = int(next(s for s in reversed(shared) if s.startswith("updates=")).split("=")[1])
    marl = [sys.executable, "-m", "marl.cli"]
    jobs = [(name, seed) for seed in args.seeds for name in algos]
    start = time.perf_counter()

    def one(job) -> tuple[str, int, int]:
        name, seed = job
        algo, extra = algos[name]
        folder = out / f"{name}-seed{seed}"
        log = out / f"{name}-seed{seed}.log"
        trained = not finished(folder, updates)
        if trained:
            if (folder / "checkpoints" / "last.pt").exists():
                cmd = marl + ["train", "--resume", str(folder), f"updates={updates}"]
            else:
                cmd = marl + ["train", "--config", str(config_of(algo, args.taskset)),
                              "--out", str(folder), *shared, *extra, f"seed={seed}"]
            if run(cmd, log):
                return name, seed, 1
        if trained or not evaluated(folder, args.episodes, EVAL_SEED_BASE + seed):
            code = run(marl + ["evaluate", str(folder), "--workers", "1", "--episodes",
                               str(args.episodes), "--seeds", str(EVAL_SEED_BASE + seed)], log)
            if code:
                return name, seed, code
        return name, seed, 0

    failed = []
    with ThreadPoolExecutor(args.parallel) as pool:
        for name, seed, code in pool.map(one, jobs):
            status = "ok" if code == 0 else f"FAILED (see {out}/{name}-seed{seed}.log)"
            print(f"[{time.perf_counter() - start:6.0f} s] {name} seed {seed}: {status}",
                  flush=True)
            if code:
                failed.append((name, seed))
    done = [(name, out / f"{name}-seed{s}") for name, s in jobs if (name, s) not in failed]
    if done:
        subprocess.call(marl + ["compare", *(str(folder) for _, folder in done),
                                "--labels", ",".join(name for name, _ in done),
                                "--out", str(out / "compare"), "--plot"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
