"""Offline episodes -> entity-view tensors, sampled as batches of whole padded episodes.

``MultiTaskDataset`` reads one or more dataset files per task (``marl.data.format``), turns each
task's episodes **once** into torch tensors of the entity view (``marl.entity``: SMAC and MPE
observations as own/ally/enemy tokens, SMAC states as ally/enemy state tokens, MuJoCo
observations as per-joint tokens) and samples :class:`EntityBatch` es by tensor indexing.

Storage (``TaskData``). Episodes are *packed*: the ``L`` filled steps of every episode (its
``L-1`` transitions plus the post-terminal step) are stored back to back, so memory follows the
real episode lengths rather than ``episode_limit + 1`` (ODIS's 3m medium episodes fill 26 of 61
steps on average). One extra row, the *pad row*, is the entity parser applied to an all-zero
step: sampled steps beyond an episode's end read it. Fields that are the same at every step
(SMAC and MPE token masks, MuJoCo joint tables) are stored once. Parsing runs once over all
steps of a task (one call per parser, no loop over episodes or agents).

Sampling (``MultiTaskDataset.sample``). ``batch_size`` episodes per task, drawn without
replacement with ``torch.randperm`` (reproducible with a ``torch.Generator``) and trimmed to the
longest episode of the batch (the post-terminal step included). With several tasks, each task's
episodes are padded to the largest agent, enemy (landmark, joint-token) and action counts of
the batch and concatenated in task order. Every field is allocated once at its padded size and
filled by one ``index_select`` per task (straight into the output where no padding is needed).

Batch conventions (``EntityBatch``, ``B`` episodes, ``T`` steps, ``A`` agents):

* ``mask[b, t] = 1`` for the transitions ``t < L_b - 1`` (ODIS's ``filled * (1 - terminated
  shifted by one)`` restricted to transitions); ``filled`` is 1 for ``t < L_b``, so the
  post-terminal step ``L_b - 1`` (final observation, state, available actions) is filled but
  not a transition. ``terminated[b, L_b - 2] = 1`` only for a real termination.
* Steps beyond an episode (``filled = 0``) hold the pad row: zero features, the task's token
  masks, action 0 with only action 0 available. Agents beyond a task's team (``agent_mask``
  False) likewise have zero tokens with every ally/enemy slot masked, action 0, only action 0
  available. Enemy (landmark) slots beyond a task's count are masked in ``obs.enemy_mask`` and
  ``state.enemy_mask`` and their attack actions are unavailable. Padding therefore looks like
  a dead agent: a log-softmax over available actions stays finite, and a masked loss ignores it.
* The SMAC state is an ``EntityState``; MPE and MuJoCo have no state parser yet, so their
  ``state`` is the raw flat vector ``[B, T, S]`` zero-padded to the largest ``state_dim``.

The on-disk layout of a data directory is ``dataset_path(root, task, quality, env_options)``:
``root/<task with ':' replaced by '_'>/<quality>.h5``, the folder tagged with the simulator
options the data was collected under when there are any (``smac_3m+enemy_reaction=0.8``), so
task sets that share a map under different opponents (marine-easy and marine-hard both train
on 3m) keep their data apart.

Why this file is long (about 560 lines): one task's episodes are turned once into packed
entity-view tensors (``TaskData``) and batches are assembled from them across tasks
(``MultiTaskDataset``, ``EntityBatch``); the packing and the padding rules are one contract.
File locations are in ``marl.data.paths``.
"""

from __future__ import annotations

import os
import warnings
import zlib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from marl.data.format import DatasetError, EpisodeData, read_dataset
from marl.data.paths import check_env_options, peek_attrs, quality_paths
from marl.data.qualities import check_quality
from marl.entity.families import entity_family, task_family

SUBSETS = ("last", "random")


# --------------------------------------------------------------------------- the batch
# Fill values of padded entries by field name (default 0 / False).
_PAD_FILL = {"joint_id": -1, "token_action": -1}


@dataclass
class EntityBatch:
    """Whole episodes of one or several tasks in the entity view, padded (``B`` episodes,
    ``T`` steps, ``A`` agents; conventions in the module doc)."""

    obs: Any  # EntityObs (SMAC, MPE) or JointObs (MuJoCo), tensors [B, T, A, ...]
    state: Any  # EntityState [B, T, ...] (SMAC) or the raw state [B, T, S] (MPE, MuJoCo)
    actions: torch.Tensor  # [B, T, A] long (discrete) or [B, T, A, n_actions] float
    avail_actions: torch.Tensor | None  # [B, T, A, n_actions] bool (SMAC: 6 + E_max); None
    reward: torch.Tensor  # [B, T] float
    terminated: torch.Tensor  # [B, T] float, 1 at the last transition of a terminated episode
    mask: torch.Tensor  # [B, T] float, 1 for transitions (t < L - 1)
    filled: torch.Tensor  # [B, T] float, 1 for stored steps (t < L, post-terminal included)
    agent_mask: torch.Tensor  # [B, A] bool, False for padding agents
    task_id: torch.Tensor  # [B] long, index into MultiTaskDataset.tasks

    @property
    def batch_size(self) -> int:
        return int(self.reward.shape[0])

    @property
    def max_t(self) -> int:
        return int(self.reward.shape[1])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "EntityBatch":
        def move(t):
            if t is None:
                return None
            if isinstance(t, torch.Tensor):
                return t.to(device, non_blocking=non_blocking)
            return t.map(lambda x: x.to(device, non_blocking=non_blocking))

        return EntityBatch(**{f.name: move(getattr(self, f.name)) for f in fields(self)})


# ------------------------------------------------------------------------ one task's data
@dataclass(frozen=True)
class Source:
    """A contiguous block of one file's episodes that counts as one ODIS data source."""

    path: str
    quality: str | None
    start: int  # first episode (index in the file)
    stop: int


def _sources_of(data: EpisodeData) -> list[Source]:
    """A file of a mixed quality (``medium-expert``: half medium then half expert, see
    ``marl.data.qualities``) is one source per component, in order; other files are one."""
    e = data.n_episodes
    quality = data.quality
    components = check_quality(quality).components if quality else ()
    if len(components) < 2:
        return [Source(str(data.path), quality, 0, e)]
    bounds = _bounds(e, len(components))
    return [Source(str(data.path), c, int(a), int(b))
            for c, a, b in zip(components, bounds[:-1], bounds[1:])]


def _bounds(total: int, n: int) -> list[int]:
    """Split points of ``total`` into ``n`` near-equal consecutive parts, the earlier parts
    rounded down (as ``marl.collect`` splits a medium-expert file: ``E // 2`` medium first)."""
    return [total * i // n for i in range(n + 1)]


def _shares(total: int, n: int) -> list[int]:
    return np.diff(_bounds(total, n)).tolist()


def _select(sources: Sequence[Source], n_episodes: int | None, subset: str, seed: int,
            task: str) -> list[np.ndarray]:
    """Episode indices (within each source's file) kept from each source: all of them, or
    ``n_episodes`` split evenly over the sources (ODIS), the last ones of each source or a
    seeded random choice. A source with too few episodes gives all it has (with a warning)."""
    if subset not in SUBSETS:
        raise ValueError(f"subset must be one of {SUBSETS}, got {subset!r}")
    if n_episodes is None:
        return [np.arange(s.start, s.stop) for s in sources]
    if isinstance(n_episodes, bool) or not isinstance(n_episodes, (int, np.integer)) \
            or n_episodes < 1:
        raise ValueError(f"n_episodes must be a positive int or None, got {n_episodes!r}")
    out = []
    for i, (source, share) in enumerate(zip(sources, _shares(int(n_episodes), len(sources)))):
        have = source.stop - source.start
        if share > have:
            warnings.warn(f"{task}: {source.path} ({source.quality}) has {have} episodes, fewer "
                          f"than the {share} asked for; using all {have}", stacklevel=4)
            share = have
        if subset == "last":
            out.append(np.arange(source.stop - share, source.stop))
        else:
            rng = np.random.default_rng([seed, zlib.crc32(task.encode()), i])
            out.append(np.sort(rng.choice(have, share, replace=False)) + source.start)
    return out


def _compact(t: torch.Tensor, float_dtype: torch.dtype) -> torch.Tensor:
    """An owning, contiguous copy when ``t`` is a view into a larger tensor; floats in
    ``float_dtype``."""
    if t.is_floating_point() and t.dtype != float_dtype:
        return t.to(float_dtype).contiguous()
    if not t.is_contiguous() or t.untyped_storage().nbytes() > t.numel() * t.element_size():
        return t.clone(memory_format=torch.contiguous_format)
    return t


def _pack_episodes(sources: list, chosen: list[np.ndarray]) -> tuple[dict, np.ndarray,
                                                                     np.ndarray, np.ndarray | None]:
    """The filled steps of the chosen episodes packed by row, file by file (numpy boolean
    indexing keeps episode-major order), with one zero step appended: the pad row. Returns
    (arrays by key, lengths, returns, wins or None where a file records none)."""
    packed: dict[str, list[np.ndarray]] = {}
    lengths, returns, wins = [], [], []
    for (d, _), idx in zip(sources, chosen):
        if not len(idx):
            continue
        # the filled steps of the chosen episodes: packed keys (module doc of
        # marl.data.format) by row, padded ones by (episode, step); never a padded copy
        episode, step = np.nonzero(d.arrays["filled"][idx, :, 0])
        rows = d.starts[idx][episode] + step
        every_row = len(rows) == int(d.lengths.sum()) and bool(  # all, in file order
            (rows == np.arange(len(rows))).all())
        for key in ("obs", "state", "actions", "avail_actions", "reward", "terminated"):
            if key not in d.arrays:
                continue
            if key in d.packed:
                packed.setdefault(key, []).append(d.arrays[key] if every_row else d.arrays[key][rows])
            else:
                packed.setdefault(key, []).append(d.arrays[key][idx[episode], step])
        lengths.append(d.lengths[idx])
        returns.append(d.returns[idx])
        wins.append(None if d.wins is None else d.wins[idx])
    arrays = {k: np.concatenate(v + [np.zeros_like(v[0][:1])]) for k, v in packed.items()}
    return (arrays, np.concatenate(lengths).astype(np.int64), np.concatenate(returns),
            None if any(w is None for w in wins) else np.concatenate(wins))


class TaskData:
    """One task's episodes (one or more files, e.g. medium and expert for ``medium-expert``)
    converted once into packed entity-view tensors (module doc), on ``device``.

    ``datas``: the files' ``EpisodeData`` (all of ``task``); ``n_episodes`` / ``subset`` /
    ``seed`` choose the episodes (see ``_select``). Attributes: ``episode_path`` /
    ``episode_index`` say which file episode each stored episode is, ``lengths`` its filled
    steps, ``returns`` and ``wins`` its statistics."""

    def __init__(self, task: str, datas: Sequence[EpisodeData] | EpisodeData,
                 n_episodes: int | None = None, subset: str = "last", seed: int = 0,
                 device: torch.device | str = "cpu", float_dtype: torch.dtype = torch.float32):
        if isinstance(datas, EpisodeData):
            datas = [datas]
        if not datas:
            raise DatasetError(f"{task}: no dataset files given")
        if not float_dtype.is_floating_point:
            raise ValueError(f"float_dtype must be a floating dtype, got {float_dtype}")
        self.task = task
        self.family = task_family(task)
        self.device = torch.device(device)
        self.float_dtype = float_dtype
        fam = entity_family(self.family)
        for d in datas:
            if d.task != task:
                raise DatasetError(f"{d.path}: holds {d.task}, not {task}")
        self.layout_attrs = _common_layout(task, datas)
        self.layout = fam.layout(task, dict(datas[0].attrs.get("env_options") or {}))
        self.action_type = self.layout_attrs["action_type"]
        self.discrete = self.action_type == "discrete"
        self.n_agents = int(self.layout_attrs["n_agents"])
        self.n_actions = int(self.layout_attrs["n_actions"])
        self.n_entities = int(fam.n_entities(self.layout))

        sources = [(d, s) for d in datas for s in _sources_of(d)]
        chosen = _select([s for _, s in sources], n_episodes, subset, seed, task)
        self.sources = [s for _, s in sources]
        self.episode_path = [s.path for (_, s), idx in zip(sources, chosen) for _ in idx]
        self.episode_quality = [s.quality for (_, s), idx in zip(sources, chosen) for _ in idx]
        self.episode_index = torch.from_numpy(np.concatenate(chosen).astype(np.int64))
        if not len(self.episode_index):
            raise DatasetError(f"{task}: no episodes selected")

        arrays, lengths, returns, wins = _pack_episodes(sources, chosen)
        self.lengths = torch.from_numpy(lengths)
        self.returns = torch.from_numpy(returns)
        self.wins = None if wins is None else torch.from_numpy(wins)
        self.starts = torch.cumsum(self.lengths, 0) - self.lengths
        self.pad_row = int(self.lengths.sum())
        rows = self._view_rows(arrays, fam)
        del arrays

        # Fields equal at every step (token masks, joint tables) are kept once.
        self.rows: dict[str, torch.Tensor] = {}
        self.static: dict[str, torch.Tensor] = {}
        for key, t in rows.items():
            if not t.is_floating_point() and key.startswith(("obs.", "state.")) \
                    and bool((t == t[:1]).all()):
                self.static[key] = t[:1].clone().to(self.device)
            else:
                # token features may be stored in lower precision; rewards and actions not
                dtype = float_dtype if key.startswith(("obs.", "state")) else torch.float32
                self.rows[key] = _compact(t, dtype).to(self.device)
        self.starts = self.starts.to(self.device)
        self.lengths_device = self.lengths.to(self.device)

    def _view_rows(self, arrays: dict[str, np.ndarray], fam) -> dict[str, torch.Tensor]:
        """Packed arrays -> tensors by row: the entity views' fields (``obs.*``, ``state`` or
        ``state.*``), actions, availability, reward and termination."""
        rows: dict[str, torch.Tensor] = {}
        try:
            obs = fam.parse_obs(torch.from_numpy(arrays["obs"]), self.layout)
            state = torch.from_numpy(arrays["state"])
            if fam.parse_state is not None:
                state = fam.parse_state(state, self.layout)
        except ValueError as exc:  # a parser's size check: the file does not fit the layout
            raise DatasetError(f"{self.task}: {exc}") from None
        for f in fields(obs):
            rows[f"obs.{f.name}"] = getattr(obs, f.name)
        if isinstance(state, torch.Tensor):
            rows["state"] = state
        else:
            for f in fields(state):
                rows[f"state.{f.name}"] = getattr(state, f.name)
        if self.discrete:
            actions = torch.from_numpy(arrays["actions"][..., 0])
            avail = torch.from_numpy(arrays["avail_actions"]).bool()
            avail[self.pad_row, :, 0] = True  # padding: only action 0 (as a dead agent)
            rows["avail_actions"] = avail
        else:
            actions = torch.from_numpy(arrays["actions"])
        rows["actions"] = actions
        rows["reward"] = torch.from_numpy(arrays["reward"][:, 0])
        rows["terminated"] = torch.from_numpy(arrays["terminated"][:, 0])
        self._obs_type, self._state_type = type(obs), (None if isinstance(state, torch.Tensor)
                                                       else type(state))
        return rows

    # -- facts
    @property
    def n_episodes(self) -> int:
        return int(self.lengths.shape[0])

    @property
    def max_length(self) -> int:
        return int(self.lengths.max())

    def memory_bytes(self) -> int:
        """Bytes held by this task's tensors (each storage counted once)."""
        seen: dict[int, int] = {}
        tensors = [*self.rows.values(), *self.static.values(), self.starts, self.lengths,
                   self.lengths_device, self.episode_index, self.returns]
        if self.wins is not None:
            tensors.append(self.wins)
        for t in tensors:
            s = t.untyped_storage()
            seen[s.data_ptr()] = s.nbytes()
        return int(sum(seen.values()))

    # -- sampling
    def _index(self, episodes: torch.Tensor, t_max: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Row index ``[B * t_max]`` of steps ``0..t_max-1`` of ``episodes`` (the pad row
        beyond an episode's end) and the episodes' lengths ``[B]``."""
        steps = torch.arange(t_max, device=self.device)
        lengths = self.lengths_device.index_select(0, episodes)
        index = self.starts.index_select(0, episodes)[:, None] + steps
        index = torch.where(steps < lengths[:, None], index, torch.full_like(index, self.pad_row))
        return index.reshape(-1), lengths

    def batch(self, episodes: torch.Tensor, t_max: int | None = None) -> EntityBatch:
        """The stored episodes ``episodes`` ([B] long) as a batch of this task's own sizes,
        ``t_max`` steps long (default: the longest of them). ``task_id`` is 0."""
        episodes = torch.as_tensor(episodes, dtype=torch.long).to(self.device)
        return _assemble([(self, episodes, 0)], t_max)


def _assemble(parts: Sequence[tuple[TaskData, torch.Tensor, int]],
              t_max: int | None = None) -> EntityBatch:
    """One batch of ``parts`` = (task data, episodes [b] long, task id), in order, ``t_max``
    steps long (default: the longest episode). Every field is allocated once at the largest
    per-step shape over the parts and each part is gathered into its corner of it, so padding
    (module doc) costs no extra copy: rows with the full shape are gathered straight into the
    output (``index_select(out=...)``), smaller ones are gathered then copied into place, and
    fields stored once (token masks) are broadcast into place."""
    # Long on purpose: one pass that allocates a batch once and gathers each field into it.
    first = parts[0][0]
    device = first.device
    if t_max is None:
        t_max = max(int(td.lengths_device.index_select(0, ep).max()) for td, ep, _ in parts)
    sizes = [int(ep.shape[0]) for _, ep, _ in parts]
    total = sum(sizes)
    bounds = np.cumsum([0] + sizes).tolist()
    index = [td._index(ep, t_max) for td, ep, _ in parts]
    out: dict[str, torch.Tensor] = {}
    for key in first.rows.keys() | first.static.keys():
        src = [td.rows.get(key, td.static.get(key)) for td, _, _ in parts]
        shapes = [tuple(t.shape[1:]) for t in src]
        full = tuple(max(dims) for dims in zip(*shapes))
        dtype = torch.float32 if src[0].is_floating_point() else src[0].dtype
        fill = _PAD_FILL.get(key.split(".")[-1], 0)
        res = torch.empty((total, t_max, *full), dtype=dtype, device=device)
        for (td, _, _), t, shape, (idx, _), a, b in zip(parts, src, shapes, index, bounds[:-1],
                                                       bounds[1:]):
            static = key in td.static
            if not static and shape == full and t.dtype == dtype:
                torch.index_select(t, 0, idx, out=res[a:b].view(-1, *shape))
                continue
            corner = res[a:b]
            if shape != full:  # only the rows of smaller tasks hold padding
                corner.fill_(fill)
                corner = corner[(slice(None), slice(None), *(slice(0, d) for d in shape))]
            if static:
                corner.copy_(t.view(1, 1, *shape))
            else:
                corner.copy_(t.index_select(0, idx).view(b - a, t_max, *shape))
        out[key] = res
    steps = torch.arange(t_max, device=device)
    lengths = torch.cat([lengths for _, lengths in index])
    n_agents = max(td.n_agents for td, _, _ in parts)
    agent_mask = torch.cat([
        (torch.arange(n_agents, device=device) < td.n_agents).expand(len(ep), n_agents)
        for td, ep, _ in parts])
    if "avail_actions" in out:  # padding agents may only take action 0 (as dead agents)
        out["avail_actions"][..., 0] |= ~agent_mask[:, None, :]

    def build(prefix: str, typ: type | None):
        if typ is None:
            return out[prefix]
        return typ(**{f.name: out[f"{prefix}.{f.name}"] for f in fields(typ)})

    return EntityBatch(
        obs=build("obs", first._obs_type),
        state=build("state", first._state_type),
        actions=out["actions"],
        avail_actions=out.get("avail_actions"),
        reward=out["reward"],
        terminated=out["terminated"].float(),
        mask=(steps < (lengths - 1)[:, None]).float(),
        filled=(steps < lengths[:, None]).float(),
        agent_mask=agent_mask,
        task_id=torch.cat([torch.full((len(ep),), i, dtype=torch.long, device=device)
                           for _, ep, i in parts]),
    )


def _common_layout(task: str, datas: Sequence[EpisodeData]) -> dict:
    """The layout attribute every file of ``task`` agrees on (``episode_limit`` may differ)."""
    def key(d: EpisodeData) -> dict:
        return {k: v for k, v in d.layout.items() if k != "episode_limit"}

    first = key(datas[0])
    for d in datas[1:]:
        if key(d) != first:
            diff = sorted(k for k in set(first) | set(key(d)) if first.get(k) != key(d).get(k))
            raise DatasetError(
                f"{d.path}: its layout differs from {datas[0].path}'s for {task} in {diff} "
                f"({ {k: key(d).get(k) for k in diff} } vs { {k: first.get(k) for k in diff} })")
    return dict(datas[0].layout)


# ------------------------------------------------------------------------ the dataset
class MultiTaskDataset:
    """The episodes of several tasks of one family, in the entity view, sampled as
    ``EntityBatch`` es.

    ``sources``: ``{task: [path, ...]}`` (files or ODIS folders; several files of a task are
    concatenated as data sources, e.g. medium and expert). ``n_episodes``: episodes kept per
    task (None: all), split evenly over the task's sources; ``subset="last"`` keeps the last
    ones of each source (ODIS with ``offline_data_shuffle=False``), ``"random"`` a choice drawn
    from ``seed``. Every file must hold its task, of the dataset's family (``family``, default
    the first task's), with the task's layout; otherwise DatasetError. With ``env_options``
    given, every file that records the simulator options it was collected under (ours do; ODIS
    files record none) must record exactly these, so data of another opponent is never mixed in
    silently. ``device``: where the tensors live; ``float_dtype``: their storage precision
    (batches are float32)."""

    def __init__(self, sources: Mapping[str, Sequence[str | os.PathLike] | str | os.PathLike],
                 n_episodes: int | None = None, subset: str = "last", seed: int = 0,
                 family: str | None = None, device: torch.device | str = "cpu",
                 float_dtype: torch.dtype = torch.float32, verify: bool = True,
                 env_options: Mapping[str, Any] | None = None):
        if not sources:
            raise DatasetError("a MultiTaskDataset needs at least one task")
        if subset not in SUBSETS:
            raise ValueError(f"subset must be one of {SUBSETS}, got {subset!r}")
        tasks = list(sources)
        self.family = family or task_family(tasks[0])
        for task in tasks:
            if task_family(task) != self.family:
                raise DatasetError(f"task {task} is not of the dataset's family {self.family!r} "
                                   f"(tasks {tasks})")
        self.tasks: tuple[str, ...] = tuple(tasks)
        self.env_options = None if env_options is None else dict(env_options)
        self.task_ids: dict[str, int] = {t: i for i, t in enumerate(self.tasks)}
        self.device = torch.device(device)
        self.data: dict[str, TaskData] = {}
        for task in self.tasks:
            paths = sources[task]
            if isinstance(paths, (str, os.PathLike)):
                paths = [paths]
            if not paths:
                raise DatasetError(f"{task}: no dataset files given")
            datas = [self._read(p, task, verify) for p in paths]
            self.data[task] = TaskData(task, datas, n_episodes=n_episodes, subset=subset,
                                       seed=seed, device=device, float_dtype=float_dtype)
            del datas  # free this task's file arrays before the next task's are read
        first = self.data[self.tasks[0]]
        kinds = {td.action_type for td in self.data.values()}
        if len(kinds) > 1:
            raise DatasetError(f"tasks mix action types {sorted(kinds)}; one dataset needs one")
        self.discrete = first.discrete

    def _read(self, path: str | os.PathLike, task: str, verify: bool) -> EpisodeData:
        """Read one file, checking its family and task before its arrays are loaded."""
        p = Path(os.fspath(path))
        if p.is_file():
            attrs = peek_attrs(p)
            if "task" in attrs:
                family = attrs.get("family") or task_family(attrs["task"])
                if family != self.family:
                    raise DatasetError(
                        f"{p}: holds {attrs['task']} of family {family!r}, but this dataset is "
                        f"of family {self.family!r} (tasks {list(self.tasks)})")
                if attrs["task"] != task:
                    raise DatasetError(f"{p}: holds {attrs['task']}, but it was given for {task}"
                                       " (its layout differs or the file is misplaced)")
            if self.env_options is not None:
                check_env_options(p, task, self.env_options, attrs)
        data = read_dataset(p, task=task, verify=verify, packed=True)
        if data.attrs.get("family", task_family(data.task)) != self.family:
            raise DatasetError(f"{p}: holds {data.task}, not of family {self.family!r}")
        return data

    @classmethod
    def from_dir(cls, root: str | os.PathLike, tasks: Iterable[str], quality: str,
                 **kwargs) -> "MultiTaskDataset":
        """The tasks at one quality from a data directory laid out by ``dataset_path``
        (mixed qualities fall back to their components' files, ``quality_paths``)."""
        options = kwargs.get("env_options")
        return cls({t: quality_paths(root, t, quality, options) for t in tasks}, **kwargs)

    @classmethod
    def from_taskset(cls, taskset: str, quality: str, root: str | os.PathLike,
                     split: str = "train", **kwargs) -> "MultiTaskDataset":
        """A task set's ``train`` (or ``test``) tasks at ``quality`` from a data directory."""
        from envs.tasksets import load_taskset

        task_set = load_taskset(taskset)
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        tasks = task_set.train_tasks if split == "train" else task_set.test_tasks
        kwargs.setdefault("family", task_set.family)
        kwargs.setdefault("env_options", task_set.env_options)
        return cls.from_dir(root, tasks, quality, **kwargs)

    # -- facts
    @property
    def n_episodes(self) -> dict[str, int]:
        return {t: d.n_episodes for t, d in self.data.items()}

    def memory_report(self) -> dict[str, int]:
        """Bytes of tensors held per task."""
        return {t: d.memory_bytes() for t, d in self.data.items()}

    def __repr__(self) -> str:
        mb = {t: round(b / 2**20, 1) for t, b in self.memory_report().items()}
        return (f"MultiTaskDataset(family={self.family!r}, episodes={self.n_episodes}, "
                f"MiB={mb}, device={self.device})")

    # -- sampling
    def sample(self, batch_size: int, task: str | None = None,
               generator: torch.Generator | None = None) -> EntityBatch:
        """``batch_size`` episodes of ``task`` (its own sizes), or, with ``task=None``,
        ``batch_size`` episodes of every task concatenated (``B = batch_size * n_tasks``, task
        order) and padded to the largest counts. Without replacement within a task; the same
        ``generator`` state gives the same batch."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
                or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if task is not None and task not in self.data:
            raise DatasetError(f"task {task!r} is not in this dataset; tasks: {list(self.tasks)}")
        tasks = [task] if task is not None else list(self.tasks)
        picks = []
        for t in tasks:
            n = self.data[t].n_episodes
            if batch_size > n:
                raise ValueError(f"batch_size {batch_size} exceeds the {n} episodes of {t}")
            picks.append(torch.randperm(n, generator=generator)[:batch_size])
        device = self.device
        return _assemble([(self.data[t], p.to(device), self.task_ids[t])
                          for t, p in zip(tasks, picks)])


__all__ = [
    "EntityBatch",
    "MultiTaskDataset",
    "SUBSETS",
    "Source",
    "TaskData",
]
