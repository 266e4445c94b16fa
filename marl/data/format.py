"""Reading and writing dataset files (schema in ``marl.data.schema``).

Files are gzip-compressed and chunked by episode (chunk ``(1, T, ...)``), and written to
``<path>.tmp-<pid>`` first, then renamed: an interrupted write never leaves a file that looks
complete. Files are read, checked and hashed in blocks of episodes, so a file is never held whole.
ODIS files (no attributes) are read too; their task comes from their path
``.../<map>/<quality>/<run>/part_<k>.h5`` or from ``task=``, and their layout from the task name.

Why this file is long (about 530 lines): reading and writing are the two halves of one format
and share its dtype coercion, attribute decoding and layout checks; the schema, conventions,
ODIS files and the card are in their own modules.
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
from marl.data.odis import concat_episodes, odis_header, part_files
from marl.data.qualities import checked_quality
from marl.data.schema import (MEANING_ATTRS, layout_for, 
    BLOCK_BYTES,
    COMPRESSION,
    JSON_ATTRS,
    PACKED_KEYS,
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
    quality_def = checked_quality(quality, where)
    if not isinstance(behavior_policy, dict) or "id" not in behavior_policy:
        raise DatasetError(f"{where}: behavior_policy must be a dict with at least an 'id' "
                           f"(plus provenance), got {behavior_policy!r}")
    family, layout, env_options = _resolve_layout(where, task, backend, env_info, env_options,
                                                  battle_won is not None)
    data, won = _coerce_all(where, arrays, layout, task, battle_won)
    check_semantics(data, layout, where, won)

    lengths = episode_lengths(data["filled"])
    reward = data["reward"][..., 0].astype(np.float64)
    returns = (reward * transition_mask(data["filled"])).sum(1)
    hashed = dict(data)
    if won is not None:
        hashed[WON_KEY] = won
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
        **episode_statistics(lengths, returns, won),
        "seed": int(seed),
        "created_by": f"marl {_version()}",
    }
    # hashed as a reader decodes them: JSON attributes round-tripped
    meaning = {k: json.loads(json.dumps(attrs[k])) if k in JSON_ATTRS else attrs[k]
               for k in MEANING_ATTRS}
    attrs["checksum"], attrs["checksums"] = compute_checksums(hashed, meaning)
    _atomic_h5_write(path, hashed, attrs)


def _resolve_layout(where: str, task: str, backend: str, env_info, env_options: dict | None,
                    has_wins: bool) -> tuple[envs.Family, dict, dict]:
    """(family, layout, env options) of the file to write: from ``env_info`` when given, else
    from the task name (MuJoCo sizes need its model: the env is built once), checked against
    what the task name says."""
    try:
        family, _ = envs.split_task(task)
    except envs.EnvError as exc:
        raise DatasetError(f"{where}: {exc}") from None
    if backend not in family.backends:
        raise DatasetError(f"{where}: backend {backend!r} is not one of {family.name}'s "
                           f"backends {sorted(family.backends)}")
    if has_wins and not family.reports_wins:
        raise DatasetError(f"{where}: key {WON_KEY!r} is for tasks that end won or lost "
                           f"(families {sorted(f for f, v in envs.FAMILIES.items() if v.reports_wins)}), "
                           f"not {task}")
    if env_info is not None:
        if env_info.task != task or env_info.backend != backend:
            raise DatasetError(f"{where}: env_info describes {env_info.task} on "
                               f"{env_info.backend}, but task={task!r} backend={backend!r}")
        env_options = dict(env_info.options) if env_options is None else dict(env_options)
        layout = layout_from_env_info(env_info)
    else:
        env_options = dict(env_options or {})
        layout = layout_for(task, env_options, where)
        if layout["obs_dim"] is None:  # mamujoco: sizes need the model
            env = envs.make(task, backend=backend, num_envs=1, seed=0, **env_options)
            try:
                layout = layout_from_env_info(env.info)
            finally:
                env.close()
    static = layout_for(task, env_options, where)
    _check_layout_against_task(layout, static, where, task, "env_info")
    return family, layout, env_options


def _coerce_all(where: str, arrays: dict[str, np.ndarray], layout: dict, task: str,
                battle_won: np.ndarray | None) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Exactly the keys of the layout's action type, in the format's dtypes, with shapes that
    fit the layout, and ``battle_won`` as uint8 ``[E]``."""
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
    return data, won


def _atomic_h5_write(path: str, arrays: dict[str, np.ndarray], attrs: dict) -> None:
    """``arrays`` and ``attrs`` to ``path`` through ``<path>.tmp-<pid>``, synced, then renamed:
    an interrupted write never leaves a file that looks complete."""
    import h5py

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with h5py.File(tmp, "w") as f:
            for key, arr in arrays.items():
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


def _check_layout_against_task(layout: dict, static: dict, where: str, task: str,
                               source: str) -> None:
    for key in ("n_agents", "obs_dim", "state_dim", "n_actions", "action_type"):
        if static.get(key) is not None and layout.get(key) != static[key]:
            raise DatasetError(
                f"{where}: {source} says {key}={layout.get(key)!r}, but {task} has "
                f"{key}={static[key]!r}")


# ------------------------------------------------------------------------------------- reading
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


# What h5py raises on a damaged file, depending on which of its structures the damage hit
H5_ERRORS = (OSError, KeyError, RuntimeError, ValueError, TypeError)


def _load(dataset, where: str, selection=()) -> np.ndarray:
    """``dataset[selection]`` (all of it by default); an unreadable chunk is a DatasetError
    naming the key."""
    try:
        return dataset[selection]
    except H5_ERRORS as exc:
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
    except DatasetError:
        raise
    except H5_ERRORS as exc:
        raise DatasetError(
            f"{file}: cannot read the file: the file is truncated or corrupt, or not HDF5 "
            f"(h5py: {exc}); expected a complete marl/ODIS dataset file") from None


def _read_open(where: str, raw: dict, stored: dict, task: str | None, quality: str | None,
               verify: bool, packed: bool) -> EpisodeData:
    """``_read_file`` on an open file: ``stored`` maps each key to its h5py dataset. A broken
    convention is reported after the checksum, which names a damaged key more precisely."""
    attrs = _decode_attrs(raw, where)
    ours = "schema_version" in attrs
    if ours:
        attrs, task, layout = _our_header(attrs, where, task, quality)
    else:
        attrs, task, layout = odis_header(where, task, quality)
    won = _check_stored(stored, layout, where, task, ours, verify)
    for name in ("checksum", "checksums") if verify and ours else ():
        if name not in attrs:
            raise DatasetError(f"{where}: attribute {name!r} is missing; every marl file "
                               "records it, so this file was altered after it was written")
    reader = _BlockReader(stored, layout, where, won, verify, checksum=verify and ours,
                          packed=packed)
    arrays = reader.read()
    if reader.digests:
        if attrs["schema_version"] >= 2:
            reader.digests.add_attributes(attrs)
        _compare_checksums(reader.digests, attrs, where)
    if reader.problem is not None:
        raise reader.problem
    return EpisodeData(arrays=arrays, attrs=attrs, path=where, packed=reader.to_pack,
                       battle_won=None if won is None else won.astype(bool))


def _our_header(attrs: dict, where: str, task: str | None,
                quality: str | None) -> tuple[dict, str, dict]:
    """(attributes, task, layout) of a marl file, each attribute checked against the schema,
    the task's own layout and what the caller asked for."""
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
    quality_def = checked_quality(attrs["quality"], where)
    attrs["quality"] = quality_def.name
    attrs.setdefault("quality_definition", quality_def.as_dict())
    layout = attrs["layout"]
    if not isinstance(layout, dict):
        raise DatasetError(f"{where}: attribute 'layout' is {layout!r}; expected a JSON object")
    static = layout_for(task, attrs.get("env_options"), where)
    _check_layout_against_task(layout, static, where, task, "attribute 'layout'")
    if quality is not None and checked_quality(quality, where).name != attrs["quality"]:
        raise DatasetError(f"{where}: attribute 'quality' is {attrs['quality']!r}, but "
                           f"quality={quality!r} was asked for")
    return attrs, task, layout


def _check_stored(stored: dict, layout: dict, where: str, task: str, ours: bool,
                  verify: bool) -> np.ndarray | None:
    """Every key present with its dtype and a shape that fits the layout; returns the
    ``battle_won`` array where the file has one."""
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
    return won


class _BlockReader:
    """Reads a file's keys: the small ones whole, the others in blocks of about ``BLOCK_BYTES``,
    each block hashed (``checksum``), checked (``verify``) and stored, packed to its filled
    steps for ``PACKED_KEYS`` when ``packed``, before the next is read: the padded array is never
    held whole in packed mode. The first broken convention is kept in ``problem``."""

    def __init__(self, stored: dict, layout: dict, where: str, won: np.ndarray | None,
                 verify: bool, checksum: bool, packed: bool):
        self.stored, self.layout, self.where, self.won, self.verify = (stored, layout, where,
                                                                       won, verify)
        self.action_type = layout.get("action_type", "discrete")
        self.required = keys_for(self.action_type)
        self.digests = Digests() if checksum else None
        self.problem: DatasetError | None = None
        self.small = {key: self._typed(key, _load(stored[key], where)) for key in SMALL_KEYS
                      if key in self.required}
        self.n_actions = (stored["avail_actions"].shape[-1] if "avail_actions" in stored
                          else None)
        filled = self.small["filled"][..., 0].astype(bool)
        self.filled = filled
        self.rows = np.concatenate([[0], np.cumsum(filled.sum(1))])  # each episode's first row
        self.to_pack = (tuple(k for k in PACKED_KEYS if k in self.required) if packed else ())

    def _typed(self, key: str, arr: np.ndarray) -> np.ndarray:
        want = key_dtype(key, self.action_type)
        return arr if arr.dtype == want else _coerce(key, arr, want, self.where)

    def _check(self, fn, *args) -> None:
        if self.verify and self.problem is None:
            try:
                fn(*args)
            except DatasetError as exc:
                self.problem = exc

    def _check_block(self, key: str, block: np.ndarray, first: int) -> None:
        last = first + len(block)
        self._check(check_key_block, key, block, self.small["filled"][first:last],
                    self.small["actions"][first:last], self.n_actions, self.layout, self.where,
                    first)

    def read(self) -> dict[str, np.ndarray]:
        self._check(check_episodes, self.small, self.where, self.won)
        arrays: dict[str, np.ndarray] = {}
        for key in sorted(self.required + ((WON_KEY,) if self.won is not None else ())):
            if key in self.small or key == WON_KEY:
                arrays[key] = self._read_whole(key)
            else:
                arrays[key] = self._read_blocks(key)
        arrays.pop(WON_KEY, None)  # returned as EpisodeData.battle_won
        return arrays

    def _read_whole(self, key: str) -> np.ndarray:
        arr = self.small.get(key, self.won)
        if self.digests:
            self.digests.start(key, arr.dtype, arr.shape)
            self.digests.update(arr)
            self.digests.finish()
        if key in self.small:
            self._check_block(key, arr, 0)
        return arr

    def _read_blocks(self, key: str) -> np.ndarray:
        dataset, want = self.stored[key], key_dtype(key, self.action_type)
        n_episodes, n_steps = dataset.shape[:2]
        step_bytes = int(np.prod(dataset.shape[2:], dtype=np.int64)) * want.itemsize
        per_block = max(1, BLOCK_BYTES // max(1, n_steps * step_bytes))
        rows = self.rows
        out = np.empty((int(rows[-1]), *dataset.shape[2:]) if key in self.to_pack
                       else dataset.shape, dtype=want)
        if self.digests:
            self.digests.start(key, want, dataset.shape)
        for a in range(0, n_episodes, per_block):
            b = min(a + per_block, n_episodes)
            block = self._typed(key, _load(dataset, self.where, np.s_[a:b]))
            if self.digests:
                self.digests.update(block)
            self._check_block(key, block, a)
            if key in self.to_pack:
                out[rows[a]:rows[b]] = block[self.filled[a:b]]
            else:
                out[a:b] = block
        if self.digests:
            self.digests.finish()
        return out


def _compare_checksums(digests: Digests, attrs: dict, where: str) -> None:
    """DatasetError naming the first key whose hash differs from the file's record."""
    total, per_key = digests.result()
    if total != attrs["checksum"]:
        stored_keys = attrs.get("checksums") or {}
        gone = sorted(set(stored_keys) - set(per_key) - {"attributes"})
        if gone:
            raise DatasetError(f"{where}: key {gone[0]!r} is missing; the file's 'checksums' "
                               "record it, so it was deleted after the file was written")
        bad = [k for k in sorted(per_key) if stored_keys.get(k) != per_key[k]]
        bad_key = bad[0] if bad else "checksum"
        if bad_key == "attributes":
            raise DatasetError(
                f"{where}: the attributes {', '.join(MEANING_ATTRS)} do not hash to the file's "
                "'checksums'; one of them was changed after the file was written (data from "
                "another task, simulator or opponent must not pass for this one)")
        raise DatasetError(
            f"{where}: key {bad_key!r}: checksum mismatch (the data hash to {total}, the "
            f"file's 'checksum' attribute says {attrs['checksum']}); the file was modified"
            " or corrupted after it was written")


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
    files = part_files(p)
    folder = p
    if not files:
        runs = sorted(d for d in p.iterdir() if d.is_dir() and part_files(d))
        if not runs:
            raise DatasetError(f"{p}: folder has no part_<k>.h5 files nor run folders holding "
                               "them; expected an ODIS <map>/<quality>[/<run>] folder")
        folder = runs[-1]
        files = part_files(folder)
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
