"""Behaviour policies (MAPPO on the entity view) and dataset collection from their snapshots.
One tiny real training run on 3m (the jax engine, SMAC's default; about 30 s) is shared by the
tests of this module; the torch engine's runs are those of MPE and MuJoCo at the end."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import envs
from envs.core import random_actions
from marl import collect as collect_mod
from marl.behavior import BehaviorConfig, act, family_adapter, learning_rate, load_policy, train
from marl.checkpoint import load as load_checkpoint_file
from marl.collect import choose_snapshots, collect, export_policies, list_snapshots
from marl.data.format import DatasetError, read_dataset

TINY_LR = BehaviorConfig(task="smac:3m").lr
TINY = dict(total_env_steps=50_000, num_envs=32, rollout_steps=64, minibatches=2,
            snapshot_every=5, eval_episodes=64, seed=0)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("behavior") / "smac_3m"
    meta = train(BehaviorConfig(task="smac:3m", **TINY), out, log=lambda *a: None)
    return out, meta


def random_win_rate(task, episodes=128):
    env = envs.make(task, num_envs=64, seed=123)
    ts, rng, wins = env.reset(), np.random.default_rng(0), []
    while len(wins) < episodes:
        ts = env.step(random_actions(ts.avail_actions, rng))
        wins += ts.info["battle_won"][ts.done].tolist()
    return float(np.mean(wins))


def test_tiny_mappo_run_beats_random_play_on_3m(tiny_run):
    _, meta = tiny_run
    random_rate = random_win_rate("smac:3m")
    assert meta["env_steps"] >= TINY["total_env_steps"]
    assert meta["greedy"]["win_rate"] >= 0.3, meta
    assert meta["greedy"]["win_rate"] > random_rate + 0.25, (meta, random_rate)


def test_snapshots_are_small_safetensors_with_provenance(tiny_run):
    out, _ = tiny_run
    snaps = list_snapshots(out)
    assert len(snaps) == 5 and [s.metadata["update"] for s in snaps] == [5, 10, 15, 20, 25]
    for s in snaps:
        assert s.path.suffix == ".safetensors" and s.path.stat().st_size < 300_000
        assert s.path.read_bytes()[:8] != b"\x80\x02\x8a\x0a"  # not a pickle
        assert {"greedy", "sampled", "env_steps", "config"} <= set(s.metadata)
    assert (out / "tb").is_dir() and any((out / "tb").iterdir())


def test_one_policy_acts_on_a_larger_map(tiny_run):
    """The entity network trained on 3m runs unchanged on 5m_vs_6m (5 agents, 6 enemies)."""
    out, _ = tiny_run
    env = envs.make("smac:5m_vs_6m", num_envs=4, seed=0)
    actor = load_policy(list_snapshots(out)[-1].path, env.info)
    ts = env.reset()
    for _ in range(5):
        actions, _ = act(actor, family_adapter(env.info), ts.obs, ts.avail_actions, greedy=True)
        assert actions.shape == (4, 5)
        ts = env.step(actions)  # raises EnvError on any unavailable action


def test_resume_continues_from_the_checkpoint(tiny_run, tmp_path):
    """Resuming with more steps and ``anneal_lr`` fine-tunes at the whole run's falling rate."""
    out, meta = tiny_run
    lines = []
    more = dict(TINY, total_env_steps=meta["env_steps"] + 2 * 32 * 64, anneal_lr=True)
    resumed = train(BehaviorConfig(task="smac:3m", **more), out, log=lines.append)
    assert lines[0].startswith(f"resuming smac:3m from update {meta['update']}")
    assert resumed["update"] == meta["update"] + 2
    last_update_start = resumed["env_steps"] - 32 * 64
    expected_lr = TINY_LR * (1 - last_update_start / more["total_env_steps"])
    assert load_checkpoint_file(out / "checkpoint.pt")["lr"] == pytest.approx(expected_lr)
    assert 0 < expected_lr < TINY_LR / 10
    with pytest.raises(envs.EnvError, match="is a run for smac:3m, not smac:4m"):
        train(BehaviorConfig(task="smac:4m", **more), out, log=lambda *a: None)
    with pytest.raises(envs.EnvError, match="width 64, not 32: resume it with --hidden 64"):
        train(BehaviorConfig(task="smac:3m", **dict(more, hidden=32)), out, log=lambda *a: None)


def test_learning_rate_is_constant_or_falls_linearly_to_zero():
    constant = BehaviorConfig(task="smac:3m", lr=1e-3, total_env_steps=1000)
    annealed = BehaviorConfig(task="smac:3m", lr=1e-3, total_env_steps=1000, anneal_lr=True)
    assert [learning_rate(constant, s) for s in (0, 500, 1000)] == [1e-3, 1e-3, 1e-3]
    assert [learning_rate(annealed, s) for s in (0, 250, 1000, 1200)] == pytest.approx(
        [1e-3, 7.5e-4, 0.0, 0.0])


def test_snapshot_choice_per_quality(tiny_run):
    out, _ = tiny_run
    snaps = list_snapshots(out)
    (expert,), greedy = choose_snapshots(snaps, "expert")
    (medium,), _ = choose_snapshots(snaps, "medium")
    replay, replay_greedy = choose_snapshots(snaps, "medium-replay")
    assert greedy and not replay_greedy
    assert expert.score == max(s.score for s in snaps)
    assert 0.4 <= medium.score <= 0.6 or medium.score >= (snaps[0].score + expert.score) / 2
    assert replay[0] is snaps[0] and replay[-1] is medium
    assert choose_snapshots(snaps, "poor")[0] == [snaps[0]]
    with pytest.raises(ValueError, match="quality"):
        choose_snapshots(snaps, "excellent")


def fake_run(folder, scores, task="smac:2s3z", metric="win_rate"):
    """A behaviour run's snapshot folder with the given (env steps, greedy score) records."""
    (folder / "snapshots").mkdir(parents=True)
    for steps, score in scores:
        greedy = {"return": score * 20, "win_rate": score} if metric == "win_rate" else \
            {"return": score}
        meta = {"env_steps": steps, "greedy": greedy, "sampled": greedy,
                "config": {"task": task, "seed": 0}}
        (folder / "snapshots" / f"{steps:06d}.safetensors").write_bytes(b"weights")
        (folder / "snapshots" / f"{steps:06d}.json").write_text(json.dumps(meta))
    return folder


@pytest.mark.parametrize("scores, metric, medium", [
    ([0.0, 0.3, 0.45, 0.7, 0.95], "win_rate", 0.45),  # the band (40-60 %), not halfway (47.5 %)
    ([0.0, 0.2, 0.75, 0.9], "win_rate", 0.75),  # learning jumped over the band: halfway
    ([0.0, 0.1, 0.25, 0.41, 0.44], "win_rate", 0.25),  # weak expert (< 80 %): halfway, not 41 %
    ([-20.0, -15.0, -10.0, -5.0], "return", -10.0),  # returns: halfway from the first score
])
def test_medium_is_in_the_band_or_halfway(tmp_path, scores, metric, medium):
    run = fake_run(tmp_path / "run", [(10 * (i + 1), s) for i, s in enumerate(scores)],
                   metric=metric)
    (chosen,), greedy = choose_snapshots(list_snapshots(run), "medium")
    assert chosen.score == medium and greedy
    replay, _ = choose_snapshots(list_snapshots(run), "medium-replay")
    assert [s.score for s in replay] == scores[:scores.index(medium) + 1]


def test_mujoco_snapshots_act_as_they_score_best():
    """SMAC always collects greedily (ODIS); a MuJoCo snapshot whose Gaussian mean does worse
    than its sampled actions collects with sampled actions, and is scored that way."""
    from marl.collect import Snapshot

    def snap(task, steps, greedy, sampled):
        return Snapshot(Path(f"{steps:06d}.safetensors"), {
            "env_steps": steps, "greedy": {"return": greedy}, "sampled": {"return": sampled},
            "config": {"task": task, "seed": 0}})

    smac = snap("smac:3m", 1, 5.0, 9.0)
    assert smac.greedy and smac.score == 5.0
    noisy = [snap("mamujoco:HalfCheetah-6x1", 1, -20.0, -180.0),
             snap("mamujoco:HalfCheetah-6x1", 2, 35.0, 525.0),
             snap("mamujoco:HalfCheetah-6x1", 3, 300.0, 280.0)]
    assert [s.greedy for s in noisy] == [True, False, True]
    assert [s.score for s in noisy] == [-20.0, 525.0, 300.0]
    assert choose_snapshots(noisy, "expert") == ([noisy[1]], False)
    assert choose_snapshots(noisy, "poor") == ([noisy[0]], True)


def test_export_takes_medium_from_a_denser_run(tmp_path):
    main = fake_run(tmp_path / "main", [(100, 0.1), (200, 0.65), (300, 0.99)])
    dense = fake_run(tmp_path / "dense", [(10, 0.0), (20, 0.2), (30, 0.46), (40, 0.66)])
    record = export_policies(main, tmp_path / "shipped", medium_run=dense,
                             medium_command="marl behavior train ... --snapshot-every 1")
    steps = {name: snap["env_steps"] for name, snap in record["snapshots"].items()}
    assert steps == {"poor": 100, "medium": 30, "expert": 300, "replay_1": 10, "replay_2": 20}
    assert record["medium_run"]["greedy_score_by_env_steps"]["30"] == 0.46
    shipped = list_snapshots(tmp_path / "shipped")  # the names decide, not the step order
    assert choose_snapshots(shipped, "poor")[0][0].score == 0.1
    assert [s.score for s in choose_snapshots(shipped, "medium-replay")[0]] == [0.1, 0.0, 0.2, 0.46]
    other = fake_run(tmp_path / "other", [(10, 0.5)], task="smac:3m")
    with pytest.raises(ValueError, match="other is a run of smac:3m, not smac:2s3z"):
        export_policies(main, tmp_path / "x", medium_run=other)


def test_export_keeps_what_the_qualities_need(tiny_run, tmp_path):
    out, _ = tiny_run
    shipped = tmp_path / "smac_3m"
    record = export_policies(out, shipped, command="marl behavior train smac:3m ...")
    assert {"poor", "medium", "expert"} <= set(record["snapshots"])
    assert json.loads((shipped / "provenance.json").read_text())["task"] == "smac:3m"
    for quality in ("expert", "medium", "poor"):
        a = choose_snapshots(list_snapshots(out), quality)[0][0].metadata["env_steps"]
        b = choose_snapshots(list_snapshots(shipped), quality)[0][0].metadata["env_steps"]
        assert a == b, quality


def test_every_training_task_of_every_task_set_has_a_shipped_policy():
    """`marl datasets build` needs a policy for each training task: each shipped folder holds
    the snapshots every quality draws on, for the task its provenance names (the task itself,
    or where the task set says so another partition of the same MuJoCo robot)."""
    from envs.mamujoco import parse_map
    from envs.tasksets import list_tasksets, load_taskset
    from marl import SHIPPED_POLICIES

    for name in list_tasksets():
        task_set = load_taskset(name)
        for task in task_set.train_tasks:
            source = task_set.behavior_policies.get(task, task.replace(":", "_"))
            folder = SHIPPED_POLICIES / source
            trained_on = json.loads((folder / "provenance.json").read_text())["task"]
            assert trained_on == source.replace("_", ":", 1), folder
            if trained_on != task:
                assert (parse_map(trained_on.split(":")[1]).robot
                        == parse_map(task.split(":")[1]).robot), (task, folder)
            for quality in ("poor", "medium", "expert", "medium-replay"):
                chosen = choose_snapshots(list_snapshots(folder), quality)[0]
                assert chosen and all(s.metadata["task"] == trained_on for s in chosen), (folder, quality)


def test_collect_writes_odis_layout_and_resumes_identically(tiny_run, tmp_path, monkeypatch):
    out, _ = tiny_run
    whole = collect("smac:3m", out, "expert", 24, tmp_path / "a.h5", shard_episodes=10,
                    num_envs=8, show_progress=False)
    data = read_dataset(whole)
    assert data.n_episodes == 24 and data.attrs["quality"] == "expert"
    assert data.arrays["obs"].shape == (24, 61, 3, 30)
    lengths = data.lengths
    # ODIS semantics: the post-terminal step is filled, its reward is 0, nothing after it
    rows = np.arange(24)
    assert (data.arrays["filled"][rows, lengths - 1, 0] == 1).all()
    assert (data.arrays["reward"][rows, lengths - 1, 0] == 0).all()
    np.testing.assert_allclose(data.returns[data.wins], 20.0, rtol=1e-5)

    # interrupt after the first shard, then re-run: the result is the same file content
    calls = {"n": 0}
    real = collect_mod.run_episodes

    def crash_on_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(collect_mod, "run_episodes", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        collect("smac:3m", out, "expert", 24, tmp_path / "b.h5", shard_episodes=10, num_envs=8,
                show_progress=False)
    assert not (tmp_path / "b.h5").exists()
    assert [p.name for p in (tmp_path / "b.h5.parts").iterdir()] == ["shard_00000.h5"]
    monkeypatch.setattr(collect_mod, "run_episodes", real)
    resumed = read_dataset(collect("smac:3m", out, "expert", 24, tmp_path / "b.h5",
                                   shard_episodes=10, num_envs=8, show_progress=False))
    for key, value in data.arrays.items():
        np.testing.assert_array_equal(resumed.arrays[key], value, err_msg=key)


def test_collect_plays_the_asked_or_the_trained_opponent(tiny_run, tmp_path):
    """Options given are recorded; without them, the policy's training opponent is played; a
    finished file of another opponent is never taken for the one asked for."""
    out, _ = tiny_run
    delayed = collect("smac:3m", out, "poor", 4, tmp_path / "r.h5", num_envs=4,
                      env_options={"enemy_reaction": 0.8}, show_progress=False)
    assert read_dataset(delayed).attrs["env_options"] == {"enemy_reaction": 0.8}
    with pytest.raises(DatasetError, match=r"r\.h5.*env_options.*enemy_reaction.*\(0\.8, 1\.0\)"):
        collect("smac:3m", out, "poor", 4, tmp_path / "r.h5", env_options={},
                show_progress=False)

    trained = tmp_path / "policy"  # the tiny run's snapshots, as if trained against 0.8
    trained.mkdir()
    for snap in (out / "snapshots").glob("*.safetensors"):
        (trained / snap.name).write_bytes(snap.read_bytes())
        record = json.loads(snap.with_suffix(".json").read_text())
        record["env_options"] = dict(record["env_options"], enemy_reaction=0.8)
        (trained / snap.with_suffix(".json").name).write_text(json.dumps(record))
    inherited = collect("smac:3m", trained, "poor", 4, tmp_path / "i.h5", num_envs=4,
                        show_progress=False)
    assert read_dataset(inherited).attrs["env_options"] == {"enemy_reaction": 0.8}
    default = collect("smac:3m", trained, "poor", 4, tmp_path / "d.h5", num_envs=4,
                      env_options={}, show_progress=False)
    assert read_dataset(default).attrs["env_options"] == {}


def test_medium_expert_is_half_and_half(tiny_run, tmp_path):
    out, _ = tiny_run
    data = read_dataset(collect("smac:3m", out, "medium-expert", 12, tmp_path / "me.h5",
                                num_envs=8, show_progress=False))
    assert data.n_episodes == 12 and data.attrs["quality"] == "medium-expert"
    joined = data.attrs["behavior_policy"]["joined"]
    assert [len(j["snapshots"]) for j in joined] == [1, 1]


@pytest.mark.parametrize("task", ["mamujoco:HalfCheetah-2x3", "mpe:spread-2"])
def test_other_families_train_snapshot_and_collect(task, tmp_path):
    """Per-joint Gaussian MAPPO (MuJoCo) and discrete MAPPO (MPE): a short run snapshots, its
    policy acts within the action space and collects a dataset in the family's layout."""
    cfg = BehaviorConfig(task=task, total_env_steps=2 * 4 * 64, num_envs=4, rollout_steps=64,
                         minibatches=2, epochs=2, snapshot_every=1, eval_episodes=2, seed=0)
    out = tmp_path / "run"
    meta = train(cfg, out, log=lambda *a: None)
    assert meta["update"] == 2 and np.isfinite(meta["greedy"]["return"])
    env = envs.make(task, num_envs=2, seed=0)
    actor = load_policy(list_snapshots(out)[-1].path, env.info)
    actions, logp = act(actor, family_adapter(env.info), env.reset().obs, None if env.info.action_type
                        == "continuous" else np.ones((2, env.info.n_agents, 5), bool), greedy=False)
    assert logp.shape == (2, env.info.n_agents) and np.isfinite(logp.numpy()).all()
    # collect 2 episodes of the poor snapshot and read them back in the family's layout
    data = read_dataset(collect(task, out, "poor", 2, tmp_path / "d.h5", num_envs=2,
                                show_progress=False))
    assert data.n_episodes == 2
    if env.info.action_type == "continuous":
        assert "avail_actions" not in data.arrays and data.arrays["actions"].dtype == np.float32
        assert data.arrays["actions"].shape[-1] == env.info.n_actions
    else:
        assert data.arrays["actions_onehot"].shape[-1] == 5


def test_torch_engine_resumes_and_refuses_another_width(tmp_path):
    cfg = dict(task="mpe:spread-2", num_envs=4, rollout_steps=64, minibatches=2, epochs=1,
               snapshot_every=1, eval_episodes=2, seed=0)
    out = tmp_path / "run"
    train(BehaviorConfig(total_env_steps=4 * 64, **cfg), out, log=lambda *a: None)
    assert json.loads((out / "config.json").read_text())["engine"] == "torch"
    lines = []
    meta = train(BehaviorConfig(total_env_steps=2 * 4 * 64, **cfg), out, log=lines.append)
    assert lines[0].startswith("resuming mpe:spread-2 from update 1") and meta["update"] == 2
    with pytest.raises(envs.EnvError, match="width 64, not 32: resume it with --hidden 64"):
        train(BehaviorConfig(total_env_steps=3 * 4 * 64, **dict(cfg, hidden=32)), out)


def test_a_policy_drives_every_partition_of_its_robot(tmp_path):
    """The shipped HalfCheetah-2x3 expert collects 6x1 and 3x2 data through the partition
    bridge: the robot moves exactly as under 2x3 (same states, same returns), and each
    partition's recorded actions are the same joint actions regrouped by its agents."""
    from marl import SHIPPED_POLICIES

    policy = Path(SHIPPED_POLICIES) / "mamujoco_HalfCheetah-2x3"
    data = {part: read_dataset(collect(f"mamujoco:HalfCheetah-{part}", policy, "expert", 2,
                                       tmp_path / f"{part}.h5", num_envs=2, show_progress=False))
            for part in ("2x3", "6x1", "3x2")}
    reference = data["2x3"].arrays
    assert reference["reward"].sum(1).mean() > 500  # it runs
    layouts = {part: envs.make(f"mamujoco:HalfCheetah-{part}").info.layout for part in data}
    joint_actions = {}
    for part, d in data.items():
        np.testing.assert_array_equal(d.arrays["state"], reference["state"])
        np.testing.assert_allclose(d.arrays["reward"], reference["reward"])
        acts = d.arrays["actions"]  # [episodes, T+1, n_agents, k] -> per joint
        per_joint = np.zeros(acts.shape[:2] + (6,), np.float32)
        for a, joints in enumerate(layouts[part].agent_joints):
            per_joint[..., list(joints)] = acts[..., a, : len(joints)]
        joint_actions[part] = per_joint[:, :-1]  # the post-terminal step is a placeholder
    np.testing.assert_allclose(joint_actions["6x1"], joint_actions["2x3"], atol=1e-6)
    np.testing.assert_allclose(joint_actions["3x2"], joint_actions["2x3"], atol=1e-6)
    assert data["6x1"].attrs["behavior_policy"]["id"].startswith("mappo:mamujoco_HalfCheetah-2x3")
    with pytest.raises(envs.EnvError, match="partitions of one robot only"):
        from envs.mamujoco import PartitionBridge

        PartitionBridge(layouts["2x3"], envs.make("mamujoco:Ant-2x4").info.layout)


def test_swimming_gait_swims_every_morphology_and_partition():
    """The scripted reflex chain (``marl.behavior.gait``) drives any chain of segments from the
    layout alone: on an unseen 5-segment-pair swimmer it swims forward (a still swimmer scores
    about 0), and splitting the same robot differently moves it identically."""
    from marl.behavior.gait import GaitDriver, ReflexChain, play_gait

    assert play_gait("mamujoco:ManySegmentSwimmer-5x2", ReflexChain(), episodes=2)["return"] > 150
    assert abs(play_gait("mamujoco:ManySegmentSwimmer-5x2", ReflexChain().level(0.0),
                         episodes=2)["return"]) < 30
    states = {}
    for task in ("mamujoco:ManySegmentSwimmer-3x2", "mamujoco:ManySegmentSwimmer-6x1"):
        env = envs.make(task, num_envs=2, seed=3)
        choose, ts = GaitDriver(ReflexChain(), env.info), env.reset(3)
        for _ in range(50):
            ts = env.step(choose(ts))
        states[task] = ts.state
    np.testing.assert_allclose(*states.values(), atol=1e-6)


def test_swimming_gait_acts_on_each_agents_observation_alone():
    """The gait is a policy of observations, no clock: an agent's actions stay the same when
    every state value it does not observe changes, and the same state gives the same actions at
    any step of the episode, so a learner that imitates it exactly swims as it does."""
    from types import SimpleNamespace

    from envs.mamujoco import obs_gather
    from marl.behavior.gait import GaitDriver, ReflexChain

    env = envs.make("mamujoco:ManySegmentSwimmer-4x2", num_envs=8, seed=1)
    choose, ts = GaitDriver(ReflexChain(), env.info), env.reset(1)
    for _ in range(30):
        ts = env.step(choose(ts))
    table = obs_gather(env.info.layout)
    rng = np.random.default_rng(0)
    base = choose(SimpleNamespace(state=ts.state))
    np.testing.assert_array_equal(base, choose(ts))
    for agent in range(env.info.n_agents):
        hidden = np.setdiff1d(np.arange(env.info.state_dim), table[agent])
        changed = ts.state.copy()
        changed[:, hidden] += rng.normal(0.0, 1.0, (len(changed), len(hidden)))
        np.testing.assert_array_equal(choose(SimpleNamespace(state=changed))[:, agent], base[:, agent])
        seen = ts.state.copy()
        seen[:, table[agent][table[agent] < env.info.state_dim]] += 0.5
        assert np.abs(choose(SimpleNamespace(state=seen))[:, agent] - base[:, agent]).max() > 0.05
    env.close()
    blind = envs.make("mamujoco:ManySegmentSwimmer-3x2", agent_obsk=0)  # no neighbour's angle
    with pytest.raises(envs.EnvError, match="ManySegmentSwimmer-3x2's agent 0 does not see .*rot1.*agent_obsk"):
        GaitDriver(ReflexChain(), blind.info)
    blind.close()


def test_gait_policy_folders_collect_every_quality(tmp_path):
    """A shipped gait folder collects like a trained one: the expert swims, medium-replay adds
    action noise (sampled), the provenance names the gait, and epsilon sampling, a gait on
    another robot, or a broken gait file each fail with one clear error."""
    from marl import SHIPPED_POLICIES

    folder = Path(SHIPPED_POLICIES) / "mamujoco_ManySegmentSwimmer-3x2"
    expert = read_dataset(collect("mamujoco:ManySegmentSwimmer-3x2", folder, "expert", 2,
                                  tmp_path / "e.h5", num_envs=2, show_progress=False))
    assert expert.returns.mean() > 200
    card = expert.attrs["behavior_policy"]
    assert card["id"] == "gait:mamujoco_ManySegmentSwimmer-3x2/expert" and card["sampling"] == "greedy"
    replay = read_dataset(collect("mamujoco:ManySegmentSwimmer-3x2", folder, "medium-replay", 4,
                                  tmp_path / "r.h5", num_envs=2, show_progress=False))
    assert replay.attrs["behavior_policy"]["sampling"] == "sampled"
    assert replay.returns.mean() < expert.returns.mean()
    # a finished file is kept while its policy is unchanged, refused once the gait is re-scripted
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    kept = collect("mamujoco:ManySegmentSwimmer-3x2", copy, "expert", 2, tmp_path / "k.h5",
                   num_envs=2, show_progress=False)
    assert collect("mamujoco:ManySegmentSwimmer-3x2", copy, "expert", 2, kept,
                   num_envs=2, show_progress=False) == kept
    record = json.loads((copy / "expert.gait.json").read_text())
    record["greedy"]["return"] += 1.0
    (copy / "expert.gait.json").write_text(json.dumps(record))
    with pytest.raises(envs.EnvError, match="k.h5 was collected from another version of .*expert.gait.json"):
        collect("mamujoco:ManySegmentSwimmer-3x2", copy, "expert", 2, kept, num_envs=2, show_progress=False)
    with pytest.raises(envs.EnvError, match="scripted gait.*not epsilon:0.1"):
        collect("mamujoco:ManySegmentSwimmer-3x2", folder, "expert", 2, tmp_path / "x.h5",
                num_envs=2, show_progress=False, sampling="epsilon:0.1")
    with pytest.raises(envs.EnvError, match="drives .*ManySegmentSwimmer.*not HalfCheetah"):
        collect("mamujoco:HalfCheetah-2x3", folder, "expert", 2, tmp_path / "h.h5",
                num_envs=2, show_progress=False)
    from marl.behavior.gait import write_ladder

    for task, episodes, message in (("smac:3m", 4, "not 'smac:3m'"), ("mamujoco:Ant-2x4", 4, "not Ant"),
                                    ("mamujoco:ManySegmentSwimmer-2x2", 0, "episodes must be")):
        with pytest.raises(envs.EnvError, match=message):
            write_ladder(task, tmp_path / "ladder", episodes=episodes)
    assert not (tmp_path / "ladder").exists()  # nothing written before the error
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "expert.gait.json").write_text('{"kind": "reflex_chain", "gait": {"amplitude": "big"}}')
    with pytest.raises(envs.EnvError, match="expert.gait.json is not a gait policy"):
        list_snapshots(broken)
    (broken / "expert.gait.json").write_text('{"kind": "travelling_wave", "gait": {"amplitude": 1.0}}')
    with pytest.raises(envs.EnvError, match="expert.gait.json is not a gait policy.*expected 'reflex_chain'"):
        list_snapshots(broken)


def test_forward_progress_tells_walking_from_standing_still():
    """Ant's healthy bonus pays about 1000 an episode for standing: the shipped Ant's poor
    snapshot scores 996 without moving, the expert walks about 26 m (docs/datasets.md).
    ``experiments/forward_progress.py`` measures the walk, not the return."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "experiments" / "forward_progress.py"
    spec = importlib.util.spec_from_file_location("forward_progress", path)
    forward = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(forward)
    folder = Path(__file__).resolve().parents[1] / "marl" / "policies" / "mamujoco_Ant-2x4"
    poor = forward.forward_progress("mamujoco:Ant-2x4", folder / "poor.safetensors", 2, 0)
    expert = forward.forward_progress("mamujoco:Ant-2x4", folder / "expert.safetensors", 2, 0)
    assert poor["return"] > 900 and abs(poor["x_moved"]) < 1.0  # paid for standing still
    assert expert["x_moved"] > 10.0 and expert["speed"] > 0.2
    assert expert["speed"] == pytest.approx(expert["x_moved"] / (expert["length"] * 0.05), rel=0.2)


def test_gait_imitation_fits_the_reflex_chain_and_swims_like_it(tmp_path):
    """``experiments/gait_imitation.py``: an MLP of observations fitted to a few episodes of
    the shipped reflex chain reproduces its actions closely and swims forward when played;
    a dataset of discrete actions is refused by name."""
    import importlib.util

    from marl import SHIPPED_POLICIES

    path = Path(__file__).resolve().parents[1] / "experiments" / "gait_imitation.py"
    spec = importlib.util.spec_from_file_location("gait_imitation", path)
    imitation = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(imitation)
    data = collect("mamujoco:ManySegmentSwimmer-3x2",
                   Path(SHIPPED_POLICIES) / "mamujoco_ManySegmentSwimmer-3x2", "expert", 4,
                   tmp_path / "expert.h5", num_envs=4, show_progress=False)
    report = imitation.fit_and_play(str(data), episodes=4, steps=600, play=2)
    assert report["episodes_fitted"] == 4 and report["data_return"] > 250
    assert report["fit_mse"] < 0.05 * report["action_variance"]
    assert report["mlp_return"] > 150  # standing still scores about 0
    smac = collect("smac:3m", Path(SHIPPED_POLICIES) / "smac_3m", "expert", 2, tmp_path / "3m.h5",
                   num_envs=2, show_progress=False)
    with pytest.raises(SystemExit, match="3m.h5: a MuJoCo dataset"):
        imitation.fit_and_play(str(smac), episodes=2, steps=1, play=1)


def test_behavior_gait_writes_a_measured_quality_ladder(tmp_path):
    """``marl behavior gait`` writes the five levels, each a loadable reflex chain at its
    strength with its measured returns (the expert swims, poor does not), and the provenance."""
    from marl.behavior.gait import LADDER, load_gait
    from marl.cli import main

    out = tmp_path / "swimmer"
    main(["behavior", "gait", "mamujoco:ManySegmentSwimmer-2x2", "--out", str(out),
          "--episodes", "1", "--follow-gain", "1.4"])
    levels = {name: load_gait(out / f"{name}.gait.json") for name in LADDER}
    for name, (gait, record) in levels.items():
        assert gait.follow_gain == pytest.approx(1.4 * LADDER[name])
        assert record["kind"] == "reflex_chain" and record["task"] == "mamujoco:ManySegmentSwimmer-2x2"
    assert levels["expert"][1]["greedy"]["return"] > 100 > abs(levels["poor"][1]["greedy"]["return"])
    provenance = json.loads((out / "provenance.json").read_text())
    assert sorted(provenance["snapshots"]) == sorted(LADDER) and provenance["kind"] == "reflex_chain"
    assert [s.name for s in list_snapshots(out)] == list(LADDER)  # ordered poor ... expert
