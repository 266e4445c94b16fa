"""``marl quickstart``: the whole pipeline on the embedded simulator, in minutes on a laptop.

1. build marine-easy expert datasets (3m, 5m, 10m) from the shipped behaviour policies;
2. train HiSSD on them (``marl/quickstart.yaml``);
3. evaluate it greedily on the training maps and on unseen maps (zero-shot);
4. write ``results.md`` / ``results.json`` and a skill figure (``skills.png``): 2-D PCA of the
   common and task-specific skills of dataset steps, coloured by task.

Every step resumes: finished datasets are kept, a finished training run is reused.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from marl import SHIPPED_POLICIES

CONFIG = Path(__file__).resolve().parent / "quickstart.yaml"  # package data
UNSEEN = ("smac:4m", "smac:7m", "smac:12m")


def quickstart(out: str | Path = "runs/quickstart", episodes: int | None = None,
               updates: int | None = None, eval_episodes: int = 32,
               unseen: tuple[str, ...] = UNSEEN, log=None) -> dict:
    # Long on purpose: the job's steps (data, training, evaluation, figures) one after another.
    from marl.collect import build_taskset
    from marl.config import load_config
    from marl.rollout import evaluate_task
    from marl.runs import build_model, load_checkpoint
    from marl.train import train

    out = Path(out)
    start = time.perf_counter()

    def say(msg: str) -> None:
        line = f"[quickstart {time.perf_counter() - start:5.0f} s] {msg}"
        (log or (lambda s: print(s, flush=True)))(line)

    overrides = [f"data.root={out / 'data'}"]
    if episodes is not None:
        overrides.append(f"data.episodes={episodes}")
    if updates is not None:
        overrides.append(f"updates={updates}")
    cfg = load_config(CONFIG, overrides)
    if cfg.data.episodes < cfg.batch_size:  # toy sizes: a batch cannot exceed the data
        cfg = load_config(CONFIG, overrides + [f"batch_size={cfg.data.episodes}"])
    say(f"1/4 datasets: {cfg.data.taskset} {cfg.data.quality}, {cfg.data.episodes} episodes "
        f"per map, from {SHIPPED_POLICIES}")
    build_taskset(cfg.data.taskset, cfg.data.quality, cfg.data.episodes, SHIPPED_POLICIES,
                  cfg.data.root, log=say)

    run = out / "run"
    say(f"2/4 training HiSSD for {cfg.updates} updates into {run}")
    if (run / "checkpoints" / "last.pt").exists():
        train(cfg, run, resume=True, log=say)
    else:
        train(cfg, run, log=say)

    from marl.runs import load_dataset

    taskset, data = load_dataset(cfg)
    model = build_model(cfg, data.family)
    model.load_state_dict(load_checkpoint(run / "checkpoints" / "last.pt", cfg.algo)["model"])
    model.eval()
    tasks = list(taskset.train_tasks) + [t for t in unseen if t not in taskset.train_tasks]
    say(f"3/4 zero-shot evaluation, {eval_episodes} greedy episodes on {tasks}")
    results = []
    for task in tasks:
        r = evaluate_task(model, task, eval_episodes, seed=cfg.eval.seed,
                          env_options=taskset.env_options)
        r["split"] = "train" if task in taskset.train_tasks else "unseen"
        results.append(r)
        say(f"   {task:<12} {r['split']:<6} win rate {r['win_rate']:.2f}  "
            f"return {r['return_mean']:.1f}")
    say("4/4 skill health (marl diagnose) and skill figure")
    from marl.diagnose import skill_health, summary

    health = skill_health(model, data, episodes=32, seed=cfg.seed)
    table = results_table(results) + "\n\nSkill health on 32 episodes of each training map " \
        "(`marl diagnose`):\n\n```\n" + summary(health) + "\n```"
    (out / "results.md").write_text(table + "\n")
    (out / "results.json").write_text(json.dumps({"run": str(run), "results": results,
                                                  "health": health}, indent=2))
    figure = skill_figure(model, data, out / "skills.png", seed=cfg.seed)
    say(f"done in {time.perf_counter() - start:.0f} s: {out / 'results.md'}, {figure}")
    print(table)
    return {"results": results, "figure": str(figure), "run": str(run)}


def results_table(results: list[dict]) -> str:
    lines = ["| task | split | win rate (95 % CI) | return | episode length |",
             "|---|---|---|---|---|"]
    for r in results:
        lo, hi = r["win_rate_ci95"]
        lines.append(f"| {r['task']} | {r['split']} | {r['win_rate']:.2f} ({lo:.2f}-{hi:.2f}) "
                     f"| {r['return_mean']:.1f} ± {r['return_std']:.1f} | {r['length_mean']:.1f} |")
    unseen = [r["win_rate"] for r in results if r["split"] == "unseen"]
    if unseen:
        lines.append(f"| mean of unseen | unseen | {sum(unseen) / len(unseen):.2f} | | |")
    return "\n".join(lines)


@torch.no_grad()
def skill_figure(model, data, path: Path, seed: int = 0, per_task: int = 300) -> Path:
    """PCA of the common and task-specific skills of ``per_task`` (step, agent) samples of each
    training task, coloured by task (Okabe-Ito palette, colour-blind safe)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from marl.diagnose import variance_ratio

    gen = torch.Generator().manual_seed(seed)
    kinds: dict[str, list[torch.Tensor]] = {}
    labels = []
    for i, task in enumerate(data.tasks):
        batch = data.sample(min(32, data.data[task].n_episodes), task=task, generator=gen)
        skills = model.skills(batch.obs)
        valid = (batch.mask[..., None] > 0) & batch.agent_mask[:, None, :]
        for kind, values in skills.items():
            picked = values[valid]
            idx = torch.randperm(len(picked), generator=gen)[:per_task]
            kinds.setdefault(kind, []).append(picked[idx])
        labels += [i] * min(per_task, int(valid.sum()))
    labels_t = torch.tensor(labels)
    palette = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7"]
    titles = {"common": "common skills", "task": "task-specific skills"}
    fig, axes = plt.subplots(1, len(kinds), figsize=(5 * len(kinds), 4.5), squeeze=False)
    for ax, (kind, parts) in zip(axes[0], kinds.items()):
        x = torch.cat(parts)
        ratio = variance_ratio({i: x[labels_t == i] for i in range(len(data.tasks))})
        spread = float((x - x.mean(0)).pow(2).sum(1).mean().sqrt())
        x = x - x.mean(0)
        _, _, v = torch.linalg.svd(x, full_matrices=False)
        xy = x @ v[:2].T
        for i, task in enumerate(data.tasks):
            sel = labels_t == i
            ax.scatter(xy[sel, 0], xy[sel, 1], s=6, alpha=0.6, color=palette[i % len(palette)],
                       label=task)
        ax.set_title(f"HiSSD {titles.get(kind, kind)} (PCA)\nRMS spread {spread:.2g}, "
                     f"between/within-map variance {ratio:.2g}", fontsize=9)
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
        ax.legend(markerscale=3, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
