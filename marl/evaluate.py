"""Zero-shot evaluation of a whole run: ``marl evaluate RUN_DIR``.

One task's battles are played by ``marl.rollout.evaluate_task`` (greedy, decentralised, one
batched env). ``evaluate_run`` (``marl evaluate RUN_DIR``) evaluates a run's checkpoint on every task of a
task set for several seeds, spreading the (task, seed) jobs over worker processes (JAX's
compilations are cached on disk, so a map compiles once per machine). A job that raises, or
whose worker dies, is reported by task; the other jobs still finish. ``write_report`` writes
the JSON report, the marl-eval exchange format, a Markdown table and TensorBoard scalars.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import queue
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

import envs
from marl.checkpoint import atomic_write_text
from marl.config import check_device
from marl.rollout import evaluate_task, score
from marl.runs import check_task_family, load_run_model, trained_tasks


# ------------------------------------------------------------------------------ a whole run
class EvalError(envs.UserError):
    """Evaluation options that do not fit together (labels, runs)."""


def _worker(run_dir: str, checkpoint: str, device: str, jobs, results) -> None:
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    _, model, _, _ = load_run_model(run_dir, checkpoint, device)
    while True:
        job = jobs.get()
        if job is None:
            return
        task, seed, episodes, options = job
        results.put(("start", (task, seed), os.getpid()))
        try:
            results.put(("done", (task, seed), evaluate_task(model, task, episodes, seed,
                                                             options, device)))
        except Exception as exc:  # reported by task; the other tasks go on
            results.put(("error", (task, seed), f"{type(exc).__name__}: {exc}"))


def _run_jobs(run_dir: Path, checkpoint: str, jobs: list, workers: int, device: str, log):
    """Evaluate ``jobs`` (task, seed, episodes, env options) on ``workers`` processes; a worker
    that dies is reported for the job it was running and replaced. Returns (results, errors)."""
    ctx = mp.get_context("spawn")
    job_q, result_q = ctx.Queue(), ctx.Queue()
    for job in jobs:
        job_q.put(job)
    procs: dict[int, Any] = {}

    def spawn():
        p = ctx.Process(target=_worker, args=(str(run_dir), checkpoint, device, job_q, result_q),
                        daemon=True)
        p.start()
        procs[p.pid] = p

    for _ in range(min(workers, len(jobs))):
        spawn()
    running: dict[int, tuple] = {}
    results, errors, left = {}, {}, len(jobs)
    while left:
        try:
            kind, key, payload = result_q.get(timeout=1.0)
        except queue.Empty:
            for pid, p in list(procs.items()):
                if not p.is_alive() and p.exitcode not in (0, None):
                    del procs[pid]
                    key = running.pop(pid, None)
                    if key is not None:
                        errors[key] = f"worker crashed (exit code {p.exitcode})"
                        left -= 1
                        log(f"   {key[0]} seed {key[1]}: {errors[key]}")
                    elif not procs:
                        for job in jobs:  # a worker that cannot even start: every job fails
                            errors.setdefault((job[0], job[1]), f"worker failed to start "
                                              f"(exit code {p.exitcode})")
                        return results, errors
                    if left:
                        spawn()
            continue
        if kind == "start":
            running[payload] = key
            continue
        running = {pid: k for pid, k in running.items() if k != key}
        left -= 1
        if kind == "done":
            results[key] = payload
            log(f"   {key[0]:<18} seed {key[1]}: {score(payload):.3f}")
        else:
            errors[key] = payload
            log(f"   {key[0]:<18} seed {key[1]}: FAILED {payload}")
    for _ in procs:
        job_q.put(None)
    for p in procs.values():
        p.join(timeout=10)
    return results, errors


def evaluate_run(run_dir: str | Path, checkpoint: str = "last", tasks: list[str] | None = None,
                 taskset: str | None = None, episodes: int = 32, seeds: Sequence[int] = (0,),
                 workers: int = 2, device: str = "cpu", log=None) -> dict:
    """Evaluate a run's checkpoint on tasks (default: its task set's test tasks, training
    tasks included as in ODIS/HiSSD) for every seed; returns the report (``write_report``)."""
    from envs.tasksets import load_taskset

    log = log or (lambda line: print(line, flush=True))
    run_dir = Path(run_dir)
    check_device(device, "--device")
    cfg, model, path, ckpt = load_run_model(run_dir, checkpoint, device)
    task_set = load_taskset(taskset or cfg.data.taskset)
    tasks = list(tasks) if tasks else list(dict.fromkeys(task_set.train_tasks + task_set.test_tasks))
    for task in tasks:  # a clear error before any process starts
        check_task_family(task, ckpt, path)
    jobs = [(task, int(seed), episodes, dict(task_set.env_options)) for task in tasks for seed in seeds]
    log(f"evaluating {path} (update {ckpt['update']}) on {len(tasks)} tasks x {len(seeds)} "
        f"seed(s) x {episodes} episodes, {workers} worker(s)")
    start = time.perf_counter()
    if workers <= 1:
        results, errors = {}, {}
        for task, seed, n, options in jobs:
            try:
                results[(task, seed)] = evaluate_task(model, task, n, seed, options, device)
            except Exception as exc:
                errors[(task, seed)] = f"{type(exc).__name__}: {exc}"
    else:
        results, errors = _run_jobs(run_dir, checkpoint, jobs, workers, device, log)
    rows = []
    for task, seed, _, _ in jobs:
        r = results.get((task, seed))
        if r is not None:
            r["split"] = "train" if task in trained_tasks(ckpt) else "unseen"
            rows.append(r)
    report = {"run": str(run_dir), "algo": cfg.algo, "train_seed": int(cfg.seed),
              "checkpoint": str(path),
              "update": ckpt["update"], "taskset": task_set.name, "quality": cfg.data.quality,
              "train_tasks": trained_tasks(ckpt), "seeds": list(seeds), "episodes": episodes,
              "env_options": dict(task_set.env_options), "seconds": time.perf_counter() - start,
              "results": rows,
              "errors": [{"task": t, "seed": s, "error": e} for (t, s), e in errors.items()]}
    report["summary"] = summarize(rows, [(t, s) for t, s, _, _ in jobs])
    return report


def summarize(rows: list[dict], expected: list[tuple[str, int]] | None = None) -> dict:
    """Per task: the score (win rate, else return) averaged over seeds; then the means over
    training tasks and over unseen tasks. ``expected``: the (task, seed) pairs asked for; where
    some gave no result the summary says so (``partial``: the missing pairs), and its means are
    over what remains."""
    per_task: dict[str, list[float]] = {}
    split: dict[str, str] = {}
    for r in rows:
        per_task.setdefault(r["task"], []).append(score(r))
        split[r["task"]] = r["split"]
    tasks = {t: float(np.mean(v)) for t, v in per_task.items()}
    out = {"metric": "win_rate" if rows and "win_rate" in rows[0] else "return_mean",
           "tasks": tasks}
    for name in ("train", "unseen"):
        vals = [v for t, v in tasks.items() if split[t] == name]
        out[f"{name}_mean"] = float(np.mean(vals)) if vals else None
    done = {(r["task"], int(r["seed"])) for r in rows}
    missing = [f"{t} seed {s}" for t, s in (expected or []) if (t, int(s)) not in done]
    if missing:
        out["partial"] = missing
    return out


def marl_eval_json(report: dict) -> dict:
    """The report in marl-eval's exchange format:
    ``{env: {task: {algo: {"seed_N": {"step_0": {...}, "absolute_metrics": {...}}}}}}`` with
    per-episode ``win_rate`` (SMAC) and ``return`` lists."""
    out: dict = {}
    for r in report["results"]:
        family, name = r["task"].split(":", 1)
        metrics = {"return": r["episode_returns"]}
        if "episode_wins" in r:
            metrics["win_rate"] = [float(w) for w in r["episode_wins"]]
        run = out.setdefault(family, {}).setdefault(name, {}).setdefault(
            report["algo"], {}).setdefault(f"seed_{r['seed']}", {})
        run["step_0"] = {"step_count": report["update"], **metrics}
        run["absolute_metrics"] = metrics
    return out


def markdown_table(report: dict) -> str:
    metric = report["summary"]["metric"]
    head = "win rate (95 % CI)" if metric == "win_rate" else "return (95 % CI)"
    lines = [f"{report['algo']} on {report['taskset']} ({report['quality']}), "
             f"{report['checkpoint']} (update {report['update']}), {report['episodes']} "
             f"greedy episodes per task and seed", "",
             f"| task | split | seed | {head} | return | episode length |",
             "|---|---|---|---|---|---|"]
    for split in ("train", "unseen"):
        for r in report["results"]:
            if r["split"] != split:
                continue
            if metric == "win_rate":
                lo, hi = r["win_rate_ci95"]
                score = f"{r['win_rate']:.3f} ({lo:.3f}-{hi:.3f})"
            else:
                lo, hi = r["return_ci95"]
                score = f"{r['return_mean']:.2f} ({lo:.2f}-{hi:.2f})"
            lines.append(f"| {r['task']} | {split} | {r['seed']} | {score} | "
                         f"{r['return_mean']:.2f} ± {r['return_std']:.2f} | "
                         f"{r['length_mean']:.1f} |")
    s = report["summary"]
    partial = f" (partial: no result for {', '.join(s['partial'])})" if s.get("partial") else ""
    for split in ("train", "unseen"):
        if s[f"{split}_mean"] is not None:
            lines.append(f"| **mean of {split} tasks{partial}** | {split} | all | "
                         f"{s[f'{split}_mean']:.3f} | | |")
    for e in report["errors"]:
        lines.append(f"| {e['task']} | error | {e['seed']} | {e['error']} | | |")
    return "\n".join(lines)


def write_report(report: dict, out_dir: str | Path, tensorboard_dir: str | Path | None = None,
                 name: str = "zero_shot") -> dict[str, Path]:
    """``<name>.json`` (the report), ``<name>.marl-eval.json`` and ``<name>.md`` in
    ``out_dir`` (atomic writes), and TensorBoard scalars ``zero_shot/<task>/...``."""

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / f"{name}.json", "marl_eval": out_dir / f"{name}.marl-eval.json",
             "markdown": out_dir / f"{name}.md"}
    atomic_write_text(paths["json"], json.dumps(report, indent=2))
    atomic_write_text(paths["marl_eval"], json.dumps(marl_eval_json(report), indent=2))
    atomic_write_text(paths["markdown"], markdown_table(report) + "\n")
    if tensorboard_dir is not None:
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(str(tensorboard_dir)) as writer:
            for task, value in report["summary"]["tasks"].items():
                writer.add_scalar(f"zero_shot/{task}/{report['summary']['metric']}", value,
                                  report["update"])
            for split in ("train", "unseen"):
                if report["summary"][f"{split}_mean"] is not None:
                    writer.add_scalar(f"zero_shot/mean_{split}",
                                      report["summary"][f"{split}_mean"], report["update"])
    return paths
