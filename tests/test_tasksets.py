"""Task sets: the shipped files load with ODIS's exact maps, and bad files fail clearly."""

import pytest

from envs import EnvError
from envs.tasksets import list_tasksets, load_taskset, validate_task


def test_shipped_tasksets_load():
    assert set(list_tasksets()) >= {"marine-easy", "marine-hard", "stalker-zealot", "spread",
                                     "mujoco-partitions", "mujoco-segments"}
    for name in list_tasksets():
        ts = load_taskset(name)
        assert ts.name == name and ts.unseen_tasks, name
        assert set(ts.train_tasks) <= set(ts.test_tasks)  # ODIS lists train maps among tests


def test_odis_marine_hard_and_stalker_zealot_maps():
    hard = load_taskset("marine-hard")
    assert hard.train_tasks == ("smac:3m", "smac:5m_vs_6m", "smac:9m_vs_10m")
    assert len(hard.test_tasks) == 12 and hard.test_tasks[-1] == "smac:13m_vs_15m"
    assert "smac:10m_vs_12m" in hard.unseen_tasks and "smac:3m" not in hard.unseen_tasks
    assert hard.env_options == {"enemy_reaction": 0.8}  # SMAX's opponent, calibrated
    sz = load_taskset("stalker-zealot")
    assert sz.train_tasks == ("smac:2s3z", "smac:2s4z", "smac:3s5z") and len(sz.test_tasks) == 13
    easy = load_taskset("marine-easy")
    assert easy.test_tasks == tuple(f"smac:{n}m" for n in range(3, 13))


def test_mujoco_sets_vary_agents_and_morphology():
    parts = load_taskset("mujoco-partitions")
    assert "mamujoco:HalfCheetah-3x2" in parts.unseen_tasks
    segments = load_taskset("mujoco-segments")
    assert "mamujoco:ManySegmentSwimmer-6x2" in segments.unseen_tasks
    assert parts.behavior_policies == {"mamujoco:HalfCheetah-6x1": "mamujoco_HalfCheetah-2x3"}
    assert segments.behavior_policies == {}


def test_unknown_name_suggests_the_closest():
    with pytest.raises(EnvError, match="did you mean 'marine-hard'"):
        load_taskset("marine-hrad")


@pytest.mark.parametrize("body, message", [
    ("name: x\nfamily: smac\ntrain_tasks: [smac:3m]\ntest_tasks: [smac:4m]\n", "missing keys \\['qualities'\\]"),
    ("name: x\nfamily: smac\ntrain_tasks: [smac:3m]\ntest_tasks: [smac:4m]\nqualities: [expert]\nseed: 1\n",
     "unknown keys \\['seed'\\]"),
    ("name: x\nfamily: smac\ntrain_tasks: [smac:3q]\ntest_tasks: [smac:4m]\nqualities: [expert]\n",
     "SMAC map name '3q' is not understood"),
    ("name: x\nfamily: smac\ntrain_tasks: [mpe:spread-3]\ntest_tasks: [smac:4m]\nqualities: [expert]\n",
     "not in family 'smac'"),
    ("name: x\nfamily: smac\ntrain_tasks: []\ntest_tasks: [smac:4m]\nqualities: [expert]\n",
     "'train_tasks' must be a non-empty list"),
    ("name: [unclosed\n", "not valid YAML"),
    ("name: x\nfamily: smac\ntrain_tasks: [smac:3m]\ntest_tasks: [smac:4m]\nqualities: [expert]\n"
     "behavior_policies: {smac:5m: smac_3m}\n", "'behavior_policies' must map training tasks"),
])
def test_bad_files_name_the_file_and_the_problem(tmp_path, body, message):
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(EnvError, match=message) as err:
        load_taskset(str(path))
    assert str(path) in str(err.value)


def test_validate_task_does_not_start_simulators():
    validate_task("mamujoco:HalfCheetah-3x2")
    with pytest.raises(EnvError, match="accepted"):
        validate_task("mamujoco:HalfCheetah-4x2")
    with pytest.raises(EnvError):
        validate_task("mpe:spread-0")
