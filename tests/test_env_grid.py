"""ODIS's grid cooperative navigation (envs.grid) and its entity view (marl.entity.grid): the
rules on hand-built grids, observations as ODIS writes them, and a replay of ODIS's own files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

import envs
from envs.core import EnvError, random_actions
from envs.grid import MAPS, check_values, parse_map
from marl.entity.grid import CELL_SCALE, SPEC, parse_grid_obs

ODIS_CN = Path("/work/shared/data/odis")
STAY, NORTH, SOUTH, WEST, EAST = range(5)


def grid(task="grid:cn-2", n=1, **options):
    return envs.make(task, num_envs=n, seed=0, **options)


def test_map_table_is_odis():
    lay = parse_map("cn-4")
    assert (lay.n_agents, lay.size, lay.sight, lay.episode_limit, lay.reach_range) == (4, 10, 9, 50, 2)
    assert (lay.obs_dim, lay.state_dim) == (16, 16)
    assert parse_map("cn-15").size == 20 and parse_map("cn-15").episode_limit == 80
    assert sorted(MAPS) == [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 15]
    for bad in ("cn-13", "cn-1", "cn2", "spread-2"):
        with pytest.raises(EnvError, match="cn-N"):
            parse_map(bad)


def test_observation_is_odis_layout_plus_one():
    env = grid("grid:cn-2")
    ts = env.set_positions([[[0, 0], [5, 5]]], [[[3, 0], [0, 4]]])
    # agent 0: own, agent 1, landmarks; every coordinate plus one
    np.testing.assert_array_equal(ts.obs[0, 0], [1, 1, 6, 6, 4, 1, 1, 5])
    np.testing.assert_array_equal(ts.obs[0, 1], [6, 6, 1, 1, 4, 1, 1, 5])
    np.testing.assert_array_equal(ts.state[0], [1, 1, 6, 6, 4, 1, 1, 5])
    # moves off the grid are unavailable; staying always is
    np.testing.assert_array_equal(ts.avail_actions[0, 0], [1, 0, 1, 0, 1])
    np.testing.assert_array_equal(ts.avail_actions[0, 1], [1, 1, 0, 1, 0])


def test_moves_and_collisions():
    env = grid("grid:cn-3")
    landmarks = [[[7, 7], [7, 6], [6, 7]]]  # far away: nobody wins
    # two agents aiming at one cell both stay; the third moves
    env.set_positions([[[2, 2], [2, 4], [0, 0]]], landmarks)
    ts = env.step(np.array([[EAST, WEST, SOUTH]]))
    np.testing.assert_array_equal(ts.state[0, :6], np.array([2, 2, 2, 4, 1, 0]) + 1)
    # moving into a staying agent's cell fails too
    env.set_positions([[[2, 2], [2, 3], [0, 0]]], landmarks)
    ts = env.step(np.array([[EAST, STAY, STAY]]))
    np.testing.assert_array_equal(ts.state[0, :4], np.array([2, 2, 2, 3]) + 1)
    # two agents may swap (ODIS checks target cells only)
    env.set_positions([[[2, 2], [2, 3], [0, 0]]], landmarks)
    ts = env.step(np.array([[EAST, WEST, STAY]]))
    np.testing.assert_array_equal(ts.state[0, :4], np.array([2, 3, 2, 2]) + 1)
    with pytest.raises(EnvError, match="unavailable action 1"):
        env.step(np.array([[STAY, STAY, NORTH]]))  # agent 2 is on the north wall


def test_success_needs_a_one_to_one_match():
    env = grid("grid:cn-2")
    # both agents within reach (2 cells) of landmark 0, neither of landmark 1: no match
    env.set_positions([[[0, 0], [0, 2]]], [[[1, 1], [5, 5]]])
    ts = env.step(np.array([[STAY, STAY]]))
    assert ts.reward[0] == 0 and not ts.done[0]
    # agent 1 steps to within reach of landmark 1 (Chebyshev distance 2): won, reward 1
    env.set_positions([[[0, 0], [3, 2]]], [[[1, 1], [5, 4]]])
    ts = env.step(np.array([[STAY, EAST]]))
    assert ts.reward[0] == 1 and ts.terminated[0] and ts.info["battle_won"][0]
    assert ts.info["episode_length"][0] == 1 and ts.info["episode_return"][0] == 1
    # same-step auto-reset: a fresh start in which no landmark is within anyone's reach
    np.testing.assert_array_equal(ts.info["final_state"][0], np.array([0, 0, 3, 3, 1, 1, 5, 4]) + 1)
    starts = ts.state[0].reshape(4, 2)
    assert np.abs(starts[2:, None] - starts[None, :2]).max(-1).min() > 2


def test_episode_limit_truncates():
    env = grid("grid:cn-4")
    env.set_positions([[[0, 0], [0, 1], [1, 0], [1, 1]]], [[[9, 9], [9, 8], [8, 9], [8, 8]]])
    for _ in range(49):
        ts = env.step(np.zeros((1, 4), np.int64))
        assert not ts.done[0]
    ts = env.step(np.zeros((1, 4), np.int64))
    assert ts.truncated[0] and not ts.terminated[0] and ts.info["episode_length"][0] == 50


def test_starts_are_valid_and_seeded():
    env = grid("grid:cn-2", n=512)
    ts = env.reset(seed=3)
    pos = ts.state.reshape(512, 4, 2) - 1
    agents, landmarks = pos[:, :2], pos[:, 2:]
    assert (pos >= 0).all() and (pos < 6).all()
    assert (np.abs(agents[:, 0] - agents[:, 1]).max(-1) > 0).all()  # distinct cells
    assert (np.abs(landmarks[:, 0] - landmarks[:, 1]).max(-1) > 0).all()
    assert (np.abs(landmarks[:, :, None] - agents[:, None]).max(-1) > 2).all()  # out of reach
    np.testing.assert_array_equal(grid("grid:cn-2", n=512).reset(seed=3).state, ts.state)
    assert not np.array_equal(grid("grid:cn-2", n=512).reset(seed=4).state, ts.state)


def test_random_play_wins_small_grids_more():
    rng = np.random.default_rng(0)
    rates = {}
    for task in ("grid:cn-2", "grid:cn-4"):
        env = grid(task, n=128)
        wins = envs.play(env, lambda ts: random_actions(ts.avail_actions, rng), seed=0).wins
        rates[task] = wins.mean()
    assert rates["grid:cn-2"] > 0.6 and rates["grid:cn-4"] < 0.25


def test_unseen_entities_read_as_zero():
    env = grid("grid:cn-6")  # 15 x 15, sight 14: shrink it to see the rule
    env.layout = dataclasses.replace(env.layout, sight=3)
    ts = env.set_positions([[[0, 0], [0, 3], [0, 4], [14, 14], [14, 13], [13, 14]]],
                           [[[2, 2], [7, 7], [14, 0], [0, 14], [3, 0], [10, 10]]])
    obs = ts.obs[0, 0].reshape(-1, 2)
    np.testing.assert_array_equal(obs[:6], [[1, 1], [1, 4], [0, 0], [0, 0], [0, 0], [0, 0]])
    np.testing.assert_array_equal(obs[6:], [[3, 3], [0, 0], [0, 0], [0, 0], [4, 1], [0, 0]])


def test_value_check_names_what_does_not_fit():
    obs = np.ones((2, 3, 2, 8), np.float32)
    assert check_values("cn-2", "obs", obs) is None
    obs[1, 2, 0, 5] = 9  # beyond a 6 x 6 grid
    bad, what = check_values("cn-2", "obs", obs)
    assert np.argwhere(bad).tolist() == [[1, 2, 0]] and "1..6" in what
    assert "whole numbers" in check_values("cn-2", "state", np.full((1, 8), 0.5))[1]
    assert envs.FAMILIES["mpe"].check_values("spread-2", "obs", obs) is None  # no ranges


# ------------------------------------------------------------------------- entity view
def test_entity_tokens_are_relative_and_mean_the_same_on_every_grid():
    small, big = parse_map("cn-2"), parse_map("cn-5")
    obs2 = torch.tensor([[2., 3., 4., 3., 2., 5., 6., 6.]])  # own (1, 2) zero-based
    view = parse_grid_obs(obs2, small)
    np.testing.assert_allclose(view.own[0] * CELL_SCALE, [1, 2, 4, 3])  # N, W, S, E walls
    np.testing.assert_allclose(view.allies[0, 0] * torch.tensor([CELL_SCALE] * 3 + [1]),
                               [2, 0, 2, 1])  # two rows south, within reach
    np.testing.assert_allclose(view.enemies[0, 1] * torch.tensor([CELL_SCALE] * 3 + [1]),
                               [4, 3, 4, 0])
    assert view.ally_mask.all() and view.enemy_mask.all()
    # the same neighbourhood on a 12 x 12 grid gives the same entity tokens
    obs5 = torch.zeros(1, 20)
    obs5[0, :2] = torch.tensor([2., 3.])
    obs5[0, 2:4] = torch.tensor([4., 3.])
    obs5[0, 10:12], obs5[0, 12:14] = torch.tensor([2., 5.]), torch.tensor([6., 6.])
    view5 = parse_grid_obs(obs5, big)
    torch.testing.assert_close(view5.allies[0, 0], view.allies[0, 0])
    torch.testing.assert_close(view5.enemies[0, :2], view.enemies[0])
    assert view5.ally_mask[0].tolist() == [True, False, False, False]  # (0, 0): unseen
    with pytest.raises(ValueError, match="16 for 4 agents"):
        parse_grid_obs(torch.zeros(1, 8), parse_map("cn-4"))


def test_state_tokens_place_landmarks_by_their_walls():
    env = grid("grid:cn-3")
    ts = env.set_positions([[[1, 1], [4, 6], [7, 0]]], [[[5, 5], [0, 7], [3, 2]]])
    view = parse_grid_obs(torch.from_numpy(ts.obs), env.layout)
    tokens = SPEC.state_tokens(torch.from_numpy(ts.state), view)
    agents, landmarks = tokens.groups
    np.testing.assert_allclose(landmarks[0] * CELL_SCALE,
                               [[5, 5, 2, 2], [0, 7, 7, 0], [3, 2, 4, 5]])
    np.testing.assert_allclose(agents[0, 1] * CELL_SCALE, [4, 6, 3, 1])


# ------------------------------------------------------------------------- ODIS's files
@pytest.mark.skipif(not (ODIS_CN / "cn-2").is_dir(), reason="ODIS's cn files are not here")
@pytest.mark.parametrize("folder", ["cn-2/expert", "cn-4/medium"])
def test_odis_files_replay_exactly(folder):
    """Same starts and actions as ODIS's recorded episodes give the same next states, rewards
    and wins in every step (ODIS marks time-outs terminated: its env reports no limit)."""
    import h5py

    (part,) = (ODIS_CN / folder).glob("*/part_0.h5")
    with h5py.File(part) as f:
        state, actions = f["state"][:300], f["actions"][:300, ..., 0]
        reward, filled = f["reward"][:300, :, 0], f["filled"][:300, :, 0]
    task = f"grid:{folder.split('/')[0]}"
    env = envs.make(task, num_envs=len(state), seed=0, check_actions=False)
    n = env.layout.n_agents
    start = state[:, 0].reshape(len(state), 2 * n, 2).astype(int) - 1
    env.set_positions(start[:, :n], start[:, n:])
    steps = filled.sum(1) - 1  # ODIS marks the final observation's slot filled too
    for t in range(int(steps.max())):
        real = t < steps
        ts = env.step(np.where(real[:, None], actions[:, t], 0))
        np.testing.assert_array_equal(ts.info["final_state"][real], state[real, t + 1])
        np.testing.assert_array_equal(ts.reward[real], reward[real, t])


def write_odis_cn_file(path: Path, task: str, episodes: int, seed: int = 0) -> Path:
    """A file laid out as ODIS writes its cn data (pymarl's EpisodeBatch, no attributes): random
    play, the final observation's slot filled, time-outs marked terminated."""
    import h5py

    env = envs.make(task, num_envs=episodes, seed=seed)
    lay, rng = env.layout, np.random.default_rng(seed)
    T, n = lay.episode_limit + 1, lay.n_agents
    out = {"obs": np.zeros((episodes, T, n, 4 * n), np.float32),
           "state": np.zeros((episodes, T, 4 * n), np.float32),
           "avail_actions": np.zeros((episodes, T, n, 5), np.int32),
           "actions": np.zeros((episodes, T, n, 1), np.int64),
           "actions_onehot": np.zeros((episodes, T, n, 5), np.float32),
           "reward": np.zeros((episodes, T, 1), np.float32),
           "terminated": np.zeros((episodes, T, 1), np.uint8),
           "filled": np.zeros((episodes, T, 1), np.int64)}
    ts, t = env.reset(seed), 0
    playing = np.ones(episodes, bool)
    while playing.any():
        a = random_actions(ts.avail_actions, rng)
        rows = np.flatnonzero(playing)
        out["obs"][rows, t], out["state"][rows, t] = ts.obs[rows], ts.state[rows]
        out["avail_actions"][rows, t] = ts.avail_actions[rows]
        out["actions"][rows, t, :, 0] = a[rows]
        out["actions_onehot"][rows, t] = np.eye(5, dtype=np.float32)[a[rows]]
        out["filled"][rows, t] = 1
        ts = env.step(a)
        out["reward"][rows, t, 0] = ts.reward[rows]
        ended = rows[ts.done[rows]]
        out["terminated"][ended, t] = 1  # ODIS: a time-out is marked terminated too
        out["obs"][ended, t + 1] = ts.info["final_obs"][ended]
        out["state"][ended, t + 1] = ts.info["final_state"][ended]
        out["avail_actions"][ended, t + 1] = ts.info["final_avail_actions"][ended]
        out["actions_onehot"][ended, t + 1, :, 0] = 1  # pymarl acts on the last state too
        out["filled"][ended, t + 1] = 1
        playing[ended] = False
        t += 1
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for key, value in out.items():
            f.create_dataset(key, data=value)
    return path


def test_a_file_in_odis_cn_layout_reads_and_loads(tmp_path):
    from marl.data.format import read_dataset
    from marl.data.loader import TaskData

    part = write_odis_cn_file(tmp_path / "dataset/cn-2/medium/qmix_run/part_0.h5", "grid:cn-2", 40)
    data = read_dataset(part.parent.parent)
    assert data.task == "grid:cn-2" and data.attrs["quality"] == "medium"
    assert data.attrs["layout"]["size"] == 6
    task = TaskData("grid:cn-2", data)
    assert task.n_episodes == 40 and task.n_agents == 2
    won = data.arrays["reward"].sum((1, 2)) > 0
    np.testing.assert_array_equal(task.returns.numpy() > 0, won)


def test_a_cn_file_that_does_not_fit_its_grid_is_refused(tmp_path):
    import h5py

    from marl.data.errors import DatasetError
    from marl.data.format import read_dataset

    part = write_odis_cn_file(tmp_path / "dataset/cn-2/expert/qmix_run/part_0.h5", "grid:cn-2", 6)
    with h5py.File(part, "r+") as f:
        obs = f["obs"][...]
        obs[3, 0, 1, 4] = 9  # a landmark on row 8 of a 6 x 6 grid
        f["obs"][...] = obs
    with pytest.raises(DatasetError, match=r"key 'obs': episode 3 step 0: .*1\.\.6.*6 x 6 grid"):
        read_dataset(part)
    # a cn-4 file put under cn-2's folder: the shapes name the mismatch
    other = write_odis_cn_file(tmp_path / "dataset/cn-2/medium/qmix_run/part_0.h5", "grid:cn-4", 3)
    with pytest.raises(DatasetError, match="obs"):
        read_dataset(other)


def test_hissd_on_cn2_and_cn4_beats_random_play_on_unseen_cn3(tmp_path):
    """`marl datasets build cn` from the shipped policies, a short HiSSD run of the cn config,
    then zero-shot play on cn-3, which random play wins about 30 % of the time."""
    from marl.collect import build_taskset
    from marl.config import load_config
    from marl.rollout import evaluate_task
    from marl.runs import load_run_model
    from marl.train import train

    root = tmp_path / "data"
    build_taskset("cn", "expert", 96, out=root, log=lambda s: None)
    config = Path(__file__).resolve().parents[1] / "experiments" / "hissd" / "cn.yaml"
    cfg = load_config(str(config), [f"data.root={root}", "data.episodes=96", "updates=150", "batch_size=8",
                                    "eval.interval=0", "health_interval=0", "threads=1",
                                    "checkpoint_interval=150"])
    train(cfg, tmp_path / "run", log=lambda s: None)
    _, model, _, _ = load_run_model(tmp_path / "run")
    trained = evaluate_task(model, "grid:cn-3", episodes=128, seed=7)["win_rate"]
    rng = np.random.default_rng(7)
    random = envs.play(grid("grid:cn-3", n=128), lambda ts: random_actions(ts.avail_actions, rng),
                       seed=7).wins.mean()
    assert trained > random + 0.25, (trained, random)


def test_a_data_root_laid_out_as_odis_distributes_it_is_read(tmp_path):
    """data.root may be ODIS's dataset folder: ``<map>/<quality>/<run>/part_<k>.h5``, qualities
    spelt as ODIS spells them, components of a mixed quality found there too."""
    from marl.data.errors import DatasetError
    from marl.data.loader import MultiTaskDataset
    from marl.data.paths import quality_paths

    root = tmp_path / "dataset"
    write_odis_cn_file(root / "cn-2/expert/qmix_a/part_0.h5", "grid:cn-2", 8, seed=1)
    write_odis_cn_file(root / "cn-2/medium/qmix_b/part_0.h5", "grid:cn-2", 6, seed=2)
    write_odis_cn_file(root / "cn-2/medium_replay/qmix_c/part_0.h5", "grid:cn-2", 5, seed=3)
    assert quality_paths(root, "grid:cn-2", "expert") == [root / "cn-2" / "expert"]
    assert quality_paths(root, "grid:cn-2", "medium-replay") == [root / "cn-2" / "medium_replay"]
    assert quality_paths(root, "grid:cn-2", "medium-expert") == [root / "cn-2" / "medium",
                                                                 root / "cn-2" / "expert"]
    ds = MultiTaskDataset.from_dir(root, ["grid:cn-2"], "medium-expert")
    assert ds.data["grid:cn-2"].n_episodes == 14
    with pytest.raises(DatasetError, match=r"grid:cn-4 .*nor ODIS's .*cn-4/expert/ folder"):
        quality_paths(root, "grid:cn-4", "expert")
