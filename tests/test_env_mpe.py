"""MPE simple_spread backend (envs.mpe) and its entity parser (marl.entity.mpe)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import envs
from envs.core import EnvError
from envs.mpe import MPEEnv, MpeLayout, parse_map
from marl.entity.mpe import ENTITY_DIM, parse_mpe_obs


def random_actions(rng: np.random.Generator, env: MPEEnv) -> np.ndarray:
    return rng.integers(0, env.info.n_actions, size=(env.num_envs, env.info.n_agents))


@pytest.mark.parametrize("n, obs_dim", [(3, 18), (5, 30)])
def test_shapes_and_info(n: int, obs_dim: int) -> None:
    with envs.make(f"mpe:spread-{n}", num_envs=4, seed=0) as env:
        info = env.info
        assert (info.family, info.backend, info.action_type) == ("mpe", "mpe2", "discrete")
        assert (info.n_agents, info.n_enemies, info.n_actions) == (n, n, 5)
        assert (info.obs_dim, info.state_dim, info.episode_limit) == (obs_dim, n * obs_dim, 25)
        assert isinstance(info.layout, MpeLayout) and info.layout.obs_dim == obs_dim
        assert info.summary()["layout.slice.comm"] == f"{obs_dim - 2 * (n - 1)}:{obs_dim}"
        ts = env.reset()
        assert ts.obs.shape == (4, n, obs_dim) and ts.obs.dtype == np.float32
        assert ts.state.shape == (4, n * obs_dim) and ts.state.dtype == np.float32
        assert ts.avail_actions.shape == (4, n, 5) and ts.avail_actions.dtype == bool
        assert ts.avail_actions.all()
        ts = env.step(np.zeros((4, n), dtype=np.int64))
        assert ts.reward.shape == (4,) and ts.reward.dtype == np.float32
        assert not ts.terminated.any() and not ts.truncated.any()
        # The state is mpe2's own env.state() of every copy.
        for i, sub in enumerate(env._envs):
            np.testing.assert_array_equal(ts.state[i], sub.state())


def test_matches_raw_mpe2_and_reward_is_mean() -> None:
    """Same seed and actions as a bare mpe2 env: same observations, team reward = agent mean."""
    from mpe2 import simple_spread_v3

    rng = np.random.default_rng(1)
    env = MPEEnv("spread-3", num_envs=1, seed=11, local_ratio=0.3)
    raw = simple_spread_v3.parallel_env(N=3, local_ratio=0.3, max_cycles=25,
                                        continuous_actions=False)
    raw_obs, _ = raw.reset(seed=11)
    ts = env.reset()
    for _ in range(10):
        np.testing.assert_array_equal(ts.obs[0], np.stack([raw_obs[a] for a in raw.agents]))
        actions = random_actions(rng, env)
        ts = env.step(actions)
        raw_obs, rewards, *_ = raw.step(dict(zip(raw.agents, actions[0].tolist())))
        assert ts.reward[0] == pytest.approx(np.mean(list(rewards.values())), rel=1e-6)


def test_truncation_and_same_step_auto_reset() -> None:
    rng = np.random.default_rng(0)
    env = MPEEnv("spread-3", num_envs=3, seed=0, max_cycles=5)
    assert env.info.episode_limit == 5
    ts = env.reset()
    total = np.zeros(3, np.float32)
    for t in range(1, 6):
        ts = env.step(random_actions(rng, env))
        total += ts.reward
        assert not ts.terminated.any()
        np.testing.assert_array_equal(ts.info["episode_length"], t)
        if t < 5:
            assert not ts.truncated.any()
            # Nothing finished: the "final" arrays are the current ones.
            np.testing.assert_array_equal(ts.info["final_obs"], ts.obs)
    assert ts.truncated.all()
    np.testing.assert_allclose(ts.info["episode_return"], total, rtol=1e-5)
    final_obs = ts.info["final_obs"]
    assert final_obs.shape == ts.obs.shape
    np.testing.assert_array_equal(ts.info["final_state"], final_obs.reshape(3, -1))
    assert ts.info["final_avail_actions"].shape == (3, 3, 5)
    # The returned obs already starts the next episode: agents at rest, new positions.
    np.testing.assert_array_equal(ts.obs[..., 0:2], 0.0)
    assert np.abs(final_obs[..., 0:2]).sum() > 0
    assert not np.allclose(ts.obs, final_obs)
    ts = env.step(random_actions(rng, env))
    np.testing.assert_array_equal(ts.info["episode_length"], 1)
    np.testing.assert_allclose(ts.info["episode_return"], ts.reward)


def run(env: MPEEnv, steps: int, action_seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(action_seed)
    out = [env.reset().obs]
    for _ in range(steps):
        out.append(env.step(random_actions(rng, env)).obs)
    return np.stack(out)


def test_determinism() -> None:
    # 30 steps cross an auto-reset (max_cycles 25), so later episodes are covered too.
    a = run(MPEEnv("spread-3", num_envs=2, seed=5), 30)
    b = run(MPEEnv("spread-3", num_envs=2, seed=5), 30)
    np.testing.assert_array_equal(a, b)
    c = run(MPEEnv("spread-3", num_envs=2, seed=6), 30)
    assert not np.allclose(a, c)
    # Copy i is seeded with seed + i.
    single = MPEEnv("spread-3", num_envs=1, seed=6).reset().obs[0]
    np.testing.assert_array_equal(single, MPEEnv("spread-3", num_envs=2, seed=5).reset().obs[1])
    # reset(seed) re-seeds the whole batch.
    env = MPEEnv("spread-3", num_envs=2, seed=0)
    np.testing.assert_array_equal(env.reset(seed=5).obs, a[0])


@pytest.mark.parametrize("name", ["spread-0", "spread-21", "spread", "spread-3x", "simple_spread",
                                  "3m", ""])
def test_bad_map_names(name: str) -> None:
    with pytest.raises(EnvError, match="spread-N"):
        MPEEnv(name)


def test_bad_options() -> None:
    with pytest.raises(EnvError, match=r"unknown option.*'max_steps'.*max_cycles.*local_ratio"):
        MPEEnv("spread-3", max_steps=10)
    with pytest.raises(EnvError, match="max_cycles"):
        MPEEnv("spread-3", max_cycles=0)
    with pytest.raises(EnvError, match="local_ratio"):
        MPEEnv("spread-3", local_ratio=1.5)
    with pytest.raises(EnvError, match="num_envs"):
        MPEEnv("spread-3", num_envs=0)


def test_bad_actions() -> None:
    env = MPEEnv("spread-3", num_envs=2)
    with pytest.raises(EnvError, match="shape"):
        env.step(np.zeros((2, 4), dtype=np.int64))
    with pytest.raises(EnvError, match="outside 0..4"):
        env.step(np.array([[0, 1, 2], [3, 4, 5]]))
    with pytest.raises(EnvError, match="integers"):
        env.step(np.zeros((2, 3), dtype=np.float32))


def test_parse_map() -> None:
    layout = parse_map("spread-4")
    assert (layout.n_agents, layout.n_landmarks, layout.obs_dim) == (4, 4, 24)
    assert layout.slices["others"] == slice(12, 18)


@pytest.mark.parametrize("n", [1, 3, 5])
def test_parser_round_trip_on_real_obs(n: int) -> None:
    env = MPEEnv(f"spread-{n}", num_envs=2, seed=3)
    run_obs = torch.from_numpy(run(env, 4))  # [T, num_envs, n, obs_dim]
    layout = env.info.layout
    ent = parse_mpe_obs(run_obs, layout)
    batch = run_obs.shape[:-1]
    assert ent.own.shape == (*batch, 4)
    assert ent.allies.shape == (*batch, n - 1, ENTITY_DIM)
    assert ent.enemies.shape == (*batch, n, ENTITY_DIM)  # landmarks
    assert ent.ally_mask.shape == (*batch, n - 1) and ent.ally_mask.all()
    assert ent.enemy_mask.shape == (*batch, n) and ent.enemy_mask.all()
    # Tokens re-assemble into the flat observation; landmark padding is zero.
    assert (ent.enemies[..., 2:] == 0).all()
    flat = torch.cat([ent.own, ent.enemies[..., :2].flatten(-2), ent.allies[..., :2].flatten(-2),
                      ent.allies[..., 2:].flatten(-2)], dim=-1)
    torch.testing.assert_close(flat, run_obs, rtol=0, atol=0)
    # Meaning: own position + relative landmark position is the same landmark for every agent,
    # and agent 0's first ally is agent 1.
    pos = ent.own[..., 2:4]
    landmark_abs = pos[..., None, :] + ent.enemies[..., :2]
    torch.testing.assert_close(landmark_abs, landmark_abs[..., :1, :, :].expand_as(landmark_abs))
    if n > 1:
        torch.testing.assert_close(ent.allies[..., 0, 0, :2], pos[..., 1, :] - pos[..., 0, :])


def test_parser_rejects_wrong_width() -> None:
    with pytest.raises(ValueError, match="expected 18"):
        parse_mpe_obs(torch.zeros(2, 30), parse_map("spread-3"))


def test_parsed_maps_pad_into_one_batch() -> None:
    small = parse_mpe_obs(torch.from_numpy(MPEEnv("spread-3").reset().obs), parse_map("spread-3"))
    big = parse_mpe_obs(torch.from_numpy(MPEEnv("spread-5").reset().obs), parse_map("spread-5"))
    padded = small.pad(n_allies=4, n_enemies=5)
    # [num_envs 1, 3 agents, tokens, F]: spread-5's token counts, spread-3's agents
    assert padded.allies.shape == (1, 3, 4, ENTITY_DIM) and big.allies.shape == (1, 5, 4, 4)
    assert padded.enemies.shape == (1, 3, 5, ENTITY_DIM)
    assert padded.ally_mask[..., :2].all() and not padded.ally_mask[..., 2:].any()
    assert padded.enemy_mask[..., :3].all() and not padded.enemy_mask[..., 3:].any()
