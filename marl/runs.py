"""The run folder that ``marl train`` writes and everything after it reads.

A run is ``config.yaml`` plus ``checkpoints/{last,best}.pt`` (and ``eval/``, ``tb/``). This
module builds a run's model from its config, reads its checkpoints (``marl.checkpoint``: no
code runs) and its dataset, and checks that a task fits what it was trained on. Training,
evaluation, diagnosis and the skill figures all stand on it; none of them imports another.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

import envs
from marl.checkpoint import CheckpointError
from marl.checkpoint import load as read_checkpoint

CHECKPOINT_VERSION = 1


class RunError(envs.UserError):
    """A run folder or checkpoint that cannot be used: missing, damaged, of another algorithm,
    version or task family."""


def load_dataset(cfg: DictConfig):
    """(task set, MultiTaskDataset) that ``cfg`` trains on."""
    from envs.tasksets import load_taskset
    from marl.data.loader import MultiTaskDataset

    taskset = load_taskset(cfg.data.taskset)
    data = MultiTaskDataset.from_taskset(
        cfg.data.taskset, cfg.data.quality, cfg.data.root, n_episodes=cfg.data.episodes,
        subset=cfg.data.subset, seed=cfg.seed, device=cfg.device)
    return taskset, data


def build_model(cfg: DictConfig, family: str):
    """A fresh model of ``cfg.algo`` for tasks of ``family``, on ``cfg.device``."""
    from marl.algos import build
    from marl.config import model_config
    from marl.nets import EntityTransformer, family_spec

    net = model_config(cfg)
    model = build(cfg.algo, family_spec(family, getattr(net, "joint_identity", False)),
                  net).to(cfg.device)
    if cfg.compile:
        for module in model.modules():
            if isinstance(module, EntityTransformer):
                module.compile(dynamic=True)  # team sizes vary per task
    return model


def load_checkpoint(path: Path, algo: str) -> dict:
    """A run's checkpoint, read without running code; RunError unless it is a marl checkpoint
    of this version and of ``algo``."""
    try:
        ckpt = read_checkpoint(path)
    except CheckpointError as exc:
        raise RunError(str(exc)) from None
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise RunError(f"{path}: not a marl checkpoint of version {CHECKPOINT_VERSION}")
    if ckpt.get("algo") != algo:
        raise RunError(f"{path} is a checkpoint of algorithm {ckpt.get('algo')!r}, not {algo!r}")
    return ckpt


def load_run_model(run_dir: str | Path, checkpoint: str = "last", device: str = "cpu"):
    """(config, model in eval mode, checkpoint path, checkpoint dict) of a training run;
    ``checkpoint`` is ``last``, ``best`` or a path."""
    from marl.config import from_run

    run_dir = Path(run_dir)
    cfg = from_run(run_dir)
    path = (run_dir / "checkpoints" / f"{checkpoint}.pt" if checkpoint in ("last", "best")
            else Path(checkpoint))
    ckpt = load_checkpoint(path, cfg.algo)
    cfg.device = device
    model = build_model(cfg, ckpt["family"])
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise RunError(f"{path} does not fit {cfg.algo} as configured in {run_dir}/config.yaml:"
                       f" {str(exc).splitlines()[0]}") from None
    return cfg, model.eval(), path, ckpt


def check_task_family(task: str, ckpt: dict, path: Path) -> None:
    """RunError unless ``task`` is a known task of the family the checkpoint was trained on
    (its map name checked too, without starting a simulator)."""
    from envs.tasksets import validate_task

    validate_task(task)
    family = envs.split_task(task)[0].name
    if family != ckpt["family"]:
        raise RunError(f"{task} is of family {family!r}; {path} was trained on "
                       f"{ckpt['family']!r} tasks")


def trained_tasks(ckpt: dict) -> list[str]:
    return list(ckpt.get("tasks", []))
