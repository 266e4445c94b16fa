"""Zero-shot evaluation and `marl compare`: the evaluator measures what it claims, reports agree,
seeds reproduce, bad input fails clearly, seeds aggregate correctly."""

from __future__ import annotations

import json
import math

import pytest
import torch

from marl.checkpoint import load as load_checkpoint_file
from marl.compare import compare, markdown, mean_ci, plot
from envs import EnvError
from marl.evaluate import EvalError, evaluate_run, markdown_table, marl_eval_json, write_report
from marl.rollout import evaluate_task
from marl.runs import RunError
from marl.nets import family_spec

class FocusFire:
    """Scripted policy on the entity view: attack the weakest enemy in range, else walk east."""

    spec = family_spec("smac")
    training = False

    def eval(self):
        return self

    def train(self, mode=True):
        return self

    def remember(self, memory, view, actions):
        return None

    def act(self, view, avail, memory=None):
        health = view.enemies[..., 5]
        shootable = avail[..., 6:]
        target = torch.where(shootable, health, torch.full_like(health, math.inf)).argmin(-1)
        walk = torch.where(avail[..., 4], 4, 1)  # east, else stop
        action = torch.where(shootable.any(-1), 6 + target, walk)
        return torch.where(avail[..., 0], torch.zeros_like(action), action)


class Random(FocusFire):
    def act(self, view, avail, memory=None):
        return (torch.rand(avail.shape, generator=torch.Generator().manual_seed(0)) * avail
                ).argmax(-1)


def test_evaluator_measures_what_it_claims():
    good = evaluate_task(FocusFire(), "smac:3m", episodes=32, seed=0)
    bad = evaluate_task(Random(), "smac:3m", episodes=32, seed=0)
    assert good["win_rate"] > 0.4 and bad["win_rate"] < 0.1, (good["win_rate"], bad["win_rate"])
    assert good["win_rate"] == pytest.approx(sum(good["episode_wins"]) / 32)
    assert good["return_mean"] == pytest.approx(sum(good["episode_returns"]) / 32)
    lo, hi = good["win_rate_ci95"]
    assert lo < good["win_rate"] < hi
    assert len(good["episode_lengths"]) == 32 and min(good["episode_lengths"]) >= 1
    # a won SMAC battle returns exactly 20
    for won, ret in zip(good["episode_wins"], good["episode_returns"]):
        if won:
            assert ret == pytest.approx(20.0, abs=1e-3)


def test_report_json_markdown_and_marl_eval_agree(tiny_run, tmp_path):
    report = evaluate_run(tiny_run, tasks=["smac:3m", "smac:12m"], episodes=4, seeds=[0, 1],
                          workers=1, log=lambda s: None)
    paths = write_report(report, tmp_path, tensorboard_dir=tmp_path / "tb")
    saved = json.loads(paths["json"].read_text())
    table = paths["markdown"].read_text()
    assert saved["errors"] == [] and len(saved["results"]) == 4
    assert {(r["task"], r["seed"], r["split"]) for r in saved["results"]} == {
        ("smac:3m", 0, "train"), ("smac:3m", 1, "train"),
        ("smac:12m", 0, "unseen"), ("smac:12m", 1, "unseen")}
    for r in saved["results"]:
        lo, hi = r["win_rate_ci95"]
        assert f"| {r['task']} | {r['split']} | {r['seed']} | {r['win_rate']:.3f} " \
               f"({lo:.3f}-{hi:.3f}) | {r['return_mean']:.2f} ± {r['return_std']:.2f}" in table
    s = saved["summary"]
    by_task = {t: [r["win_rate"] for r in saved["results"] if r["task"] == t]
               for t in ("smac:3m", "smac:12m")}
    assert s["tasks"]["smac:12m"] == pytest.approx(sum(by_task["smac:12m"]) / 2)
    assert s["unseen_mean"] == pytest.approx(s["tasks"]["smac:12m"])
    assert f"| **mean of unseen tasks** | unseen | all | {s['unseen_mean']:.3f}" in table
    me = json.loads(paths["marl_eval"].read_text())
    runs = me["smac"]["12m"]["hissd"]
    assert set(runs) == {"seed_0", "seed_1"}
    wins = runs["seed_1"]["absolute_metrics"]["win_rate"]
    assert len(wins) == 4 and sum(wins) / 4 == by_task["smac:12m"][1]
    assert marl_eval_json(report) == me
    assert list((tmp_path / "tb").iterdir())


def test_same_seed_same_results_and_workers_agree(tiny_run):
    a = evaluate_run(tiny_run, tasks=["smac:3m", "smac:4m"], episodes=4, workers=1,
                     log=lambda s: None)
    b = evaluate_run(tiny_run, tasks=["smac:3m", "smac:4m"], episodes=4, workers=2,
                     log=lambda s: None)
    key = lambda rep: sorted((r["task"], r["episode_returns"], r["episode_wins"])  # noqa: E731
                             for r in rep["results"])
    assert key(a) == key(b)


def test_a_failing_task_is_reported_and_the_others_finish(tiny_run, tmp_path, monkeypatch):
    """A task that fails while it plays (task names are checked before anything runs, so the
    failure is injected) is reported by name; the other tasks finish and the command exits 1."""
    import marl.evaluate
    from marl.cli import main

    played = marl.evaluate.evaluate_task

    def fails_on_4m(model, task, *args, **kwargs):
        if task == "smac:4m":
            raise RuntimeError("the simulator broke")
        return played(model, task, *args, **kwargs)

    monkeypatch.setattr(marl.evaluate, "evaluate_task", fails_on_4m)
    (tmp_path / "zero_shot.json").write_text("a complete earlier report")
    run_files = sorted(tiny_run.rglob("*"))
    code = main(["evaluate", str(tiny_run), "--tasks", "smac:3m,smac:4m", "--episodes", "2",
                 "--workers", "1", "--out", str(tmp_path)])
    assert code == 1
    # the failed run writes zero_shot-partial.*, leaving the complete report as it was
    assert (tmp_path / "zero_shot.json").read_text() == "a complete earlier report"
    assert sorted(tiny_run.rglob("*")) == run_files  # --out: nothing written into the run
    report = json.loads((tmp_path / "zero_shot-partial.json").read_text())
    assert [r["task"] for r in report["results"]] == ["smac:3m"]
    assert [e["task"] for e in report["errors"]] == ["smac:4m"]
    assert "the simulator broke" in report["errors"][0]["error"]
    assert "smac:4m" in (tmp_path / "zero_shot-partial.md").read_text()
    # the means are over what finished, and say they are partial
    assert report["summary"]["partial"] == ["smac:4m seed 0"]
    assert "| **mean of train tasks (partial: no result for smac:4m seed 0)** |" in \
        (tmp_path / "zero_shot-partial.md").read_text()


def test_bad_input_is_one_clear_error(tiny_run, tmp_path, capsys):
    from marl.cli import main

    with pytest.raises(RunError, match="family 'mpe'.*trained on 'smac'"):
        evaluate_run(tiny_run, tasks=["mpe:spread-3"], workers=1)
    with pytest.raises(EnvError, match="unknown task family"):
        evaluate_run(tiny_run, tasks=["smoc:3m"], workers=1)
    # a misspelt map is refused before anything runs, so no report is overwritten
    with pytest.raises(EnvError, match="3mm"):
        evaluate_run(tiny_run, tasks=["smac:3m", "smac:3mm"], workers=1)
    ckpt = load_checkpoint_file(tiny_run / "checkpoints" / "last.pt")
    ckpt["algo"] = "bc"
    torch.save(ckpt, tmp_path / "other.pt")
    with pytest.raises(RunError, match="algorithm 'bc', not 'hissd'"):
        evaluate_run(tiny_run, checkpoint=str(tmp_path / "other.pt"), workers=1)
    ckpt["algo"], ckpt["version"] = "hissd", 99
    torch.save(ckpt, tmp_path / "future.pt")
    assert main(["evaluate", str(tiny_run), "--checkpoint", str(tmp_path / "future.pt")]) == 2
    assert "not a marl checkpoint of version 1" in capsys.readouterr().err


def _report(algo: str, run: str, scores: dict[str, float], unseen: list[str],
            seed: int | None = None) -> dict:
    rows = [{"task": t, "split": "unseen" if t in unseen else "train", "win_rate": v}
            for t, v in scores.items()]
    u = [v for t, v in scores.items() if t in unseen]
    report = {"algo": algo, "run": run, "results": rows,
              "summary": {"metric": "win_rate", "tasks": scores,
                          "unseen_mean": sum(u) / len(u) if u else None, "train_mean": None}}
    if seed is not None:
        report["train_seed"] = seed
    return report


def test_compare_aggregates_seeds_with_bootstrap_intervals():
    unseen = ["smac:12m", "smac:4m"]
    reports = [_report("hissd", f"h{i}", {"smac:3m": 1.0, "smac:12m": v, "smac:4m": w}, unseen)
               for i, (v, w) in enumerate([(0.5, 0.7), (0.6, 0.8), (0.7, 0.9)])]
    reports.append(_report("bc", "b0", {"smac:3m": 0.9, "smac:12m": 0.4, "smac:4m": 0.2}, unseen))
    result = compare(reports)
    m, lo, hi, n = result["table"]["hissd"]["smac:12m"]
    # the bootstrap of three runs' mean stays within their range and covers the mean
    assert n == 3 and m == pytest.approx(0.6) and 0.5 <= lo < 0.6 < hi <= 0.7
    assert result["table"]["hissd"]["unseen mean"][0] == pytest.approx(0.7)
    assert result["table"]["bc"]["smac:4m"] == [0.2, 0.2, 0.2, 1]
    table = markdown(result)
    assert "| hissd | 0.60 [" in table and "| bc | 0.40 (1)" in table
    assert table.index("12m") < table.index("3m (train)")
    assert mean_ci([1.0]) == (1.0, 1.0, 1.0)
    labelled = compare(reports, labels=["a", "a", "b", "c"])
    assert set(labelled["table"]) == {"a", "b", "c"}
    with pytest.raises(EvalError, match="2 labels for 4 runs"):
        compare(reports, labels=["a", "b"])


def test_compare_pairs_runs_by_training_seed():
    """HiSSD beats BC by exactly 0.1 on every seed, while the seeds themselves differ by far
    more: the paired difference is resolved, an unpaired comparison would not be."""
    unseen = ["smac:12m", "smac:4m"]
    level = {0: 0.2, 1: 0.5, 2: 0.8, 3: 0.35, 4: 0.65}
    reports = []
    for seed, base in level.items():
        reports.append(_report("bc", f"b{seed}", {"smac:12m": base, "smac:4m": base}, unseen, seed))
        reports.append(_report("hissd", f"h{seed}", {"smac:12m": base + 0.1, "smac:4m": base + 0.1},
                               unseen, seed))
        reports.append(_report("odis", f"o{seed}", {"smac:12m": base + (0.05 if seed % 2 else -0.05),
                                                    "smac:4m": base}, unseen, seed))
    result = compare(reports)
    hissd = result["paired"]["hissd"]
    assert hissd["difference"] == pytest.approx([0.1, 0.1, 0.1]) and hissd["pairs"] == 5
    assert hissd["resolved"] and 0.5 < hissd["probability_of_improvement"][0] < 1.0
    lo, hi = result["table"]["hissd"]["unseen mean"][1:3]
    assert lo < result["table"]["bc"]["unseen mean"][0] < hi  # unpaired intervals overlap
    assert not result["paired"]["odis"]["resolved"]
    table = markdown(result)
    assert "| hissd | +0.100 [+0.100, +0.100] | 5 |" in table
    assert "no: the interval contains 0" in table
    iqm = result["table"]["bc"]["unseen IQM"][0]
    assert iqm == pytest.approx(0.5)  # IQM of 0.2 .. 0.8 drops the quartiles at both ends
    # the same exact +0.1 on two seeds only: a degenerate bootstrap, never called resolved
    two = compare([r for r in reports if r["train_seed"] in (0, 1) and r["algo"] != "odis"])
    assert two["paired"]["hissd"]["difference"] == pytest.approx([0.1, 0.1, 0.1])
    assert not two["paired"]["hissd"]["resolved"]
    assert "no: 2 pair(s), fewer than 3" in markdown(two)
    # a run missing an unseen task is left out of the unseen columns and the row says so
    reports.append(_report("bc", "b9", {"smac:12m": 0.1}, ["smac:12m"], 9))
    assert "partial" in compare(reports)["table"]["bc"]


def test_compare_plot_draws_means_and_paired_differences(tmp_path, capsys):
    import matplotlib.image

    from marl.cli import main

    unseen = ["smac:12m"]
    reports = [_report(algo, f"{algo}{s}", {"smac:12m": 0.3 + 0.1 * s + bonus}, unseen, s)
               for algo, bonus in (("bc", 0.0), ("hissd", 0.2)) for s in range(4)]
    files = plot(compare(reports), tmp_path / "cmp")
    assert [f.name for f in files] == ["cmp.png", "cmp.svg"]
    image = matplotlib.image.imread(files[0])
    assert image.shape[0] > 100 and image.shape[1] > 500  # two panels side by side
    svg = files[1].read_text()
    assert "hissd (n=4)" in svg and "paired difference to bc" in svg
    with pytest.raises(EvalError, match="no run has an unseen task"):
        plot(compare([_report("bc", "b", {"smac:3m": 1.0}, [])]), tmp_path / "none")
    assert main(["compare", "somewhere", "--plot"]) == 2
    assert "--plot writes OUT.png" in capsys.readouterr().err


def test_markdown_table_of_a_report_lists_errors():
    report = {"algo": "hissd", "taskset": "t", "quality": "expert", "checkpoint": "c",
              "update": 1, "episodes": 2, "results": [],
              "errors": [{"task": "smac:0m", "seed": 0, "error": "EnvError: bad map"}],
              "summary": {"metric": "win_rate", "tasks": {}, "train_mean": None,
                          "unseen_mean": None}}
    assert "| smac:0m | error | 0 | EnvError: bad map |" in markdown_table(report)
