"""ODIS's files: their folders (``<map>/<quality>/<run>/part_<k>.h5``), what a file without
attributes is (task and quality from its path, layout from the task name), and joining the
parts of a folder into one set of episodes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import envs
from marl.data.errors import DatasetError
from marl.data.qualities import ALIASES, QUALITIES, checked_quality
from marl.data.schema import PART_FILE, EpisodeData, layout_for


def infer_from_path(file: Path) -> tuple[str | None, str | None]:
    """(map name, quality folder) of an ODIS path ``.../<map>/<quality>/<run>/part_<k>.h5``."""
    parts = file.absolute().parts
    if len(parts) < 4:
        return None, None
    return parts[-4], parts[-3]


def task_from_map(map_name: str) -> str | None:
    """The task an ODIS map folder name denotes: the first family whose map names include it."""
    for family in envs.FAMILIES.values():
        try:
            family.parse_map(map_name)
        except envs.EnvError:
            continue
        return f"{family.name}:{map_name}"
    return None





def part_files(folder: Path) -> list[Path]:
    parts = [(int(m.group(1)), p) for p in folder.iterdir()
             if p.is_file() and (m := PART_FILE.match(p.name))]
    return [p for _, p in sorted(parts)]


def odis_header(where: str, task: str | None, quality: str | None) -> tuple[dict, str, dict]:
    """(attributes, task, layout) of an ODIS file, which has no attributes: the task from
    ``task`` or the path, the quality from the path or ``quality``, the layout from the task."""
    map_name, path_quality = infer_from_path(Path(where))
    inferred = task is None
    if inferred:
        task = task_from_map(map_name) if map_name else None
        if task is None:
            raise DatasetError(
                f"{where}: cannot tell the task: the file has no attributes and its path is "
                "not ODIS's .../<map>/<quality>/<run>/part_<k>.h5 with a known map; pass "
                "task='family:map'")
    if quality is None and path_quality is not None:
        if inferred or (path_quality in QUALITIES or path_quality in ALIASES):
            quality = path_quality
    layout = layout_for(task, None, where)
    attrs = {"task": task, "family": task.split(":")[0], "layout": layout,
             "source_format": "odis", "schema_version": None, "quality": None}
    if quality is not None:
        quality_def = checked_quality(quality, where)
        attrs["quality"] = quality_def.name
        attrs["quality_definition"] = quality_def.as_dict()
    return attrs, task, layout


def concat_episodes(datas: list[EpisodeData]) -> dict[str, np.ndarray]:
    """The episodes of ``datas`` in order, as one dict of arrays padded with zeros to the longest
    T (``packed`` keys, which have no padding, are stacked as they are). All must have the same
    keys, packed keys and per-step shapes (n_agents, obs_dim, ...)."""
    if not datas:
        raise DatasetError("concat_episodes: no datasets given")
    keys = sorted(datas[0].arrays)
    n_steps = max(d.arrays["filled"].shape[1] for d in datas)
    for d in datas[1:]:
        if sorted(d.arrays) != keys:
            raise DatasetError(f"{d.path}: keys {sorted(d.arrays)} differ from {datas[0].path}'s "
                               f"{keys}; cannot concatenate discrete and continuous datasets")
        if d.packed != datas[0].packed:
            raise DatasetError(f"{d.path}: packed keys {d.packed} differ from {datas[0].path}'s "
                               f"{datas[0].packed}; read both the same way")
        for key in keys:
            a, b = d.arrays[key], datas[0].arrays[key]
            step = 1 if key in d.packed else 2  # the first per-step axis
            if a.shape[step:] != b.shape[step:] or a.dtype != b.dtype:
                raise DatasetError(
                    f"{d.path}: key {key!r} has per-step shape {a.shape[step:]} {a.dtype}, but "
                    f"{datas[0].path} has {b.shape[step:]} {b.dtype}; cannot concatenate")
    out = {}
    for key in keys:
        pieces = []
        for d in datas:
            arr = d.arrays[key]
            if key not in d.packed and arr.shape[1] < n_steps:
                pad = [(0, 0)] * arr.ndim
                pad[1] = (0, n_steps - arr.shape[1])
                arr = np.pad(arr, pad)
            pieces.append(arr)
        out[key] = np.concatenate(pieces, axis=0)
    return out
