"""The dataset schema (version 1): ODIS's HDF5 episodes plus self-describing attributes.

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

This module holds the keys, dtypes and layout and the shape checks, and ``EpisodeData``;
``marl.data.checks`` the conventions and checksums; ``marl.data.format`` reading and writing;
``marl.data.card`` the dataset card.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

import envs
from marl.data.errors import DatasetError

# 2: the checksum also covers the attributes that change what the data mean (1 is still read)
SCHEMA_VERSION = 2
MEANING_ATTRS = ("task", "family", "backend", "layout", "env_options", "quality")
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
PART_FILE = re.compile(r"^part_(\d+)\.h5$")


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
    return jsonable(out)


def layout_from_task(task: str, env_options: dict | None = None) -> dict:
    """The layout of ``task`` from its name alone (no simulator started). Entries a name cannot
    tell are None: for ``mamujoco`` tasks ``obs_dim``, ``state_dim`` and the layout details
    need the MuJoCo model. ``env_options`` may change ``episode_limit`` (SMAC) or
    ``max_cycles`` (MPE). Raises DatasetError for a bad task name."""
    try:
        family, map_name = envs.split_task(task)
        out = family.layout_from_name(map_name, env_options)
    except envs.EnvError as exc:
        raise DatasetError(f"task {task!r}: {exc}") from None
    out.update(family=family.name, map_name=map_name)
    return jsonable(out)


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


def episode_lengths(filled: np.ndarray) -> np.ndarray:
    """Filled steps per episode ``[E]`` (int64); an episode of length L has L-1 transitions."""
    return np.asarray(filled).reshape(filled.shape[0], -1).sum(1).astype(np.int64)


def transition_mask(filled: np.ndarray) -> np.ndarray:
    """``[E, T]`` bool: True at the steps that are transitions (t < L-1)."""
    lengths = episode_lengths(filled)
    return np.arange(filled.shape[1])[None, :] < (lengths - 1)[:, None]


def jsonable(value: Any) -> Any:
    """Plain JSON types (numpy scalars/arrays, tuples and mappings converted)."""
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


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


def layout_for(task: str, env_options: dict | None, where: str) -> dict:
    """``layout_from_task`` with the file named in its error."""
    try:
        return layout_from_task(task, env_options)
    except DatasetError as exc:
        raise DatasetError(f"{where}: {exc}") from None
