"""BC, ODIS and UPDeT-m on real SMAX data: losses fall, stages switch, they act on unseen maps."""

from __future__ import annotations

import pytest
import torch

from helpers import fit
from marl.algos import build, registry
from marl.config import ConfigError, load_config
from marl.rollout import evaluate_task
from marl.nets import family_spec
from marl.runs import load_checkpoint
from marl.train import train

SMALL = {"dim": 16, "ffn_mult": 2, "hidden": 32, "steps_per_episode": 4}


def _model(name: str, **extra):
    cfg = registry()[name].config(**SMALL, **extra)
    torch.manual_seed(0)
    return build(name, family_spec("smac"), cfg)


def _fit(model, dataset, updates: int, start: int = 0):
    gen = torch.Generator().manual_seed(0)
    return fit(model, [dataset.sample(8, task=t, generator=gen) for t in dataset.tasks],
               updates, start)


@pytest.mark.parametrize("name,term", [("bc", "bc"), ("updet", "td"), ("odis", "reconstruction")])
def test_baseline_losses_fall_and_it_acts_on_an_unseen_map(dataset, name, term):
    model = _model(name, **({"pretrain_updates": 1000} if name == "odis" else {}))
    history = _fit(model, dataset, 40)
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in history)
    first, last = sum(h[term] for h in history[:5]) / 5, sum(h[term] for h in history[-5:]) / 5
    assert last < 0.7 * first, (name, term, first, last)
    result = evaluate_task(model, "smac:13m_vs_15m", episodes=2, seed=0)
    assert 0.0 <= result["win_rate"] <= 1.0 and result["length_mean"] > 0


def test_odis_switches_from_skill_discovery_to_the_skill_policy(dataset):
    model = _model("odis", pretrain_updates=5)
    history = _fit(model, dataset, 30)
    assert all("reconstruction" in h for h in history[:5])
    assert all("td" in h and "cql" in h for h in history[5:])
    late = history[5:]
    assert sum(h["td"] for h in late[-5:]) < sum(h["td"] for h in late[:5])
    # frozen in stage 2: the skill encoder and decoder no longer change
    before = {k: v.clone() for k, v in model.decoder.state_dict().items()}
    _fit(model, dataset, 3, start=30)
    assert all(torch.equal(before[k], v) for k, v in model.decoder.state_dict().items())
    skills = model.skills(dataset.sample(2, task="smac:3m").obs)
    assert skills["skill"].max() < 3 and skills["skill_values"].shape[-1] == 3


def test_odis_stage_survives_a_resume(tiny_data, tmp_path):
    taskset, root = tiny_data
    base = [f"data.taskset={taskset}", f"data.root={root}", "data.episodes=24", "batch_size=4",
            "threads=1", "algo=odis", *[f"model.{k}={v}" for k, v in SMALL.items()],
            "model.pretrain_updates=3", "checkpoint_interval=2"]
    train(load_config(None, base + ["updates=4"]), tmp_path / "run", log=lambda s: None)
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt", "odis")
    assert int(ckpt["model"]["updates_done"]) == 4


def test_updet_needs_discrete_actions():
    with pytest.raises(ValueError, match="updet needs discrete actions"):
        build("updet", family_spec("mamujoco"), registry()["updet"].config())
    # the config says so first: `marl train` stops before any data is read
    with pytest.raises(ConfigError, match="algo=updet needs discrete actions.*mamujoco"):
        load_config(None, ["algo=updet", "data.taskset=mujoco-partitions"])
    assert load_config(None, ["algo=bc", "data.taskset=mujoco-partitions"]).algo == "bc"


def test_shipped_baseline_configs_load():
    from pathlib import Path

    for name in ("bc", "odis", "updet"):
        path = Path(__file__).resolve().parents[1] / "experiments" / "baselines" / f"{name}.yaml"
        cfg = load_config(path, ["data.taskset=marine-hard"])
        assert cfg.algo == name and cfg.model.dim == 32


def _compare_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "experiments" / "compare.py"
    spec = importlib.util.spec_from_file_location("compare_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compare_script_variants_are_named_rows_with_overrides():
    """`experiments/compare.py --variant NAME ALGO KEY=VALUE`: an ablation gets its own row and
    folder; a reused name, an unknown algorithm or a bare override is refused."""
    table = _compare_script().run_table(
        ["hissd", "bc"], [["hissd-no-adv", "hissd", "model.advantage_weighting=false"]],
        "marine-hard")
    assert table == {"hissd": ("hissd", []), "bc": ("bc", []),
                     "hissd-no-adv": ("hissd", ["model.advantage_weighting=false"])}
    run_table = _compare_script().run_table
    with pytest.raises(ValueError, match="NAME must be new"):
        run_table(["hissd"], [["hissd", "hissd", "seed=1"]], "marine-hard")
    with pytest.raises(ValueError, match="NAME must be new"):
        run_table([], [["a,b", "hissd"]], "marine-hard")
    with pytest.raises(ValueError, match="expected an algorithm"):
        run_table([], [["x", "nosuch"]], "marine-hard")
    with pytest.raises(ValueError, match="KEY=VALUE"):
        run_table([], [["x", "hissd", "model.contrastive"]], "marine-hard")
    with pytest.raises(ValueError, match="--algos nosuch"):
        run_table(["nosuch"], [], "marine-hard")


def test_compare_gives_every_algorithm_the_token_view_and_budget_of_the_task_set():
    """The budget keys of the task set's HiSSD config, and on MuJoCo its joint identity (a view
    of the data, not a learner's advantage), are overrides for every algorithm."""
    shared = _compare_script().shared_overrides
    mujoco = shared("mujoco-partitions", "expert", "DATA", None)
    assert "model.joint_identity=true" in mujoco and "data.root=DATA" in mujoco
    assert "updates=3000" in mujoco and "data.episodes=200" in mujoco
    assert not any(o.startswith("model.") for o in shared("marine-hard", "expert", "D", 50))
    assert "updates=50" in shared("marine-hard", "expert", "D", 50)


def test_capacity_matched_bc_has_the_parameters_of_hissds_acting_path():
    """bc-matched is the control for capacity: within 5 % of the parameters HiSSD acts with
    (planner, common head, decoder, task encoder and head, action head) at the same CPU size."""
    from pathlib import Path

    from marl.algos import build
    from marl.config import model_config
    from marl.nets import family_spec

    repo = Path(__file__).resolve().parents[1]
    hissd = build("hissd", family_spec("smac"), model_config(
        load_config(repo / "experiments" / "hissd" / "marine-hard.yaml")))
    acting = sum(p.numel() for name in ("planner", "common_head", "decoder", "task_encoder",
                                        "task_head", "action_head")
                 for p in getattr(hissd, name).parameters())
    cfg = load_config(repo / "experiments" / "baselines" / "bc-matched.yaml",
                      ["data.taskset=marine-hard"])
    bc = build(cfg.algo, family_spec("smac"), model_config(cfg))
    matched = sum(p.numel() for p in bc.parameters())
    plain = sum(p.numel() for p in build("bc", family_spec("smac"), model_config(load_config(
        repo / "experiments" / "baselines" / "bc.yaml"))).parameters())
    assert cfg.algo == "bc" and cfg.model.depth == 2
    assert abs(matched - acting) / acting < 0.05 and plain < acting / 3
    assert _compare_script().run_table(["bc-matched"], [], "marine-hard") == {
        "bc-matched": ("bc-matched", [])}


@pytest.mark.parametrize("name", ["bc", "bc-matched", "odis", "updet"])
def test_each_baseline_config_runs_alone_on_hissds_budget_and_data(name):
    """`marl train --config experiments/baselines/NAME.yaml` is a complete run: its algorithm on
    marine-hard with exactly the budget, data and evaluation of HiSSD's marine-hard config (a
    fair row needs the same data and updates), not the defaults' marine-easy."""
    from pathlib import Path

    from omegaconf import OmegaConf

    root = Path(__file__).resolve().parents[1] / "experiments"
    cfg = load_config(root / "baselines" / f"{name}.yaml", [])
    hissd = load_config(root / "hissd" / "marine-hard.yaml", [])
    assert cfg.algo == ("bc" if name.startswith("bc") else name)
    for key in ("updates", "batch_size", "lr", "log_interval", "checkpoint_interval",
                "data", "eval"):
        mine, theirs = cfg[key], hissd[key]
        if OmegaConf.is_config(mine):
            mine, theirs = OmegaConf.to_container(mine), OmegaConf.to_container(theirs)
        assert mine == theirs, key
