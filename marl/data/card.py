"""The dataset card: a text summary of one file (``marl datasets inspect``): statistics, a
histogram of returns, the behaviour policy and how it acted, and whether the checksum holds."""

from __future__ import annotations

import json
import os

import numpy as np

from marl.data.errors import DatasetError
from marl.data.format import read_dataset

# ---------------------------------------------------------------------------------- the card
def _histogram(values: np.ndarray, bins: int = 10, width: int = 40) -> list[str]:
    finite = values[np.isfinite(values)]
    if len(finite) < len(values):  # a damaged file: say so instead of failing to draw
        note = [f"    ({len(values) - len(finite)} of {len(values)} returns are not finite)"]
        if not len(finite):
            return note
        return note + _histogram(finite, bins, width)
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
    return inspect_dataset(path, task)[0]


def inspect_dataset(path: str | os.PathLike, task: str | None = None) -> tuple[str, str | None]:
    """(the card, the first problem found or None). A file that does not verify still gets a
    card where its arrays can be read unverified, with the problem in its last line;
    ``marl datasets inspect`` then exits 1."""
    problem = None
    try:
        data = read_dataset(path, task=task, verify=True)
        verdict = "OK"
    except DatasetError as exc:
        data = read_dataset(path, task=task, verify=False)
        problem = str(exc)
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
    return "\n".join(lines) + "\n", problem


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
