"""Offline training: ``marl train --config experiments/hissd/<taskset>.yaml [key=value ...]``.

A run folder holds ``config.yaml`` (fully resolved), ``checkpoints/{last,best}.pt`` (atomic:
written to a temporary name, then renamed), ``tb/`` (TensorBoard: every loss term,
updates/s, samples/s, evaluation results) and ``eval/`` (evaluation JSON). A run killed at any
moment resumes from its last complete checkpoint with ``marl train --resume RUN_DIR``, with the
same optimiser and random state, so a resumed run matches an uninterrupted one.

Each update samples ``batch_size`` episodes of every training task (one unpadded batch per
task) and takes one optimiser step on the algorithm's loss. Under ``torchrun`` every rank
samples its own batches from its own random stream; gradients are averaged across ranks
(gloo on CPU, NCCL on GPU) so the ranks' parameters stay identical. Only rank 0 writes.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf

import envs
from marl.checkpoint import atomic_save, atomic_write_text
from marl.rollout import evaluate_task, score
from marl.runs import CHECKPOINT_VERSION, build_model, load_checkpoint, load_dataset


class TrainError(envs.UserError):
    """A run that cannot start or resume (wrong folder, wrong algorithm, bad data)."""


# ------------------------------------------------------------------------------ helpers
def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _average_gradients(params: list[torch.nn.Parameter], world: int) -> None:
    """All-reduce every gradient as one flat buffer (one collective per update)."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    for p, chunk in zip(params, flat.split([g.numel() for g in grads])):
        p.grad = chunk.view_as(p)


def release_freed_memory(threshold: int = 1 << 20) -> bool:
    """Linux/glibc: serve allocations over ``threshold`` bytes with their own memory maps, so
    freed tensors go back to the OS at once. By default glibc raises this threshold whenever a
    large block is freed and then keeps such blocks in its heap, where a training step's
    changing tensor sizes fragment it. Returns False where ``mallopt`` is unavailable."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-3, threshold))  # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


def eval_tasks(cfg: DictConfig, taskset) -> list[str]:
    spec = str(cfg.eval.tasks)
    if spec == "train":
        return list(taskset.train_tasks)
    if spec == "test":
        return list(taskset.test_tasks)
    return [t.strip() for t in spec.split(",") if t.strip()]


# ------------------------------------------------------------------------------ the loop
def train(cfg: DictConfig, run_dir: str | Path, resume: bool = False, log=None) -> dict:
    """Train (or resume) one run; returns the final stats. ``cfg`` is a ``load_config`` result
    (ignored when resuming: the run's saved config is used, with ``updates`` from ``cfg``)."""
    # Long on purpose: the training loop (resume, data, updates, checkpoints) reads top to bottom,
    # as in CleanRL.
    log = log or (lambda line: print(line, flush=True))
    run_dir = Path(run_dir)
    ckpt_dir = run_dir / "checkpoints"
    rank, world = _distributed()
    cfg = _run_config(cfg, run_dir, resume)
    _set_up_torch(cfg, log)
    taskset, data = _load_data(cfg)
    model = build_model(cfg, data.family)
    try:
        model.use_tasks(list(data.tasks))
    except ValueError as exc:
        raise TrainError(str(exc)) from None
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + rank)
    update, best_score = 0, None
    for stale in ckpt_dir.glob(".*.tmp-*") if rank == 0 else ():
        stale.unlink(missing_ok=True)  # a checkpoint write cut short by a kill
    if resume and not (ckpt_dir / "last.pt").exists():
        log(f"{run_dir} was stopped before its first checkpoint: starting it from update 0")
    elif resume:
        ckpt = load_checkpoint(ckpt_dir / "last.pt", cfg.algo)
        model.load_state_dict(ckpt["model"])
        optim.load_state_dict(ckpt["optim"])
        gen.set_state(ckpt["generators"][rank] if rank < len(ckpt["generators"])
                      else ckpt["generators"][0])
        torch.set_rng_state(ckpt["torch_rng"])
        update, best_score = ckpt["update"], ckpt.get("best_score")
        log(f"resuming {run_dir} at update {update}")
    if world > 1:  # every rank starts from rank 0's parameters
        for p in model.state_dict().values():
            dist.broadcast(p, 0)

    writer = None
    if rank == 0:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tb"))
        log(f"{cfg.algo} on {taskset.name} ({cfg.data.quality}): tasks {list(data.tasks)}, "
            f"episodes {data.n_episodes}, {sum(p.numel() for p in params):,} parameters, "
            f"{world} rank(s), run folder {run_dir}")

    def checkpoint(path: Path) -> None:
        gens = [gen.get_state()]
        if world > 1:  # rank 0 keeps every rank's stream so a resume continues each one
            gens = [torch.empty_like(gens[0]) for _ in range(world)]
            dist.all_gather(gens, gen.get_state())
        if rank == 0:
            atomic_save({"version": CHECKPOINT_VERSION, "algo": cfg.algo,
                         "model": model.state_dict(), "optim": optim.state_dict(),
                         "generators": gens, "torch_rng": torch.get_rng_state(),
                         "update": update, "best_score": best_score,
                         "family": data.family, "tasks": list(data.tasks)}, path)

    stats: dict[str, float] = {}
    started = time.perf_counter()
    samples_per_update = cfg.batch_size * len(data.tasks) * world
    progress = _Progress(cfg, writer, samples_per_update, log)
    while update < cfg.updates:
        batches = [data.sample(cfg.batch_size, task=t, generator=gen) for t in data.tasks]
        optim.zero_grad(set_to_none=True)
        stats = model.backward(batches, gen)
        if world > 1:
            _average_gradients(params, world)
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optim.step()
        update += 1
        model.after_update(update)
        progress.step(update, stats)
        evaluate_now = cfg.eval.interval and (update % cfg.eval.interval == 0
                                              or update == cfg.updates)
        if evaluate_now:
            score = _evaluate(cfg, taskset, model, run_dir, update, writer, rank, log)
            improved = score is not None and (best_score is None or score > best_score)
            if world > 1:  # rank 0 evaluates; every rank must join the checkpoint's gather
                flag = torch.tensor([float(improved), score or 0.0], dtype=torch.float64)
                dist.broadcast(flag, 0)
                improved, score = bool(flag[0]), float(flag[1])
            if improved:
                best_score = score
                checkpoint(ckpt_dir / "best.pt")
        if rank == 0 and cfg.health_interval and (update % cfg.health_interval == 0
                                                  or update == cfg.updates):
            _health(cfg, model, data, run_dir, update, writer, log)
        if update % cfg.checkpoint_interval == 0 or update == cfg.updates:
            checkpoint(ckpt_dir / "last.pt")
    if world > 1:
        _record_rank_agreement(params, world, rank, run_dir, update, log)
        # a process group left for interpreter exit can abort a rank ("terminate called
        # without an active exception") while gloo's threads are torn down
        dist.barrier()
        dist.destroy_process_group()
    if writer is not None:
        writer.close()
        log(f"done: {update} updates in {time.perf_counter() - started:.0f} s; "
            f"checkpoints in {ckpt_dir}")
    return stats


def _run_config(cfg: DictConfig | None, run_dir: Path, resume: bool) -> DictConfig:
    """The config to train with: the run's saved one when resuming (with ``updates`` from
    ``cfg``), else ``cfg``, refusing to start over an existing run or below a file."""
    from marl.config import from_run

    blocking = next((p for p in (run_dir, *run_dir.parents) if p.exists() and not p.is_dir()),
                    None)
    if blocking is not None:
        raise TrainError(f"run folder {run_dir}: {blocking} is a file, not a folder; choose "
                         "another --out")

    if resume:
        saved = from_run(run_dir)
        if cfg is not None and cfg.algo != saved.algo:
            raise TrainError(f"{run_dir} is a run of algorithm {saved.algo!r}, not {cfg.algo!r}")
        if cfg is not None:
            saved.updates = cfg.updates
        return saved
    if (run_dir / "checkpoints" / "last.pt").exists():
        raise TrainError(f"{run_dir} already holds a run; resume it with "
                         f"`marl train --resume {run_dir}` or choose another --out")
    return cfg


def _set_up_torch(cfg: DictConfig, log) -> None:
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    torch.set_flush_denormal(True)
    if cfg.release_memory and not release_freed_memory():
        log("release_memory: glibc's mallopt is not available here; ignored")
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    torch.manual_seed(cfg.seed)


def _load_data(cfg: DictConfig):
    """(task set, dataset), with the command that builds missing data in the error."""
    try:
        taskset, data = load_dataset(cfg)
    except envs.UserError as exc:
        raise TrainError(f"data for task set {cfg.data.taskset!r}: {exc} (build it with `marl "
                         f"datasets build {cfg.data.taskset} --quality {cfg.data.quality} --out "
                         f"{cfg.data.root}`)") from None
    if data.family != taskset.family:
        raise TrainError(f"data family {data.family!r} does not fit task set "
                         f"{taskset.name!r} ({taskset.family!r})")
    return taskset, data


class _Progress:
    """Every ``log_interval`` updates: the loss terms and speed to TensorBoard and one line."""

    def __init__(self, cfg: DictConfig, writer, samples_per_update: int, log):
        self.cfg, self.writer, self.samples, self.log = cfg, writer, samples_per_update, log
        self.window_start, self.window_updates = time.perf_counter(), 0

    def step(self, update: int, stats: dict) -> None:
        self.window_updates += 1
        cfg = self.cfg
        if not (update % cfg.log_interval == 0 or update == cfg.updates):
            return
        now = time.perf_counter()
        rate = self.window_updates / max(now - self.window_start, 1e-9)
        self.window_start, self.window_updates = now, 0
        if self.writer is None:
            return
        for key, value in stats.items():
            self.writer.add_scalar(f"loss/{key}", value, update)
        self.writer.add_scalar("speed/updates_per_s", rate, update)
        self.writer.add_scalar("speed/samples_per_s", rate * self.samples, update)
        terms = " ".join(f"{k} {v:.3f}" for k, v in stats.items()
                         if k in ("loss", "bc", "value", "prediction", "contrastive"))
        eta = (cfg.updates - update) / max(rate, 1e-9)
        bar = "#" * int(20 * update / cfg.updates)
        self.log(f"[{bar:<20}] {update:>6}/{cfg.updates} {rate:.2f} updates/s, "
                 f"{eta / 60:.1f} min left  {terms}")


def _record_rank_agreement(params, world: int, rank: int, run_dir: Path, update: int,
                           log) -> None:
    """The ranks must end with identical parameters: the largest difference, in ranks.json."""
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    gathered = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    diff = max(float((g - flat).abs().max()) for g in gathered)
    if rank == 0:
        atomic_write_text(run_dir / "ranks.json", json.dumps(
            {"world_size": world, "max_abs_param_diff": diff, "update": update}))
        log(f"{world} ranks, largest parameter difference between ranks: {diff}")


def _evaluate(cfg, taskset, model, run_dir: Path, update: int, writer, rank: int, log):
    """Greedy evaluation on ``cfg.eval.tasks`` (rank 0); returns the mean win rate (or
    return) over the *training* tasks evaluated, which selects ``best``: never unseen tasks."""
    if rank != 0:
        return None
    results = [evaluate_task(model, task, cfg.eval.episodes, cfg.eval.seed,
                             taskset.env_options, cfg.device)
               for task in eval_tasks(cfg, taskset)]
    (run_dir / "eval").mkdir(exist_ok=True)
    atomic_write_text(run_dir / "eval" / f"update_{update:07d}.json",
                      json.dumps({"update": update, "results": results}, indent=2))
    train_scores = []
    for r in results:
        if r["task"] in taskset.train_tasks:
            train_scores.append(score(r))
        for key in ("win_rate", "return_mean", "length_mean"):
            if key in r:
                writer.add_scalar(f"eval/{r['task']}/{key}", r[key], update)
    log("eval " + ", ".join(f"{r['task']} {score(r):.2f}" for r in results))
    return sum(train_scores) / len(train_scores) if train_scores else None


def _health(cfg, model, data, run_dir: Path, update: int, writer, log) -> None:
    """Skill-health figures (``marl.diagnose``) as ``health/...`` scalars and
    ``eval/health.json``, on ``health_episodes`` episodes of each training task."""
    from marl.diagnose import scalars, skill_health

    report = skill_health(model, data, cfg.health_episodes, seed=cfg.seed)
    report["update"] = update
    for key, value in scalars(report).items():
        writer.add_scalar(key, value, update)
    (run_dir / "eval").mkdir(exist_ok=True)
    atomic_write_text(run_dir / "eval" / "health.json", json.dumps(report, indent=2))
    first = next(iter(report["tasks"].values()))
    shown = [("task_skill", "actions_changed_by_other_task_z", "z moves"),
             ("common_skill", "actions_changed_by_shuffling", "common moves"),
             ("value", "ratio", "V/G"), ("value", "correlation", "corr(V,G)"),
             ("advantage", "correlation_with_win", "corr(A,won)")]
    parts = [f"{label} {first[g][k]:.2f}" for g, k, label in shown
             if isinstance(first.get(g, {}).get(k), float)]
    if parts:
        log(f"health ({next(iter(report['tasks']))}): " + ", ".join(parts))
