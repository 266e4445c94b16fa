"""Where a data directory keeps each task's files, and whether a file was collected under the
simulator options a task set asks for. Collection writes by these rules and the loader reads
by them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import envs
from marl.data.errors import DatasetError
from marl.data.qualities import check_quality


def dataset_path(root: str | os.PathLike, task: str, quality: str,
                 env_options: Mapping[str, Any] | None = None) -> Path:
    """Where the dataset of ``task`` at ``quality`` lives under a data directory:
    ``root/<task with ':' replaced by '_'>/<quality>.h5`` (``smac:3m`` -> ``smac_3m``), the
    folder suffixed with ``+key=value`` per simulator option, in key order
    (``smac_3m+enemy_reaction=0.8``). An unknown task family raises EnvError, an unknown
    quality DatasetError; quality aliases (``medium_replay``) are spelled canonically."""
    envs.split_task(task)
    tag = "".join(f"+{key}={value}" for key, value in sorted((env_options or {}).items()))
    return Path(os.fspath(root)) / (task.replace(":", "_") + tag) / f"{check_quality(quality).name}.h5"


def odis_folder(root: str | os.PathLike, task: str, quality: str) -> Path | None:
    """ODIS's own layout under ``root``, as its datasets are distributed:
    ``root/<map>/<quality>/<run>/part_<k>.h5`` (quality spelt ``medium-replay`` or
    ``medium_replay``); the ``<map>/<quality>`` folder if it exists, else None."""
    _, map_name = envs.split_task(task)
    name = check_quality(quality).name
    for spelling in dict.fromkeys((name, name.replace("-", "_"))):
        folder = Path(os.fspath(root)) / map_name / spelling
        if folder.is_dir():
            return folder
    return None


def quality_paths(root: str | os.PathLike, task: str, quality: str,
                  env_options: Mapping[str, Any] | None = None) -> list[Path]:
    """The files that hold ``task`` at ``quality``: ``dataset_path(root, task, quality,
    env_options)`` or, failing that, ODIS's ``root/<map>/<quality>`` folder (``odis_folder``);
    for a mixed quality (``medium-expert``) that has neither, its components' (``medium`` and
    ``expert``), as ODIS loads it. DatasetError naming what is missing."""
    def find(q: str) -> Path | None:
        path = dataset_path(root, task, q, env_options)
        return path if path.exists() else odis_folder(root, task, q)

    found = find(quality)
    if found is not None:
        return [found]
    parts = [find(c) for c in check_quality(quality).components]
    if parts and all(p is not None for p in parts):
        return parts
    components = check_quality(quality).components
    also = (f" nor its components {list(components)}" if components else "")
    raise DatasetError(f"no dataset for {task} at quality {check_quality(quality).name!r}: "
                       f"{dataset_path(root, task, quality, env_options)} does not exist, nor "
                       f"ODIS's {Path(os.fspath(root)) / envs.split_task(task)[1] / quality}/ "
                       f"folder{also}")


def check_env_options(path: str | os.PathLike, task: str, expected: Mapping[str, Any],
                      attrs: dict | None = None) -> None:
    """DatasetError unless the file at ``path`` was collected under the simulator options
    ``expected`` (an option it does not record counts as the default; ODIS files, which record
    none, pass)."""
    attrs = peek_attrs(Path(path)) if attrs is None else attrs
    recorded = attrs.get("env_options")
    if recorded is None:
        return
    differ = _options_differ(task, attrs.get("backend"), recorded, expected)
    if differ:
        raise DatasetError(
            f"{path}: attribute 'env_options' records {recorded}, but data collected with "
            f"{dict(expected)} (the task set's simulator options) is expected; differing "
            f"(recorded, expected): {differ}. Collect it again with those options")


def _options_differ(task: str, backend: str | None, recorded: Mapping[str, Any],
                    expected: Mapping[str, Any]) -> dict[str, tuple]:
    """The simulator options on which ``recorded`` and ``expected`` differ, an absent option
    counting as the backend's default; keys that are not options (``simulator``) are ignored."""
    try:
        defaults = envs.option_defaults(task, backend)
    except envs.EnvError:
        return {}  # a backend this install does not know: read_dataset reports the file
    out = {}
    for key in sorted((set(recorded) | set(expected)) & set(defaults)):
        pair = (recorded.get(key, defaults[key]), expected.get(key, defaults[key]))
        if pair[0] != pair[1]:
            out[key] = pair
    return out


def peek_attrs(path: Path) -> dict:
    """The ``task``, ``family``, ``backend`` and ``env_options`` (decoded) attributes of an HDF5 file, without
    reading its arrays (empty for ODIS files, which have none; unreadable files are left to
    ``read_dataset``)."""
    try:
        import h5py

        with h5py.File(path, "r") as f:
            out = {}
            for name in ("task", "family", "backend", "env_options"):
                if name in f.attrs:
                    v = f.attrs[name]
                    out[name] = v.decode() if isinstance(v, bytes) else str(v)
            if "env_options" in out:
                try:
                    out["env_options"] = json.loads(out["env_options"])
                except ValueError:
                    del out["env_options"]  # read_dataset reports a malformed attribute
            return out
    except (OSError, KeyError, RuntimeError, ValueError, TypeError):
        return {}  # a damaged file: read_dataset says what is wrong with it
