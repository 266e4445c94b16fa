"""``marl compare RUN_DIR ...``: algorithms x tasks over training seeds, with paired differences.

Each run folder holds the report of ``marl evaluate`` (``eval/zero_shot.json``). Runs are
grouped by algorithm (or by ``labels``); a run is one training seed. Statistics are rliable's
(Agarwal et al., NeurIPS 2021), never hand-written:

* per task, the mean over runs of each run's score (win rate on SMAC, else return; a run
  evaluated with several evaluation seeds counts their mean) with a 95 % percentile interval
  from the bootstrap over runs;
* over the unseen tasks, each row's mean and interquartile mean (IQM) with stratified-bootstrap
  intervals (runs resampled within each task);
* against a ``baseline`` row (default ``bc`` when present): the **paired** difference of the
  unseen mean, run by run, pairing runs of the same training seed (``experiments/compare.py``
  evaluates both on that seed's battles), with a bootstrap interval over the pairs, and the
  probability of improvement P(row > baseline) over runs and unseen tasks with its interval.
  A difference whose interval contains 0, or measured on fewer than 3 pairs, is reported as
  not resolved by the protocol.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from marl.evaluate import EvalError

REPS = 2000  # bootstrap replications (rliable's default is 50000; the intervals settle by 2000)
MIN_PAIRS = 3  # paired differences over fewer training seeds are never called resolved


def _rliable():
    # rliable passes arch a RandomState, which arch 7 warns about on every call
    warnings.filterwarnings("ignore", category=FutureWarning, module="arch")
    from rliable import library, metrics

    return library, metrics


def interval(scores: np.ndarray, func) -> tuple[float, float, float]:
    """Point estimate and 95 % percentile interval of ``func`` (an aggregate of a
    ``[runs, tasks]`` matrix) under rliable's stratified bootstrap, seeded for repeatability."""
    library, _ = _rliable()
    scores = np.asarray(scores, dtype=float).reshape(len(scores), -1)
    point, ci = library.get_interval_estimates(
        {"x": scores}, lambda x: np.array([func(x)]), reps=REPS,
        random_state=np.random.RandomState(0))
    return float(point["x"][0]), float(ci["x"][0][0]), float(ci["x"][1][0])


def mean_ci(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean over runs and its 95 % bootstrap interval (the mean itself for one run)."""
    return interval(np.asarray(values, dtype=float)[:, None], np.mean)


def iqm_ci(scores: np.ndarray) -> tuple[float, float, float]:
    """Interquartile mean of a ``[runs, tasks]`` matrix and its stratified-bootstrap interval."""
    _, metrics = _rliable()
    return interval(scores, metrics.aggregate_iqm)


def improvement_ci(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """P(X > Y) over runs and tasks of two ``[runs, tasks]`` matrices, with its interval."""
    library, metrics = _rliable()
    point, ci = library.get_interval_estimates(
        {"p": [x, y]}, lambda a, b: np.array([metrics.probability_of_improvement(a, b)]),
        reps=REPS, random_state=np.random.RandomState(0))
    return float(point["p"][0]), float(ci["p"][0][0]), float(ci["p"][1][0])


def load_report(run: str | Path, name: str = "zero_shot") -> dict:
    path = Path(run) / "eval" / f"{name}.json"
    if not path.is_file():
        raise EvalError(f"{run}: no evaluation report {path}; run `marl evaluate {run}` first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise EvalError(f"{path}: not a valid report ({exc})") from None


def compare(reports: Sequence[dict], labels: Sequence[str] | None = None,
            baseline: str | None = "bc") -> dict:
    """Aggregate reports (one per run) into ``{label: {task: [mean, lo, hi, n]}}`` plus, per
    label, the unseen-task IQM and the paired difference to ``baseline`` (skipped when no row
    has that name)."""
    if labels is not None and len(labels) != len(reports):
        raise EvalError(f"{len(labels)} labels for {len(reports)} runs")
    groups: dict[str, list[dict]] = {}
    for i, rep in enumerate(reports):
        groups.setdefault(labels[i] if labels else rep["algo"], []).append(rep)
    tasks: dict[str, str] = {}
    for rep in reports:
        for r in rep["results"]:
            tasks.setdefault(r["task"], r["split"])
    unseen_tasks = [t for t, s in tasks.items() if s == "unseen"]
    metric = reports[0]["summary"]["metric"] if reports else "win_rate"
    table: dict[str, dict] = {}
    unseen_scores: dict[str, dict[int, np.ndarray]] = {}
    for label, reps in groups.items():
        row = {}
        for task in tasks:
            per_run = [rep["summary"]["tasks"][task] for rep in reps
                       if task in rep["summary"]["tasks"]]
            if per_run:
                row[task] = [*mean_ci(per_run), len(per_run)]
        complete = [rep for rep in reps if all(t in rep["summary"]["tasks"] for t in unseen_tasks)]
        partial = len(complete) < len(reps)
        if unseen_tasks and complete:
            by_seed = {_seed(rep, i): np.array([rep["summary"]["tasks"][t] for t in unseen_tasks])
                       for i, rep in enumerate(complete)}
            unseen_scores[label] = by_seed
            matrix = np.stack(list(by_seed.values()))
            row["unseen mean"] = [*mean_ci(matrix.mean(1)), len(matrix)]
            row["unseen IQM"] = [*iqm_ci(matrix), len(matrix)]
            if partial:
                row["partial"] = f"{len(reps) - len(complete)} run(s) lack an unseen task"
        table[label] = row
    paired = {}
    if baseline in unseen_scores:
        base = unseen_scores[baseline]
        for label, by_seed in unseen_scores.items():
            seeds = sorted(set(by_seed) & set(base))
            if label == baseline or not seeds:
                continue
            diff = np.array([by_seed[s].mean() - base[s].mean() for s in seeds])
            m, lo, hi = mean_ci(diff)
            x = np.stack([by_seed[s] for s in sorted(by_seed)])
            y = np.stack([base[s] for s in sorted(base)])
            # a bootstrap over one or two pairs has a degenerate interval: it resolves nothing
            enough = len(seeds) >= MIN_PAIRS
            paired[label] = {"difference": [m, lo, hi], "pairs": len(seeds), "seeds": seeds,
                             "probability_of_improvement": list(improvement_ci(x, y)),
                             "resolved": bool(enough and (lo > 0 or hi < 0)),
                             "why_not": (None if enough and (lo > 0 or hi < 0) else
                                         "the interval contains 0" if enough else
                                         f"{len(seeds)} pair(s), fewer than {MIN_PAIRS}")}
    return {"metric": metric, "tasks": tasks, "table": table, "baseline": baseline,
            "paired": paired,
            "runs": {label: [rep["run"] for rep in reps] for label, reps in groups.items()}}


def _seed(report: dict, index: int) -> int:
    """The training seed of a report's run (for pairing); its position when unknown."""
    return int(report.get("train_seed", index))


def _cell(stats) -> str:
    m, lo, hi, n = stats
    return f"{m:.2f} [{lo:.2f}, {hi:.2f}] ({n})" if n > 1 else f"{m:.2f} (1)"


def markdown(result: dict) -> str:
    columns = [t for t, s in result["tasks"].items() if s == "unseen"] + \
        [t for t, s in result["tasks"].items() if s == "train"]
    if any("unseen mean" in row for row in result["table"].values()):
        columns += ["unseen mean", "unseen IQM"]
    head = [c.split(":", 1)[-1] + (" (train)" if result["tasks"].get(c) == "train" else "")
            for c in columns]
    lines = [f"{result['metric']}: mean over runs [95 % bootstrap interval, rliable] (n runs)", "",
             "| algorithm | " + " | ".join(head) + " |",
             "|---|" + "---|" * len(columns)]
    for label, row in result["table"].items():
        cells = [_cell(row[c]) if c in row else "–" for c in columns]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    notes = [f"{label}: partial, {row['partial']}" for label, row in result["table"].items()
             if "partial" in row]
    if result.get("paired"):
        base = result["baseline"]
        lines += ["", f"Paired against {base} (runs of the same training seed, unseen mean):", "",
                  f"| algorithm | difference to {base} [95 % interval] | pairs | "
                  f"P(better than {base}) [95 % interval] | resolved |", "|---|---|---|---|---|"]
        for label, p in result["paired"].items():
            m, lo, hi = p["difference"]
            pm, plo, phi = p["probability_of_improvement"]
            lines.append(f"| {label} | {m:+.3f} [{lo:+.3f}, {hi:+.3f}] | {p['pairs']} | "
                         f"{pm:.2f} [{plo:.2f}, {phi:.2f}] | "
                         f"{'yes' if p['resolved'] else 'no: ' + p['why_not']} |")
    if notes:
        lines += [""] + notes
    return "\n".join(lines)


def plot(result: dict, path: str | Path) -> list[Path]:
    """Bar charts with 95 % intervals, as PNG and SVG: each row's unseen mean (left) and its
    paired difference to the baseline (right; a bar whose interval crosses 0 is not resolved).
    Returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [label for label, row in result["table"].items() if "unseen mean" in row]
    if not rows:
        raise EvalError("no run has an unseen task: nothing to plot")
    paired = result.get("paired", {})
    fig, axes = plt.subplots(1, 2 if paired else 1, figsize=(10 if paired else 5.5,
                                                              0.45 * len(rows) + 1.4),
                             squeeze=False, sharey=True)
    y = np.arange(len(rows))[::-1]
    means = np.array([result["table"][r]["unseen mean"][:3] for r in rows])
    ax = axes[0, 0]
    ax.barh(y, means[:, 0], xerr=[means[:, 0] - means[:, 1], means[:, 2] - means[:, 0]],
            color="#0072B2", capsize=3)
    ax.set_yticks(y, [f"{r} (n={result['table'][r]['unseen mean'][3]})" for r in rows])
    ax.set_xlabel(f"unseen {result['metric'].replace('_', ' ')}: mean over runs, 95 % CI")
    if paired:
        ax = axes[0, 1]
        base = result["baseline"]
        diffs = np.array([paired[r]["difference"] if r in paired else [np.nan] * 3
                          for r in rows])
        colours = ["#009E73" if r in paired and paired[r]["resolved"] else "#999999"
                   for r in rows]
        ax.barh(y, diffs[:, 0], xerr=[diffs[:, 0] - diffs[:, 1], diffs[:, 2] - diffs[:, 0]],
                color=colours, capsize=3)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_xlabel(f"paired difference to {base} (same training seed), 95 % CI;\n"
                      "grey: not resolved")
    fig.tight_layout()
    out = []
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # SVG text stays text
        for suffix in (".png", ".svg"):
            target = Path(path).with_suffix(suffix)
            fig.savefig(target, dpi=120)
            out.append(target)
    plt.close(fig)
    return out
