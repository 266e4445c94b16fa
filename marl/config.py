"""Training configs: dataclasses merged with YAML and ``key=value`` overrides through OmegaConf.

``load_config(path, overrides)`` builds the schema from ``TrainConfig`` with the chosen
algorithm's config class (``marl.algos.registry()``) under ``model``, then merges the YAML file
and the overrides on top. Unknown keys fail with the closest valid names; wrong types fail with
the key and the expected type (``ConfigError``).
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from envs.core import UserError
from marl.algos import registry


class ConfigError(UserError):
    """A config that cannot be used: unknown key, wrong type, bad value."""


@dataclass
class DataConfig:
    taskset: str = "marine-easy"  # name in envs/tasksets or a YAML path
    quality: str = "expert"
    root: str = "datasets/data"  # dataset root laid out by `marl datasets build`
    episodes: Optional[int] = 2000  # per task (ODIS: 2000); null = all
    subset: str = "last"  # last N episodes (ODIS) or random


@dataclass
class EvalConfig:
    interval: int = 0  # updates between evaluations during training; 0 = off
    episodes: int = 32  # greedy episodes per task (ODIS/HiSSD: 32)
    tasks: str = "train"  # "train", "test" or a comma-separated list of tasks
    seed: int = 1000


@dataclass
class TrainConfig:
    algo: str = "hissd"
    seed: int = 0
    updates: int = 20000  # optimiser steps; each sees batch_size episodes of every task
    batch_size: int = 32  # episodes per task per update (HiSSD: 32)
    lr: float = 1e-4  # HiSSD's AdamW lr (critic_lr) and weight decay
    weight_decay: float = 1e-4
    grad_clip: float = 10.0
    log_interval: int = 20  # updates between TensorBoard scalars
    checkpoint_interval: int = 500  # updates between checkpoints (last.pt)
    health_interval: int = 0  # updates between skill-health diagnostics (marl.diagnose); 0 = off
    health_episodes: int = 16  # episodes per training task for each of them
    threads: int = 0  # torch threads; 0 = all cores (per rank under torchrun)
    device: str = "cpu"
    compile: bool = False  # torch.compile the model's transformers
    deterministic: bool = False  # torch.use_deterministic_algorithms
    # Linux/glibc: allocations over 1 MB are mapped and returned to the OS when freed, instead
    # of fragmenting the heap (a paper-size marine-hard run: 2.4 -> 1.7 GB peak; some speed)
    release_memory: bool = False
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    model: Any = MISSING  # the algorithm's config dataclass


def _dotted_keys(cls, prefix: str = "") -> list[str]:
    out = []
    for f in fields(cls):
        key = f"{prefix}{f.name}"
        out.append(key)
        default = (f.default_factory() if f.default_factory is not dataclasses.MISSING
                   else f.default)
        if is_dataclass(default):
            out += _dotted_keys(type(default), key + ".")
    return out


def _schema(algo: str) -> DictConfig:
    algos = registry()
    if algo not in algos:
        close = difflib.get_close_matches(algo, list(algos), n=3)
        raise ConfigError(f"algo: unknown algorithm {algo!r}; known: {sorted(algos)}"
                          + (f" (did you mean {close[0]!r}?)" if close else ""))
    return OmegaConf.structured(TrainConfig(model=algos[algo].config()))


def valid_keys(algo: str) -> list[str]:
    return _dotted_keys(TrainConfig) + [f"model.{k}" for k in
                                        _dotted_keys(registry()[algo].config)]


def _explain(exc: OmegaConfBaseException, algo: str, source: str) -> ConfigError:
    key = getattr(exc, "full_key", None) or ""
    if isinstance(exc, ConfigKeyError) or "not in" in str(exc):
        keys = valid_keys(algo)
        close = difflib.get_close_matches(key, keys, n=3, cutoff=0.5)
        if not close:  # match the last part alone (a misspelt leaf)
            leaf = key.rsplit(".", 1)[-1]
            close = [k for k in keys if difflib.get_close_matches(leaf, [k.rsplit(".", 1)[-1]],
                                                                  cutoff=0.75)][:3]
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return ConfigError(f"{source}: unknown config key {key!r}{hint}")
    msg = str(exc).split("\n")[0]
    return ConfigError(f"{source}: bad value for {key!r}: {msg}")


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> DictConfig:
    """The run config: ``TrainConfig`` defaults, then the YAML file, then ``key=value``
    overrides (OmegaConf dotlist syntax)."""
    file_cfg = OmegaConf.create()
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        try:
            file_cfg = OmegaConf.load(p)
        except Exception as exc:  # YAML syntax
            raise ConfigError(f"{p}: not a valid YAML config: {' '.join(str(exc).split())}") from None
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
    try:
        cli_cfg = OmegaConf.from_dotlist(list(overrides))
    except OmegaConfBaseException as exc:
        raise ConfigError(f"overrides {list(overrides)}: {exc}") from None
    algo = str(OmegaConf.select(cli_cfg, "algo", default=None)
               or OmegaConf.select(file_cfg, "algo", default=None) or TrainConfig.algo)
    cfg = _schema(algo)
    for source, part in ((str(path), file_cfg), ("command line", cli_cfg)):
        try:
            cfg = OmegaConf.merge(cfg, part)
        except OmegaConfBaseException as exc:
            raise _explain(exc, algo, source) from None
    check(cfg)
    return cfg


HISTORY_ALGOS = ("hissd", "bc")  # the algorithms whose acting encoder reads past steps


def check(cfg: DictConfig) -> None:
    """Values the types cannot express."""
    def positive(key: str, allow_zero: bool = False):
        v = OmegaConf.select(cfg, key)
        if v < 0 or (v == 0 and not allow_zero):
            raise ConfigError(f"{key} must be {'>= 0' if allow_zero else '> 0'}, got {v}")

    for key in ("updates", "batch_size", "lr", "log_interval", "checkpoint_interval",
                "eval.episodes"):
        positive(key)
    for key in ("threads", "eval.interval", "weight_decay", "grad_clip", "health_interval",
                "health_episodes"):
        positive(key, allow_zero=True)
    for key, allowed in getattr(registry()[cfg.algo].config, "CHOICES", {}).items():
        if cfg.model[key] not in allowed:
            raise ConfigError(f"model.{key} must be one of {', '.join(map(repr, allowed))}, "
                              f"got {cfg.model[key]!r}")
    positive("model.history", allow_zero=True)
    for key in ("dim", "heads", "depth", "hidden"):
        if key in cfg.model:
            positive(f"model.{key}")
    if "heads" in cfg.model and cfg.model.dim % cfg.model.heads:
        raise ConfigError(f"model.heads={cfg.model.heads} must divide model.dim={cfg.model.dim} "
                          "(each attention head gets dim / heads features)")
    if cfg.data.episodes is not None:
        positive("data.episodes")
    check_device(cfg.device, "device")
    if cfg.model.history and cfg.algo not in HISTORY_ALGOS:
        raise ConfigError(f"model.history={cfg.model.history}: only {', '.join(HISTORY_ALGOS)} "
                          f"read past steps, {cfg.algo} does not (set model.history=0)")
    _check_family(cfg)
    if cfg.data.subset not in ("last", "random"):
        raise ConfigError(f"data.subset must be 'last' or 'random', got {cfg.data.subset!r}")


def check_device(device: str, option: str) -> str:
    """``device`` if torch can use it on this machine, else one ConfigError naming ``option``."""
    import torch

    try:
        kind = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"{option}={device!r} is not a torch device; use cpu, cuda or "
                          "cuda:N") from None
    usable = {"cpu": True, "cuda": torch.cuda.is_available(),
              "mps": torch.backends.mps.is_available()}
    if not usable.get(kind.type, False):
        have = [name for name, ok in usable.items() if ok]
        raise ConfigError(f"{option}={device!r}: no such device on this machine (usable: "
                          f"{', '.join(have)})")
    if kind.type == "cuda" and kind.index is not None and kind.index >= torch.cuda.device_count():
        raise ConfigError(f"{option}={device!r}: this machine has {torch.cuda.device_count()} "
                          "CUDA device(s)")
    return device


def _check_family(cfg: DictConfig) -> None:
    """ConfigError when the algorithm cannot act on the task set's family (a task set that does
    not load is left for the data loading to report)."""
    from envs.tasksets import load_taskset
    from marl.entity.families import entity_family

    try:
        family = load_taskset(str(cfg.data.taskset)).family
        discrete = entity_family(family).spec.discrete
    except UserError:
        return
    if not discrete and not registry()[cfg.algo].config.CONTINUOUS_ACTIONS:
        raise ConfigError(f"algo={cfg.algo} needs discrete actions, but task set "
                          f"{cfg.data.taskset!r} is {family} (continuous actions)")
    if cfg.model.get("joint_identity") and entity_family(family).identity_spec is None:
        raise ConfigError(f"model.joint_identity=true is for task families with joint tokens "
                          f"(mamujoco), not {family} (task set {cfg.data.taskset!r})")


def from_run(run_dir: str | Path) -> DictConfig:
    """The resolved config saved in a run folder."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a run folder: {path} does not exist")
    saved = OmegaConf.load(path)
    algo = saved.get("algo", TrainConfig.algo)
    try:
        return OmegaConf.merge(_schema(algo), saved)
    except OmegaConfBaseException as exc:
        raise _explain(exc, algo, str(path)) from None


def model_config(cfg: DictConfig):
    """The algorithm's config dataclass instance."""
    return OmegaConf.to_object(cfg.model)
