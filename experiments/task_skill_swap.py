"""Which task-specific skill should HiSSD act with on a task it never trained on? Plays trained
HiSSD runs greedily with each agent's ``z`` replaced, to tell a live per-step ``z`` from a
task label that a constant could stand in for.

    python experiments/task_skill_swap.py RUN [RUN ...] --tasks mamujoco:HalfCheetah-3x2 ...
        [--modes infer zero mean same-robot nearest] [--episodes 16] [--out FILE]

Modes (the means are over each training task's data, 32 episodes, every acting agent-step):

* ``infer``: the encoder's own ``z`` of each agent and step (what ``marl evaluate`` plays);
* ``zero``: ``z = 0``;
* ``mean``: the mean of the training tasks' mean ``z``, one constant;
* ``same-robot``: the mean over the training tasks of the evaluated task's MuJoCo robot;
* ``nearest``: each inferred ``z`` snapped to the closest training task's mean.

Evaluation starts are ``marl evaluate``'s for each run in ``experiments/compare.py`` (seed
10000 + the run's training seed), so ``infer`` reproduces the comparison's numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

import envs
from marl.algos.common import transitions
from marl.checkpoint import atomic_write_text
from marl.rollout import evaluate_task
from marl.runs import load_dataset, load_run_model

MODES = ("infer", "zero", "mean", "same-robot", "nearest")


def _robot(task: str) -> str:
    return task.split(":", 1)[1].split("-")[0]


def training_task_means(model, cfg, episodes: int = 32) -> dict[str, torch.Tensor]:
    """Each training task's mean ``z`` over its data's acting agent-steps."""
    cfg.data.episodes = episodes
    _, data = load_dataset(cfg)
    gen = torch.Generator().manual_seed(0)
    means = {}
    with torch.no_grad():
        for task, td in data.data.items():
            tr = transitions(td.batch(torch.arange(min(episodes, td.n_episodes))), model.spec, 0,
                             gen, model.cfg.gamma, cfg=model.cfg)
            means[task] = model.task_skill(tr.obs)[tr.acting].mean(0)
    return means


def swapped_skill(infer, mode: str, task: str, means: dict[str, torch.Tensor]):
    """A ``task_skill(obs)`` that returns ``mode``'s ``z`` for agents playing ``task``."""
    table = torch.stack(list(means.values()))
    same = [m for t, m in means.items() if _robot(t) == _robot(task)]
    if mode == "same-robot" and not same:
        raise SystemExit(f"--modes same-robot: no training task shares {task}'s robot "
                         f"(training tasks: {list(means)})")

    def task_skill(obs):
        z = infer(obs)
        if mode == "zero":
            return torch.zeros_like(z)
        if mode == "mean":
            return table.mean(0).expand_as(z)
        if mode == "same-robot":
            return torch.stack(same).mean(0).expand_as(z)
        if mode == "nearest":
            flat = z.reshape(-1, z.shape[-1])
            return table[torch.cdist(flat, table).argmin(-1)].reshape(z.shape)
        return z
    return task_skill


def swap_run(run: Path, tasks: list[str], modes: list[str], episodes: int) -> dict:
    cfg, model, _, _ = load_run_model(run)
    if not getattr(model.cfg, "task_skills", False):
        raise SystemExit(f"{run}: a {cfg.algo} run without task-specific skills (needs hissd "
                         "with model.task_skills=true)")
    means = training_task_means(model, cfg)
    infer, seed = model.task_skill, 10000 + int(cfg.seed)
    out = {}
    for task in tasks:
        for mode in modes:
            model.task_skill = swapped_skill(infer, mode, task, means)
            out[f"{task} {mode}"] = evaluate_task(model, task, episodes, seed)["return_mean"]
            print(f"{run.name} {task} {mode}: {out[f'{task} {mode}']:.1f}", flush=True)
    model.task_skill = infer
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--tasks", nargs="+", required=True)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    for task in args.tasks:
        envs.split_task(task)
    missing = [str(r) for r in args.runs if not (r / "config.yaml").exists()]
    if missing:
        raise SystemExit(f"not run folders (no config.yaml): {missing}")
    report = {str(run): swap_run(run, args.tasks, args.modes, args.episodes) for run in args.runs}
    print(f"\n| task | {' | '.join(args.modes)} |\n|---|{'---|' * len(args.modes)}")
    for task in args.tasks:
        cells = [sum(r[f"{task} {m}"] for r in report.values()) / len(report) for m in args.modes]
        print(f"| {task} | {' | '.join(f'{c:.0f}' for c in cells)} |")
    if args.out:
        atomic_write_text(args.out, json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
