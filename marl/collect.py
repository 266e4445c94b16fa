"""Collect offline datasets from behaviour policies, at ODIS's data qualities.

``collect(task, policy, quality, episodes, out)`` runs a policy on the batched environments and
writes one HDF5 file in the ODIS layout (``marl.data.format``). Episodes are written in shards of
``shard_episodes`` (each an atomic file in ``<out>.parts/``); re-running an interrupted collection
keeps the finished shards and collects only the missing ones (shard ``k`` always uses seed
``seed + k``, so the result does not depend on where it was interrupted), then merges the shards
into ``out`` with an atomic rename. A file at ``out`` is therefore always complete.

Policies come from a behaviour-policy folder (``marl/policies/<task>/`` or a
``marl behavior train`` run): ``poor``, ``medium`` and ``expert`` use one snapshot greedily, as
ODIS collected its data in test mode; ``medium-replay`` samples (stochastically, like training
rollouts) from every snapshot up to the medium one in equal shares; ``medium-expert`` joins a
medium and an expert file half and half. Which snapshot is which is decided in one place,
:func:`choose_snapshots`.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import envs
from envs.core import EnvError
from marl import SHIPPED_POLICIES
from marl.behavior import act, family_adapter, load_policy, partition_bridge
from marl.behavior.gait import SUFFIX as GAIT_SUFFIX
from marl.behavior.gait import driver as gait_driver
from marl.behavior.gait import is_gait, load_gait
from marl.data.episodes import record_episodes


@dataclass(frozen=True)
class Snapshot:
    path: Path
    metadata: dict

    @property
    def greedy(self) -> bool:
        """Whether this snapshot acts greedily when collecting: always for discrete families (as
        ODIS collected in test mode); for continuous ones (MuJoCo) only when its Gaussian mean
        scored at least as well as sampled actions, since a policy can learn to rely on its
        noise, which the environment's action clipping turns into strong actions (as D4RL, which
        collected MuJoCo data with sampled actions)."""
        if not self.metadata["config"]["task"].startswith("mamujoco:"):
            return True
        return self.metadata["greedy"]["return"] >= self.metadata["sampled"]["return"]

    @property
    def name(self) -> str:
        """The snapshot's name in its folder: ``expert``, ``00120``, ..."""
        return self.path.name.removesuffix(GAIT_SUFFIX).removesuffix(".safetensors")

    @property
    def score(self) -> float:
        """How good this snapshot is, acting as it collects: its win rate (SMAC) or return."""
        result = self.metadata["greedy" if self.greedy else "sampled"]
        return result.get("win_rate", result["return"])


def list_snapshots(folder: str | Path) -> list[Snapshot]:
    """Snapshots of a behaviour run (``snapshots/*.safetensors``) or of a shipped policy folder
    (``*.safetensors``, or scripted gaits ``*.gait.json``: ``marl.behavior.gait``), in training
    order, each with its JSON provenance record."""
    folder = Path(folder)
    gaits = sorted(folder.glob(f"*{GAIT_SUFFIX}"))
    if gaits:  # a gait file is its own record
        return sorted((Snapshot(f, load_gait(f)[1]) for f in gaits), key=_steps)
    files = sorted((folder / "snapshots").glob("*.safetensors")) or sorted(folder.glob("*.safetensors"))
    if not files:
        raise EnvError(f"no behaviour-policy snapshots (*.safetensors or *{GAIT_SUFFIX}) in {folder}")
    snaps = []
    for f in files:
        meta_path = f.with_suffix(".json")
        if not meta_path.exists():
            raise EnvError(f"snapshot {f} has no provenance record {meta_path.name}")
        snaps.append(Snapshot(f, json.loads(meta_path.read_text())))
    return sorted(snaps, key=lambda s: s.metadata["env_steps"])


def _steps(snap: Snapshot) -> int:
    return snap.metadata["env_steps"]


BAND_EXPERT = 0.8  # a 40-60 % medium is "half of the expert" only for an expert this good


def _medium(snaps: list[Snapshot], first: float, best: float) -> Snapshot:
    """The medium snapshot among ``snaps`` (training order): for SMAC, where the expert wins at
    least ``BAND_EXPERT`` of its battles, the earliest whose greedy win rate is in the medium
    quality's band (40-60 %, ``marl.data.qualities``: half of such an expert); otherwise (a
    weaker expert, no snapshot in the band, or returns) the earliest at least halfway from
    ``first`` to ``best`` (returns may be negative, so "half of the expert" is measured from
    the start)."""
    from marl.data.qualities import QUALITIES

    low, high = QUALITIES["medium"].win_rate
    if best >= BAND_EXPERT and all("win_rate" in s.metadata["greedy"] for s in snaps):
        in_band = [s for s in snaps if low <= s.score <= high]
        if in_band:
            return in_band[0]
    halfway = first + (best - first) / 2
    return next(s for s in snaps if s.score >= halfway)


def choose_snapshots(snaps: list[Snapshot], quality: str) -> tuple[list[Snapshot], bool]:
    """The snapshots a quality is collected from, and whether actions are greedy (see
    ``Snapshot.greedy``; medium-replay samples).

    A shipped policy folder names its picks (``poor``, ``medium``, ``expert``, ``replay_*``:
    ``export_policies``). From a training run: expert is the best snapshot (ties: the latest),
    medium is chosen by ``_medium``, poor is the first snapshot, and medium-replay is every
    snapshot up to the medium one, sampled."""
    from marl.data.qualities import check_quality

    check_quality(quality)
    named = {s.name: s for s in snaps}
    if {"poor", "medium", "expert"} <= named.keys():
        poor, medium, best = named["poor"], named["medium"], named["expert"]
        replays = sorted((s for n, s in named.items() if n.startswith("replay_")), key=_steps)
        replay = [poor, *replays, medium]
    else:
        best = max(snaps, key=lambda s: (s.score, _steps(s)))
        poor, medium = snaps[0], _medium(snaps, snaps[0].score, best.score)
        replay = [s for s in snaps if _steps(s) <= _steps(medium)]
    if quality in ("expert", "medium", "poor"):
        snap = {"expert": best, "medium": medium, "poor": poor}[quality]
        return [snap], snap.greedy
    if quality == "medium-replay":
        return replay, False
    raise EnvError(f"quality {quality!r} is not collected from snapshots (medium-expert joins files)")


def export_policies(run: str | Path, out: str | Path, max_replay: int = 4, command: str = "",
                    medium_run: str | Path | None = None, medium_command: str = "") -> dict:
    """Copy the snapshots the data qualities need from a behaviour run into a policy folder to
    ship (``marl/policies/<task>/``), named by what they are for: the first (``poor``), up
    to ``max_replay`` evenly spaced ones before the medium one (``replay_*``, medium-replay),
    ``medium`` and ``expert``, each with its provenance record, plus ``provenance.json``
    (command, seed, steps, measured results).

    ``medium_run``: a second run of the same task with denser snapshots (``--snapshot-every
    1``) for maps learned so fast that the main run's snapshots jump over the medium band;
    medium and replay_* then come from it (the band, or halfway from the main run's first score
    to its expert's), poor and expert from the main run."""
    snaps = list_snapshots(run)
    (expert,), _ = choose_snapshots(snaps, "expert")
    poor = snaps[0]
    config = expert.metadata["config"]
    source = list_snapshots(medium_run) if medium_run is not None else snaps
    if source[0].metadata["config"]["task"] != config["task"]:
        raise EnvError(f"{medium_run} is a run of {source[0].metadata['config']['task']}, not "
                       f"{config['task']}")
    medium = _medium(source, poor.score, expert.score)
    before = [s for s in source if s is not poor and _steps(s) < _steps(medium)]
    picks = np.linspace(0, len(before) - 1, min(max_replay, len(before))).round().astype(int)
    keep = {"poor": poor, "medium": medium, "expert": expert}  # one snapshot may fill two roles
    for i, k in enumerate(sorted(set(picks.tolist()))):
        keep[f"replay_{i + 1}"] = before[k]
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name, snap in keep.items():
        shutil.copyfile(snap.path, out / f"{name}.safetensors")
        shutil.copyfile(snap.path.with_suffix(".json"), out / f"{name}.json")
    record = {
        "task": config["task"], "command": command, "seed": config["seed"],
        "total_env_steps": _steps(snaps[-1]),
        # the simulator options (e.g. the SMAX opponent) it was trained and scored against
        "env_options": expert.metadata.get("env_options"),
        "snapshots": {name: {**{k: snap.metadata[k] for k in ("env_steps", "greedy", "sampled")},
                             "acts": "greedy" if snap.greedy else "sampled"}
                      for name, snap in keep.items()},
    }
    if medium_run is not None:
        record["medium_run"] = {
            "command": medium_command,
            "why": "medium and replay_* come from this separate run of the same configuration "
                   "with denser snapshots (training is not bit-identical across snapshot "
                   "frequencies); poor and expert from the main run",
            "greedy_score_by_env_steps": {str(_steps(s)): s.score for s in source},
        }
    (out / "provenance.json").write_text(json.dumps(record, indent=2))
    return record


def run_episodes(task: str, snapshots: list[Snapshot], sampling: str, episodes: int, seed: int,
                 num_envs: int = 64, env_options: dict | None = None, progress=None):
    """``episodes`` finished episodes from the snapshots in equal shares, acting by ``sampling``
    (``marl.behavior.jax_ppo.parse_sampling``): ODIS-layout arrays [episodes, T+1, ...],
    per-episode battle_won (None outside SMAC), and the task's EnvInfo. SMAC on SMAX plays
    inside one compiled program (``marl.behavior.jax_ppo.Recorder``); other families step on the
    host with the torch actor."""
    from marl.behavior.jax_ppo import Recorder, parse_sampling

    mode, epsilon = parse_sampling(sampling)
    env = envs.make(task, num_envs=min(num_envs, episodes), seed=seed, **(env_options or {}))
    compiled = env.info.family == "smac" and env.info.backend == "smax"
    recorder = Recorder(env, env.num_envs, mode) if compiled else None
    fam = family_adapter(env.info)
    gen = torch.Generator().manual_seed(seed)
    shares = np.diff(np.linspace(0, episodes, len(snapshots) + 1).round().astype(int))
    parts, wins, done = [], [], 0
    for i, (snap, share) in enumerate(zip(snapshots, shares)):
        if share == 0:  # more snapshots than episodes
            continue
        if is_gait(snap.path):
            if mode == "epsilon":
                raise EnvError(f"{snap.path} is a scripted gait: it collects with sampling greedy "
                               f"or sampled (Gaussian action noise), not {sampling}")
            arrays, won = record_episodes(env, gait_driver(snap.path, env, mode == "greedy", seed + i),
                                          share, seed=seed + i)
        elif compiled:
            actor = load_policy(snap.path, env.info)
            weights = {k: v.numpy() for k, v in actor.state_dict().items()}
            arrays, won = recorder.record(weights, share, seed + i, seed + 1000 + i, epsilon)
        else:
            actor = load_policy(snap.path, env.info)  # checks that it is a policy of this family
            if getattr(actor, "gru", None) is not None:
                raise EnvError(f"{snap.path} is a recurrent policy: it collects on SMAX (the "
                               f"compiled recorder), not on {env.info.backend}")
            bridge = partition_bridge(actor, env.info)  # a policy of another partition

            def choose(ts):
                if bridge is None:
                    return act(actor, fam, ts.obs, ts.avail_actions, mode == "greedy", gen,
                               epsilon=epsilon if mode == "epsilon" else 0.0)[0]
                drive, source_fam = bridge
                return drive.actions(act(actor, source_fam, drive.observe(ts.state), None,
                                         mode == "greedy", gen,
                                         epsilon=epsilon if mode == "epsilon" else 0.0)[0])

            arrays, won = record_episodes(env, choose, share, seed=seed + i)
        parts.append(arrays)
        wins.append(won)
        done += share
        if progress:
            progress(done)
    arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return arrays, (None if wins[0] is None else np.concatenate(wins)), env.info


def _progress(label: str, total: int):
    def show(done: int) -> None:
        width = 30
        filled = int(width * done / max(total, 1))
        sys.stderr.write(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()
    return show


def _check_same_policy(out: Path, card: dict, policy: str | Path) -> None:
    """A finished file is kept only if the snapshots it was collected from are still the
    folder's: a retrained or re-scripted policy records other results, and keeping the old
    file would train on the old behaviour without a word."""
    used = [snap for part in card.get("joined", [card]) for snap in part.get("snapshots", [])]
    if not used or not Path(policy).is_dir():
        return
    now = {s.path.name: s.metadata for s in list_snapshots(policy)}
    for snap in used:
        current = now.get(snap["file"])
        if current is None or any(current.get(k) != snap.get(k) for k in ("env_steps", "greedy", "sampled")):
            raise EnvError(f"{out} was collected from another version of {policy}/{snap['file']} "
                           f"(its recorded greedy result {snap.get('greedy')} is not the folder's "
                           f"{None if current is None else current.get('greedy')}): delete the file "
                           "to collect it again, or write to another --out")


def collect(task: str, policy: str | Path, quality: str, episodes: int, out: str | Path,
            seed: int = 0, num_envs: int = 64, shard_episodes: int = 250,
            env_options: dict | None = None, show_progress: bool = True,
            sampling: str | None = None) -> Path:
    """Collect ``episodes`` episodes of ``quality`` into the HDF5 file ``out`` (resumable).
    ``env_options`` None: those of the opponent the policy was trained against. ``sampling``
    None: the quality's own (``choose_snapshots``); else greedy, sampled or epsilon:E,
    recorded in the file's ``behavior_policy`` attribute and its card."""
    # Long on purpose: the collection job (resume, policy, env, recording, shards) reads top to
    # bottom.
    from marl.behavior.jax_ppo import parse_sampling
    from marl.data.format import DatasetError, read_dataset, write_dataset
    from marl.data.paths import check_env_options

    if episodes < 1:
        raise EnvError(f"collect {task} {quality}: episodes must be at least 1, got {episodes}")
    if sampling is not None:
        parse_sampling(sampling)
    out = Path(out)
    if out.exists():
        try:  # finished before: kept only if it still verifies ...
            read_dataset(out, task)
        except DatasetError as exc:
            print(f"{out} does not verify ({exc}); collecting it again", flush=True)
            out.unlink()
    if out.exists():  # ... and was collected under the options asked for now
        if env_options is not None:
            check_env_options(out, task, env_options)
        card = read_dataset(out, task, verify=False).attrs.get("behavior_policy", {})
        recorded = card.get("sampling")
        if sampling is not None and recorded is not None and recorded != sampling:
            raise EnvError(f"{out} holds actions chosen by sampling={recorded!r}, not {sampling!r}: "
                           "write to another --out (or delete the file)")
        _check_same_policy(out, card, policy)
        return out
    parts = out.with_name(out.name + ".parts")
    if quality == "medium-expert":  # ODIS: medium and expert episodes, half and half
        parts.mkdir(parents=True, exist_ok=True)
        halves = [collect(task, policy, q, n, parts / f"{q}.h5", seed + i, num_envs, shard_episodes,
                          env_options, show_progress, sampling)
                  for i, (q, n) in enumerate((("medium", episodes // 2), ("expert", episodes - episodes // 2)))]
        datas = [read_dataset(h) for h in halves]
        arrays = {key: np.concatenate([d.arrays[key] for d in datas]) for key in datas[0].arrays}
        wins = None if datas[0].wins is None else np.concatenate([d.wins for d in datas])
        write_dataset(out, arrays, task=task, backend=datas[0].attrs["backend"], quality=quality,
                      behavior_policy={"id": " + ".join(d.attrs["behavior_policy"]["id"] for d in datas),
                                       "joined": [d.attrs["behavior_policy"] for d in datas]},
                      seed=seed, env_options=datas[0].attrs.get("env_options"), battle_won=wins)
        shutil.rmtree(parts)
        return out
    snaps = list_snapshots(policy)
    if quality == "medium-replay" and any((Path(policy) / "replay").glob("*.h5")):
        return _replay_from_rollouts(task, Path(policy), snaps, episodes, out, seed, env_options)
    chosen, greedy = choose_snapshots(snaps, quality)
    sampling = sampling or ("greedy" if greedy else "sampled")
    n_shards = -(-episodes // shard_episodes)
    kind = "gait" if is_gait(chosen[0].path) else "mappo"
    provenance = {"id": f"{kind}:{Path(policy).name}/" + "+".join(s.name for s in chosen),
                  "policy_folder": str(policy), "sampling": sampling,
                  "snapshots": [{"file": s.path.name, "env_steps": s.metadata["env_steps"],
                                 "greedy": s.metadata["greedy"], "sampled": s.metadata["sampled"]}
                                for s in chosen]}
    if env_options is None:  # play against the opponent the policy was trained against
        defaults = envs.option_defaults(task)
        trained = chosen[0].metadata.get("env_options") or {}
        options = {k: v for k, v in trained.items() if k in defaults and v != defaults[k]}
    else:
        options = dict(env_options)
    show = _progress(f"{task} {quality}", episodes) if show_progress else None
    parts.mkdir(parents=True, exist_ok=True)
    try:
        for k in range(n_shards):
            shard = parts / f"shard_{k:05d}.h5"
            size = min(shard_episodes, episodes - k * shard_episodes)
            if shard.exists():  # from an interrupted run: reused only under the same options
                check_env_options(shard, task, options)
                continue
            done_before = k * shard_episodes
            arrays, wins, info = run_episodes(
                task, chosen, sampling, size, seed + k, num_envs, options,
                (lambda n: show(done_before + n)) if show else None)
            write_dataset(shard, arrays, task=task, backend=info.backend, quality=quality,
                          behavior_policy=provenance, seed=seed + k, env_info=info,
                          env_options=options, battle_won=wins)
    except BaseException:
        if not any(parts.iterdir()):  # nothing collected: leave nothing behind
            parts.rmdir()
        raise
    shards = [read_dataset(parts / f"shard_{k:05d}.h5") for k in range(n_shards)]
    arrays = {key: np.concatenate([s.arrays[key] for s in shards]) for key in shards[0].arrays}
    wins = [s.wins for s in shards]
    write_dataset(out, arrays, task=task, backend=shards[0].attrs["backend"], quality=quality,
                  behavior_policy=provenance, seed=seed, env_options=options,
                  battle_won=np.concatenate(wins) if wins[0] is not None else None)
    shutil.rmtree(parts)
    return out


def _replay_from_rollouts(task: str, run: Path, snaps: list[Snapshot], episodes: int, out: Path,
                          seed: int, env_options: dict | None) -> Path:
    """medium-replay from a run that recorded its training rollouts (``--record-replay``):
    ``episodes`` episodes evenly spread over the rollouts up to the medium snapshot, in
    training order (all of them if fewer were recorded)."""
    from marl.data.format import read_dataset, write_dataset
    from marl.data.paths import check_env_options

    (medium,), _ = choose_snapshots(snaps, "medium")
    files = [f for f in sorted((run / "replay").glob("*.h5")) if int(f.stem) <= _steps(medium)]
    if not files:
        raise EnvError(f"{run}/replay holds no rollouts up to the medium snapshot "
                       f"({_steps(medium):,} env steps)")
    if env_options is not None:
        check_env_options(files[0], task, env_options)
    datas = [read_dataset(f, task) for f in files]
    arrays = {key: np.concatenate([d.arrays[key] for d in datas]) for key in datas[0].arrays}
    wins = np.concatenate([d.wins for d in datas])
    pick = np.unique(np.linspace(0, len(wins) - 1, min(episodes, len(wins))).round().astype(int))
    write_dataset(out, {k: v[pick] for k, v in arrays.items()}, task=task,
                  backend=datas[0].attrs["backend"], quality="medium-replay",
                  behavior_policy={"id": f"mappo-rollouts:{run.name}", "sampling": "sampled",
                                   "source": "the behaviour run's training rollouts",
                                   "up_to_env_steps": _steps(medium), "files": len(files),
                                   "episodes_recorded": int(len(wins))},
                  seed=seed, env_options=datas[0].attrs.get("env_options"), battle_won=wins[pick])
    shutil.rmtree(out.with_name(out.name + ".parts"), ignore_errors=True)
    return out


def build_taskset(taskset: str, quality: str, episodes: int, policies: str | Path = SHIPPED_POLICIES,
                  out: str | Path = "datasets/data", seed: int = 0, num_envs: int = 64,
                  log=print, sampling: str | None = None) -> list[Path]:
    """Datasets of every training task of a task set from the behaviour policies in
    ``policies/<task>/``, or the folder the task set's ``behavior_policies`` names for a task
    (``dataset_path(out, task, quality)``), with the task set's env options. Every policy
    folder is checked before the first collection starts."""
    from envs.tasksets import load_taskset
    from marl.data.paths import dataset_path

    task_set = load_taskset(taskset)
    folders = {task: Path(policies) / task_set.behavior_policies.get(task, task.replace(":", "_"))
               for task in task_set.train_tasks}
    missing = [task for task, folder in folders.items()
               if not any(folder.glob("*.safetensors")) and not any(folder.glob(f"*{GAIT_SUFFIX}"))]
    if missing:
        raise EnvError(
            f"no behaviour policy for {missing} in {policies}; train and export one with "
            f"`marl behavior train TASK --out runs/behavior/NAME` then "
            f"`marl behavior export runs/behavior/NAME --out {policies}/NAME`")
    written = []
    for task, folder in folders.items():
        path = collect(task, folder, quality, episodes,
                       dataset_path(out, task, quality, task_set.env_options),
                       seed=seed, num_envs=num_envs, env_options=task_set.env_options, sampling=sampling)
        log(f"wrote {path}")
        written.append(path)
    return written
