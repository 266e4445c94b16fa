"""`marl train`: configs, checkpoints, resume, learning, torchrun, and clear errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import envs
from envs.core import random_actions
from marl.checkpoint import load as load_checkpoint_file
from marl.config import ConfigError, load_config
from marl.rollout import evaluate_task
from marl.runs import RunError, build_model, load_checkpoint
from marl.train import TrainError, train

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = ["model.dim=16", "model.ffn_mult=2", "model.hidden=32", "model.skill_dim=16",
              "model.mixer_dim=8", "model.contrastive_samples=16", "model.steps_per_episode=4"]


def tiny_overrides(tiny_data, *extra: str) -> list[str]:
    taskset, root = tiny_data
    return [f"data.taskset={taskset}", f"data.root={root}", "data.episodes=24", "batch_size=4",
            "threads=1", "log_interval=2", "lr=1e-3", *TINY_MODEL, *extra]


# ------------------------------------------------------------------------------ configs
def test_every_shipped_config_loads():
    configs = sorted((REPO / "experiments" / "hissd").glob("*.yaml"))
    assert len(configs) >= 4
    for path in configs:
        cfg = load_config(path)
        assert cfg.algo == "hissd" and cfg.model.dim > 0, path


def test_unknown_key_names_the_closest_valid_ones():
    with pytest.raises(ConfigError, match=r"model.contrastive_coef"):
        load_config(None, ["model.contrastive_coeff=0.1"])
    with pytest.raises(ConfigError, match=r"unknown config key 'batchsize'.*batch_size"):
        load_config(None, ["batchsize=3"])


def test_wrong_type_and_bad_values_are_reported(tmp_path):
    with pytest.raises(ConfigError, match="updates"):
        load_config(None, ["updates=many"])
    with pytest.raises(ConfigError, match="batch_size must be > 0"):
        load_config(None, ["batch_size=0"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  dim: [1, 2]\n")
    with pytest.raises(ConfigError, match=str(bad)):
        load_config(bad)
    with pytest.raises(ConfigError, match="unknown algorithm 'hisd'.*hissd"):
        load_config(None, ["algo=hisd"])


# ------------------------------------------------------------------------------ runs
def _params(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint_file(path)["model"]


def test_resume_matches_an_uninterrupted_run(tiny_data, tmp_path):
    base = tiny_overrides(tiny_data, "deterministic=true", "checkpoint_interval=3")
    train(load_config(None, base + ["updates=6"]), tmp_path / "straight", log=lambda s: None)
    train(load_config(None, base + ["updates=3"]), tmp_path / "split", log=lambda s: None)
    first = _params(tmp_path / "split" / "checkpoints" / "last.pt")
    # a kill mid-write leaves only a temporary file: resuming ignores it
    (tmp_path / "split" / "checkpoints" / ".last.pt.tmp-999").write_bytes(b"partial")
    train(load_config(None, base + ["updates=6"]), tmp_path / "split", resume=True,
          log=lambda s: None)
    straight = _params(tmp_path / "straight" / "checkpoints" / "last.pt")
    resumed = _params(tmp_path / "split" / "checkpoints" / "last.pt")
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    assert any(not torch.equal(first[k], resumed[k]) for k in first)  # it did train on
    saved = (tmp_path / "split" / "config.yaml").read_text()
    assert "updates: 6" in saved and "steps_per_episode: 4" in saved
    assert list((tmp_path / "split" / "tb").iterdir())


def test_starting_over_an_existing_run_or_resuming_another_algorithm_fails(tiny_data, tmp_path):
    cfg = load_config(None, tiny_overrides(tiny_data, "updates=2"))
    train(cfg, tmp_path / "run", log=lambda s: None)
    with pytest.raises(TrainError, match="already holds a run"):
        train(cfg, tmp_path / "run", log=lambda s: None)
    with pytest.raises(RunError, match="algorithm 'hissd', not 'odis'"):
        load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt", "odis")
    with pytest.raises(ConfigError, match="not a run folder"):
        train(cfg, tmp_path / "nothing-here", resume=True, log=lambda s: None)


def test_data_that_does_not_fit_the_task_set_fails(tiny_data, tmp_path):
    taskset, root = tiny_data
    wrong = tmp_path / "data"
    shutil.copytree(root, wrong)
    # the 3m file replaced by the 5m_vs_6m one: its layout does not fit smac:3m
    shutil.copy(root / "smac_5m_vs_6m" / "expert.h5", wrong / "smac_3m" / "expert.h5")
    cfg = load_config(None, tiny_overrides(tiny_data, "updates=1", f"data.root={wrong}"))
    with pytest.raises(TrainError, match=r"smac_3m/expert.h5.*5m_vs_6m"):
        train(cfg, tmp_path / "run", log=lambda s: None)


def test_killed_run_resumes_from_its_last_checkpoint(tiny_data, tmp_path):
    """Killed at any moment, a run resumes; here with the low-memory switches on, which the
    resumed run keeps (they are part of its saved config)."""
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "marl", "train", "--out", str(run),
           *tiny_overrides(tiny_data, "updates=100000", "checkpoint_interval=2",
                           "release_memory=true", "model.per_task_backward=true",
                           "model.recompute=true")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last = run / "checkpoints" / "last.pt"
    deadline = time.time() + 300
    while time.time() < deadline and not (last.exists() and
                                          load_checkpoint_file(last)["update"] >= 4):
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = load_checkpoint_file(last)["update"]
    assert done >= 4
    out = subprocess.run([sys.executable, "-m", "marl", "train", "--resume", str(run),
                          f"updates={done + 2}"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert f"resuming {run} at update {done}" in out.stdout
    assert load_checkpoint_file(last)["update"] == done + 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_release_memory_sets_glibcs_mmap_threshold():
    out = subprocess.run([sys.executable, "-c", "from marl.train import release_freed_memory; "
                          "print(release_freed_memory())"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "True", out.stderr


def test_short_training_beats_a_random_policy(tiny_data, tmp_path):
    cfg = load_config(None, tiny_overrides(tiny_data, "updates=150", "batch_size=8",
                                           "model.dim=32", "model.hidden=64",
                                           "model.skill_dim=32", "eval.interval=150",
                                           "eval.episodes=32", "eval.tasks=smac:3m"))
    train(cfg, tmp_path / "run", log=lambda s: None)
    result = json.loads((tmp_path / "run" / "eval" / "update_0000150.json").read_text())
    trained = result["results"][0]["win_rate"]
    assert (tmp_path / "run" / "checkpoints" / "best.pt").exists()

    env = envs.make("smac:3m", num_envs=32, seed=cfg.eval.seed)
    rng, ts, wins, done = np.random.default_rng(0), env.reset(), np.zeros(32), np.zeros(32, bool)
    while not done.all():
        ts = env.step(random_actions(ts.avail_actions, rng))
        new = ts.done & ~done
        wins[new] = ts.info["battle_won"][new]
        done |= new
    env.close()
    assert trained >= 0.3 and trained > wins.mean() + 0.2, (trained, wins.mean())

    # the checkpoint reloads into a model that acts identically
    model = build_model(cfg, "smac")
    model.load_state_dict(load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt",
                                          "hissd")["model"])
    again = evaluate_task(model, "smac:3m", 32, seed=cfg.eval.seed)
    assert again["win_rate"] == trained


def test_torchrun_two_ranks_keep_identical_parameters(tiny_data, tmp_path):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    run = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([torchrun, "--nproc_per_node=2", "--master_port=29517", "-m",
                          "marl", "train", "--out", str(run),
                          *tiny_overrides(tiny_data, "updates=4", "eval.interval=2",
                                          "eval.episodes=4", "eval.tasks=smac:3m")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    ranks = json.loads((run / "ranks.json").read_text())
    assert ranks == {"world_size": 2, "max_abs_param_diff": 0.0, "update": 4}
    assert load_checkpoint_file(run / "checkpoints" / "last.pt")["update"] == 4
    # rank 0 evaluates alone, but every rank joins the best checkpoint's write
    assert load_checkpoint_file(run / "checkpoints" / "best.pt")["update"] in (2, 4)


def test_cli_reports_config_mistakes_in_one_line(capsys):
    from marl.cli import main

    assert main(["train", "batchsize=3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "batch_size" in err[0] and err[0].startswith("marl: error:")
    assert main(["train", "--resume", "/nonexistent/run"]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_quickstart_runs_end_to_end(tmp_path):
    """The README's main command at toy size: data, training, zero-shot table, skill figure."""
    from PIL import Image

    from marl.quickstart import quickstart

    out = quickstart(tmp_path / "qs", episodes=8, updates=4, eval_episodes=4,
                     unseen=("smac:4m",), log=lambda s: None)
    table = (tmp_path / "qs" / "results.md").read_text()
    results = json.loads((tmp_path / "qs" / "results.json").read_text())["results"]
    assert [r["task"] for r in results] == ["smac:3m", "smac:5m", "smac:10m", "smac:4m"]
    assert [r["split"] for r in results] == ["train"] * 3 + ["unseen"]
    for r in results:  # the table shows the JSON's numbers
        assert f"| {r['task']} | {r['split']} | {r['win_rate']:.2f}" in table
        assert r["episodes"] == 4
    with Image.open(out["figure"]) as img:
        assert img.size[0] > 500 and img.size[1] > 300
    health = json.loads((tmp_path / "qs" / "results.json").read_text())["health"]
    assert set(health["tasks"]) == {"smac:3m", "smac:5m", "smac:10m"}
    assert "Skill health" in table and "value.ratio" in table


def test_a_run_killed_before_its_first_checkpoint_resumes_from_the_start(tiny_data, tmp_path):
    """Its config.yaml exists but no last.pt: --resume starts it from update 0, and the
    temporary file of a checkpoint write cut short is removed."""
    cfg = load_config(None, tiny_overrides(tiny_data, "updates=2"))
    train(cfg, tmp_path / "run", log=lambda s: None)
    ckpts = tmp_path / "run" / "checkpoints"
    for f in ckpts.iterdir():
        f.unlink()
    (ckpts / ".last.pt.tmp-12345").write_bytes(b"half a checkpoint")
    lines = []
    train(cfg, tmp_path / "run", resume=True, log=lines.append)
    assert any("before its first checkpoint" in line for line in lines)
    assert load_checkpoint(ckpts / "last.pt", "hissd")["update"] == 2
    assert not list(ckpts.glob(".*.tmp-*"))
