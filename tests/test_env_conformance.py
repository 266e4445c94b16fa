"""The env API contract (envs/core.py), checked the same way on every family's real simulator:
shapes and dtypes, masks, reset/step and same-step auto-reset, episode limits, determinism."""

import numpy as np
import pytest

import envs
from envs.core import EnvError, random_actions

N = 3
# (task, options, batched steps to run): options shorten episodes so that every copy finishes
# at least once within the steps run.
CASES = [
    ("smac:3m", {"episode_limit": 12}, 30),
    ("smac:2s3z", {"episode_limit": 10}, 25),
    ("mpe:spread-3", {"max_cycles": 10}, 25),
    ("grid:cn-3", {}, 60),  # 50-step limit
    ("mamujoco:Swimmer-2x1", {}, 1005),  # 1000-step time limit, nothing ends it earlier
    ("mamujoco:Hopper-3x1", {}, 300),  # falls (terminates) long before the limit
]


def act(env, ts, rng):
    info = env.info
    if info.action_type == "discrete":
        return random_actions(ts.avail_actions, rng)
    return rng.uniform(-1, 1, (env.num_envs, info.n_agents, info.n_actions)).astype(np.float32)


def check_vectors(env, ts):
    info = env.info
    assert ts.obs.shape == (N, info.n_agents, info.obs_dim) and ts.obs.dtype == np.float32
    assert ts.state.shape == (N, info.state_dim) and ts.state.dtype == np.float32
    assert np.isfinite(ts.obs).all() and np.isfinite(ts.state).all()
    assert ts.reward.shape == (N,) and ts.reward.dtype == np.float32
    assert ts.terminated.shape == ts.truncated.shape == (N,)
    assert ts.terminated.dtype == ts.truncated.dtype == np.bool_
    if info.action_type == "discrete":
        assert ts.avail_actions.shape == (N, info.n_agents, info.n_actions)
        assert ts.avail_actions.dtype == np.bool_
        assert ts.avail_actions.any(-1).all(), "every agent must have an available action"
    else:
        assert ts.avail_actions is None


@pytest.fixture(scope="module", params=CASES, ids=[c[0] for c in CASES])
def case(request):
    task, options, steps = request.param
    env = envs.make(task, num_envs=N, seed=0, **options)
    env.options = options  # remembered to build twins for the determinism test
    yield env, steps
    env.close()


def test_info_describes_the_task(case):
    env, _ = case
    info = env.info
    assert info.task.startswith(info.family + ":") and info.map_name == info.task.split(":")[1]
    assert info.action_type in ("discrete", "continuous")
    assert info.n_agents >= 1 and info.obs_dim >= 1 and info.state_dim >= 1
    assert info.episode_limit >= 1 and info.n_actions >= 1
    summary = info.summary()
    assert summary["task"] == info.task and summary["n_agents"] == info.n_agents


def test_reset_step_and_auto_reset(case):
    env, steps = case
    rng = np.random.default_rng(0)
    ts = env.reset(seed=1)
    check_vectors(env, ts)
    assert not ts.done.any() and (ts.reward == 0).all()
    first_info = ts.info
    # reset's info has step's keys: no returns yet, and final_* are the first vectors
    assert (first_info["episode_return"] == 0).all() and (first_info["episode_length"] == 0).all()
    np.testing.assert_array_equal(first_info["final_obs"], ts.obs)
    np.testing.assert_array_equal(first_info["final_state"], ts.state)
    returns, lengths = np.zeros(N), np.zeros(N, int)
    finished = np.zeros(N, int)
    for _ in range(steps):
        ts = env.step(act(env, ts, rng))
        check_vectors(env, ts)
        assert sorted(ts.info) == sorted(first_info)
        returns += ts.reward
        lengths += 1
        done = ts.done
        assert not (ts.terminated & ts.truncated).any()
        if done.any():
            info = ts.info
            assert info["final_obs"].shape == ts.obs.shape
            assert info["final_state"].shape == ts.state.shape
            # the episode statistics are the sums of what step returned
            np.testing.assert_allclose(info["episode_return"][done], returns[done], rtol=1e-4, atol=1e-4)
            np.testing.assert_array_equal(info["episode_length"][done], lengths[done])
            assert (lengths[done] <= env.info.episode_limit).all()
            assert (lengths[ts.truncated] == env.info.episode_limit).all()
            # same-step auto-reset: the next episode's first vectors replace the final ones
            assert not np.array_equal(info["final_state"][done], ts.state[done])
            returns[done], lengths[done] = 0, 0
            finished += done
    assert (finished >= 1).all(), "every copy should have finished an episode"


def test_same_seed_same_trajectory(case):
    env, _ = case

    def rollout(seed):
        other = envs.make(env.info.task, num_envs=N, seed=seed, **env.options)
        rng = np.random.default_rng(0)
        ts, obs = other.reset(), []
        for _ in range(8):
            ts = other.step(act(other, ts, rng))
            obs.append(ts.obs)
        other.close()
        return np.stack(obs)

    a, b, c = rollout(11), rollout(11), rollout(12)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_malformed_actions_are_rejected(case):
    env, _ = case
    env.reset()
    with pytest.raises(EnvError, match="shape"):
        env.step(np.zeros((N + 1, env.info.n_agents)))


@pytest.mark.parametrize("task, message", [
    ("nosuch:3m", "unknown task family"), ("smac", "family:map"), ("smac:3m:x", "family:map"),
    ("mpe:spread-x", "spread-N"), ("mamujoco:Cheetah-2x3", "HalfCheetah"),
])
def test_bad_task_names(task, message):
    with pytest.raises(EnvError, match=message):
        envs.make(task)


def test_play_counts_only_each_copys_first_episode():
    """``envs.play``: copies that finish early keep stepping, but only their first episode
    counts; ``on_step`` sees which copies are still in it, and the loop ends with the last."""
    env = envs.make("smac:3m", num_envs=6, seed=3)
    rng = np.random.default_rng(0)
    playing = []
    out = envs.play(env, lambda ts: random_actions(ts.avail_actions, rng), seed=5,
                    on_step=lambda ts, actions, still: playing.append(still.copy()))
    playing = np.stack(playing)  # [steps, copies]
    assert out.returns.shape == out.lengths.shape == out.wins.shape == (6,)
    assert np.array_equal(playing.sum(0), out.lengths)  # each copy's first episode, step by step
    assert playing[0].all() and playing[-1].sum() >= 1 and out.lengths.max() == len(playing)
    # once a copy's first episode ends it never counts again
    assert all(np.array_equal(col, np.arange(len(col)) < n) for col, n in zip(playing.T, out.lengths))
    assert out.wins.dtype == bool and np.all((out.returns >= 0) & (out.returns <= 20 + 1e-4))
