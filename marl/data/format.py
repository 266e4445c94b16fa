"""The dataset file format (schema version 1): ODIS's HDF5 episodes plus self-describing attributes.

One HDF5 file holds the episodes of one (task, quality). Its datasets have ODIS's keys, dtypes and
semantics (``../shared/research/hissd-reference.md`` §4), so ODIS/HiSSD files load as they are and
ours load in ODIS's code. ``E`` episodes are padded to ``T = episode_limit + 1`` steps:

==============  ==============================  ================================
key             shape                           dtype
==============  ==============================  ================================
obs             [E, T, n_agents, obs_dim]       float32
state           [E, T, state_dim]               float32
actions         [E, T, n_agents, 1]             int64 (discrete)
                [E, T, n_agents, n_actions]     float32 (continuous)
actions_onehot  [E, T, n_agents, n_actions]     float32 (discrete only)
avail_actions   [E, T, n_agents, n_actions]     int32 (discrete only)
reward          [E, T, 1]                       float32
terminated      [E, T, 1]                       uint8
filled          [E, T, 1]                       int64
==============  ==============================  ================================

Semantics (pymarl's EpisodeBatch, as in ODIS): an episode with ``L`` filled steps (``filled`` is 1
for steps ``0..L-1``) has ``L-1`` transitions. Step ``t < L-1`` holds the observation, state and
available actions *before* transition ``t``, the action taken and the reward of transition ``t``.
Step ``L-1`` is the post-terminal step: the final observation/state/available actions, a
placeholder action (the first available action, or zeros for continuous actions; ODIS stores the
policy's choice there) and reward 0. ``terminated`` is 1 at step ``L-2`` only when the episode
really ended (a team wiped out, a robot fell), not when it hit the time limit. Everything after
step ``L-1`` is zero. A learner's transition mask is ``filled[:, :-1] * (1 - terminated shifted
by one)``, as in ODIS.

Our files add ``battle_won`` (uint8 ``[E]``, SMAC only) and root attributes: ``schema_version``,
``task``, ``family``, ``backend``, ``layout`` (JSON: the env layout summary with ``n_agents``,
``n_enemies``, ``obs_dim``, ``state_dim``, ``n_actions``, ``action_type``, ``episode_limit``),
``env_options`` (JSON), ``quality`` and ``quality_definition`` (JSON, from
``marl.data.qualities``), ``behavior_policy`` (JSON with at least ``id``), ``episodes``, ``steps``
(transitions), ``return_mean/std/min/max``, ``win_rate`` (SMAC, when ``battle_won`` was given),
``episode_length_mean/min/max`` (transitions per episode, like the env's ``episode_length``),
``seed``, ``created_by`` and ``checksum``: ``"sha256:<hex>"`` over every dataset, in sorted key
order, of ``"<key>:<dtype>:<shape>\\n"`` followed by the array's little-endian C-order bytes;
``checksums`` (JSON) has the same digest per key so that a mismatch names the damaged key.

Files are gzip-compressed and chunked by episode (chunk ``(1, T, ...)``), and written to
``<path>.tmp-<pid>`` first, then renamed: an interrupted write never leaves a file that looks
complete. ODIS files (no attributes) are read too; their task comes from their path
``.../<map>/<quality>/<run>/part_<k>.h5`` or from ``task=``, and their layout from the task name.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from marl.data.errors import DatasetError
from marl.data.qualities import ALIASES, QUALITIES, check_quality

SCHEMA_VERSION = 1
DISCRETE_KEYS: tuple[str, ...] = (
    "obs", "state", "actions", "actions_onehot", "avail_actions", "reward", "terminated", "filled",
)
CONTINUOUS_KEYS: tuple[str, ...] = ("obs", "state", "actions", "reward", "terminated", "filled")
DTYPES: dict[str, np.dtype] = {
    "obs": np.dtype(np.float32),
    "state": np.dtype(np.float32),
    "actions": np.dtype(np.int64),  # continuous tasks: float32 (see key_dtype)
    "actions_onehot": np.dtype(np.float32),
    "avail_actions": np.dtype(np.int32),
    "reward": np.dtype(np.float32),
    "terminated": np.dtype(np.uint8),
    "filled": np.dtype(np.int64),
}
WON_KEY = "battle_won"  # extra per-episode dataset of our SMAC files (uint8 [E])
# Read whole; the other keys are read, hashed and checked in blocks of episodes (BLOCK_BYTES).
SMALL_KEYS = ("actions", "reward", "terminated", "filled")
PACKED_KEYS = ("obs", "state", "actions_onehot", "avail_actions")  # read_dataset(packed=True)
BLOCK_BYTES = 32 << 20
JSON_ATTRS = ("layout", "env_options", "behavior_policy", "quality_definition", "checksums")
COMPRESSION = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
_PART_RE = re.compile(r"^part_(\d+)\.h5$")


# ------------------------------------------------------------------------------------ layout
def keys_for(action_type: str) -> tuple[str, ...]:
    """The dataset keys a file of this action type ("discrete" | "continuous") must hold."""
    return DISCRETE_KEYS if action_type == "discrete" else CONTINUOUS_KEYS


def key_dtype(key: str, action_type: str) -> np.dtype:
    if key == "actions" and action_type == "continuous":
        return np.dtype(np.float32)
    return DTYPES[key]


def layout_from_env_info(info) -> dict:
    """The ``layout`` attribute of a file recorded on ``info`` (an ``envs.core.EnvInfo``)."""
    out: dict[str, Any] = {}
    if hasattr(info.layout, "summary"):
        out.update(info.layout.summary())
    out.update(
        family=info.family,
        map_name=info.map_name,
        n_agents=int(info.n_agents),
        n_enemies=int(info.n_enemies),
        obs_dim=int(info.obs_dim),
        state_dim=int(info.state_dim),
        n_actions=int(info.n_actions),
        action_type=info.action_type,
        episode_limit=int(info.episode_limit),
    )
    return _jsonable(out)


def layout_from_task(task: str, env_options: dict | None = None) -> dict:
    """The layout of ``task`` from its name alone (no simulator started). Entries a name cannot
    tell are None: for ``mamujoco`` tasks ``obs_dim``, ``state_dim`` and the layout details
    need the MuJoCo model. ``env_options`` may change ``episode_limit`` (SMAC) or
    ``max_cycles`` (MPE). Raises DatasetError for a bad task name."""
    import envs

    env_options = dict(env_options or {})
    try:
        family, map_name = envs.split_task(task)
        if family.name == "smac":
            from envs.smac import parse_map

            lay = parse_map(map_name)
            out = dict(lay.summary())
            out.update(n_agents=lay.n_agents, n_enemies=lay.n_enemies, obs_dim=lay.obs_dim,
                       state_dim=lay.state_dim, n_actions=lay.n_actions, action_type="discrete",
                       episode_limit=int(env_options.get("episode_limit") or lay.episode_limit))
        elif family.name == "mpe":
            from envs.mpe import N_ACTIONS, parse_map

            lay = parse_map(map_name)
            out = dict(lay.summary())
            out.update(n_agents=lay.n_agents, n_enemies=lay.n_landmarks, obs_dim=lay.obs_dim,
                       state_dim=lay.state_dim, n_actions=N_ACTIONS, action_type="discrete",
                       episode_limit=int(env_options.get("max_cycles", 25)))
        elif family.name == "mamujoco":
            from envs.mamujoco import SEGMENT_ROBOTS, parse_map

            mt = parse_map(map_name)
            per_segment = {"ManySegmentAnt": 4, "ManySegmentSwimmer": 1}
            n_actions = (mt.per_agent * per_segment[mt.robot] if mt.robot in SEGMENT_ROBOTS
                         else mt.per_agent)
            out = {"robot": mt.robot, "partition": mt.partition}
            out.update(n_agents=mt.n_agents, n_enemies=0, obs_dim=None, state_dim=None,
                       n_actions=n_actions, action_type="continuous", episode_limit=None)
        else:  # pragma: no cover - a family added to envs without a dataset layout
            raise DatasetError(f"{task}: no dataset layout is known for family {family.name!r}")
    except envs.EnvError as exc:
        raise DatasetError(f"task {task!r}: {exc}") from None
    out.update(family=family.name, map_name=map_name)
    return _jsonable(out)


def expected_shapes(layout: dict, n_episodes: int | None, n_steps: int | None) -> dict:
    """Key -> expected shape tuple (None where a size is not fixed by the layout)."""
    e, t = n_episodes, n_steps
    a, n = layout.get("n_agents"), layout.get("n_actions")
    discrete = layout.get("action_type", "discrete") == "discrete"
    shapes = {
        "obs": (e, t, a, layout.get("obs_dim")),
        "state": (e, t, layout.get("state_dim")),
        "actions": (e, t, a, 1 if discrete else n),
        "reward": (e, t, 1),
        "terminated": (e, t, 1),
        "filled": (e, t, 1),
    }
    if discrete:
        shapes["actions_onehot"] = (e, t, a, n)
        shapes["avail_actions"] = (e, t, a, n)
    return shapes


_DIM_NAMES = {
    "obs": ("episodes", "steps", "n_agents", "obs_dim"),
    "state": ("episodes", "steps", "state_dim"),
    "actions": ("episodes", "steps", "n_agents", "1 | n_actions"),
    "actions_onehot": ("episodes", "steps", "n_agents", "n_actions"),
    "avail_actions": ("episodes", "steps", "n_agents", "n_actions"),
    "reward": ("episodes", "steps", "1"),
    "terminated": ("episodes", "steps", "1"),
    "filled": ("episodes", "steps", "1"),
}


def _fmt_shape(shape: Iterable) -> str:
    return "(" + ", ".join("?" if s is None else str(s) for s in shape) + ")"


def check_shapes(arrays: dict[str, np.ndarray], layout: dict, where: str, task: str) -> None:
    """Every key's shape agrees with the others and with ``layout``; DatasetError otherwise."""
    if "filled" not in arrays or arrays["filled"].ndim != 3:
        got = arrays["filled"].shape if "filled" in arrays else None
        raise DatasetError(f"{where}: key 'filled' has shape {got}; expected (episodes, steps, 1)")
    n_episodes, n_steps = arrays["filled"].shape[:2]
    for key, expected in expected_shapes(layout, n_episodes, n_steps).items():
        shape = arrays[key].shape
        ok = len(shape) == len(expected) and all(
            x is None or s == x for s, x in zip(shape, expected))
        if not ok:
            names = " x ".join(_DIM_NAMES[key])
            raise DatasetError(
                f"{where}: key {key!r} has shape {tuple(shape)}; expected {_fmt_shape(expected)} "
                f"= ({names}) for {task} (n_agents={layout.get('n_agents')}, "
                f"obs_dim={layout.get('obs_dim')}, state_dim={layout.get('state_dim')}, "
                f"n_actions={layout.get('n_actions')})"
            )


# ---------------------------------------------------------------------------------- semantics
def episode_lengths(filled: np.ndarray) -> np.ndarray:
    """Filled steps per episode ``[E]`` (int64); an episode of length L has L-1 transitions."""
    return np.asarray(filled).reshape(filled.shape[0], -1).sum(1).astype(np.int64)


def transition_mask(filled: np.ndarray) -> np.ndarray:
    """``[E, T]`` bool: True at the steps that are transitions (t < L-1)."""
    lengths = episode_lengths(filled)
    return np.arange(filled.shape[1])[None, :] < (lengths - 1)[:, None]


def check_semantics(arrays: dict[str, np.ndarray], layout: dict, where: str,
                    battle_won: np.ndarray | None = None) -> None:
    """The EpisodeBatch conventions of the module doc; DatasetError naming the key and the
    first offending episode and step otherwise."""
    _check_episodes(arrays, where, battle_won)
    n_actions = arrays["avail_actions"].shape[-1] if "avail_actions" in arrays else None
    for key in keys_for(layout.get("action_type", "discrete")):
        _check_key(key, arrays[key], arrays["filled"], arrays["actions"], n_actions, layout,
                   where)


def _fail(where: str, key: str, bad: np.ndarray, what: str, first: int = 0) -> None:
    e, t = (int(i) for i in np.argwhere(bad)[0])
    raise DatasetError(f"{where}: key {key!r}: episode {first + e} step {t}: {what}")


def _check_episodes(arrays: dict[str, np.ndarray], where: str,
                    battle_won: np.ndarray | None) -> None:
    """The conventions of the small per-step keys: ``filled`` one block from step 0,
    ``terminated`` only at the last transition, ``reward`` finite and 0 from the post-terminal
    step on, won battles terminated."""
    filled = arrays["filled"][..., 0]
    steps = np.arange(filled.shape[1])[None, :]
    if not np.isin(filled, (0, 1)).all():
        _fail(where, "filled", ~np.isin(filled, (0, 1)), "filled must be 0 or 1")
    lengths = filled.sum(1)
    if (filled != (steps < lengths[:, None])).any():
        _fail(where, "filled", filled != (steps < lengths[:, None]),
              "filled must be 1 for steps 0..L-1 and 0 after (one contiguous block from step 0)")
    if (lengths < 2).any():
        e = int(np.flatnonzero(lengths < 2)[0])
        raise DatasetError(f"{where}: key 'filled': episode {e} has {lengths[e]} filled steps; "
                           "expected at least 2 (one transition and the post-terminal step)")
    term = arrays["terminated"][..., 0]
    allowed = steps == (lengths - 2)[:, None]
    if not np.isin(term, (0, 1)).all() or (term.astype(bool) & ~allowed).any():
        _fail(where, "terminated", ~np.isin(term, (0, 1)) | (term.astype(bool) & ~allowed),
              "terminated may only be 1, and only at step L-2 (the last transition)")
    reward = arrays["reward"][..., 0]
    if not np.isfinite(reward).all():
        _fail(where, "reward", ~np.isfinite(reward), "reward is not finite")
    after = steps >= (lengths - 1)[:, None]
    if (reward[after] != 0).any():
        _fail(where, "reward", after & (reward != 0),
              "reward must be 0 from the post-terminal step L-1 on")
    if battle_won is not None:
        won_not_term = battle_won.astype(bool) & (term.sum(1) == 0)
        if won_not_term.any():
            e = int(np.flatnonzero(won_not_term)[0])
            raise DatasetError(f"{where}: key {WON_KEY!r}: episode {e} is marked won but its "
                               "terminated flag is 0 everywhere (a won battle terminates)")


def _check_key(key: str, block: np.ndarray, filled: np.ndarray, actions: np.ndarray,
               n_actions: int | None, layout: dict, where: str, first: int = 0) -> None:
    """The conventions of one key over a block of episodes ``first, first + 1, ...``
    (``filled`` and ``actions`` are those episodes' rows): zero padding, finite features, and
    for discrete actions the ids, availability and one-hot agreeing with each other."""
    filled_b = filled[..., 0].astype(bool)
    n_episodes, n_steps = filled_b.shape
    padding = np.arange(n_steps)[None, :] >= filled_b.sum(1)[:, None]
    flat = block.reshape(n_episodes, n_steps, -1)

    def fail(name: str, bad: np.ndarray, what: str) -> None:
        _fail(where, name, bad, what, first)

    if key in ("obs", "state") and not np.isfinite(flat).all():
        fail(key, ~np.isfinite(flat).all(-1), f"{key} is not finite")
    if padding.any():
        nonzero = (flat != 0).any(-1) & padding
        if nonzero.any():
            fail(key, nonzero, "steps after the post-terminal step (padding) must be 0")
    if layout.get("action_type", "discrete") != "discrete":
        if key == "actions" and not np.isfinite(block).all():
            fail("actions", ~np.isfinite(block).all(-1).all(-1), "not finite")
        return
    ids = actions[..., 0]
    if key == "actions":
        out_of_range = ((ids < 0) | (ids >= n_actions)).any(-1) & filled_b
        if out_of_range.any():
            fail("actions", out_of_range, f"action ids must be in 0..{n_actions - 1}")
    elif key == "avail_actions":
        if not np.isin(block, (0, 1)).all():
            fail(key, ~np.isin(block, (0, 1)).all(-1), "must be 0 or 1")
        none_avail = (~block.any(-1)).any(-1) & filled_b  # every agent needs an action
        if none_avail.any():
            fail(key, none_avail, "an agent has no available action")
        chosen = np.take_along_axis(block, np.clip(ids, 0, n_actions - 1)[..., None], -1)
        unavailable = (chosen[..., 0] == 0).any(-1) & filled_b
        if unavailable.any():
            fail("actions", unavailable, "an agent's action is not in its avail_actions")
    elif key == "actions_onehot":
        expect = np.eye(n_actions, dtype=np.float32)[np.clip(ids, 0, n_actions - 1)]
        wrong = (block != expect).any(-1).any(-1) & filled_b
        if wrong.any():
            fail(key, wrong, "actions_onehot must be the one-hot of actions")


# ----------------------------------------------------------------------------------- checksum
class _Digests:
    """The digests of ``compute_checksums``, fed key by key in sorted order and, within a key,
    block by block along the first axis (C order makes the blocks' bytes the array's bytes)."""

    def __init__(self):
        self.total = hashlib.sha256()
        self.per_key: dict[str, str] = {}

    @staticmethod
    def _little(dtype: np.dtype) -> np.dtype:
        return dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype

    def start(self, key: str, dtype: np.dtype, shape: Iterable[int]) -> None:
        header = f"{key}:{self._little(np.dtype(dtype)).str}:{list(shape)}\n".encode()
        self.key, self.one = key, hashlib.sha256(header)
        self.total.update(header)

    def update(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=self._little(block.dtype))
        data = memoryview(block.reshape(-1).view(np.uint8)) if block.size else b""
        self.one.update(data)
        self.total.update(data)

    def finish(self) -> None:
        self.per_key[self.key] = "sha256:" + self.one.hexdigest()

    def result(self) -> tuple[str, dict[str, str]]:
        return "sha256:" + self.total.hexdigest(), self.per_key


def compute_checksums(arrays: dict[str, np.ndarray]) -> tuple[str, dict[str, str]]:
    """``("sha256:<hex>", {key: "sha256:<hex>"})`` over ``arrays`` in sorted key order: for each
    key ``"<key>:<dtype>:<shape>\\n"`` then its little-endian C-order bytes."""
    digests = _Digests()
    for key in sorted(arrays):
        arr = np.asarray(arrays[key])
        digests.start(key, arr.dtype, arr.shape)
        digests.update(arr)
        digests.finish()
    return digests.result()


# ---------------------------------------------------------------------------------- EpisodeData
@dataclass
class EpisodeData:
    """The episodes of one file (or of an ODIS folder's parts), as numpy arrays.

    ``arrays`` holds exactly the ODIS keys of the task's action type; ``attrs`` the decoded root
    attributes (for ODIS files: ``task``, ``family``, ``quality``, ``layout`` and
    ``source_format="odis"``, derived from the path and task name); ``battle_won`` the per-episode
    SMAC wins when the file has them.

    Keys named in ``packed`` (``read_dataset(..., packed=True)``: the large ``PACKED_KEYS``) hold
    only the filled steps, episode after episode: ``[sum of lengths, ...]`` instead of
    ``[E, T, ...]``; episode ``e``'s steps are the rows ``starts[e] .. starts[e] + lengths[e]``.
    The small keys (``filled``, ``reward``, ``terminated``, ``actions``) are always padded."""

    arrays: dict[str, np.ndarray]
    attrs: dict
    path: str
    battle_won: np.ndarray | None = field(default=None)
    packed: tuple[str, ...] = ()

    @property
    def task(self) -> str:
        return self.attrs["task"]

    @property
    def quality(self) -> str | None:
        return self.attrs.get("quality")

    @property
    def layout(self) -> dict:
        return self.attrs.get("layout", {})

    @property
    def n_episodes(self) -> int:
        return int(self.arrays["filled"].shape[0])

    @property
    def n_steps(self) -> int:
        """T, the padded number of steps per episode."""
        return int(self.arrays["filled"].shape[1])

    @property
    def lengths(self) -> np.ndarray:
        """Filled steps per episode ``[E]`` int64 (transitions + 1)."""
        return episode_lengths(self.arrays["filled"])

    @property
    def starts(self) -> np.ndarray:
        """First row of each episode in the ``packed`` keys ``[E]`` int64."""
        lengths = self.lengths
        return np.cumsum(lengths) - lengths

    @property
    def returns(self) -> np.ndarray:
        """Sum of the reward over each episode's transitions ``[E]`` (float64)."""
        reward = self.arrays["reward"][..., 0].astype(np.float64)
        return (reward * transition_mask(self.arrays["filled"])).sum(1)

    @property
    def wins(self) -> np.ndarray | None:
        """Per-episode battle won ``[E]`` bool (SMAC files that recorded it), else None."""
        return None if self.battle_won is None else self.battle_won.astype(bool)


# ------------------------------------------------------------------------------------- writing
def _jsonable(value: Any) -> Any:
    """Plain JSON types (numpy scalars/arrays, tuples and mappings converted)."""
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


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
    import envs

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
        "env_options": _jsonable(env_options),
        "quality": quality_def.name,
        "quality_definition": quality_def.as_dict(),
        "behavior_policy": _jsonable(behavior_policy),
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
    """The task an ODIS map folder name denotes (SMAC first, then MPE, then MuJoCo)."""
    import importlib

    from envs import EnvError

    for family, module in (("smac", "envs.smac"), ("mpe", "envs.mpe"),
                           ("mamujoco", "envs.mamujoco")):
        try:
            importlib.import_module(module).parse_map(map_name)
        except EnvError:
            continue
        return f"{family}:{map_name}"
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
    digests = _Digests() if verify and ours and "checksum" in attrs else None
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
        check(_check_key, key, block, small["filled"][first:last], small["actions"][first:last],
              n_actions, layout, where, first)

    n_actions = stored["avail_actions"].shape[-1] if "avail_actions" in stored else None
    check(_check_episodes, small, where, won)
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
             if p.is_file() and (m := _PART_RE.match(p.name))]
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


# ---------------------------------------------------------------------------------- the card
def _histogram(values: np.ndarray, bins: int = 10, width: int = 40) -> list[str]:
    counts, edges = np.histogram(values, bins=bins)
    top = max(int(counts.max()), 1)
    lines = []
    for i, count in enumerate(counts):
        bar = "#" * int(round(width * count / top))
        lines.append(f"    [{edges[i]:9.3f}, {edges[i + 1]:9.3f}{']' if i == bins - 1 else ')'}"
                     f" {int(count):7d} {bar}")
    return lines


def dataset_card(path: str | os.PathLike, task: str | None = None) -> str:
    """A human-readable summary of a dataset file or ODIS folder: episodes, transitions, episode
    lengths, returns (with a 10-bin text histogram), win rate, layout, quality, behaviour policy
    and whether the checksum and conventions verify."""
    try:
        data = read_dataset(path, task=task, verify=True)
        verdict = "OK"
    except DatasetError as exc:
        data = read_dataset(path, task=task, verify=False)
        verdict = f"FAILED: {exc}"
    attrs = data.attrs
    lengths, returns, wins = data.lengths, data.returns, data.wins
    transitions = lengths - 1
    layout = data.layout
    if attrs.get("checksum"):
        check = f"checksum {attrs['checksum']} and conventions verified: {verdict}"
    else:
        check = f"no checksum (ODIS file or merged parts); conventions verified: {verdict}"
    lines = [
        f"dataset {data.path}",
        f"  task:            {data.task} (family {attrs.get('family')}, "
        f"backend {attrs.get('backend', 'unknown')})",
        "  format:          " + (
            f"marl schema {attrs['schema_version']}, {attrs.get('created_by')}"
            if attrs.get("schema_version") else "ODIS (no attributes)"),
        f"  quality:         {data.quality}"
        + (f" - {attrs['quality_definition']['description']}"
           if attrs.get("quality_definition") else ""),
        "  behaviour policy: " + (json.dumps(attrs["behavior_policy"])
                                   if attrs.get("behavior_policy") else "not recorded"),
        "  actions:         " + _sampling_line(attrs.get("behavior_policy")),
        f"  seed:            {attrs.get('seed', 'not recorded')}",
        f"  episodes:        {data.n_episodes} (padded to {data.n_steps} steps)",
        f"  transitions:     {int(transitions.sum())}",
        f"  episode length:  mean {transitions.mean():.2f}, min {transitions.min()}, max "
        f"{transitions.max()} transitions (filled steps {lengths.min()}..{lengths.max()})",
        f"  return:          mean {returns.mean():.4f}, std {returns.std():.4f}, min "
        f"{returns.min():.4f}, max {returns.max():.4f}",
        "  win rate:        " + (f"{wins.mean() * 100:.2f} % ({int(wins.sum())}/{len(wins)})"
                                 if wins is not None else "not recorded"),
        f"  terminated:      {int(data.arrays['terminated'].sum())} of {data.n_episodes} "
        "episodes (the others ended at the time limit)",
        "  return histogram:",
        *_histogram(returns),
        "  layout:          " + ", ".join(f"{k}={v}" for k, v in layout.items()),
        f"  env options:     {json.dumps(attrs.get('env_options'))}",
        f"  {check}",
    ]
    return "\n".join(lines) + "\n"


def _sampling_line(policy) -> str:
    """How the behaviour policy chose the recorded actions (``sampling``; files written before
    it was recorded said ``greedy`` true/false)."""
    if not isinstance(policy, dict):
        return "not recorded"
    sampling = policy.get("sampling")
    if sampling is None and "greedy" in policy:
        sampling = "greedy" if policy["greedy"] else "sampled"
    if sampling is None and "joined" in policy:
        return " + ".join(_sampling_line(p) for p in policy["joined"])
    if isinstance(sampling, str) and sampling.startswith("epsilon:"):
        return (f"{sampling} (the most likely action, a uniformly random available one with "
                f"probability {sampling.split(':', 1)[1]})")
    return {"greedy": "greedy (the policy's most likely action)",
            "sampled": "sampled from the policy"}.get(sampling, sampling or "not recorded")
