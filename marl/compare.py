"""``marl compare RUN_DIR ...``: one table of algorithms x tasks over seeds.

Each run folder holds the report of ``marl evaluate`` (``eval/zero_shot.json``). Runs are
grouped by algorithm (or by ``labels``); a run is one seed. For every task the table gives the
mean over seeds of the run's score (win rate on SMAC, else return; a run evaluated with several
evaluation seeds counts their mean) and a 95 % confidence interval from Student's t over seeds.
The last column is the mean over unseen tasks, computed per run and then aggregated the same way.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from marl.evaluate import EvalError

# two-sided 95 % Student t quantiles by degrees of freedom (1.96 beyond)
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
        9: 2.262, 10: 2.228, 15: 2.131, 20: 2.086, 30: 2.042}


def t95(dof: int) -> float:
    if dof in _T95:
        return _T95[dof]
    smaller = [d for d in _T95 if d < dof]
    return _T95[max(smaller)] if dof <= 30 else 1.96


def mean_ci(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and 95 % t-interval over seeds (the interval is the mean itself for one seed)."""
    v = np.asarray(values, dtype=float)
    m = float(v.mean())
    if len(v) < 2:
        return m, m, m
    half = t95(len(v) - 1) * float(v.std(ddof=1)) / math.sqrt(len(v))
    return m, m - half, m + half


def bounded(stats: tuple[float, float, float], metric: str) -> tuple[float, float, float]:
    """A win rate's interval clipped to [0, 1] (a t-interval over 3 seeds can overshoot)."""
    if metric != "win_rate":
        return stats
    m, lo, hi = stats
    return m, max(lo, 0.0), min(hi, 1.0)


def load_report(run: str | Path, name: str = "zero_shot") -> dict:
    path = Path(run) / "eval" / f"{name}.json"
    if not path.is_file():
        raise EvalError(f"{run}: no evaluation report {path}; run `marl evaluate {run}` first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise EvalError(f"{path}: not a valid report ({exc})") from None


def compare(reports: Sequence[dict], labels: Sequence[str] | None = None) -> dict:
    """Aggregate reports (one per run/seed) into ``{label: {task: [mean, lo, hi, n]}}``."""
    if labels is not None and len(labels) != len(reports):
        raise EvalError(f"{len(labels)} labels for {len(reports)} runs")
    groups: dict[str, list[dict]] = {}
    for i, rep in enumerate(reports):
        groups.setdefault(labels[i] if labels else rep["algo"], []).append(rep)
    tasks: dict[str, str] = {}
    for rep in reports:
        for r in rep["results"]:
            tasks.setdefault(r["task"], r["split"])
    metric = reports[0]["summary"]["metric"] if reports else "win_rate"
    table: dict[str, dict] = {}
    for label, reps in groups.items():
        row = {}
        for task in tasks:
            per_run = [rep["summary"]["tasks"][task] for rep in reps
                       if task in rep["summary"]["tasks"]]
            if per_run:
                row[task] = [*bounded(mean_ci(per_run), metric), len(per_run)]
        unseen = [rep["summary"]["unseen_mean"] for rep in reps
                  if rep["summary"]["unseen_mean"] is not None]
        if unseen:
            row["unseen mean"] = [*bounded(mean_ci(unseen), metric), len(unseen)]
        table[label] = row
    return {"metric": metric, "tasks": tasks, "table": table,
            "runs": {label: [rep["run"] for rep in reps] for label, reps in groups.items()}}


def markdown(result: dict) -> str:
    columns = [t for t, s in result["tasks"].items() if s == "unseen"] + \
        [t for t, s in result["tasks"].items() if s == "train"]
    if any("unseen mean" in row for row in result["table"].values()):
        columns.append("unseen mean")
    head = [c.split(":", 1)[-1] + (" (train)" if result["tasks"].get(c) == "train" else "")
            for c in columns]
    lines = [f"{result['metric']}: mean over seeds [95 % t-interval] (n seeds)", "",
             "| algorithm | " + " | ".join(head) + " |",
             "|---|" + "---|" * len(columns)]
    for label, row in result["table"].items():
        cells = []
        for c in columns:
            if c not in row:
                cells.append("–")
                continue
            m, lo, hi, n = row[c]
            cells.append(f"{m:.2f} [{lo:.2f}, {hi:.2f}] ({n})" if n > 1 else f"{m:.2f} (1)")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
