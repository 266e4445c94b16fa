"""Reading and writing dataset files (schema in ``marl.data.schema``).

Files are gzip-compressed and chunked by episode (chunk ``(1, T, ...)``), and written to
``<path>.tmp-<pid>`` first, then renamed: an interrupted write never leaves a file that looks
complete. Files are read, checked and hashed in blocks of episodes, so a file is never held whole.
ODIS files (no attributes) are read too; their task comes from their path
``.../<map>/<quality>/<run>/part_<k>.h5`` or from ``task=``, and their layout from the task name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

import envs
from marl.data.checks import (
    Digests,
    check_episodes,
    check_key_block,
    check_semantics,
    compute_checksums,
)
from marl.data.errors import DatasetError
from marl.data.qualities import ALIASES, QUALITIES, check_quality
from marl.data.schema import (
    BLOCK_BYTES,
    COMPRESSION,
    JSON_ATTRS,
    PACKED_KEYS,
    PART_FILE,
    SCHEMA_VERSION,
    SMALL_KEYS,
    WON_KEY,
    EpisodeData,
    check_shapes,
    episode_lengths,
    jsonable,
    key_dtype,
    keys_for,
    layout_from_env_info,
    layout_from_task,
    transition_mask,
)


# ------------------------------------------------------------------------------------- writing
def _coerce(key: str, value: Any, dtype: np.dtype, where: str) -> np.ndarray:
    """``value`` as ``dtype`` when that loses nothing (bool/int -> int, any real -> float32);
    DatasetError for floats given where integers are expected or out-of-range integers."""
    arr = np.asarray(value)
    kind = arr.dtype.kind
    if dtype.kind == "f":
        if kind not in "biuf":
            raise DatasetError(f"{where}: key {key!r} has dtype {arr.dtype}; expected {dtype}")
        return np.ascontiguousarray(arr, dtype=dtype)
    if kind not in "biu":
        raise DatasetError(
            f"{where}: key {key!r} has dtype {arr.dtype}; expected {dtype} (integers)")
    if arr.size and kind != "b":
        info = np.iinfo(dtype)
        if arr.min() < info.min or arr.max() > info.max:
            raise DatasetError(f"{where}: key {key!r} has values outside the range of {dtype}")
    return np.ascontiguousarray(arr, dtype=dtype)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("marl")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        return "unknown"


def _float(x: Any) -> float:
    return float(np.round(float(x), 6))


def episode_statistics(lengths: np.ndarray, returns: np.ndarray,
                       wins: np.ndarray | None) -> dict:
    """The statistics attributes of a file (episode lengths counted in transitions)."""
    transitions = lengths - 1
    out = {
        "episodes": int(len(lengths)),
        "steps": int(transitions.sum()),
        "return_mean": _float(returns.mean()),
        "return_std": _float(returns.std()),
        "return_min": _float(returns.min()),
        "return_max": _float(returns.max()),
        "episode_length_mean": _float(transitions.mean()),
        "episode_length_min": int(transitions.min()),
        "episode_length_max": int(transitions.max()),
    }
    if wins is not None:
        out["win_rate"] = _float(np.mean(wins.astype(bool)))
    return out


def write_dataset(
    path: str | os.PathLike,
    arrays: dict[str, np.ndarray],
    *,
    task: str,
    backend: str,
    quality: str,
    behavior_policy: dict,
    seed: int,
    env_info=None,
    env_options: dict | None = None,
    battle_won: np.ndarray | None = None,
) -> None:
    """Validate ``arrays`` (ODIS keys, module doc) against the task's layout and write them to
    ``path`` with the schema-1 attributes, atomically (``<path>.tmp-<pid>`` then ``os.replace``;
    parent folders are created).

    The layout comes from ``env_info`` (an ``envs.core.EnvInfo``; its options are the default
    ``env_options``) or, when None, from the task name (``mamujoco`` builds the env once, since
    its sizes need the MuJoCo model). Values are converted to the format's dtypes where nothing
    is lost (bool masks to int32, bool flags to uint8, ...). ``battle_won`` (bool ``[E]``) is
    SMAC's per-episode outcome and gives the ``win_rate`` attribute. Raises DatasetError."""
    path = os.fspath(path)
    where = path
    quality_def = _checked_quality(quality, where)
    if not isinstance(behavior_policy, dict) or "id" not in behavior_policy:
        raise DatasetError(f"{where}: behavior_policy must be a dict with at least an 'id' "
                           f"(plus provenance), got {behavior_policy!r}")
    try:
        family, _ = envs.split_task(task)
    except envs.EnvError as exc:
        raise DatasetError(f"{where}: {exc}") from None
    if backend not in family.backends:
        raise DatasetError(f"{where}: backend {backend!r} is not one of {family.name}'s "
                           f"backends {sorted(family.backends)}")
    if battle_won is not None and family.name != "smac":
        raise DatasetError(f"{where}: key {WON_KEY!r} is for SMAC tasks only, not {task}")
    if env_info is not None:
        if env_info.task != task or env_info.backend != backend:
            raise DatasetError(f"{where}: env_info describes {env_info.task} on "
                               f"{env_info.backend}, but task={task!r} backend={backend!r}")
        env_options = dict(env_info.options) if env_options is None else dict(env_options)
        layout = layout_from_env_info(env_info)
    else:
        env_options = dict(env_options or {})
        layout = _layout_for(task, env_options, where)
        if layout["obs_dim"] is None:  # mamujoco: sizes need the model
            env = envs.make(task, backend=backend, num_envs=1, seed=0, **env_options)
            try:
                layout = layout_from_env_info(env.info)
            finally:
                env.close()
    static = _layout_for(task, env_options, where)
    _check_layout_against_task(layout, static, where, task, "env_info")

    action_type = layout["action_type"]
    required = keys_for(action_type)
    missing = [k for k in required if k not in arrays]
    extra = sorted(set(arrays) - set(required))
    if missing or extra:
        raise DatasetError(
            f"{where}: key {(missing or extra)[0]!r} is {'missing' if missing else 'unexpected'};"
            f" a {action_type}-action dataset has exactly the keys {list(required)}")
    data = {k: _coerce(k, arrays[k], key_dtype(k, action_type), where) for k in required}
    check_shapes(data, layout, where, task)
    n_episodes, n_steps = data["filled"].shape[:2]
    if n_episodes < 1:
        raise DatasetError(f"{where}: key 'filled' has 0 episodes; expected at least 1")
    if n_steps != layout["episode_limit"] + 1:
        raise DatasetError(
            f"{where}: key 'filled' has {n_steps} steps per episode; expected episode_limit + 1 "
            f"= {layout['episode_limit'] + 1} for {task} (pad shorter episodes with zeros)")
    won = None
    if battle_won is not None:
        won = _coerce(WON_KEY, battle_won, np.dtype(np.uint8), where)
        if won.shape != (n_episodes,) or not np.isin(won, (0, 1)).all():
            raise DatasetError(f"{where}: key {WON_KEY!r} has shape {won.shape}; expected "
                               f"({n_episodes},) booleans, one per episode")
    check_semantics(data, layout, where, won)

    lengths = episode_lengths(data["filled"])
    reward = data["reward"][..., 0].astype(np.float64)
    returns = (reward * transition_mask(data["filled"])).sum(1)
    stats = episode_statistics(lengths, returns, won)
    hashed = dict(data)
    if won is not None:
        hashed[WON_KEY] = won
    checksum, checksums = compute_checksums(hashed)
    attrs: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "task": task,
        "family": family.name,
        "backend": backend,
        "layout": layout,
        "env_options": jsonable(env_options),
        "quality": quality_def.name,
        "quality_definition": quality_def.as_dict(),
        "behavior_policy": jsonable(behavior_policy),
        **stats,
        "seed": int(seed),
        "created_by": f"marl {_version()}",
        "checksum": checksum,
        "checksums": checksums,
    }

    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    import h5py

    try:
        with h5py.File(tmp, "w") as f:
            for key, arr in hashed.items():
                chunks = (1, *arr.shape[1:]) if arr.ndim > 1 else (min(len(arr), 65536),)
                f.create_dataset(key, data=arr, chunks=chunks, **COMPRESSION)
            for name, value in attrs.items():
                f.attrs[name] = json.dumps(value) if name in JSON_ATTRS else value
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise


def _layout_for(task: str, env_options: dict | None, where: str) -> dict:
    """``layout_from_task`` with the file named in its error."""
    try:
        return layout_from_task(task, env_options)
    except DatasetError as exc:
        raise DatasetError(f"{where}: {exc}") from None


def _checked_quality(name: Any, where: str):
    try:
        return check_quality(name)
    except DatasetError as exc:
        raise DatasetError(f"{where}: attribute 'quality': {exc}") from None


def _check_layout_against_task(layout: dict, static: dict, where: str, task: str,
                               source: str) -> None:
    for key in ("n_agents", "obs_dim", "state_dim", "n_actions", "action_type"):
        if static.get(key) is not None and layout.get(key) != static[key]:
            raise DatasetError(
                f"{where}: {source} says {key}={layout.get(key)!r}, but {task} has "
                f"{key}={static[key]!r}")


# ------------------------------------------------------------------------------------- reading
def _infer_from_path(file: Path) -> tuple[str | None, str | None]:
    """(map name, quality folder) of an ODIS path ``.../<map>/<quality>/<run>/part_<k>.h5``."""
    parts = file.absolute().parts
    if len(parts) < 4:
        return None, None
    return parts[-4], parts[-3]


def _task_from_map(map_name: str) -> str | None:
    """The task an ODIS map folder name denotes: the first family whose map names include it."""
    for family in envs.FAMILIES.values():
        try:
            family.parse_map(map_name)
        except envs.EnvError:
            continue
        return f"{family.name}:{map_name}"
    return None


def _decode_attrs(raw: dict, where: str) -> dict:
    out: dict[str, Any] = {}
    for name, value in raw.items():
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, np.generic):
            value = value.item()
        elif isinstance(value, np.ndarray):
            value = value.tolist()
        if name in JSON_ATTRS and isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise DatasetError(
                    f"{where}: attribute {name!r} is not valid JSON ({exc})") from None
        out[name] = value
    return out


def _load(dataset, where: str, selection=()) -> np.ndarray:
    """``dataset[selection]`` (all of it by default); an unreadable chunk is a DatasetError
    naming the key."""
    try:
        return dataset[selection]
    except OSError as exc:
        raise DatasetError(
            f"{where}: cannot read key {dataset.name.lstrip('/')!r}: the file is truncated or "
            f"corrupt (h5py: {exc}); expected a complete marl/ODIS dataset file") from None


def _read_file(file: Path, task: str | None, quality: str | None, verify: bool,
               packed: bool) -> EpisodeData:
    import h5py

    try:
        with h5py.File(file, "r") as f:
            stored = {k: f[k] for k in f.keys() if isinstance(f[k], h5py.Dataset)}
            return _read_open(str(file), dict(f.attrs), stored, task, quality, verify, packed)
    except OSError as exc:
        raise DatasetError(
            f"{file}: cannot read the file: the file is truncated or corrupt, or not HDF5 "
            f"(h5py: {exc}); expected a complete marl/ODIS dataset file") from None


def _read_open(where: str, raw: dict, stored: dict, task: str | None, quality: str | None,
               verify: bool, packed: bool) -> EpisodeData:
    """``_read_file`` on an open file: ``stored`` maps each key to its h5py dataset. The small
    keys are read whole; the others are read in blocks of about ``BLOCK_BYTES``, each block
    hashed, checked and stored (packed to its filled steps when ``packed``) before the next is
    read, so the padded array is never held whole in packed mode. A broken convention is
    reported after the checksum, which names a damaged key more precisely."""
    attrs = _decode_attrs(raw, where)
    ours = "schema_version" in attrs
    if ours:
        version = attrs["schema_version"]
        if not isinstance(version, int) or version > SCHEMA_VERSION or version < 1:
            raise DatasetError(f"{where}: attribute 'schema_version' is {version!r}; this marl "
                               f"reads schema versions 1..{SCHEMA_VERSION}")
        for name in ("task", "layout", "quality"):
            if name not in attrs:
                raise DatasetError(f"{where}: attribute {name!r} is missing; expected it in every "
                                   f"schema-{version} file")
        if task is not None and task != attrs["task"]:
            raise DatasetError(f"{where}: attribute 'task' is {attrs['task']!r}, but task={task!r} "
                               "was asked for")
        task = attrs["task"]
        quality_def = _checked_quality(attrs["quality"], where)
        attrs["quality"] = quality_def.name
        attrs.setdefault("quality_definition", quality_def.as_dict())
        layout = attrs["layout"]
        if not isinstance(layout, dict):
            raise DatasetError(f"{where}: attribute 'layout' is {layout!r}; expected a JSON object")
        static = _layout_for(task, attrs.get("env_options"), where)
        _check_layout_against_task(layout, static, where, task, "attribute 'layout'")
    else:
        map_name, path_quality = _infer_from_path(Path(where))
        inferred = task is None
        if inferred:
            task = _task_from_map(map_name) if map_name else None
            if task is None:
                raise DatasetError(
                    f"{where}: cannot tell the task: the file has no attributes and its path is "
                    "not ODIS's .../<map>/<quality>/<run>/part_<k>.h5 with a known map; pass "
                    "task='family:map'")
        if quality is None and path_quality is not None:
            if inferred or (path_quality in QUALITIES or path_quality in ALIASES):
                quality = path_quality
        layout = _layout_for(task, None, where)
        attrs = {"task": task, "family": task.split(":")[0], "layout": layout,
                 "source_format": "odis", "schema_version": None}
        if quality is not None:
            quality_def = _checked_quality(quality, where)
            attrs["quality"] = quality_def.name
            attrs["quality_definition"] = quality_def.as_dict()
        else:
            attrs["quality"] = None
    if ours and quality is not None and _checked_quality(quality, where).name != attrs["quality"]:
        raise DatasetError(f"{where}: attribute 'quality' is {attrs['quality']!r}, but "
                           f"quality={quality!r} was asked for")

    action_type = layout.get("action_type", "discrete")
    required = keys_for(action_type)
    for key in required:
        if key not in stored:
            raise DatasetError(
                f"{where}: key {key!r} is missing; a {action_type}-action dataset of {task} needs "
                f"the keys {list(required)} (found {sorted(stored)})")
    for key in required:
        want = key_dtype(key, action_type)
        if stored[key].dtype != want and verify and ours:
            raise DatasetError(f"{where}: key {key!r} has dtype {stored[key].dtype}; "
                               f"expected {want}")
    check_shapes(stored, layout, where, task)
    n_episodes, n_steps = stored["filled"].shape[:2]
    if ours and layout.get("episode_limit") is not None and n_steps != layout["episode_limit"] + 1:
        raise DatasetError(f"{where}: key 'filled' has {n_steps} steps; expected episode_limit + 1"
                           f" = {layout['episode_limit'] + 1} (attribute 'layout')")
    won = _load(stored[WON_KEY], where) if WON_KEY in stored else None
    if won is not None and won.shape != (n_episodes,):
        raise DatasetError(f"{where}: key {WON_KEY!r} has shape {won.shape}; expected "
                           f"({n_episodes},)")

    def typed(key: str, arr: np.ndarray) -> np.ndarray:
        want = key_dtype(key, action_type)
        return arr if arr.dtype == want else _coerce(key, arr, want, where)

    small = {key: typed(key, _load(stored[key], where)) for key in SMALL_KEYS if key in required}
    digests = Digests() if verify and ours and "checksum" in attrs else None
    problem: DatasetError | None = None

    def check(fn, *args) -> None:
        nonlocal problem
        if verify and problem is None:
            try:
                fn(*args)
            except DatasetError as exc:
                problem = exc

    def check_key(key: str, block: np.ndarray, first: int) -> None:
        last = first + len(block)
        check(check_key_block, key, block, small["filled"][first:last], small["actions"][first:last],
              n_actions, layout, where, first)

    n_actions = stored["avail_actions"].shape[-1] if "avail_actions" in stored else None
    check(check_episodes, small, where, won)
    filled = small["filled"][..., 0].astype(bool)
    rows = np.concatenate([[0], np.cumsum(filled.sum(1))])  # first row of each episode
    to_pack = tuple(k for k in PACKED_KEYS if k in required) if packed else ()
    arrays: dict[str, np.ndarray] = {}
    for key in sorted(required + ((WON_KEY,) if won is not None else ())):
        if key in small or key == WON_KEY:
            arr = small.get(key, won)
            if digests:
                digests.start(key, arr.dtype, arr.shape)
                digests.update(arr)
                digests.finish()
            if key in small:
                check_key(key, arr, 0)
                arrays[key] = arr
            continue
        dataset, want = stored[key], key_dtype(key, action_type)
        step_bytes = int(np.prod(dataset.shape[2:], dtype=np.int64)) * want.itemsize
        per_block = max(1, BLOCK_BYTES // max(1, n_steps * step_bytes))
        out = np.empty((int(rows[-1]), *dataset.shape[2:]) if key in to_pack else dataset.shape,
                       dtype=want)
        if digests:
            digests.start(key, want, dataset.shape)
        for a in range(0, n_episodes, per_block):
            b = min(a + per_block, n_episodes)
            block = typed(key, _load(dataset, where, np.s_[a:b]))
            if digests:
                digests.update(block)
            check_key(key, block, a)
            if key in to_pack:
                out[rows[a]:rows[b]] = block[filled[a:b]]
            else:
                out[a:b] = block
        if digests:
            digests.finish()
        arrays[key] = out
    if digests:
        total, per_key = digests.result()
        if total != attrs["checksum"]:
            stored_keys = attrs.get("checksums") or {}
            bad = [k for k in sorted(per_key) if stored_keys.get(k) != per_key[k]]
            bad_key = bad[0] if bad else "checksum"
            raise DatasetError(
                f"{where}: key {bad_key!r}: checksum mismatch (the data hash to {total}, the "
                f"file's 'checksum' attribute says {attrs['checksum']}); the file was modified"
                " or corrupted after it was written")
    if problem is not None:
        raise problem
    return EpisodeData(arrays=arrays, attrs=attrs, path=where, packed=to_pack,
                       battle_won=None if won is None else won.astype(bool))


def _part_files(folder: Path) -> list[Path]:
    parts = [(int(m.group(1)), p) for p in folder.iterdir()
             if p.is_file() and (m := PART_FILE.match(p.name))]
    return [p for _, p in sorted(parts)]


def read_dataset(path: str | os.PathLike, task: str | None = None, verify: bool = True,
                 quality: str | None = None, packed: bool = False) -> EpisodeData:
    """Read a dataset file (ours or ODIS's) or an ODIS folder.

    A folder holding ``part_*.h5`` files is read part by part (numeric order) and concatenated,
    as ODIS does; a ``<map>/<quality>`` folder uses its lexicographically last run folder. For
    files without attributes (ODIS) the task comes from ``task=`` or the path, the quality from
    the path or ``quality=``, and the layout from the task name (no simulator is started).

    Always checks that every key is present and the shapes agree with each other and with the
    layout (n_agents, obs_dim, state_dim, n_actions) and that the quality is known; ``verify``
    adds the checksum and the EpisodeBatch conventions (``check_semantics``). Every failure is
    a DatasetError naming the file, the key and what was expected.

    ``packed=True`` keeps only the filled steps of the large keys (``EpisodeData.packed``): the
    file is read in blocks of episodes, so memory follows the real episode lengths and the
    padded arrays are never held whole (what the training loader uses)."""
    p = Path(os.fspath(path))
    if not p.exists():
        raise DatasetError(f"{p}: no such file or folder; expected a marl dataset file (.h5) or "
                           "an ODIS folder with part_<k>.h5 files")
    if p.is_file():
        return _read_file(p, task, quality, verify, packed)
    files = _part_files(p)
    folder = p
    if not files:
        runs = sorted(d for d in p.iterdir() if d.is_dir() and _part_files(d))
        if not runs:
            raise DatasetError(f"{p}: folder has no part_<k>.h5 files nor run folders holding "
                               "them; expected an ODIS <map>/<quality>[/<run>] folder")
        folder = runs[-1]
        files = _part_files(folder)
    datas = [_read_file(f, task, quality, verify, packed) for f in files]
    first = datas[0]
    for d in datas[1:]:
        if d.task != first.task or d.quality != first.quality:
            raise DatasetError(f"{d.path}: attribute 'task' is {d.task!r} ({d.quality}), but "
                               f"{first.path} has {first.task!r} ({first.quality}); the parts "
                               "of one folder must hold one task and quality")
    if len(datas) == 1:
        arrays = first.arrays
    else:
        arrays = concat_episodes(datas)
    wins = [d.battle_won for d in datas]
    won = np.concatenate(wins) if all(w is not None for w in wins) else None
    attrs = dict(first.attrs)
    attrs["parts"] = [d.path for d in datas]
    if len(datas) > 1:
        attrs["episodes"] = int(sum(d.n_episodes for d in datas))
        for name in ("checksum", "checksums"):
            attrs.pop(name, None)
    return EpisodeData(arrays=arrays, attrs=attrs, path=str(folder), battle_won=won,
                       packed=first.packed)


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
