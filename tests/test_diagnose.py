"""Skill health (`marl diagnose`): each figure on cases built to have a known answer."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from marl.algos.common import returns_to_go, soft_update_targets
from marl.algos.hissd import HiSSD, HissdConfig
from marl.cli import main
from marl.diagnose import (DiagnoseError, correlation, variance_ratio, advantage_figures,
                           diagnose_run, scalars, skill_health, value_figures)
from marl.nets import TransformerMixer, family_spec
from marl.entity import Tokens

TINY = HissdConfig(dim=16, ffn_mult=2, hidden=32, skill_dim=16, mixer_dim=8,
                   contrastive_samples=16, steps_per_episode=4)


class Oracle(torch.nn.Module):
    """A model whose probe reports the true returns as its value and the episode's outcome as
    its advantage: what a perfect value and advantage would give."""

    name = "oracle"

    def __init__(self, data):
        super().__init__()
        self.spec, self.cfg = family_spec("smac"), replace(TINY)

    def probe(self, tr, generator=None, foreign_z=None):
        v = tr.returns * self.cfg.reward_scale
        return {"value": v, "advantage": v - v.mean(), "weight": torch.exp(v) / torch.exp(v).mean()}


def test_correlation_andvariance_ratio_have_their_textbook_values():
    x = torch.arange(10.0)
    assert correlation(x, 3 * x + 1) == pytest.approx(1.0)
    assert correlation(x, -x) == pytest.approx(-1.0)
    assert correlation(x, torch.ones(10)) is None  # constant: undefined, not 0
    same = {"a": torch.randn(50, 4), "b": torch.randn(50, 4)}
    same["b"] = same["a"].clone()
    assert variance_ratio(same) == pytest.approx(0.0, abs=1e-9)
    apart = {"a": torch.randn(200, 4) * 0.1, "b": torch.randn(200, 4) * 0.1 + 5}
    assert variance_ratio(apart) > 100
    const = {"a": torch.zeros(3, 2), "b": torch.zeros(3, 2)}
    assert variance_ratio(const) == 0.0


def test_returns_to_go_match_the_recursion():
    torch.manual_seed(0)
    reward, mask = torch.rand(3, 7), torch.ones(3, 7)
    mask[1, 4:] = 0
    g = returns_to_go(reward, mask, 0.9)
    expected = torch.zeros(3, 7)
    for b in range(3):
        acc = 0.0
        for t in reversed(range(7)):
            acc = float(reward[b, t] * mask[b, t]) + 0.9 * acc
            expected[b, t] = acc
    assert torch.allclose(g, expected, atol=1e-5)


def test_mean_mixer_is_the_sum_mixer_of_values_over_the_team_size():
    torch.manual_seed(0)
    mean_mixer = TransformerMixer((6, 5), dim=8, mixing_dim=8, mean_agents=True)
    sum_mixer = TransformerMixer((6, 5), dim=8, mixing_dim=8)
    sum_mixer.load_state_dict(mean_mixer.state_dict())
    agents, others = torch.randn(4, 5, 6), torch.randn(4, 3, 5)
    mask = torch.ones(4, 5, dtype=torch.bool)
    mask[0, 3:] = False
    state = Tokens([agents, others], [mask, torch.ones(4, 3, dtype=torch.bool)])
    values = torch.randn(4, 5) * mask
    n = mask.sum(-1, keepdim=True).float()
    assert torch.allclose(mean_mixer(values, state), sum_mixer(values / n, state), atol=1e-5)


def test_polyak_update_moves_targets_by_tau():
    model = HiSSD(family_spec("smac"), replace(TINY, value_target="td_expectile"))
    before = [p.clone() for p in model.target.parameters()]
    with torch.no_grad():
        for p in model.value.parameters():
            p.add_(1.0)
    online = [p.clone() for p in (*model.value.parameters(), *model.value_head.parameters(),
                                  *model.mixer.parameters())]
    soft_update_targets(model, 0.1)
    for b, o, t in zip(before, online, model.target.parameters()):
        assert torch.allclose(t, 0.9 * b + 0.1 * o, atol=1e-6)
    assert not hasattr(HiSSD(family_spec("smac"), TINY), "target")  # Monte-Carlo: no targets


def test_a_constant_z_is_reported_saturated_separated_by_nothing_and_unused(dataset):
    torch.manual_seed(0)
    model = HiSSD(family_spec("smac"), TINY)
    last = model.task_head[2]  # Linear before LayerNorm-Tanh: a constant pre-activation
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.linspace(-1, 1, last.bias.numel()))
        model.task_head[3].weight.fill_(50.0)  # LayerNorm gain: tanh far in saturation
    report = skill_health(model, dataset, episodes=8)
    for row in report["tasks"].values():
        assert row["task_skill"]["saturated"] == pytest.approx(1.0)
        assert row["task_skill"]["actions_changed_by_other_task_z"] == 0.0
    assert report["variance_ratio_between_tasks"] == pytest.approx(0.0, abs=1e-6)


def test_a_value_that_outputs_the_true_returns_scores_perfectly(dataset):
    report = skill_health(Oracle(dataset), dataset, episodes=12)
    for row in report["tasks"].values():
        value = row["value"]
        assert value["ratio"] == pytest.approx(1.0) and value["correlation"] == pytest.approx(1.0)
        assert value["above_largest_return"] == 0.0 and value["largest_return"] == 2.0
        assert value["value_mean"] == pytest.approx(row["data"]["return_to_go_mean"])


def test_an_advantage_that_is_the_outcome_correlates_fully_with_winning():
    won = torch.tensor([True, True, False, False, False])
    ret = torch.tensor([20.0, 18.0, 3.0, 5.0, 4.0])
    figures = advantage_figures(won.double() - 0.5, 1.0 + won.double(), ret, won)
    assert figures["correlation_with_win"] == pytest.approx(1.0)
    assert figures["weight_won"] == 2.0 and figures["weight_lost"] == 1.0
    assert figures["below_zero"] == pytest.approx(0.6)
    assert figures["correlation_with_return"] > 0.9
    noise = advantage_figures(torch.zeros(5), torch.ones(5), ret, won)
    assert noise["correlation_with_win"] is None  # a constant advantage carries nothing
    one_outcome = advantage_figures(ret, torch.ones(5), ret, torch.ones(5, dtype=torch.bool))
    assert one_outcome["weight_lost"] is None and "correlation_with_win" in one_outcome


def test_an_overestimating_value_is_caught():
    g = torch.linspace(0.0, 2.0, 50)
    fine = value_figures(g.clone(), g, 2.0)
    assert fine["ratio"] == pytest.approx(1.0) and fine["above_largest_return"] == 0.0
    high = value_figures(g * 3 + 1, g, 2.0)  # marl's earlier value: several-fold, mostly > 2
    assert high["ratio"] > 3 and high["above_largest_return"] > 0.7
    assert high["correlation"] == pytest.approx(1.0)  # tracks the returns, on the wrong scale


def test_a_trained_hissd_has_a_live_unsaturated_z_and_a_bounded_value(dataset):
    """The repaired defaults on real data: InfoNCE on z separates the tasks without
    saturating z, and the Monte-Carlo value stays on the scale of the returns."""
    torch.manual_seed(0)
    model = HiSSD(family_spec("smac"), TINY)
    before = skill_health(model, dataset, episodes=12)
    optim = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for update in range(60):
        batches = [dataset.sample(8, task=t, generator=gen) for t in dataset.tasks]
        optim.zero_grad()
        loss, stats = model.loss(batches, gen)
        loss.backward()
        optim.step()
    after = skill_health(model, dataset, episodes=12)
    assert stats["contrastive"] < 0.5
    assert after["variance_ratio_between_tasks"] > 1.0 > before["variance_ratio_between_tasks"]
    for row in after["tasks"].values():
        assert row["task_skill"]["saturated"] < 0.5
        assert 0.5 < row["value"]["ratio"] < 1.5 and row["value"]["above_largest_return"] < 0.05
        assert row["common_skill"]["actions_changed_by_shuffling"] > 0.0


def test_diagnose_reports_what_it_can_for_bc_and_writes_health_json(tiny_data, tmp_path, capsys):
    from helpers import tiny_run_of

    run = tiny_run_of(tiny_data, tmp_path / "bc", algo="bc", updates=2)
    assert main(["diagnose", str(run), "--episodes", "4"]) == 0
    out = capsys.readouterr().out
    report = json.loads((run / "eval" / "health.json").read_text())
    assert set(report["tasks"]) == {"smac:3m", "smac:5m_vs_6m"}
    assert {"data"} == set(report["tasks"]["smac:3m"])
    assert any(line.startswith("value: bc has no team value") for line in report["not_applicable"])
    assert "not applicable: task_skill: bc has no task-specific skill z" in out


def test_diagnose_of_hissd_and_odis_runs(tiny_run, tiny_data, tmp_path):
    from helpers import tiny_run_of

    report = diagnose_run(tiny_run, episodes=4, out=tmp_path / "h.json")
    row = report["tasks"]["smac:3m"]
    assert {"data", "task_skill", "common_skill", "value", "advantage"} <= set(row)
    assert report["not_applicable"] == [] and Path(report["path"]).is_file()
    assert all(k.startswith("health/") for k in scalars(report))
    odis = tiny_run_of(tiny_data, tmp_path / "odis", algo="odis", updates=3)
    row = diagnose_run(odis, episodes=4)["tasks"]["smac:3m"]
    assert 0.0 <= row["odis_skill"]["actions_changed_by_other_skill"] <= 1.0
    assert sum(row["odis_skill"]["usage"]) == pytest.approx(1.0, abs=1e-3)
    assert "value" in row and "advantage" not in row


def test_missing_run_or_data_is_one_clear_error(tiny_run, tmp_path, capsys):
    assert main(["diagnose", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.strip() == f"marl: error: no run folder at {tmp_path / 'nowhere'}"
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    cfg = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(cfg.replace("root: ", f"root: {tmp_path}/no-data #"))
    with pytest.raises(DiagnoseError, match="data of .*no-data"):
        diagnose_run(run, episodes=2)


def test_diagnose_reads_another_data_root(tiny_run, tiny_data, tmp_path):
    """``--data``: the same task set and quality from another root (held-out episodes)."""
    import shutil

    copy = tmp_path / "held-out"
    shutil.copytree(tiny_data[1], copy)
    main(["diagnose", str(tiny_run), "--episodes", "4", "--data", str(copy),
          "--out", str(tmp_path / "copy.json")])
    there = json.loads((tmp_path / "copy.json").read_text())
    here = diagnose_run(tiny_run, episodes=4, out=tmp_path / "here.json")
    assert there["data_root"] == str(copy) and here["data_root"] != str(copy)
    assert there["tasks"]["smac:3m"]["value"] == here["tasks"]["smac:3m"]["value"]
    with pytest.raises(DiagnoseError, match=f"root '{tmp_path / 'empty'}'"):
        diagnose_run(tiny_run, episodes=4, data=tmp_path / "empty")


def test_training_logs_health_scalars(tiny_data, tmp_path):
    from marl.config import load_config
    from marl.train import train
    from helpers import TINY_HISSD

    taskset, root = tiny_data
    cfg = load_config(None, [f"data.taskset={taskset}", f"data.root={root}", "data.episodes=24",
                             "batch_size=4", "threads=1", "updates=4", "health_interval=2",
                             "health_episodes=4", *TINY_HISSD])
    lines = []
    train(cfg, tmp_path / "run", log=lines.append)
    assert sum(line.startswith("health (smac:3m)") for line in lines) == 2
    report = json.loads((tmp_path / "run" / "eval" / "health.json").read_text())
    assert report["update"] == 4 and report["tasks"]["smac:3m"]["value"]["largest_return"] == 2.0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = EventAccumulator(str(tmp_path / "run" / "tb"))
    tb.Reload()
    assert "health/smac:3m/value/correlation" in tb.Tags()["scalars"]


def test_task_skill_swap_replaces_z_and_infer_reproduces_evaluation(tiny_run):
    """``experiments/task_skill_swap.py``: ``infer`` plays exactly what ``marl evaluate``
    plays from the same starts; the other modes hand the decoder the ``z`` they name."""
    import importlib.util

    from marl.rollout import evaluate_task
    from marl.runs import load_run_model

    path = Path(__file__).resolve().parents[1] / "experiments" / "task_skill_swap.py"
    spec = importlib.util.spec_from_file_location("task_skill_swap", path)
    swap = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(swap)

    cfg, model, _, _ = load_run_model(tiny_run)
    means = swap.training_task_means(model, cfg, episodes=4)
    assert sorted(means) == ["smac:3m", "smac:5m_vs_6m"]
    obs = None  # the stand-in encoder below ignores its input
    table = torch.stack(list(means.values()))
    z = torch.rand(5, 3, table.shape[-1]) * 2 - 1
    fake = lambda obs: z  # noqa: E731 - stands in for the encoder
    assert torch.equal(swap.swapped_skill(fake, "zero", "smac:3m", means)(obs), torch.zeros_like(z))
    assert torch.allclose(swap.swapped_skill(fake, "mean", "smac:3m", means)(obs)[2, 1],
                          table.mean(0))
    snapped = swap.swapped_skill(fake, "nearest", "smac:12m", means)(obs).reshape(-1, z.shape[-1])
    assert all(any(torch.equal(row, m) for m in table) for row in snapped)
    assert torch.equal(swap.swapped_skill(fake, "infer", "smac:3m", means)(obs), z)

    report = swap.swap_run(tiny_run, ["smac:3m"], ["infer", "zero"], episodes=4)
    expected = evaluate_task(model, "smac:3m", 4, 10000 + int(cfg.seed))["return_mean"]
    assert report["smac:3m infer"] == expected
