"""Skill health: whether a run's skills, value and advantages are doing anything.

``marl diagnose RUN`` (and, every ``health_interval`` updates, training itself as TensorBoard
scalars ``health/...``) plays the run's model over whole episodes of its training data, without
the simulator, and measures, per training task:

* **task-specific skill** ``z`` (HiSSD): the share of its entries saturated (``|z| > 0.99``),
  the ratio of between-task to within-task variance (over all tasks), and the share of greedy
  actions that change when each agent's ``z`` is replaced by a random ``z`` of another training
  task. A ``z`` that changes no action is switched off, whatever the loss curves say.
* **common skills** (HiSSD): the share of greedy actions that change when the common skills are
  shuffled across agents and steps, and the forward model's error with its own skills against
  shuffled ones (``forward_skill_dependence = 1 - error / shuffled error``: 0 means the forward
  model ignores the skills).
* **value**: the mean team value against the mean Monte-Carlo discounted return-to-go of the
  data (both in the learner's reward scale), their correlation, and the share of values above
  the largest return that can be earned (where the family fixes it, `envs.Family.max_return`: a
  won SMAC battle, 20 before scaling, a won grid episode, 1; other families:
  the largest return-to-go in the data).
* **advantages** (HiSSD): their correlation with the episode's outcome (won, where the data
  record it, and the episode's return), the mean advantage weight on transitions of won and
  of lost episodes, and the share below zero.
* **ODIS**: the share of greedy actions that change when an agent's chosen skill is replaced
  by another, how the chosen skills are used, and its ``Q_tot`` against the returns.

Algorithms without skills (BC, UPDeT) get the data figures, and the report says which figures
do not apply. A model takes part through ``probe(transitions, generator, foreign_z)``
(``marl.algos``); its keys say which figures it can give.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

import envs
from envs.core import UserError
from marl.algos.common import transitions

SATURATED = 0.99


class DiagnoseError(UserError):
    """A run or its data cannot be diagnosed (missing run, checkpoint or dataset)."""


def correlation(x: torch.Tensor, y: torch.Tensor) -> float | None:
    """Pearson correlation of two 1-D tensors; None where either is constant or empty."""
    x, y = x.double(), y.double()
    if x.numel() < 2:
        return None
    x, y = x - x.mean(), y - y.mean()
    denominator = float((x.pow(2).sum() * y.pow(2).sum()).sqrt())
    return None if denominator < 1e-12 else float((x * y).sum()) / denominator


def _share(flags: torch.Tensor, where: torch.Tensor) -> float | None:
    n = int(where.sum())
    return None if n == 0 else float((flags & where).sum()) / n


def variance_ratio(z_by_task: dict[str, torch.Tensor]) -> float | None:
    """Between-task over within-task variance of ``z`` (traces of the scatter matrices, each
    divided by its sample count): 0 when every task has the same mean ``z``."""
    groups = [z.double() for z in z_by_task.values() if len(z)]
    if len(groups) < 2:
        return None
    grand = torch.cat(groups).mean(0)
    n = sum(len(z) for z in groups)
    between = sum(len(z) * float((z.mean(0) - grand).pow(2).sum()) for z in groups) / n
    within = sum(float((z - z.mean(0)).pow(2).sum()) for z in groups) / n
    return between / max(within, 1e-12)


def value_figures(value: torch.Tensor, returns: torch.Tensor, largest: float) -> dict:
    """A team value ``[N]`` against the Monte-Carlo returns-to-go ``[N]`` of the same
    transitions (both in the learner's reward scale) and the largest return that can be earned."""
    g_mean = float(returns.mean())
    return {"value_mean": float(value.mean()), "return_to_go_mean": g_mean,
            "ratio": float(value.mean()) / g_mean if g_mean else None,
            "correlation": correlation(value, returns), "largest_return": largest,
            "above_largest_return": float((value > largest + 1e-6).double().mean())}


def advantage_figures(advantage: torch.Tensor, weight: torch.Tensor,
                      episode_return: torch.Tensor, won: torch.Tensor | None) -> dict:
    """Advantages and weights ``[N]`` of transitions against their episodes' return ``[N]``
    and outcome (bool ``[N]``, None where the data do not record wins)."""
    out = {"mean": float(advantage.mean()), "below_zero": float((advantage < 0).double().mean()),
           "correlation_with_return": correlation(advantage, episode_return)}
    if won is not None:
        out["correlation_with_win"] = correlation(advantage, won.double())
        out["weight_won"] = float(weight[won].mean()) if won.any() else None
        out["weight_lost"] = float(weight[~won].mean()) if (~won).any() else None
    return out


def _round(x):
    if isinstance(x, float):
        return None if math.isnan(x) else round(x, 4)
    if isinstance(x, dict):
        return {k: _round(v) for k, v in x.items()}
    return x


def skill_health(model, data, episodes: int = 64, seed: int = 0) -> dict:
    """The skill-health report of ``model`` on up to ``episodes`` episodes of each task of
    ``data`` (a ``MultiTaskDataset``), as a JSON-ready dict."""
    # Long on purpose: the report's figures one after another, each a few lines on shared tensors.
    spec, cfg = model.spec, model.cfg
    gamma, scale = float(getattr(cfg, "gamma", 0.99)), float(getattr(cfg, "reward_scale", 0.1))
    gen = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    drawn = {}
    for task, td in data.data.items():
        pick = torch.randperm(td.n_episodes, generator=gen)[:episodes]
        tr = transitions(td.batch(pick), spec, 0, gen, gamma, cfg=cfg)
        drawn[task] = (td, pick, tr)
    probe = getattr(model, "probe", None)
    z_by_task = {}
    if probe is not None:  # first pass: every task's z, so that another task's can replace it
        for task, (_, _, tr) in drawn.items():
            out = probe(tr, gen)
            if "z" in out:
                z_by_task[task] = out["z"][tr.acting]

    family_max = envs.FAMILIES[spec.name].max_return
    max_return = None if family_max is None else family_max * scale
    tasks = {}
    for task, (td, pick, tr) in drawn.items():
        # every real transition, one per row: tr is [N, 1, ...], so [real] gives [N] in row order
        real = tr.step_mask > 0
        acting = tr.acting
        episode = tr.episode.cpu()
        episode_return = td.returns[pick].double()[episode].to(real.device)
        won = None if td.wins is None else td.wins[pick].bool()[episode].to(real.device)
        g = (tr.returns * scale)[real]
        row = {"data": {"episodes": len(pick), "transitions": int(real.sum()),
                        "return_mean": float(td.returns[pick].double().mean()),
                        "return_to_go_mean": float(g.mean())}}
        if won is not None:
            row["data"]["win_rate"] = float(td.wins[pick].double().mean())
        if probe is None:
            tasks[task] = row
            continue
        others = [z for t, z in z_by_task.items() if t != task]
        out = probe(tr, gen, torch.cat(others) if others else None)
        if "z" in out:
            z = out["z"][acting]
            row["task_skill"] = {"saturated": float((z.abs() > SATURATED).double().mean())
                                 if len(z) else None,
                                 "mean_abs": float(z.abs().mean()) if len(z) else None}
            if "changed_by_z" in out:
                row["task_skill"]["actions_changed_by_other_task_z"] = _share(out["changed_by_z"], acting)
        if "changed_by_common" in out:
            err = float(out["prediction_error"][real].mean())
            shuffled = float(out["prediction_error_shuffled"][real].mean())
            row["common_skill"] = {
                "actions_changed_by_shuffling": _share(out["changed_by_common"], acting),
                "prediction_error": err, "prediction_error_shuffled": shuffled,
                "forward_skill_dependence": 1.0 - err / shuffled if shuffled > 0 else None}
        if "changed_by_skill" in out:
            used = torch.bincount(out["skill"][acting].reshape(-1), minlength=cfg.n_skills)
            row["odis_skill"] = {"actions_changed_by_other_skill": _share(out["changed_by_skill"], acting),
                                 "usage": (used.double() / used.sum().clamp(min=1)).tolist()}
        if "value" in out:
            bound = max_return if max_return is not None else float(g.max())
            row["value"] = value_figures(out["value"][real], g, bound)
            row["value"]["largest_return_source"] = "family" if max_return is not None else "data"
        if "advantage" in out:
            row["advantage"] = advantage_figures(out["advantage"][real], out["weight"][real],
                                                 episode_return, won)
        tasks[task] = row
    model.train(was_training)

    report = {"algo": model.name, "episodes_per_task": episodes, "seed": seed,
              "reward_scale": scale, "gamma": gamma, "tasks": tasks,
              "variance_ratio_between_tasks": variance_ratio(z_by_task) if z_by_task else None}
    report["not_applicable"] = _not_applicable(model, tasks)
    return _round(report)


def _not_applicable(model, tasks: dict) -> list[str]:
    first = next(iter(tasks.values()), {})
    reasons = {"task_skill": "no task-specific skill z", "common_skill": "no common skills",
               "value": "no team value", "advantage": "no advantage weights"}
    return [f"{key}: {model.name} has {why}" for key, why in reasons.items() if key not in first]


def scalars(report: dict) -> dict[str, float]:
    """The report as flat ``health/<task>/<group>/<figure>`` scalars (TensorBoard)."""
    out = {}
    for task, row in report["tasks"].items():
        for group, figures in row.items():
            for name, value in figures.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    out[f"health/{task}/{group}/{name}"] = float(value)
    if report.get("variance_ratio_between_tasks") is not None:
        out["health/task_skill/variance_ratio_between_tasks"] = report["variance_ratio_between_tasks"]
    return out


def summary(report: dict) -> str:
    """A short table of the report, one line per figure and one column per task."""
    tasks = list(report["tasks"])
    keys = []
    for row in report["tasks"].values():
        for group, figures in row.items():
            for name, value in figures.items():
                if isinstance(value, (int, float)) and (group, name) not in keys:
                    keys.append((group, name))
    width = max([len(f"{g}.{n}") for g, n in keys] + [10])
    lines = [f"{'figure':<{width}}  " + "  ".join(f"{t:>18}" for t in tasks)]
    for group, name in keys:
        cells = []
        for t in tasks:
            v = report["tasks"][t].get(group, {}).get(name)
            cells.append(f"{'-' if v is None else format(v, '.3f'):>18}")
        lines.append(f"{group + '.' + name:<{width}}  " + "  ".join(cells))
    if report.get("variance_ratio_between_tasks") is not None:
        lines.append(f"task_skill variance ratio between/within tasks: "
                     f"{report['variance_ratio_between_tasks']:.3f}")
    for line in report["not_applicable"]:
        lines.append(f"not applicable: {line}")
    return "\n".join(lines)


def diagnose_run(run_dir: str | Path, checkpoint: str = "last", episodes: int = 64,
                 seed: int = 0, out: str | Path | None = None, data: str | Path | None = None
                 ) -> dict:
    """Load a run and its data, measure, write ``RUN/eval/health.json`` (or ``out``).
    ``data``: another dataset root holding the run's task set and quality (e.g. episodes
    collected with another seed), so the figures describe episodes the run never trained on."""
    from marl.checkpoint import atomic_write_text
    from marl.runs import load_dataset, load_run_model

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DiagnoseError(f"no run folder at {run_dir}")
    cfg, model, path, ckpt = load_run_model(run_dir, checkpoint)
    cfg.data.episodes = max(episodes, 1) if cfg.data.episodes is None else cfg.data.episodes
    if data is not None:
        cfg.data.root = str(data)
    try:
        _, data = load_dataset(cfg)
    except UserError as exc:
        raise DiagnoseError(f"data of {run_dir} (task set {cfg.data.taskset!r}, quality "
                            f"{cfg.data.quality!r}, root {cfg.data.root!r}): {exc}") from None
    torch.set_num_threads(cfg.threads or torch.get_num_threads())
    report = skill_health(model, data, episodes, seed)
    report.update(run=str(run_dir), checkpoint=str(path), update=int(ckpt.get("update", 0)),
                  data_root=str(cfg.data.root))
    target = Path(out) if out else run_dir / "eval" / "health.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, json.dumps(report, indent=2))
    report["path"] = str(target)
    return report
