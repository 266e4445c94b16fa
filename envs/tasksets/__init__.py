"""Task sets: which tasks a run trains on and which unseen tasks it is evaluated on.

A task set is a YAML file in ``envs/tasksets/`` (or any path given directly)::

    name: marine-hard
    family: smac
    description: ...
    train_tasks: [smac:3m, smac:5m_vs_6m, smac:9m_vs_10m]
    test_tasks: [smac:3m, ..., smac:13m_vs_15m]   # may include the training tasks, as in ODIS
    qualities: [expert, medium, medium-expert, medium-replay]
    env_options: {}                               # simulator settings for every task of the set

Every task name is validated when the file is loaded (no simulator is started).
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from envs import FAMILIES, EnvError, split_task

# the shipped task sets are package data, beside this file ($MARL_TASKSETS: another folder)
TASKSET_DIR = Path(os.environ.get("MARL_TASKSETS", Path(__file__).resolve().parent))
REQUIRED_KEYS = ("name", "family", "train_tasks", "test_tasks", "qualities")
OPTIONAL_KEYS = ("description", "env_options", "behavior_policies")


@dataclass(frozen=True)
class TaskSet:
    name: str
    family: str
    train_tasks: tuple[str, ...]
    test_tasks: tuple[str, ...]
    qualities: tuple[str, ...]
    description: str = ""
    env_options: dict[str, Any] = field(default_factory=dict)
    # training task -> the shipped policy folder that collects its data, where it is not the
    # task's own (MuJoCo: one partition's expert drives another partition of the robot)
    behavior_policies: dict[str, str] = field(default_factory=dict)
    path: str = ""

    @property
    def unseen_tasks(self) -> tuple[str, ...]:
        """Test tasks that are not training tasks: the zero-shot generalisation targets."""
        return tuple(t for t in self.test_tasks if t not in self.train_tasks)


def list_tasksets() -> list[str]:
    return sorted(p.stem for p in TASKSET_DIR.glob("*.yaml"))


def validate_task(task: str) -> None:
    """Raise EnvError if ``task`` is not a valid ``family:map`` name."""
    family, map_name = split_task(task)
    family.parse_map(map_name)  # without building a simulator


def load_taskset(name_or_path: str) -> TaskSet:
    """Load a task set by name (``marine-hard``) or YAML path, validating every field."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = TASKSET_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            close = difflib.get_close_matches(str(name_or_path), list_tasksets(), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise EnvError(f"unknown task set {name_or_path!r}{hint}; known: {list_tasksets()} "
                           f"in {TASKSET_DIR}")
    if not path.exists():
        raise EnvError(f"task set file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise EnvError(f"task set file {path} is not valid YAML: {' '.join(str(err).split())}") from None
    if not isinstance(raw, dict):
        raise EnvError(f"task set file {path} must hold a mapping with keys {REQUIRED_KEYS}")
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    unknown = [k for k in raw if k not in REQUIRED_KEYS + OPTIONAL_KEYS]
    if missing or unknown:
        raise EnvError(f"task set file {path}: missing keys {missing}, unknown keys {unknown}; "
                       f"expected {list(REQUIRED_KEYS)} and optionally {list(OPTIONAL_KEYS)}")
    if raw["family"] not in FAMILIES:
        raise EnvError(f"task set file {path}: family {raw['family']!r} is not one of {sorted(FAMILIES)}")
    for key in ("train_tasks", "test_tasks", "qualities"):
        if not isinstance(raw[key], list) or not raw[key]:
            raise EnvError(f"task set file {path}: {key!r} must be a non-empty list")
    for task in raw["train_tasks"] + raw["test_tasks"]:
        try:
            validate_task(task)
        except EnvError as err:
            raise EnvError(f"task set file {path}: {err}") from None
        if split_task(task)[0].name != raw["family"]:
            raise EnvError(f"task set file {path}: task {task!r} is not in family {raw['family']!r}")
    behavior_policies = raw.get("behavior_policies") or {}
    if not isinstance(behavior_policies, dict) or not all(
            task in raw["train_tasks"] and isinstance(folder, str)
            for task, folder in behavior_policies.items()):
        raise EnvError(f"task set file {path}: 'behavior_policies' must map training tasks to "
                       f"policy folder names, got {behavior_policies!r}")
    return TaskSet(
        name=raw["name"], family=raw["family"], train_tasks=tuple(raw["train_tasks"]),
        test_tasks=tuple(raw["test_tasks"]), qualities=tuple(raw["qualities"]),
        description=raw.get("description", ""), env_options=dict(raw.get("env_options") or {}),
        behavior_policies=dict(behavior_policies), path=str(path),
    )
