"""``marl visualize RUN_DIR --task smac:12m``: which skills agents are assigned, and how skills
differ between tasks.

1. **Rollouts**: greedy episodes of the task (and, for the skill maps, of the run's training
   tasks), recording every agent's skills at every step (HiSSD: the common skill and the
   task-specific skill ``z``; ODIS: the discrete skill), actions, and SMAX unit positions and
   health.
2. **Skill clusters**: HiSSD's common skills are continuous, so they are discretised by k-means
   fitted on all rollouts together (``k`` given, or chosen by the silhouette score over 2..8);
   clusters are numbered by their first principal coordinate so the numbering is stable, and the
   same clustering colours every figure (``clusters.json``).
3. **Figures** (PNG and SVG, Okabe-Ito colour-blind-safe palette): a skill timeline per episode
   (agent x step, coloured by skill, with each agent's task-specific skill similarity over time);
   skill maps (PCA and t-SNE of common and task-specific skills, coloured by task, agent and
   time) with the silhouette score by task of each kind of skill (``skill_maps.json``: common
   skills should mix across tasks, task-specific ones separate); an annotated battle replay GIF
   (MP4 too where ffmpeg is installed): units coloured by their current skill, health bars,
   attack lines, legend and step counter; for MuJoCo, where offscreen OpenGL works (EGL or
   OSMesa), rendered frames with the bodies each agent drives painted by its current skill.
4. **TensorBoard**: the figures as images and the skills as projector embeddings with
   task/agent/step metadata, in ``OUT/tb``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import envs
from marl.rollout import GreedyPolicy
from envs.core import UserError

PALETTE = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7",
           "#000000"]  # Okabe-Ito


class VizError(UserError):
    """A run or task that cannot be visualised."""


@dataclass
class Rollout:
    task: str
    obs: np.ndarray  # [E, T, A, obs_dim] raw observations (for recomputation)
    skills: dict[str, np.ndarray]  # kind -> [E, T, A, k] (continuous) or [E, T, A] (discrete)
    actions: np.ndarray  # [E, T, A]
    acting: np.ndarray  # [E, T, A] bool: a live agent at a step of its episode
    lengths: np.ndarray  # [E] steps per episode
    units: dict | None  # SMAX: positions [E, T, U, 2], health [E, T, U], alive [E, T, U]
    physics: dict | None  # MuJoCo: qpos [E, T, nq], qvel [E, T, nv] (to render frames)
    n_agents: int
    wins: np.ndarray | None


@torch.no_grad()
def record(model, task: str, episodes: int, seed: int = 0,
           env_options: dict | None = None) -> Rollout:
    """Greedy episodes of ``task`` (all at once), with every agent's skills at every step."""
    env = envs.make(task, num_envs=episodes, seed=seed, **(env_options or {}))
    info = env.info
    policy = GreedyPolicy(model, info)
    frames: dict[str, list] = {"obs": [], "actions": [], "acting": [], "units": [],
                               "physics": []}
    skills: dict[str, list] = {}
    snapshot = getattr(env, "unit_snapshot", None)
    physics = getattr(env, "physics_snapshot", None)

    def keep(ts, actions, playing):
        for kind, value in model.skills(policy.view, policy.acted_with).items():
            skills.setdefault(kind, []).append(value.numpy())
        live = playing[:, None] & (policy.avail[..., 1:].any(-1).numpy()
                                   if policy.avail is not None
                                   else np.ones((episodes, info.n_agents), bool))
        frames["obs"].append(ts.obs), frames["actions"].append(actions)
        frames["acting"].append(live)
        if snapshot is not None:
            frames["units"].append(snapshot())
        if physics is not None:
            frames["physics"].append(physics())

    with torch.no_grad():
        outcomes = envs.play(env, policy, on_step=keep)
    env.close()
    stack = lambda xs: np.stack(xs, axis=1)  # noqa: E731  [E, T, ...]
    units = None
    if frames["units"]:
        units = {k: stack([u[k] for u in frames["units"]])
                 for k in ("positions", "health", "alive")}
    states = None
    if frames["physics"]:
        states = {k: stack([p[k] for p in frames["physics"]]) for k in ("qpos", "qvel")}
    return Rollout(task, stack(frames["obs"]), {k: stack(v) for k, v in skills.items()},
                   stack(frames["actions"]), stack(frames["acting"]), outcomes.lengths, units,
                   states, info.n_agents, outcomes.wins)


# ------------------------------------------------------------------------------ clustering
@dataclass
class SkillClusters:
    centers: np.ndarray  # [k, dim]

    def predict(self, x: np.ndarray) -> np.ndarray:
        d = ((x[..., None, :] - self.centers) ** 2).sum(-1)
        return d.argmin(-1)

    def to_json(self) -> dict:
        return {"k": len(self.centers), "centers": self.centers.tolist()}


def fit_clusters(samples: np.ndarray, k: int | None = None, seed: int = 0,
                 max_k: int = 8) -> tuple[SkillClusters, dict[int, float]]:
    """k-means on skill vectors ``[N, dim]`` (k given, or the best silhouette over 2..max_k);
    clusters are numbered by their first principal coordinate so numbering is stable."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(seed)
    sub = samples[rng.permutation(len(samples))[:2000]]
    scores: dict[int, float] = {}
    candidates = [k] if k else range(2, min(max_k, len(np.unique(sub.round(4), axis=0))) + 1)
    best = None
    for c in candidates:
        km = KMeans(c, n_init=4, random_state=seed).fit(sub)
        if len(set(km.labels_)) > 1:
            scores[c] = float(silhouette_score(sub, km.labels_))
        if best is None or scores.get(c, -1) > scores.get(best.n_clusters, -1):
            best = km
    centers = best.cluster_centers_
    centred = sub - sub.mean(0)
    axis = np.linalg.svd(centred, full_matrices=False)[2][0]
    order = np.argsort((centers - sub.mean(0)) @ axis)
    return SkillClusters(centers[order]), scores


# ------------------------------------------------------------------------------ figures
def _save(fig, path: Path) -> list[Path]:
    out = [path.with_suffix(".png"), path.with_suffix(".svg")]
    for p in out:
        fig.savefig(p, dpi=100)
    return out


def _labels(rollout: Rollout, clusters: SkillClusters | None) -> np.ndarray:
    """Skill label of every agent at every step ``[E, T, A]`` (-1: dead or after the end)."""
    if "skill" in rollout.skills:  # discrete skills (ODIS)
        labels = rollout.skills["skill"].astype(int)
    else:
        labels = clusters.predict(rollout.skills["common"])
    return np.where(rollout.acting, labels, -1)


def timeline_figure(rollout: Rollout, labels: np.ndarray, episode: int, k: int):
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    length = int(rollout.lengths[episode])
    lab = labels[episode, :length].T  # [A, T]
    has_task = "task" in rollout.skills
    fig, axes = plt.subplots(2 if has_task else 1, 1, figsize=(10, 6 if has_task else 3.5),
                             squeeze=False)
    ax = axes[0, 0]
    cmap = ListedColormap(["#dddddd"] + PALETTE[:k])
    ax.imshow(lab + 1, aspect="auto", cmap=cmap, vmin=0, vmax=k, interpolation="nearest")
    ax.set_xlabel("step")
    ax.set_ylabel("agent")
    ax.set_title(f"{rollout.task}: skill of each agent over time (episode {episode})")
    handles = [plt.Rectangle((0, 0), 1, 1, color=PALETTE[i]) for i in range(k)]
    ax.legend(handles + [plt.Rectangle((0, 0), 1, 1, color="#dddddd")],
              [f"skill {i}" for i in range(k)] + ["dead"], loc="upper left",
              bbox_to_anchor=(1.0, 1.0), fontsize=8)
    if has_task:
        z = rollout.skills["task"][episode, :length]  # [T, A, k]
        mean = rollout.skills["task"][rollout.acting].mean(0)
        sim = (z @ mean) / (np.linalg.norm(z, axis=-1) * np.linalg.norm(mean) + 1e-8)
        ax2 = axes[1, 0]
        for a in range(rollout.n_agents):
            alive = rollout.acting[episode, :length, a]
            ax2.plot(np.where(alive, sim[:, a], np.nan), label=f"agent {a}",
                     color=PALETTE[a % len(PALETTE)], alpha=0.8)
        ax2.set_xlabel("step")
        ax2.set_ylabel("cosine similarity")
        ax2.set_title("task-specific skill: similarity to the task's mean skill")
        ax2.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def joint_timeline_figure(rollout: Rollout, clusters: SkillClusters, episode: int):
    """MuJoCo: the common skill of every controlled joint token over time (rows: agent/joint)."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    length = int(rollout.lengths[episode])
    skills = rollout.skills["joint_common"][episode, :length]  # [T, A, J, k]
    mask = rollout.skills["joint_mask"][episode, 0].astype(bool)  # [A, J]
    labels = clusters.predict(skills)[:, mask].T  # [rows, T]
    rows = [f"agent {a} / token {j}" for a, j in zip(*np.nonzero(mask))]
    k = len(clusters.centers)
    fig, ax = plt.subplots(figsize=(10, 0.3 * len(rows) + 1.5))
    ax.imshow(labels, aspect="auto", cmap=ListedColormap(PALETTE[:k]), vmin=0, vmax=k - 1,
              interpolation="nearest")
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    ax.set_xlabel("step")
    ax.set_title(f"{rollout.task}: common skill of each joint token over time (episode {episode})")
    handles = [plt.Rectangle((0, 0), 1, 1, color=PALETTE[i]) for i in range(k)]
    ax.legend(handles, [f"skill {i}" for i in range(k)], loc="upper left",
              bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.tight_layout()
    return fig


def skill_maps(rollouts: list[Rollout], seed: int = 0, per_task: int = 400):
    """PCA and t-SNE figures of each kind of continuous skill, and silhouette scores by task."""
    # Long on purpose: one figure after another from the same projected skills.
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(seed)
    kinds = [k for k in ("common", "task") if k in rollouts[0].skills]
    data = {k: [] for k in kinds}
    meta = []  # (task index, agent, step)
    for ti, r in enumerate(rollouts):
        e, t, a = np.nonzero(r.acting)
        pick = rng.permutation(len(e))[:per_task]
        for kind in kinds:
            data[kind].append(r.skills[kind][e[pick], t[pick], a[pick]])
        meta += [(ti, int(a_), int(t_)) for a_, t_ in zip(a[pick], t[pick])]
    meta_arr = np.array(meta)
    scores = {}
    figures = {}
    tasks = [r.task for r in rollouts]
    points = {}
    from marl.diagnose import variance_ratio

    scale = {}
    for kind in kinds:
        x = np.concatenate(data[kind])
        points[kind] = x
        # what the map cannot show: the skills' own scale (RMS distance to their mean) and how
        # far apart the tasks are relative to their spread (marl diagnose's figure)
        spread = float(np.sqrt(((x - x.mean(0)) ** 2).sum(1).mean()))
        ratio = variance_ratio({i: torch.from_numpy(x[meta_arr[:, 0] == i])
                                for i in np.unique(meta_arr[:, 0])}) if len(rollouts) > 1 else None
        scale[kind] = f"RMS spread {spread:.2g}" + (
            f", between/within-task variance {ratio:.2g}" if ratio is not None else "")
        if len(rollouts) > 1:
            scores[kind] = float(silhouette_score(x, meta_arr[:, 0]))
    for method in ("pca", "tsne"):
        fig, axes = plt.subplots(len(kinds), 3, figsize=(14, 4.3 * len(kinds)), squeeze=False)
        for row, kind in enumerate(kinds):
            x = points[kind]
            if method == "pca":
                c = x - x.mean(0)
                xy = c @ np.linalg.svd(c, full_matrices=False)[2][:2].T
            else:
                xy = TSNE(2, perplexity=min(30, len(x) // 4), random_state=seed,
                          init="pca").fit_transform(x)
            for col, (by, values) in enumerate((("task", meta_arr[:, 0]),
                                                ("agent", meta_arr[:, 1]),
                                                ("step", meta_arr[:, 2]))):
                ax = axes[row, col]
                if by == "step":
                    sc = ax.scatter(xy[:, 0], xy[:, 1], c=values, s=5, cmap="viridis")
                    fig.colorbar(sc, ax=ax, label="step")
                else:
                    names = tasks if by == "task" else [f"agent {i}" for i in
                                                        range(values.max() + 1)]
                    for i in np.unique(values):
                        sel = values == i
                        ax.scatter(xy[sel, 0], xy[sel, 1], s=5, color=PALETTE[i % len(PALETTE)],
                                   label=names[i])
                    ax.legend(fontsize=7, markerscale=2,
                              ncol=1 if len(np.unique(values)) < 8 else 2)
                label = "common skills" if kind == "common" else "task-specific skills"
                sil = f", silhouette by task {scores[kind]:.2f}" if kind in scores else ""
                ax.set_title(f"{label} by {by}{sil}\n{scale[kind]}", fontsize=9)
                ax.set_xlabel(f"{method.upper()} 1")
                ax.set_ylabel(f"{method.upper()} 2")
        fig.suptitle(f"Skill maps ({method.upper()}) over {', '.join(tasks)}")
        fig.tight_layout()
        figures[method] = fig
    return figures, scores, points, meta_arr, tasks


def _animate(fig, draw, frames: int, path: Path, fps: int) -> list[Path]:
    """``draw(i)`` for each frame, saved as ``path.gif`` (and ``path.mp4`` with ffmpeg)."""
    import matplotlib.pyplot as plt
    from matplotlib.animation import FFMpegWriter, FuncAnimation, PillowWriter

    anim = FuncAnimation(fig, draw, frames=frames, blit=False)
    out = [path.with_suffix(".gif")]
    anim.save(out[0], writer=PillowWriter(fps=fps))
    if shutil.which("ffmpeg"):
        out.append(path.with_suffix(".mp4"))
        anim.save(out[1], writer=FFMpegWriter(fps=fps))
    plt.close(fig)
    return out


def replay(rollout: Rollout, labels: np.ndarray, episode: int, k: int, path: Path) -> list[Path]:
    """Animated GIF (and MP4 with ffmpeg) of one SMAX battle: allies coloured by skill, enemies
    in black, health bars, attack lines, legend and step counter."""
    import matplotlib.pyplot as plt

    if rollout.units is None:
        raise VizError(f"{rollout.task}: replays need SMAX unit positions (SMAC tasks)")
    u = {key: v[episode] for key, v in rollout.units.items()}
    length, n_a = int(rollout.lengths[episode]), rollout.n_agents
    pos = u["positions"][:length]
    flat = pos.reshape(-1, 2)
    centre = (flat.min(0) + flat.max(0)) / 2
    half = (flat.max(0) - flat.min(0)).max() / 2 + 2  # a square view of the whole battle
    lo, hi = centre - half, centre + half
    fig, ax = plt.subplots(figsize=(6, 6))

    def draw(t):
        ax.clear()
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_aspect("equal")
        ax.set_title(f"{rollout.task}, episode {episode}: step {t + 1}/{length}")
        alive, health, p = u["alive"][t], u["health"][t], pos[t]
        for i in range(len(p)):
            if not alive[i]:
                continue
            ally = i < n_a
            color = (PALETTE[labels[episode, t, i] % len(PALETTE)]
                     if ally and labels[episode, t, i] >= 0 else "#444444")
            ax.scatter(*p[i], s=120, color=color, marker="o" if ally else "X",
                       edgecolors="black", linewidths=0.5, zorder=3)
            ax.add_patch(plt.Rectangle((p[i, 0] - 0.6, p[i, 1] + 0.7), 1.2, 0.18,
                                       color="#bbbbbb", zorder=2))
            ax.add_patch(plt.Rectangle((p[i, 0] - 0.6, p[i, 1] + 0.7), 1.2 * health[i], 0.18,
                                       color="#009E73", zorder=2))
            if ally and rollout.actions[episode, t, i] >= 6:
                target = n_a + rollout.actions[episode, t, i] - 6
                ax.plot(*zip(p[i], p[target]), color=color, lw=1, alpha=0.7, zorder=1)
        handles = [plt.Line2D([], [], marker="o", ls="", color=PALETTE[s], label=f"skill {s}")
                   for s in range(k)]
        handles.append(plt.Line2D([], [], marker="X", ls="", color="#444444", label="enemy"))
        ax.legend(handles=handles, loc="upper right", fontsize=7)
        return []

    return _animate(fig, draw, length, path, fps=4)


def mujoco_replay(rollout: Rollout, labels: np.ndarray, episode: int, k: int, path: Path,
                  env_options: dict, max_frames: int = 200) -> list[Path]:
    """Animated GIF (and MP4 with ffmpeg) of one MuJoCo episode rendered offscreen: the bodies
    each agent drives painted with its current common skill, legend, per-agent skill and step
    counter. Long episodes are shown every ``ceil(length / max_frames)``-th step."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgba

    from envs.mamujoco_render import render_states

    length = int(rollout.lengths[episode])
    steps = np.arange(0, length, -(-length // max_frames))
    skill = labels[episode, steps]  # [F, A], -1 where an agent is not acting
    colors = np.array([to_rgba(c) for c in PALETTE] + [to_rgba("#888888")], dtype=np.float32)
    env = envs.make(rollout.task, num_envs=1, seed=0, **env_options)
    try:
        frames = render_states(env, rollout.physics["qpos"][episode, steps],
                               rollout.physics["qvel"][episode, steps],
                               colors[np.where(skill >= 0, skill % len(PALETTE), -1)])
    finally:
        env.close()
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.93)
    image = ax.imshow(frames[0])
    ax.set_axis_off()
    title = ax.set_title("")
    status = ax.text(0.01, 0.02, "", transform=ax.transAxes, fontsize=8, va="bottom",
                     bbox=dict(facecolor="white", alpha=0.8, lw=0))
    handles = [plt.Rectangle((0, 0), 1, 1, color=PALETTE[s]) for s in range(k)]
    ax.legend(handles, [f"skill {s}" for s in range(k)], loc="upper right", fontsize=7)

    def draw(i):
        image.set_data(frames[i])
        title.set_text(f"{rollout.task}, episode {episode}: step {steps[i] + 1}/{length}")
        status.set_text("  ".join(f"agent {a}: skill {s}" if s >= 0 else f"agent {a}: -"
                                  for a, s in enumerate(skill[i])))
        return []

    return _animate(fig, draw, len(steps), path, fps=10)


# ------------------------------------------------------------------------------ the command
def visualize(run_dir: str | Path, task: str, episodes: int = 4, out: str | Path | None = None,
              checkpoint: str = "last", clusters: int | None = None, seed: int = 0,
              map_tasks: list[str] | None = None, replay_frames: int = 200, log=print) -> dict:
    # Long on purpose: the command's steps (rollouts, figures, clusters, replay) one after another.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torch.utils.tensorboard import SummaryWriter

    from envs.tasksets import load_taskset
    from marl.runs import check_task_family, load_run_model

    cfg, model, path, ckpt = load_run_model(run_dir, checkpoint)
    check_task_family(task, ckpt, path)
    if not model.has_skills:
        raise VizError(f"{run_dir} is a {cfg.algo} run: it has no skills to visualise "
                       "(HiSSD and ODIS runs have)")
    options = dict(load_taskset(cfg.data.taskset).env_options)
    out = Path(out or Path(run_dir) / "figures" / task.replace(":", "_"))
    out.mkdir(parents=True, exist_ok=True)
    tasks = [task] + [t for t in (map_tasks if map_tasks is not None else ckpt["tasks"])
                      if t != task]
    gl = None
    if ckpt["family"] == "mamujoco":  # rendered frames need offscreen GL, set before import
        from envs.mamujoco_render import use_offscreen_gl

        gl = use_offscreen_gl()
    log(f"recording {episodes} greedy episodes on each of {tasks}")
    rollouts = [record(model, t, episodes, seed, options) for t in tasks]
    main = rollouts[0]
    written: dict[str, list] = {}
    summary: dict = {"run": str(run_dir), "checkpoint": str(path), "task": task,
                     "tasks": tasks, "episodes": episodes, "seed": seed}
    if "common" in main.skills:
        samples = np.concatenate([r.skills["common"][r.acting] for r in rollouts])
        fitted, scores = fit_clusters(samples, clusters, seed)
        summary["clusters"] = {"k": len(fitted.centers), "silhouette_by_k": scores}
        (out / "clusters.json").write_text(json.dumps(fitted.to_json()))
    else:
        fitted = None
        summary["clusters"] = {"k": int(main.skills["skill_values"].shape[-1]), "discrete": True}
    k = summary["clusters"]["k"]
    summary["episode_lengths"] = main.lengths.tolist()
    labels = _labels(main, fitted)
    np.save(out / "timeline_labels.npy", labels)
    writer = SummaryWriter(str(out / "tb"))
    for e in range(episodes):
        fig = timeline_figure(main, labels, e, k)
        written.setdefault("timelines", []).extend(_save(fig, out / f"timeline_ep{e}"))
        writer.add_figure(f"timeline/{task}/episode_{e}", fig, close=True)
    if "joint_common" in main.skills:  # MuJoCo: joint-level timelines, own clustering
        joints = np.concatenate([r.skills["joint_common"][r.acting][r.skills["joint_mask"]
                                                                    [r.acting].astype(bool)]
                                 for r in rollouts])
        joint_clusters, _ = fit_clusters(joints, clusters, seed)
        for e in range(episodes):
            fig = joint_timeline_figure(main, joint_clusters, e)
            written.setdefault("joint_timelines", []).extend(
                _save(fig, out / f"joint_timeline_ep{e}"))
            writer.add_figure(f"joint_timeline/{task}/episode_{e}", fig, close=True)
    continuous = [kind for kind in ("common", "task") if kind in main.skills]
    if continuous:
        figures, sil, points, meta, names = skill_maps(rollouts, seed)
        summary["silhouette_by_task"] = sil
        for method, fig in figures.items():
            written.setdefault("skill_maps", []).extend(_save(fig, out / f"skill_map_{method}"))
            writer.add_figure(f"skill_map/{method}", fig, close=True)
        for kind, x in points.items():
            writer.add_embedding(torch.from_numpy(x), metadata=[
                [names[ti], str(a), str(t)] for ti, a, t in meta],
                metadata_header=["task", "agent", "step"], tag=f"{kind}_skills")
    if main.units is not None:
        log("rendering the replay")
        written["replay"] = [str(p) for p in replay(main, labels, 0, k, out / "replay_ep0")]
    if main.physics is not None:
        if gl is None:
            summary["replay_skipped"] = ("no offscreen OpenGL for MuJoCo (tried MUJOCO_GL=egl "
                                         "and osmesa; Debian: apt-get install libosmesa6)")
            log(f"no rendered replay: {summary['replay_skipped']}")
        else:
            log(f"rendering the replay (MUJOCO_GL={gl})")
            written["replay"] = mujoco_replay(main, labels, 0, k, out / "replay_ep0", options,
                                              replay_frames)
    writer.close()
    summary["files"] = {key: [str(p) for p in v] for key, v in written.items()}
    (out / "skill_maps.json").write_text(json.dumps(summary, indent=2))
    plt.close("all")
    log(f"wrote {out}")
    return summary
