"""The `marl` console command, run as a user would."""

import subprocess
import sys
from pathlib import Path

import pytest

from marl.cli import main


def run(*args):
    return subprocess.run([sys.executable, "-m", "marl.cli", *args], capture_output=True, text=True)


def test_envs_list_shows_families_backends_and_tasksets(capsys):
    assert main(["envs", "list"]) == 0
    out = capsys.readouterr().out
    for word in ("smac", "smax (default)", "sc2", "mamujoco", "mpe", "marine-hard", "stalker-zealot"):
        assert word in out


def test_envs_check_prints_layout_and_speed(capsys):
    assert main(["envs", "check", "mpe:spread-3", "--num-envs", "2", "--steps", "30"]) == 0
    out = capsys.readouterr().out
    assert "obs_dim                  18" in out and "env-steps/s" in out
    assert '"episodes": 2' in out  # 30 steps > the 25-step episodes of both copies


@pytest.mark.parametrize("task, message", [
    ("smac:3x", "SMAC map name '3x' is not understood"),
    ("smoc:3m", "did you mean 'smac'"),
])
def test_user_mistakes_end_in_one_error_line(task, message):
    result = run("envs", "check", task)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("marl: error: ")
    assert message in result.stderr and "Traceback" not in result.stderr


def test_missing_starcraft_is_one_clear_error():
    result = run("envs", "check", "smac:3m", "--backend", "sc2")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "SC2PATH" in result.stderr and "smacv2" in result.stderr


def test_datasets_build_from_shipped_policy_then_inspect(tmp_path, capsys):
    """The shipped 3m behaviour policy regenerates a dataset; the card verifies it."""
    taskset = tmp_path / "three-marines.yaml"
    taskset.write_text("name: three-marines\nfamily: smac\ntrain_tasks: [smac:3m]\n"
                       "test_tasks: [smac:3m, smac:4m]\nqualities: [medium]\n")
    out = tmp_path / "data"
    assert main(["datasets", "build", str(taskset), "--quality", "medium", "--episodes", "16",
                 "--num-envs", "8", "--out", str(out)]) == 0
    path = out / "smac_3m" / "medium.h5"
    assert path.exists() and not (out / "smac_3m" / "medium.h5.parts").exists()
    capsys.readouterr()
    assert main(["datasets", "inspect", str(path)]) == 0
    card = capsys.readouterr().out
    assert "16" in card and "medium" in card and "smac:3m" in card
    # a damaged file is collected again, not kept (here: its opponent rewritten)
    import h5py

    with h5py.File(path, "r+") as f:
        f.attrs["env_options"] = '{"enemy_reaction": 0.5}'
    assert main(["datasets", "inspect", str(path)]) == 1
    assert main(["datasets", "build", str(taskset), "--quality", "medium", "--episodes", "16",
                 "--num-envs", "8", "--out", str(out)]) == 0
    assert "does not verify" in capsys.readouterr().out
    assert main(["datasets", "inspect", str(path)]) == 0


def test_collect_with_env_options(tmp_path, capsys):
    """`--env-option` sets the simulator (here the delayed opponent); the card shows it; a
    malformed option is one error line."""
    out = tmp_path / "3m.h5"
    assert main(["collect", "--task", "smac:3m", "--policy", "marl/policies/smac_3m",
                 "--quality", "poor", "--episodes", "4", "--num-envs", "4", "--out", str(out),
                 "--env-option", "enemy_reaction=0.8"]) == 0
    capsys.readouterr()
    assert main(["datasets", "inspect", str(out)]) == 0
    assert '{"enemy_reaction": 0.8}' in capsys.readouterr().out
    result = run("collect", "--task", "smac:3m", "--policy", "marl/policies/smac_3m",
                 "--quality", "poor", "--out", str(tmp_path / "x.h5"), "--env-option", "fast")
    assert result.returncode == 2 and "--env-option 'fast': expected KEY=VALUE" in result.stderr


def test_inspect_missing_or_corrupt_file_is_one_error_line(tmp_path):
    result = run("datasets", "inspect", str(tmp_path / "nope.h5"))
    assert result.returncode == 2 and "nope.h5" in result.stderr and "Traceback" not in result.stderr
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not an hdf5 file")
    result = run("datasets", "inspect", str(bad))
    assert result.returncode == 2 and "bad.h5" in result.stderr and "Traceback" not in result.stderr


def test_datasets_build_names_every_missing_policy_before_collecting(tmp_path):
    result = run("datasets", "build", "marine-hard", "--quality", "expert", "--policies",
                 str(tmp_path), "--out", str(tmp_path / "data"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "['smac:3m', 'smac:5m_vs_6m', 'smac:9m_vs_10m']" in result.stderr
    assert not (tmp_path / "data").exists()


def test_behavior_train_refuses_a_discount_outside_0_1(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["behavior", "train", "mpe:spread-2", "--out", str(tmp_path / "run"), "--gamma", "1.5"])
    assert "1.5: a discount must lie in (0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # refused before anything is written


@pytest.mark.parametrize("argv, option, value", [
    (["behavior", "train", "smac:3m", "--hidden", "0"], "--hidden", "0"),
    (["behavior", "train", "smac:3m", "--steps", "-5"], "--steps", "-5"),
    (["behavior", "train", "smac:3m", "--lr", "0"], "--lr", "0"),
    (["collect", "--task", "smac:3m", "--policy", "marl/policies/smac_3m", "--quality",
      "expert", "--episodes", "0"], "--episodes", "0"),
    (["datasets", "build", "marine-easy", "--quality", "expert", "--episodes", "-3"], "--episodes", "-3"),
    (["evaluate", "RUN", "--workers", "0"], "--workers", "0"),
    (["quickstart", "--updates", "two"], "--updates", "two"),
])
def test_counts_and_step_sizes_must_be_positive(tmp_path, capsys, argv, option, value):
    out = [] if argv[0] in ("evaluate", "quickstart") else ["--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exit_:
        main(argv + out)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: {value}: expected a" in err, err
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_collect_sampling_is_recorded_and_a_bad_one_is_one_error_line(tmp_path, capsys):
    out = tmp_path / "3m.h5"
    assert main(["collect", "--task", "smac:3m", "--policy", "marl/policies/smac_3m",
                 "--quality", "expert", "--episodes", "4", "--num-envs", "4", "--out", str(out),
                 "--sampling", "epsilon:0.2"]) == 0
    capsys.readouterr()
    assert main(["datasets", "inspect", str(out)]) == 0
    assert "actions:         epsilon:0.2" in capsys.readouterr().out
    result = run("collect", "--task", "smac:3m", "--policy", "marl/policies/smac_3m",
                 "--quality", "expert", "--out", str(tmp_path / "x.h5"), "--sampling", "mostly")
    assert result.returncode == 2 and "sampling='mostly'" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "x.h5").exists()
    result = run("behavior", "train", "mpe:spread-2", "--out", str(tmp_path / "run"), "--algo", "ippo")
    assert result.returncode == 2 and "algo='ippo' needs --engine jax" in result.stderr


def test_behavior_train_defaults_come_from_the_config_and_set_changes_any_setting(
        tmp_path, monkeypatch, capsys):
    """The flags' defaults are BehaviorConfig's (written once); ``--set KEY=VALUE`` reaches every
    other setting through OmegaConf, and a misspelt key is one error line naming the closest."""
    import dataclasses

    import marl.behavior
    from marl.behavior.config import BehaviorConfig

    seen = []
    monkeypatch.setattr(marl.behavior, "train", lambda cfg, out, log: seen.append(cfg) or
                        {"update": 0, "greedy": {}, "sampled": {}})
    assert main(["behavior", "train", "smac:3m", "--out", str(tmp_path / "a")]) == 0
    assert seen[-1] == BehaviorConfig(task="smac:3m")
    assert main(["behavior", "train", "smac:3m", "--out", str(tmp_path / "b"), "--steps", "1000",
                 "--set", "rollout_steps=256", "clip=0.1"]) == 0
    want = dataclasses.replace(BehaviorConfig(task="smac:3m"), total_env_steps=1000,
                               rollout_steps=256, clip=0.1)
    assert seen[-1] == want and isinstance(seen[-1], BehaviorConfig)
    capsys.readouterr()
    assert main(["behavior", "train", "smac:3m", "--out", str(tmp_path / "c"),
                 "--set", "rollout_step=8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rollout_step" in err[0] and "did you mean rollout_steps" in err[0]
    assert main(["behavior", "train", "smac:3m", "--out", str(tmp_path / "d"),
                 "--set", "clip=wide"]) == 2
    assert "'clip'" in capsys.readouterr().err
    assert len(seen) == 2 and not (tmp_path / "c").exists()


@pytest.mark.parametrize("argv, says", [
    (["train", "device=tpu"], "device='tpu' is not a torch device"),
    (["train", "device=cuda:7"], "device='cuda:7'"),
    (["train", "model.dim=0"], "model.dim must be > 0"),
    (["train", "model.heads=3", "model.dim=32"], "model.heads=3 must divide model.dim=32"),
    (["train", "data.episodes=0"], "data.episodes must be > 0"),
    (["train", "algo=updet", "data.taskset=mujoco-partitions"], "needs discrete actions"),
])
def test_bad_training_options_are_one_line_before_any_data_is_read(argv, says, tmp_path, capsys):
    assert main(argv + [f"data.root={tmp_path / 'none'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0] and "data for task set" not in err[0], err


def test_training_without_a_config_says_what_it_trains(tmp_path, capsys):
    assert main(["train", f"data.root={tmp_path}", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "no --config; training the built-in defaults: hissd on marine-easy" in err


def test_a_run_folder_below_a_file_and_an_absent_device_are_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    assert main(["train", "--out", str(tmp_path / "file" / "run"), "updates=1"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path), "--device", "tpu"]) == 2
    assert "--device='tpu' is not a torch device" in capsys.readouterr().err


def test_resume_refuses_overrides_it_would_drop_and_a_killed_first_run_restarts(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("algo: bc\n")
    assert main(["train", "--resume", str(run), "lr=0.5"]) == 2
    assert "only updates=N may change (given: lr=0.5)" in capsys.readouterr().err


@pytest.mark.parametrize("argv, says", [
    (["collect", "--task", "smac:3m", "--policy", "{tmp}/none", "--quality", "expert",
      "--out", "{tmp}/x.h5"], "no behaviour-policy snapshots"),
    (["collect", "--task", "smac:3m", "--policy", "marl/policies/mpe_spread-2", "--quality",
      "expert", "--out", "{tmp}/x.h5", "--episodes", "2"], "cannot act on smac:3m"),
    (["collect", "--task", "mamujoco:Ant-2x4", "--policy", "marl/policies/mamujoco_HalfCheetah-2x3",
      "--quality", "expert", "--out", "{tmp}/x.h5", "--episodes", "2"],
     "cannot drive mamujoco:Ant-2x4 (robot Ant, partition 2x4)"),
    (["visualize", "{tmp}/none", "--task", "smac:3m"], "is not a run folder"),
    (["diagnose", "{tmp}/none"], "no run folder"),
    (["compare", "{tmp}/none"], "no evaluation report"),
    (["evaluate", "{tmp}/none"], "is not a run folder"),
    (["behavior", "export", "{tmp}/none", "--out", "{tmp}/y"], "no behaviour-policy snapshots"),
    (["behavior", "train", "smac:3m", "--out", "{tmp}/z", "--engine", "torch", "--recurrent"],
     "--recurrent needs --engine jax"),
    (["datasets", "build", "nosuch", "--quality", "expert"], "unknown task set 'nosuch'"),
    (["datasets", "inspect", "{tmp}/none.h5"], "no such file or folder"),
    (["envs", "check", "smac:0m"], "SMAC map '0m'"),
    (["train", "--config", "{tmp}/none.yaml"], "does not exist"),
    (["train", "--resume", "{tmp}/none"], "is not a run folder"),
])
def test_every_command_turns_a_mistake_into_one_line(argv, says, tmp_path, capsys):
    """A bad-input table over the commands: exit status 2, one line naming what was wrong,
    nothing written."""
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("marl: error:") and says in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_train_overrides_on_both_sides_of_out(tmp_path, capsys):
    """key=value overrides after ``--out`` are overrides too (the data root here, which is
    missing, so training stops with one line naming it); anything else is refused."""
    config = str(Path(__file__).resolve().parents[1] / "experiments" / "baselines" / "bc.yaml")
    code = main(["train", "--config", config, "updates=1", "--out", str(tmp_path / "run"),
                 f"data.root={tmp_path / 'nowhere'}"])
    assert code == 2 and f"{tmp_path / 'nowhere'}" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--config", config, "--out", str(tmp_path / "run"), "--bogus"])
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["collect", "--task", "grid:cn-2", "--policy", "marl/policies/grid_cn-2", "--quality",
     "expert", "--episodes", "2", "--out", "{tmp}/file/x.h5"],
    ["behavior", "train", "grid:cn-2", "--out", "{tmp}/file/run", "--steps", "64"],
    ["train", "--config", "{tmp}/broken.yaml"],
    ["datasets", "build", "{tmp}/broken.yaml", "--quality", "expert"],
])
def test_unwritable_outputs_and_broken_yaml_are_one_line(argv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    (tmp_path / "file").write_text("a file where a folder is asked for")
    (tmp_path / "broken.yaml").write_text("algo: [unclosed\n")
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("marl: error:"), err
    assert ("file" in err[0] and "Not a directory" in err[0]) or "YAML" in err[0], err
