"""The dataset format (marl.data.format): round trips of real SMAX and MuJoCo episodes, ODIS files
read as they are (a synthetic one in ODIS's exact layout, and the real ODIS sample when present),
and every failure reported as one DatasetError naming the file and the key."""

import json
import os
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

import envs
from envs.core import random_actions
from envs.smac import focus_fire_actions, parse_map
from marl.data import (
    CONTINUOUS_KEYS,
    DISCRETE_KEYS,
    QUALITIES,
    SCHEMA_VERSION,
    DatasetError,
    EpisodeData,
    check_quality,
    concat_episodes,
    dataset_card,
    read_dataset,
    write_dataset,
)
from marl.data import format as fmt
from marl.data import schema

ODIS_FILE = Path("/work/shared/data/odis/3m/medium/qmix_2022-04-03_12-49-45/part_0.h5")
POLICY = {"id": "random", "provenance": "tests/test_data_format.py"}


# ------------------------------------------------------------------------------------ helpers
def record_episodes(env, n_episodes, seed=0, policy=None, max_steps=10_000):
    """Play ``policy(ts, rng)`` (random actions by default) until ``n_episodes`` episodes
    finished; return ODIS-layout arrays (post-terminal step from info["final_*"]), battle_won
    (SMAC) and the env's own episode returns/lengths for comparison."""
    info = env.info
    n, n_agents = env.num_envs, info.n_agents
    discrete = info.action_type == "discrete"
    rng = np.random.default_rng(seed)
    ts = env.reset(seed=seed)
    fresh = lambda: {"obs": [], "state": [], "avail": [], "actions": [], "reward": []}  # noqa: E731
    current = [fresh() for _ in range(n)]
    finished = []
    for _ in range(max_steps):
        if policy is not None:
            actions = policy(ts, rng)
        elif discrete:
            actions = random_actions(ts.avail_actions, rng)
        else:
            actions = rng.uniform(-1, 1, (n, n_agents, info.n_actions)).astype(np.float32)
        nxt = env.step(actions)
        for i in range(n):
            ep = current[i]
            ep["obs"].append(ts.obs[i].copy())
            ep["state"].append(ts.state[i].copy())
            ep["avail"].append(None if ts.avail_actions is None else ts.avail_actions[i].copy())
            ep["actions"].append(np.array(actions[i]))
            ep["reward"].append(float(nxt.reward[i]))
            if nxt.done[i]:
                ep["final_obs"] = nxt.info["final_obs"][i].copy()
                ep["final_state"] = nxt.info["final_state"][i].copy()
                ep["final_avail"] = (nxt.info["final_avail_actions"][i].copy()
                                     if discrete else None)
                ep["terminated"] = bool(nxt.terminated[i])
                ep["won"] = bool(nxt.info["battle_won"][i]) if "battle_won" in nxt.info else None
                ep["env_return"] = float(nxt.info["episode_return"][i])
                ep["env_length"] = int(nxt.info["episode_length"][i])
                finished.append(ep)
                current[i] = fresh()
        ts = nxt
        if len(finished) >= n_episodes:
            break
    assert len(finished) >= n_episodes
    return episodes_to_arrays(finished[:n_episodes], info)


def episodes_to_arrays(episodes, info):
    e_count, t_max = len(episodes), info.episode_limit + 1
    a, n_act = info.n_agents, info.n_actions
    discrete = info.action_type == "discrete"
    out = {
        "obs": np.zeros((e_count, t_max, a, info.obs_dim), np.float32),
        "state": np.zeros((e_count, t_max, info.state_dim), np.float32),
        "actions": np.zeros((e_count, t_max, a, 1 if discrete else n_act),
                            np.int64 if discrete else np.float32),
        "reward": np.zeros((e_count, t_max, 1), np.float32),
        "terminated": np.zeros((e_count, t_max, 1), np.uint8),
        "filled": np.zeros((e_count, t_max, 1), np.int64),
    }
    if discrete:
        out["actions_onehot"] = np.zeros((e_count, t_max, a, n_act), np.float32)
        out["avail_actions"] = np.zeros((e_count, t_max, a, n_act), np.int32)
    for e, ep in enumerate(episodes):
        steps = len(ep["actions"])  # transitions; L = steps + 1
        out["obs"][e, :steps] = ep["obs"]
        out["obs"][e, steps] = ep["final_obs"]
        out["state"][e, :steps] = ep["state"]
        out["state"][e, steps] = ep["final_state"]
        out["reward"][e, :steps, 0] = ep["reward"]
        out["terminated"][e, steps - 1, 0] = ep["terminated"]
        out["filled"][e, : steps + 1] = 1
        if discrete:
            acts = np.stack(ep["actions"])
            placeholder = ep["final_avail"].argmax(-1)  # first available action
            out["actions"][e, :steps, :, 0] = acts
            out["actions"][e, steps, :, 0] = placeholder
            out["avail_actions"][e, :steps] = ep["avail"]
            out["avail_actions"][e, steps] = ep["final_avail"]
            eye = np.eye(n_act, dtype=np.float32)
            out["actions_onehot"][e, : steps + 1] = eye[out["actions"][e, : steps + 1, :, 0]]
        else:
            out["actions"][e, :steps] = ep["actions"]
    won = np.array([ep["won"] for ep in episodes]) if episodes[0]["won"] is not None else None
    env_returns = np.array([ep["env_return"] for ep in episodes])
    env_lengths = np.array([ep["env_length"] for ep in episodes])
    return out, won, env_returns, env_lengths


def synthetic_3m(lengths, terminated, seed=0, n_steps=61):
    """Episodes of smac:3m's layout with the given filled lengths and terminated flags."""
    rng = np.random.default_rng(seed)
    e_count = len(lengths)
    out = {
        "obs": np.zeros((e_count, n_steps, 3, 30), np.float32),
        "state": np.zeros((e_count, n_steps, 48), np.float32),
        "actions": np.zeros((e_count, n_steps, 3, 1), np.int64),
        "actions_onehot": np.zeros((e_count, n_steps, 3, 9), np.float32),
        "avail_actions": np.zeros((e_count, n_steps, 3, 9), np.int32),
        "reward": np.zeros((e_count, n_steps, 1), np.float32),
        "terminated": np.zeros((e_count, n_steps, 1), np.uint8),
        "filled": np.zeros((e_count, n_steps, 1), np.int64),
    }
    for e, (length, term) in enumerate(zip(lengths, terminated)):
        out["obs"][e, :length] = rng.uniform(-1, 1, size=(length, 3, 30))  # SMAC's ranges
        out["state"][e, :length] = rng.uniform(-1, 1, size=(length, 48))
        avail = rng.random((length, 3, 9)) < 0.5
        avail[..., 1] = True
        out["avail_actions"][e, :length] = avail
        acts = random_actions(avail, rng)
        out["actions"][e, :length, :, 0] = acts
        out["actions_onehot"][e, :length] = np.eye(9, dtype=np.float32)[acts]
        out["reward"][e, : length - 1, 0] = rng.uniform(0, 1, length - 1)
        out["terminated"][e, length - 2, 0] = term
        out["filled"][e, :length] = 1
    return out


def write_odis(path, arrays):
    """A file exactly as ODIS's DataSaver writes it: the datasets, gzip 9, no attributes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value, compression="gzip", compression_opts=9)


def assert_same_arrays(got: dict, want: dict):
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key].dtype == schema.key_dtype(key, "continuous" if "avail_actions" not in want
                                               else "discrete"), key
        assert got[key].shape == want[key].shape, key
        assert np.array_equal(got[key], want[key]), key


@pytest.fixture
def small_file(tmp_path):
    """A valid smac:3m file (synthetic episodes; no simulator), with its arrays."""
    arrays = synthetic_3m([5, 61, 3, 20], [1, 0, 1, 1])
    path = tmp_path / "3m-medium.h5"
    write_dataset(path, arrays, task="smac:3m", backend="smax", quality="medium",
                  behavior_policy=POLICY, seed=7, battle_won=np.array([True, False, False, True]))
    return path, arrays


# ------------------------------------------------------------------------------- round trips
def half_focus_fire(ts, rng):
    """Copies 0-1 focus fire (they win some battles), the others act at random."""
    layout = parse_map("3m")
    scripted = focus_fire_actions(ts.obs, ts.avail_actions, layout)
    rand = random_actions(ts.avail_actions, rng)
    return np.where(np.arange(len(ts.obs))[:, None] < 2, scripted, rand)


def test_smax_round_trip(tmp_path):
    # an 18-step limit gives wins, losses and time-limit truncations within a few dozen steps
    env = envs.make("smac:3m", num_envs=4, seed=0, episode_limit=18)
    try:
        arrays, won, env_returns, env_lengths = record_episodes(env, 10, seed=0,
                                                                policy=half_focus_fire)
    finally:
        env.close()
    term = arrays["terminated"][..., 0].sum(1)
    assert won.any() and (term == 0).any() and ((term == 1) & ~won).any()
    path = tmp_path / "deep" / "folder" / "3m.h5"  # parent folders are created
    write_dataset(path, arrays, task="smac:3m", backend="smax", quality="expert",
                  behavior_policy=POLICY, seed=0, env_info=env.info, battle_won=won)
    assert os.listdir(path.parent) == ["3m.h5"]  # no temporary file left behind
    data = read_dataset(path)
    assert isinstance(data, EpisodeData)
    assert_same_arrays(data.arrays, arrays)
    assert data.task == "smac:3m" and data.n_episodes == 10 and data.quality == "expert"
    np.testing.assert_array_equal(data.lengths, env_lengths + 1)
    np.testing.assert_allclose(data.returns, env_returns, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(data.wins, won)
    # time-limit truncations carry no terminated flag and fill all 19 steps; wins terminate
    assert (data.lengths[term == 0] == 19).all() and (term[data.wins] == 1).all()

    attrs = data.attrs
    assert attrs["schema_version"] == SCHEMA_VERSION and attrs["family"] == "smac"
    assert attrs["backend"] == "smax" and attrs["seed"] == 0
    assert attrs["behavior_policy"] == POLICY
    assert attrs["quality_definition"] == QUALITIES["expert"].as_dict()
    assert attrs["env_options"]["enemy_attack_mode"] == "closest"
    layout = attrs["layout"]
    assert (layout["n_agents"], layout["n_enemies"], layout["obs_dim"], layout["state_dim"],
            layout["n_actions"], layout["action_type"], layout["episode_limit"]) == (
        3, 3, 30, 48, 9, "discrete", 18)
    assert layout["ally_types"] == "marine,marine,marine"
    assert attrs["episodes"] == 10 and attrs["steps"] == int(env_lengths.sum())
    assert attrs["win_rate"] == pytest.approx(won.mean())
    assert attrs["return_mean"] == pytest.approx(env_returns.mean(), abs=1e-5)
    assert attrs["episode_length_min"] == env_lengths.min()
    assert attrs["episode_length_max"] == env_lengths.max()
    assert attrs["created_by"].startswith("marl ")
    assert attrs["checksum"].startswith("sha256:") and len(attrs["checksum"]) == 7 + 64

    with h5py.File(path) as f:  # ODIS's own reader sees its keys, gzip chunks of one episode
        assert set(DISCRETE_KEYS) <= set(f.keys())
        assert f["obs"].chunks == (1, 19, 3, 30) and f["obs"].compression == "gzip"
        assert f["actions"].dtype == np.int64 and f["avail_actions"].dtype == np.int32

    # the same file from the task name alone (no env_info): same layout and array checksums
    # (the attributes' digest differs: that layout records more, those options say more)
    again = tmp_path / "again.h5"
    write_dataset(again, arrays, task="smac:3m", backend="smax", quality="expert",
                  behavior_policy=POLICY, seed=0, battle_won=won,
                  env_options=dict(env.info.options, episode_limit=18))
    other = read_dataset(again).attrs
    arrays_only = lambda sums: {k: v for k, v in sums.items() if k != "attributes"}  # noqa: E731
    assert arrays_only(other["checksums"]) == arrays_only(attrs["checksums"])
    assert set(attrs["checksums"]) - set(arrays_only(attrs["checksums"])) == {"attributes"}
    assert {k: other["layout"][k] for k in layout} == layout


def test_mujoco_round_trip(tmp_path):
    env = envs.make("mamujoco:HalfCheetah-2x3", num_envs=2, seed=0)
    try:
        arrays, won, env_returns, env_lengths = record_episodes(env, 2, seed=1)
        info = env.info
    finally:
        env.close()
    assert won is None and (env_lengths == 1000).all()
    path = tmp_path / "cheetah.h5"
    write_dataset(path, arrays, task="mamujoco:HalfCheetah-2x3", backend="mujoco",
                  quality="poor", behavior_policy=POLICY, seed=1, env_info=info)
    data = read_dataset(path)
    assert_same_arrays(data.arrays, arrays)
    assert sorted(data.arrays) == sorted(CONTINUOUS_KEYS)
    assert data.arrays["actions"].shape == (2, 1001, 2, 3)
    np.testing.assert_array_equal(data.lengths, [1001, 1001])
    assert not data.arrays["terminated"].any()  # 1000-step time limit: truncated, not terminated
    assert not data.arrays["actions"][:, 1000].any()  # post-terminal placeholder is zeros
    np.testing.assert_allclose(data.returns, env_returns, rtol=1e-4)
    assert data.wins is None and "win_rate" not in data.attrs
    layout = data.attrs["layout"]
    assert layout["obs_dim"] == info.obs_dim and layout["state_dim"] == info.state_dim
    assert layout["robot"] == "HalfCheetah" and layout["act_dims"] == [3, 3]
    # without env_info the writer builds the task once for its MuJoCo sizes
    write_dataset(tmp_path / "b.h5", arrays, task="mamujoco:HalfCheetah-2x3", backend="mujoco",
                  quality="poor", behavior_policy=POLICY, seed=1)
    again = read_dataset(tmp_path / "b.h5").attrs  # the same arrays, other env_options recorded
    assert {k: v for k, v in again["checksums"].items() if k != "attributes"} == \
        {k: v for k, v in data.attrs["checksums"].items() if k != "attributes"}
    assert again["layout"] == layout


def test_mpe_round_trip(tmp_path):
    env = envs.make("mpe:spread-2", num_envs=2, seed=0, max_cycles=5)
    try:
        arrays, won, env_returns, env_lengths = record_episodes(env, 4, seed=2)
        options = dict(env.info.options)
    finally:
        env.close()
    path = tmp_path / "spread.h5"  # layout from the task name and options (max_cycles -> T)
    write_dataset(path, arrays, task="mpe:spread-2", backend="mpe2", quality="medium-replay",
                  behavior_policy=POLICY, seed=2, env_options=options)
    data = read_dataset(path)
    assert_same_arrays(data.arrays, arrays)
    assert data.arrays["obs"].shape == (4, 6, 2, 12) and data.layout["episode_limit"] == 5
    np.testing.assert_array_equal(data.lengths, env_lengths + 1)
    np.testing.assert_allclose(data.returns, env_returns, rtol=1e-5, atol=1e-6)
    assert data.quality == "medium-replay" and data.attrs["env_options"] == options


# ------------------------------------------------------------------------------- ODIS files
def test_odis_layout_without_attributes(tmp_path):
    # dataset/<map>/<quality>/<run>/part_<k>.h5; the last run folder is used, parts in order
    old = synthetic_3m([4, 4], [1, 1], seed=9)
    part0 = synthetic_3m([5, 61, 3], [1, 1, 0], seed=1)  # 61: time limit (ODIS marks it 1)
    part1 = synthetic_3m([30, 2], [0, 1], seed=2)
    root = tmp_path / "dataset" / "3m" / "medium"
    write_odis(root / "qmix_2022-01-01" / "part_0.h5", old)
    write_odis(root / "qmix_2022-04-03" / "part_0.h5", part0)
    write_odis(root / "qmix_2022-04-03" / "part_1.h5", part1)

    data = read_dataset(root / "qmix_2022-04-03" / "part_0.h5")
    assert data.task == "smac:3m" and data.quality == "medium"
    assert data.attrs["source_format"] == "odis" and data.wins is None
    assert data.layout["obs_dim"] == 30
    assert_same_arrays(data.arrays, part0)
    np.testing.assert_array_equal(data.lengths, [5, 61, 3])
    want = [part0["reward"][e, : n - 1, 0].astype(np.float64).sum()
            for e, n in enumerate([5, 61, 3])]
    np.testing.assert_allclose(data.returns, want)
    term = data.arrays["terminated"][..., 0]
    assert term[0, 3] == 1 and term[1, 59] == 1 and term[2].sum() == 0
    # post-terminal step L-1 is filled, holds obs, and is not a transition
    assert data.arrays["filled"][0, 4, 0] == 1 and data.arrays["filled"][0, 5, 0] == 0
    assert data.arrays["obs"][0, 4].any() and not data.arrays["obs"][0, 5:].any()
    mask = schema.transition_mask(data.arrays["filled"])
    assert mask[0].sum() == 4 and not mask[0, 4]

    for folder in (root, root / "qmix_2022-04-03"):
        both = read_dataset(folder)
        assert both.n_episodes == 5 and both.path.endswith("qmix_2022-04-03")
        np.testing.assert_array_equal(both.lengths, [5, 61, 3, 30, 2])
        np.testing.assert_array_equal(both.arrays["obs"][3], part1["obs"][0])

    # a copy outside ODIS's folder layout needs task=, and then has no quality
    loose = tmp_path / "loose.h5"
    write_odis(loose, part1)
    with pytest.raises(DatasetError, match="loose.h5.*task="):
        read_dataset(loose)
    data = read_dataset(loose, task="smac:3m")
    assert data.quality is None and data.n_episodes == 2
    assert read_dataset(loose, task="smac:3m", quality="medium_replay").quality == "medium-replay"


@pytest.mark.skipif(not ODIS_FILE.exists(), reason="the ODIS sample file is not on this machine")
def test_real_odis_file():
    data = read_dataset(ODIS_FILE)
    assert data.task == "smac:3m" and data.quality == "medium" and data.n_episodes == 2000
    assert data.arrays["obs"].shape == (2000, 61, 3, 30)
    assert data.arrays["state"].shape == (2000, 61, 48)
    assert data.arrays["avail_actions"].shape == (2000, 61, 3, 9)
    lengths, returns = data.lengths, data.returns
    assert lengths.min() == 21 and lengths.max() == 61
    assert returns.mean() == pytest.approx(14.00, abs=0.01)
    assert returns.max() == pytest.approx(20.0, abs=1e-4)
    assert np.mean(returns >= 19) == pytest.approx(0.54, abs=0.01)
    # one terminated flag per episode, at L-2 (ODIS flags its 47 time-outs too)
    term = data.arrays["terminated"][..., 0]
    assert (term.sum(1) == 1).all() and (term[np.arange(2000), lengths - 2] == 1).all()
    card = dataset_card(ODIS_FILE.parent.parent)  # <map>/<quality> folder: last run
    assert "2000" in card and "14.0041" in card and "medium" in card and "OK" in card


# ------------------------------------------------------------------------------------ errors
def test_missing_file(tmp_path):
    with pytest.raises(DatasetError, match=r"nope\.h5: no such file"):
        read_dataset(tmp_path / "nope.h5")
    with pytest.raises(DatasetError, match="empty.*no part_"):
        (tmp_path / "empty").mkdir()
        read_dataset(tmp_path / "empty")


def test_corrupted_data_fails_checksum(small_file):
    path, _ = small_file
    with h5py.File(path, "r+") as f:
        f["reward"][0, 0, 0] += 1.0
    with pytest.raises(DatasetError, match=r"3m-medium\.h5: key 'reward': checksum mismatch"):
        read_dataset(path)
    assert read_dataset(path, verify=False).n_episodes == 4
    card = dataset_card(path)
    assert "FAILED" in card and "checksum mismatch" in card
    from marl.cli import main

    assert main(["datasets", "inspect", str(path)]) == 1  # the card, and a failing status


def test_a_non_finite_reward_gets_a_card_that_says_so_and_fails(small_file, capsys):
    from marl.cli import main

    path, _ = small_file
    with h5py.File(path, "r+") as f:
        f["reward"][1, 0, 0] = np.nan
    card = dataset_card(path)
    assert "1 of 4 returns are not finite" in card and "FAILED" in card
    assert main(["datasets", "inspect", str(path)]) == 1
    assert "FAILED" in capsys.readouterr().out


@pytest.mark.parametrize("name, value", [
    ("backend", "sc2"), ("env_options", '{"enemy_reaction": 0.5}'), ("task", "smac:4m"),
    ("quality", "expert"), ("env_options", None), ("checksum", None)])
def test_changing_what_the_data_mean_fails_verification(small_file, name, value):
    """The checksum covers the attributes that change the data's meaning (schema 2): another
    backend, opponent, task or quality written over a file, or a deleted checksum, is refused."""
    path, _ = small_file
    with h5py.File(path, "r+") as f:
        assert f.attrs["schema_version"] == 2
        if value is None:
            del f.attrs[name]
        else:
            f.attrs[name] = value
    with pytest.raises(DatasetError, match=r"3m-medium\.h5: "):
        read_dataset(path)
    if name in ("backend", "env_options"):  # the layout still fits: only the digest can tell
        with pytest.raises(DatasetError, match="attributes task, family, backend"):
            read_dataset(path)
    if name == "checksum":
        with pytest.raises(DatasetError, match="attribute 'checksum' is missing"):
            read_dataset(path)


def test_a_deleted_optional_key_is_named(small_file):
    path, _ = small_file
    with h5py.File(path, "r+") as f:
        assert "battle_won" in f
        del f["battle_won"]
    with pytest.raises(DatasetError, match="key 'battle_won' is missing"):
        read_dataset(path)


def test_tampered_checksum_attribute(small_file):
    path, _ = small_file
    with h5py.File(path, "r+") as f:
        f.attrs["checksum"] = "sha256:" + "0" * 64
    with pytest.raises(DatasetError, match=r"3m-medium\.h5: key 'checksum': checksum mismatch"):
        read_dataset(path)


def test_truncated_file(small_file):
    path, _ = small_file
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.truncate(size // 2)
    with pytest.raises(DatasetError, match=r"3m-medium\.h5: cannot read .*truncated or corrupt"):
        read_dataset(path)


def test_corrupt_chunk_names_the_key(small_file):
    path, _ = small_file
    with h5py.File(path) as f:
        offset = f["obs"].id.get_chunk_info(1).byte_offset
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(b"\xff" * 64)
    with pytest.raises(DatasetError, match=r"3m-medium\.h5: cannot read key 'obs'.*corrupt"):
        read_dataset(path)


def test_missing_key(small_file):
    path, _ = small_file
    with h5py.File(path, "r+") as f:
        del f["avail_actions"]
    with pytest.raises(DatasetError, match=r"3m-medium\.h5: key 'avail_actions' is missing"):
        read_dataset(path)


def test_wrong_obs_width(tmp_path, small_file):
    path, arrays = small_file
    narrow = dict(arrays, obs=arrays["obs"][..., :29])
    with pytest.raises(DatasetError, match=r"bad\.h5: key 'obs' has shape \(4, 61, 3, 29\); "
                                           r"expected \(4, 61, 3, 30\).*obs_dim=30"):
        write_dataset(tmp_path / "bad.h5", narrow, task="smac:3m", backend="smax",
                      quality="medium", behavior_policy=POLICY, seed=0)
    assert not (tmp_path / "bad.h5").exists()
    with h5py.File(path, "r+") as f:  # our file: the shape check comes before the checksum
        del f["obs"]
        f.create_dataset("obs", data=narrow["obs"])
    with pytest.raises(DatasetError, match=r"3m-medium\.h5: key 'obs' has shape .*obs_dim=30"):
        read_dataset(path)
    odis = tmp_path / "3m" / "expert" / "run" / "part_0.h5"  # ODIS file: layout from its path
    write_odis(odis, narrow)
    with pytest.raises(DatasetError, match=r"part_0\.h5: key 'obs' has shape .*smac:3m"):
        read_dataset(odis)
    with pytest.raises(DatasetError, match=r"key 'obs' has shape .*smac:4m"):
        read_dataset(tmp_path / "3m" / "expert", task="smac:4m")


def test_unknown_quality(tmp_path, small_file):
    path, arrays = small_file
    with pytest.raises(DatasetError, match=r"x\.h5: attribute 'quality'.*'expret'.*did you mean "
                                           r"'expert'"):
        write_dataset(tmp_path / "x.h5", arrays, task="smac:3m", backend="smax",
                      quality="expret", behavior_policy=POLICY, seed=0)
    with h5py.File(path, "r+") as f:
        f.attrs["quality"] = "great"
    with pytest.raises(DatasetError, match=r"3m-medium\.h5: attribute 'quality'.*'great'"):
        read_dataset(path)
    odis = tmp_path / "3m" / "meduim" / "run" / "part_0.h5"
    write_odis(odis, arrays)
    with pytest.raises(DatasetError, match=r"part_0\.h5: .*'meduim'.*did you mean 'medium'"):
        read_dataset(odis)


@pytest.mark.parametrize("case", ["terminated_early", "unavailable_action", "onehot",
                                  "padding", "gap_in_filled", "float_actions", "extra_key",
                                  "steps", "won_not_terminated"])
def test_writer_rejects_broken_episodes(tmp_path, case):
    arrays = synthetic_3m([5, 10], [1, 0])
    won = None
    key = {"terminated_early": "terminated", "unavailable_action": "actions",
           "onehot": "actions_onehot", "padding": "state", "gap_in_filled": "filled",
           "float_actions": "actions", "extra_key": "battle_won", "steps": "filled",
           "won_not_terminated": "battle_won"}[case]
    if case == "terminated_early":
        arrays["terminated"][1, 3, 0] = 1
    elif case == "unavailable_action":
        arrays["avail_actions"][0, 2, 1, :] = 0
        arrays["avail_actions"][0, 2, 1, 1] = 1
        arrays["actions"][0, 2, 1, 0] = 0
        arrays["actions_onehot"][0, 2, 1] = np.eye(9)[0]
    elif case == "onehot":
        arrays["actions_onehot"][1, 4, 0] = 0
    elif case == "padding":
        arrays["state"][0, 7] = 1.0
    elif case == "gap_in_filled":
        arrays["filled"][1, 2, 0] = 0
    elif case == "float_actions":
        arrays["actions"] = arrays["actions"].astype(np.float32)
    elif case == "extra_key":
        arrays["battle_won"] = np.zeros(2, bool)
    elif case == "steps":
        arrays = {k: v[:, :40] for k, v in arrays.items()}
    elif case == "won_not_terminated":
        won = np.array([False, True])
    with pytest.raises(DatasetError, match=rf"b\.h5: key '{key}'"):
        write_dataset(tmp_path / "b.h5", arrays, task="smac:3m", backend="smax",
                      quality="medium", behavior_policy=POLICY, seed=0, battle_won=won)
    assert not (tmp_path / "b.h5").exists()


def test_interrupted_write_leaves_nothing(tmp_path, small_file, monkeypatch):
    _, arrays = small_file

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(fmt.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_dataset(tmp_path / "sub" / "c.h5", arrays, task="smac:3m", backend="smax",
                      quality="medium", behavior_policy=POLICY, seed=0)
    assert os.listdir(tmp_path / "sub") == []


def test_bad_arguments(tmp_path, small_file):
    _, arrays = small_file
    base = dict(task="smac:3m", backend="smax", quality="medium", behavior_policy=POLICY, seed=0)
    with pytest.raises(DatasetError, match="behavior_policy must be a dict with at least an 'id'"):
        write_dataset(tmp_path / "a.h5", arrays, **dict(base, behavior_policy={"name": "x"}))
    with pytest.raises(DatasetError, match="backend 'sc3'"):
        write_dataset(tmp_path / "a.h5", arrays, **dict(base, backend="sc3"))
    with pytest.raises(DatasetError, match="unknown task family"):
        write_dataset(tmp_path / "a.h5", arrays, **dict(base, task="smax:3m"))
    with pytest.raises(DatasetError, match=r"battle_won.*end won or lost.*grid.*smac.*not mpe:spread-3"):
        write_dataset(tmp_path / "a.h5", synthetic_3m([3], [1]), task="mpe:spread-3",
                      backend="mpe2", quality="medium", behavior_policy=POLICY, seed=0,
                      battle_won=np.array([True]))


# ------------------------------------------------------------------------- card, qualities
def test_dataset_card_reports_the_numbers(small_file):
    path, arrays = small_file
    data = read_dataset(path)
    card = dataset_card(path)
    returns = data.returns
    for text in ("smac:3m", "episodes:        4", "transitions:     85",
                 "min 2, max 60 transitions", f"mean {returns.mean():.4f}",
                 f"max {returns.max():.4f}", "50.00 % (2/4)", "medium", '"id": "random"',
                 "obs_dim=30", "state_dim=48", "verified: OK", data.attrs["checksum"]):
        assert text in card, text
    histogram = [line for line in card.splitlines() if line.startswith("    [")]
    counts = [int(re.split(r"[)\]]", line)[1].split()[0]) for line in histogram]
    assert len(histogram) == 10 and sum(counts) == 4


def test_concat_pads_to_the_longest_episode():
    short = EpisodeData(synthetic_3m([3, 4], [1, 0], n_steps=6), {"task": "smac:3m"}, "a")
    long = EpisodeData(synthetic_3m([9], [1], n_steps=12), {"task": "smac:3m"}, "b")
    out = concat_episodes([short, long])
    assert out["obs"].shape == (3, 12, 3, 30) and out["filled"].dtype == np.int64
    np.testing.assert_array_equal(schema.episode_lengths(out["filled"]), [3, 4, 9])
    assert not out["obs"][0, 6:].any()
    np.testing.assert_array_equal(out["obs"][2], long.arrays["obs"][0])
    mixed = EpisodeData({k: np.zeros((1, 6, 1)) for k in CONTINUOUS_KEYS}, {}, "c")
    with pytest.raises(DatasetError, match="cannot concatenate"):
        concat_episodes([short, mixed])


@pytest.mark.parametrize("block_bytes", [1, fmt.BLOCK_BYTES])
def test_packed_read_keeps_exactly_the_filled_steps(small_file, monkeypatch, block_bytes):
    # block_bytes=1: one episode per block, so hashing and checking run across block borders
    monkeypatch.setattr(fmt, "BLOCK_BYTES", block_bytes)
    path, arrays = small_file
    padded, packed = read_dataset(path), read_dataset(path, packed=True)
    assert padded.packed == () and packed.packed == schema.PACKED_KEYS
    assert_same_arrays(padded.arrays, arrays)
    filled = arrays["filled"][..., 0].astype(bool)
    for key in arrays:
        want = arrays[key][filled] if key in schema.PACKED_KEYS else arrays[key]
        np.testing.assert_array_equal(packed.arrays[key], want, err_msg=key)
    assert packed.arrays["obs"].shape == (5 + 61 + 3 + 20, 3, 30)
    np.testing.assert_array_equal(packed.starts, [0, 5, 66, 69])
    np.testing.assert_allclose(packed.returns, padded.returns)
    np.testing.assert_array_equal(packed.wins, [True, False, False, True])


def test_block_reads_verify_the_checksum_and_name_the_episode(tmp_path, small_file, monkeypatch):
    monkeypatch.setattr(fmt, "BLOCK_BYTES", 1)
    path, _ = small_file
    with h5py.File(path, "r+") as f:  # the last episode's block: hashed after three others
        f["obs"][3, 0, 0, 0] += 1.0
    for packed in (False, True):
        with pytest.raises(DatasetError, match=r"3m-medium\.h5: key 'obs': checksum mismatch"):
            read_dataset(path, packed=packed)
    # an ODIS file has no checksum: the broken convention names the episode of its block
    arrays = synthetic_3m([5, 10, 7, 4], [1, 0, 1, 1])
    arrays["state"][2, 9] = 1.0  # after episode 2's 7 filled steps: padding
    odis = tmp_path / "3m" / "expert" / "run" / "part_0.h5"
    write_odis(odis, arrays)
    for packed in (False, True):
        with pytest.raises(DatasetError, match=r"part_0\.h5: key 'state': episode 2 step 9: .*"
                                               r"padding"):
            read_dataset(odis, packed=packed)


def test_packed_odis_parts_stack(tmp_path):
    run = tmp_path / "3m" / "expert" / "run"
    parts = [synthetic_3m([4, 9], [1, 0], seed=1), synthetic_3m([6], [1], seed=2)]
    for k, arrays in enumerate(parts):
        write_odis(run / f"part_{k}.h5", arrays)
    data = read_dataset(tmp_path / "3m" / "expert", packed=True)
    assert data.n_episodes == 3 and data.packed == schema.PACKED_KEYS
    want = np.concatenate([a["obs"][a["filled"][..., 0].astype(bool)] for a in parts])
    np.testing.assert_array_equal(data.arrays["obs"], want)
    np.testing.assert_array_equal(data.lengths, [4, 9, 6])
    padded = read_dataset(tmp_path / "3m" / "expert")
    with pytest.raises(DatasetError, match="packed keys"):
        concat_episodes([data, padded])


def test_qualities():
    assert list(QUALITIES) == ["expert", "medium", "medium-replay", "medium-expert", "poor"]
    assert QUALITIES["medium"].win_rate == (0.4, 0.6)
    assert QUALITIES["medium-expert"].components == ("medium", "expert")
    assert check_quality("medium_expert") is QUALITIES["medium-expert"]
    with pytest.raises(DatasetError, match=r"'mediun'.*did you mean 'medium'.*known qualities"):
        check_quality("mediun")
    json.dumps([q.as_dict() for q in QUALITIES.values()])
    with pytest.raises(Exception):
        QUALITIES["poor"].name = "bad"


def test_odis_values_outside_smacs_ranges_are_refused(tmp_path):
    """An ODIS file has no checksum, so a damaged value is caught by the ranges SMAC's features
    have (flags, fractions and offsets over the sight range all lie in [-1, 1])."""
    arrays = synthetic_3m([5, 7], [1, 1], seed=4)
    part = tmp_path / "dataset" / "3m" / "medium" / "run" / "part_0.h5"
    write_odis(part, arrays)
    assert read_dataset(part).n_episodes == 2
    arrays["obs"][1, 3, 2, 7] = 236.0  # what one flipped exponent bit does to a feature
    write_odis(part, arrays)
    with pytest.raises(DatasetError, match=r"key 'obs': episode 1 step 3: obs of agent 2, feature 7, is 236"):
        read_dataset(part)
    arrays["obs"][1, 3, 2, 7] = 0.5
    arrays["state"][0, 1, 2] = -1.5
    write_odis(part, arrays)
    with pytest.raises(DatasetError, match=r"key 'state': episode 0 step 1: .*\[-1, 1\]"):
        read_dataset(part)
