"""MaMuJoCo adapter (envs.mamujoco) and its per-joint entity view (marl.entity.mamujoco), on the
real simulator with tiny batches."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import envs
from envs.core import EnvError
from envs.mamujoco import CFRC_DIM, OBS_KINDS, ROOT, MaMuJoCoEnv, MujocoTask, parse_map
from envs.mamujoco_render import render_states, use_offscreen_gl
from marl.entity.mamujoco import (
    JOINT_DIM,
    JOINT_VALUES,
    ROOT_DIM,
    ROOT_QPOS,
    ROOT_QVEL,
    ROOT_VALUES,
    actions_to_tokens,
    parse_mujoco_obs,
    tokens_to_actions,
)


def uniform_actions(env: MaMuJoCoEnv, rng: np.random.Generator) -> np.ndarray:
    shape = (env.num_envs, env.info.n_agents, env.info.n_actions)
    return rng.uniform(-1, 1, shape).astype(np.float32)


def run(env: MaMuJoCoEnv, steps: int):
    """Reset, then ``steps`` uniformly random steps; the last TimeStep."""
    rng = np.random.default_rng(0)
    ts = env.reset()
    for _ in range(steps):
        ts = env.step(uniform_actions(env, rng))
    return ts


def partition_actions(env: MaMuJoCoEnv, joint_actions: np.ndarray) -> np.ndarray:
    """One action per robot joint (in layout.joint_names order) -> the partition's actions."""
    actions = np.zeros((env.num_envs, env.info.n_agents, env.info.n_actions), np.float32)
    for a, joints in enumerate(env.layout.agent_joints):
        actions[:, a, : len(joints)] = joint_actions[list(joints)]
    return actions


def body_id(model, name: str) -> int:
    try:
        return model.body(name).id
    except KeyError:  # unnamed bodies are called "body<id>" in the layout
        return int(name.removeprefix("body"))


def physical_obs(env: MaMuJoCoEnv, copy: int, agent: int) -> np.ndarray:
    """An agent's observation rebuilt from the MuJoCo data by joint and body *names*, following
    the layout's description of each entry: checks the layout independently of upstream ids."""
    layout = env.layout
    unwrapped = env._gym_envs[copy].unwrapped
    model, data = unwrapped.model, unwrapped.data
    clip_qvel = layout.robot in ("Hopper", "Walker2d")  # Gymnasium clips their state's qvel
    values = []
    for entity, kind, component in zip(
        layout.obs_entity[agent], layout.obs_kind[agent], layout.obs_component[agent]
    ):
        kind = OBS_KINDS[kind]
        if kind == "cfrc_ext":
            bodies = layout.root_bodies if entity == ROOT else layout.joint_bodies[entity]
            body, axis = divmod(component, CFRC_DIM)
            values.append(np.clip(data.cfrc_ext[body_id(model, bodies[body])], -1, 1)[axis])
            continue
        if entity == ROOT:
            value = getattr(data, kind)[component]
        else:
            joint = model.joint(layout.joint_names[entity])
            value = data.qpos[joint.qposadr[0]] if kind == "qpos" else data.qvel[joint.dofadr[0]]
        values.append(np.clip(value, -10, 10) if kind == "qvel" and clip_qvel else value)
    return np.asarray(values)


# ------------------------------------------------------------------------------ environment
@pytest.mark.parametrize(
    "map_name, n_agents, obs_dim, state_dim, n_actions",
    [
        ("HalfCheetah-2x3", 2, 12, 17, 3),
        ("HalfCheetah-6x1", 6, 9, 17, 1),
        ("HalfCheetah-3x2", 3, 12, 17, 2),  # custom factorization
        ("Ant-4x2", 4, 42, 105, 2),
        ("Hopper-3x1", 3, 9, 11, 1),
        ("ManySegmentSwimmer-4x2", 4, 6, 20, 2),
    ],
)
def test_shapes_and_info(map_name, n_agents, obs_dim, state_dim, n_actions):
    with MaMuJoCoEnv(map_name, num_envs=3, seed=0) as env:
        info = env.info
        assert (info.family, info.backend, info.action_type) == ("mamujoco", "mujoco", "continuous")
        assert (info.n_agents, info.obs_dim, info.state_dim, info.n_actions) == (
            n_agents, obs_dim, state_dim, n_actions,
        )
        assert info.episode_limit == 1000 and info.n_enemies == 0
        assert info.options == {"agent_obsk": 1}
        json.dumps(info.summary())  # JSON-friendly, layout summary included
        assert info.summary()["layout.robot"] == map_name.split("-")[0]

        ts = run(env, 3)
        assert ts.obs.shape == (3, n_agents, obs_dim) and ts.obs.dtype == np.float32
        assert ts.state.shape == (3, state_dim) and ts.state.dtype == np.float32
        assert ts.avail_actions is None
        assert ts.reward.shape == (3,) and ts.reward.dtype == np.float32
        assert ts.terminated.dtype == bool and ts.truncated.dtype == bool
        assert ts.info["final_obs"].shape == ts.obs.shape
        assert ts.info["final_state"].shape == ts.state.shape
        # agents with smaller observations are zero-padded
        for a, dim in enumerate(env.layout.obs_dims):
            assert not ts.obs[:, a, dim:].any()


def test_custom_factorization_splits_consecutive_joints():
    with MaMuJoCoEnv("HalfCheetah-3x2", num_envs=1) as env:
        layout = env.layout
        names = [[layout.joint_names[j] for j in joints] for joints in layout.agent_joints]
        assert names == [["bthigh", "bshin"], ["bfoot", "fthigh"], ["fshin", "ffoot"]]
        assert layout.act_dims == (2, 2, 2)


def kicks(steps: int, n_joints: int) -> np.ndarray:
    """Bang-bang joint actions (sign flips every 5 steps, plus noise): they make Ant-like robots
    stamp their feet, so contact forces (cfrc_ext) become nonzero on some steps."""
    sign = np.where((np.arange(steps) // 5) % 2, 1.0, -1.0)[:, None]
    noise = np.random.default_rng(0).uniform(-0.3, 0.3, (steps, n_joints))
    return np.clip(sign + noise, -1, 1).astype(np.float32)


@pytest.mark.parametrize(
    "map_name",
    ["HalfCheetah-6x1", "Ant-2x4d", "Walker2d-3x2", "Hopper-1x3", "Swimmer-2x1",
     "ManySegmentSwimmer-2x3", "ManySegmentAnt-2x1", "ManySegmentAnt-3x1"],
)
def test_layout_names_what_each_obs_entry_is(map_name):
    """Every observation entry equals the MuJoCo quantity the layout says it is (by name), over
    a trajectory: this also pins the ManySegmentAnt fix (upstream reads other joints' qpos)."""
    with MaMuJoCoEnv(map_name, num_envs=2, seed=1) as env:
        env.reset()
        cfrc = np.asarray(env.layout.state_kind) == OBS_KINDS.index("cfrc_ext")
        contact = False
        for joint_actions in kicks(30, len(env.layout.joint_names)):
            ts = env.step(partition_actions(env, joint_actions))
            contact |= bool(ts.state[:, cfrc].any())
            for copy in np.flatnonzero(~ts.done):  # a finished copy's data is the next episode's
                for a, dim in enumerate(env.layout.obs_dims):
                    np.testing.assert_allclose(
                        ts.obs[copy, a, :dim], physical_obs(env, copy, a), rtol=1e-6, atol=1e-6
                    )
        assert contact == cfrc.any()  # Ant-likes: contact forces were checked too


@pytest.mark.parametrize("map_name", ["HalfCheetah-3x2", "Ant-4x2", "ManySegmentAnt-2x1"])
def test_actions_drive_the_joints_the_layout_names(map_name):
    with MaMuJoCoEnv(map_name, num_envs=1) as env:
        env.reset()
        layout = env.layout
        actions = np.full((1, layout.n_agents, env.info.n_actions), 7.0, np.float32)  # unused: ignored
        expected = {}
        for a, joints in enumerate(layout.agent_joints):
            for slot, j in enumerate(joints):
                value = round(-0.9 + 0.1 * len(expected), 2)
                actions[0, a, slot] = value
                expected[layout.joint_names[j]] = value
        actions[0, 0, 0] = 5.0  # clipped to 1
        expected[layout.joint_names[layout.agent_joints[0][0]]] = 1.0
        env.step(actions)
        unwrapped = env._gym_envs[0].unwrapped
        model = unwrapped.model
        for u in range(model.nu):
            name = model.joint(model.actuator_trnid[u, 0]).name
            assert unwrapped.data.ctrl[u] == pytest.approx(expected[name], abs=1e-6)


@pytest.mark.parametrize("map_name", ["HalfCheetah-2x3", "Ant-2x4d", "Hopper-3x1"])
def test_builtin_partitions_match_mamujoco_v1(map_name):
    from gymnasium_robotics import mamujoco_v1

    robot, conf = map_name.split("-")
    reference = mamujoco_v1.parallel_env(robot, conf)
    ref_obs, _ = reference.reset(seed=3)
    rng = np.random.default_rng(0)
    with MaMuJoCoEnv(map_name, num_envs=1, seed=3) as env:
        ts = env.reset()
        for _ in range(25):
            for a, agent in enumerate(reference.possible_agents):
                dim = env.layout.obs_dims[a]
                np.testing.assert_allclose(ts.obs[0, a, :dim], ref_obs[agent], rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(ts.state[0], reference.state(), rtol=1e-6, atol=1e-6)
            actions = uniform_actions(env, rng)
            ref_actions = {
                agent: actions[0, a, : env.layout.act_dims[a]]
                for a, agent in enumerate(reference.possible_agents)
            }
            ref_obs, ref_reward, ref_term, _, _ = reference.step(ref_actions)
            ts = env.step(actions)
            assert ts.reward[0] == pytest.approx(ref_reward["agent_0"], rel=1e-5, abs=1e-5)
            if ts.done[0]:
                assert ref_term["agent_0"]
                break


def test_auto_reset_at_time_limit():
    with MaMuJoCoEnv("Swimmer-2x1", num_envs=2, seed=0) as env:
        ts = env.reset()
        zeros = np.zeros((2, 2, 1), np.float32)
        total = np.zeros(2)
        for t in range(1, 1001):
            ts = env.step(zeros)
            total += ts.reward
            if t < 1000:
                assert not ts.done.any()
                np.testing.assert_array_equal(ts.info["final_obs"], ts.obs)
        assert ts.truncated.all() and not ts.terminated.any()
        np.testing.assert_array_equal(ts.info["episode_length"], [1000, 1000])
        np.testing.assert_allclose(ts.info["episode_return"], total, rtol=1e-4)
        final_obs, final_state = ts.info["final_obs"], ts.info["final_state"]
        assert not np.allclose(final_obs, ts.obs)  # obs already belongs to the new episode
        # the final observation is the final state's, gathered like any other
        for a, index in enumerate(env.layout.obs_state_index):
            np.testing.assert_array_equal(final_obs[:, a, : len(index)], final_state[:, list(index)])
        assert np.abs(ts.state).max() < 0.2  # a fresh episode starts near the initial pose
        ts = env.step(zeros)
        np.testing.assert_array_equal(ts.info["episode_length"], [1, 1])


def test_hopper_terminates_when_it_falls():
    with MaMuJoCoEnv("Hopper-3x1", num_envs=2, seed=0) as env:
        env.reset()
        push = np.full((2, 3, 1), -1.0, np.float32)  # tips the torso backwards within a few steps
        for _ in range(100):
            ts = env.step(push)
            if ts.done.any():
                break
        finished = ts.terminated
        assert finished.any() and not ts.truncated.any()
        assert (ts.info["episode_length"][finished] < 1000).all()
        # the fall is in the final state (torso angle out of Hopper's healthy +-0.2 rad) ...
        assert (np.abs(ts.info["final_state"][finished, 1]) > 0.2).all()
        # ... and the returned state already starts a fresh, upright episode
        assert (np.abs(ts.state[finished, 1]) < 0.01).all()


def test_determinism_and_per_copy_seeds():
    def rollout(seed: int) -> list[np.ndarray]:
        with MaMuJoCoEnv("Hopper-3x1", num_envs=2, seed=seed) as env:
            rng = np.random.default_rng(0)
            ts = env.reset()
            out = [ts.obs]
            for _ in range(60):  # Hopper falls and restarts within this horizon
                ts = env.step(uniform_actions(env, rng))
                out += [ts.obs, ts.state, ts.reward, ts.done, ts.info["final_obs"]]
            return out

    first, second = rollout(5), rollout(5)
    for x, y in zip(first, second):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(rollout(6)[0], first[0])
    with MaMuJoCoEnv("HalfCheetah-2x3", num_envs=2, seed=0) as a, MaMuJoCoEnv(
        "HalfCheetah-2x3", num_envs=1, seed=1
    ) as b:
        np.testing.assert_array_equal(a.reset().obs[1], b.reset().obs[0])  # copy i: seed + i
        again = a.reset(seed=1).obs[0]
        np.testing.assert_array_equal(again, b.reset(seed=1).obs[0])


def test_registry_builds_it():
    with envs.make("mamujoco:Ant-2x4", num_envs=2, seed=0, agent_obsk=0) as env:
        assert isinstance(env, MaMuJoCoEnv)
        assert env.info.task == "mamujoco:Ant-2x4" and env.info.options == {"agent_obsk": 0}
        assert env.info.obs_dim == 61  # agent_obsk=0: no neighbours


@pytest.mark.parametrize(
    "map_name, message",
    [
        ("HalfCheetah", "Robot-NxK"),
        ("HalfCheetah-2x3-x", "Robot-NxK"),
        ("Cheetah-2x3", "did you mean 'HalfCheetah'"),
        ("Humanoid-9x1", "robots: ['HalfCheetah'"),
        ("HalfCheetah-4x2", "6 actuated joints"),
        ("HalfCheetah-4x2", "'1x6', '2x3', '3x2', '6x1'"),
        ("HalfCheetah-2x3d", "not built in"),
        ("Ant-2x4x", "not built in"),
        ("ManySegmentAnt-0x2", "at least 1"),
        ("ManySegmentAnt-2x2d", "plain NxK"),
    ],
)
def test_bad_map_names(map_name, message):
    with pytest.raises(EnvError, match=message.replace("[", r"\[").replace("(", r"\(")):
        MaMuJoCoEnv(map_name)


def test_parse_map_checks_names_without_a_simulator():
    assert parse_map("HalfCheetah-3x2") == MujocoTask("HalfCheetah", 3, 2, "3x2")
    assert not parse_map("HalfCheetah-3x2").builtin and parse_map("Ant-2x4d").builtin
    assert parse_map("ManySegmentAnt-3x2").n_segments == 6
    with pytest.raises(EnvError, match="accepted"):
        parse_map("Walker2d-4x2")


def test_bad_options_and_actions():
    with pytest.raises(EnvError, match="unknown option.*'obsk'.*agent_obsk"):
        MaMuJoCoEnv("HalfCheetah-2x3", obsk=1)
    for bad in (-1, "1", True, None):
        with pytest.raises(EnvError, match="agent_obsk must be an integer >= 0"):
            MaMuJoCoEnv("HalfCheetah-2x3", agent_obsk=bad)
    with pytest.raises(EnvError, match="num_envs"):
        MaMuJoCoEnv("HalfCheetah-2x3", num_envs=0)
    with MaMuJoCoEnv("HalfCheetah-2x3", num_envs=2) as env:
        with pytest.raises(EnvError, match="call reset"):
            env.step(np.zeros((2, 2, 3), np.float32))
        env.reset()
        with pytest.raises(EnvError, match=r"shape \(2, 2, 2\), expected \(2, 2, 3\)"):
            env.step(np.zeros((2, 2, 2), np.float32))
        with pytest.raises(EnvError, match="NaN"):
            env.step(np.full((2, 2, 3), np.nan, np.float32))


# ---------------------------------------------------------------------------- entity parser
PARSER_TASKS = [
    ("HalfCheetah-2x3", {}),
    ("HalfCheetah-6x1", {}),
    ("HalfCheetah-3x2", {"agent_obsk": 2}),
    ("Ant-2x4", {}),
    ("Ant-8x1", {}),
    ("Swimmer-2x1", {}),
    ("Hopper-3x1", {"agent_obsk": 0}),
    ("ManySegmentAnt-3x1", {}),
    ("ManySegmentSwimmer-4x2", {}),
]


def slot_of(entity: int, kind: str, component: int) -> int:
    """The documented token layout: joint [qpos, qvel, cfrc_ext...]; root [qpos by coordinate,
    qvel by coordinate, cfrc_ext of the torso]."""
    if entity != ROOT:
        return {"qpos": 0, "qvel": 1}.get(kind, 2 + component)
    return {"qpos": 0, "qvel": ROOT_QPOS, "cfrc_ext": ROOT_QPOS + ROOT_QVEL}[kind] + component


@pytest.mark.parametrize("map_name, options", PARSER_TASKS)
def test_tokens_reproduce_the_observation(map_name, options):
    with MaMuJoCoEnv(map_name, num_envs=2, seed=0, **options) as env:
        obs = torch.from_numpy(run(env, 5).obs)
        layout = env.layout
        jo = parse_mujoco_obs(obs, layout)
        n_tokens = jo.joints.shape[-2]
        assert jo.joints.shape == (2, layout.n_agents, n_tokens, JOINT_DIM)
        assert jo.root.shape == (2, layout.n_agents, ROOT_DIM)

        # Rebuild the values every token should hold from the layout alone, and the flat
        # observation from the tokens: both directions must be exact.
        expected_joints = torch.zeros(2, layout.n_agents, n_tokens, JOINT_VALUES)
        expected_root = torch.zeros(2, layout.n_agents, ROOT_VALUES)
        rebuilt = torch.zeros_like(obs)
        for a in range(layout.n_agents):
            token_of = {int(j): t for t, j in enumerate(jo.joint_id[0, a]) if j >= 0}
            for i, (entity, kind, component) in enumerate(
                zip(layout.obs_entity[a], layout.obs_kind[a], layout.obs_component[a])
            ):
                slot = slot_of(entity, OBS_KINDS[kind], component)
                if entity == ROOT:
                    expected_root[:, a, slot] = obs[:, a, i]
                    rebuilt[:, a, i] = jo.root[:, a, slot]
                else:
                    expected_joints[:, a, token_of[entity], slot] = obs[:, a, i]
                    rebuilt[:, a, i] = jo.joints[:, a, token_of[entity], slot]
        assert torch.equal(rebuilt, obs)
        assert torch.equal(jo.joints[..., :JOINT_VALUES], expected_joints)
        assert torch.equal(jo.root[..., :ROOT_VALUES], expected_root)


@pytest.mark.parametrize("map_name, options", PARSER_TASKS)
def test_token_counts_masks_and_actions(map_name, options):
    with MaMuJoCoEnv(map_name, num_envs=2, seed=0, **options) as env:
        layout = env.layout
        jo = parse_mujoco_obs(torch.from_numpy(env.reset().obs), layout)
        k = layout.agent_obsk
        for a, controlled in enumerate(layout.agent_joints):
            observed = {e for e in layout.obs_entity[a] if e != ROOT}
            ids = jo.joint_id[0, a][jo.joint_mask[0, a]].tolist()
            assert sorted(ids) == sorted(observed | set(controlled))
            assert ids[: len(controlled)] == list(controlled)  # controlled first, action order
            assert (jo.joint_id[0, a][~jo.joint_mask[0, a]] == -1).all()
            assert not jo.joints[:, a][:, ~jo.joint_mask[0, a]].any()  # padding tokens are zero
            flags = jo.joints[0, a, : len(ids), JOINT_VALUES:]
            assert flags[:, 0].tolist() == [1.0] * len(controlled) + [0.0] * (len(ids) - len(controlled))
            hops = flags[:, 1].tolist()
            assert hops == [layout.joint_hops[a][j] for j in ids] and max(hops) <= k
            assert jo.action_mask[0, a].sum() == len(controlled)

        actions = torch.rand(2, layout.n_agents, env.info.n_actions) * jo.action_mask
        tokens = actions_to_tokens(actions, jo)
        assert tokens.shape == jo.joint_mask.shape
        assert torch.equal(tokens_to_actions(tokens, jo), actions)
        padded = jo.pad(jo.joints.shape[-2] + 3)
        assert torch.equal(tokens_to_actions(actions_to_tokens(actions, padded), padded), actions)
        assert not padded.joint_mask[..., -3:].any()


def test_same_joint_same_features_across_partitions():
    """Given the same state, a physical joint gets the same token in every partition: the whole
    token (values and flags) for the joints an agent controls in HalfCheetah, and the same values
    wherever observed for every joint token of Ant."""

    def controlled_tokens(map_name: str) -> tuple[dict[str, torch.Tensor], np.ndarray]:
        with MaMuJoCoEnv(map_name, num_envs=2, seed=4) as env:
            ts = env.reset()
            jo = parse_mujoco_obs(torch.from_numpy(ts.obs), env.layout)
            names = env.layout.joint_names
            return {
                names[j]: jo.joints[:, a, t]
                for a, joints in enumerate(env.layout.agent_joints)
                for t, j in enumerate(joints)
            }, ts.state

    reference, state = controlled_tokens("HalfCheetah-2x3")
    for map_name in ("HalfCheetah-6x1", "HalfCheetah-3x2", "HalfCheetah-1x6"):
        tokens, other_state = controlled_tokens(map_name)
        np.testing.assert_array_equal(other_state, state)
        assert tokens.keys() == reference.keys()
        for name in reference:
            assert torch.equal(tokens[name], reference[name]), (map_name, name)

    # Ant: the same robot motion in every partition; over a trajectory, since its feet touch
    # the ground (nonzero cfrc_ext) only now and then.
    values: dict[str, torch.Tensor] = {}
    motion = kicks(30, 8)
    for map_name in ("Ant-2x4", "Ant-2x4d", "Ant-4x2", "Ant-8x1"):
        with MaMuJoCoEnv(map_name, num_envs=1, seed=4) as env:
            env.reset()
            obs = np.stack([env.step(partition_actions(env, m)).obs[0] for m in motion])
            jo = parse_mujoco_obs(torch.from_numpy(obs), env.layout)  # batch = time
            for a, t in zip(*torch.nonzero(jo.joint_mask[0], as_tuple=True)):
                name = env.layout.joint_names[jo.joint_id[0, a, t]]
                token = jo.joints[:, a, t]  # [time, JOINT_DIM]
                flags = token[0, JOINT_VALUES:]
                present = torch.cat([flags[2:4], flags[4:].repeat_interleave(CFRC_DIM)]) > 0
                assert not token[:, :JOINT_VALUES][:, ~present].any()  # absent values are zero
                seen = values.setdefault(name, torch.full((len(motion), JOINT_VALUES), float("nan")))
                both = present & ~seen[0].isnan()
                assert torch.equal(seen[:, both], token[:, :JOINT_VALUES][:, both]), (map_name, name)
                seen[:, present] = token[:, :JOINT_VALUES][:, present]
    assert all(not v[:, :2].isnan().any() for v in values.values())
    assert any(v[:, 2:].nan_to_num().any() for v in values.values())  # contact forces compared


def test_joint_identity_says_what_a_joint_is_in_every_partition():
    """The identity features of a physical joint are the same whichever partition observes it,
    and they tell HalfCheetah's back leg from its front one (which the joint values alone do not
    at rest) and a swimmer's segments apart along its length, for any segment count."""
    from marl.entity.mamujoco import IDENTITY_DIM, joint_identity

    def identity_by_name(map_name: str) -> dict[str, torch.Tensor]:
        with MaMuJoCoEnv(map_name, num_envs=1, seed=0) as env:
            jo = parse_mujoco_obs(torch.from_numpy(env.reset().obs), env.layout)
            feats = joint_identity(jo)[0]
            return {env.layout.joint_names[jo.joint_id[0, a, t]]: feats[a, t]
                    for a, t in zip(*torch.nonzero(jo.joint_mask[0], as_tuple=True))}

    reference = identity_by_name("HalfCheetah-2x3")
    assert set(reference) == {"bthigh", "bshin", "bfoot", "fthigh", "fshin", "ffoot"}
    for map_name in ("HalfCheetah-6x1", "HalfCheetah-3x2"):
        for name, feats in identity_by_name(map_name).items():
            assert torch.equal(feats, reference[name]), (map_name, name)
    # side x, side y, depth / deepest, depth / 4, ends a limb
    np.testing.assert_allclose(reference["bthigh"], [-1.0, 0.0, 1 / 3, 0.25, 0.0], rtol=1e-6)
    np.testing.assert_allclose(reference["ffoot"], [1.0, 0.0, 1.0, 0.75, 1.0], rtol=1e-6)
    assert reference["bthigh"].shape == (IDENTITY_DIM,)
    for segments in ("ManySegmentSwimmer-3x2", "ManySegmentSwimmer-5x2"):
        swimmer = identity_by_name(segments)
        along = sorted(float(f[2]) for f in swimmer.values())
        np.testing.assert_allclose(along, np.arange(1, len(along) + 1) / len(along), rtol=1e-6)
        assert sum(float(f[4]) for f in swimmer.values()) == 1.0  # one tail


def test_feature_width_is_the_same_for_every_robot():
    widths = set()
    for map_name in ("HalfCheetah-2x3", "Ant-4x2", "Swimmer-2x1", "ManySegmentAnt-2x1"):
        with MaMuJoCoEnv(map_name, num_envs=1) as env:
            jo = parse_mujoco_obs(torch.from_numpy(env.reset().obs), env.layout)
            widths.add((jo.joints.shape[-1], jo.root.shape[-1]))
    assert widths == {(JOINT_DIM, ROOT_DIM)}


def test_parser_rejects_wrong_shapes():
    with MaMuJoCoEnv("HalfCheetah-2x3", num_envs=1) as env:
        with pytest.raises(ValueError, match=r"expected \(2, 12\)"):
            parse_mujoco_obs(torch.zeros(4, 3, 12), env.layout)


@pytest.mark.skipif(use_offscreen_gl() is None, reason="no offscreen OpenGL (EGL, OSMesa) here")
def test_render_states_paints_each_agents_bodies():
    """Frames of recorded states: the right size, the robot moving between them, and an agent's
    colour showing exactly where its bodies are."""
    with MaMuJoCoEnv("HalfCheetah-2x3", num_envs=1, seed=0) as env:
        env.reset()
        snaps = []
        for _ in range(6):
            snaps.append(env.physics_snapshot())
            env.step(np.ones((1, 2, 3), np.float32))
        qpos = np.concatenate([s["qpos"] for s in snaps])
        qvel = np.concatenate([s["qvel"] for s in snaps])
        assert qpos.shape == (6, env._gym_envs[0].unwrapped.model.nq)
        red_blue = np.tile(np.array([[1, 0, 0, 1], [0, 0, 1, 1]], np.float32), (6, 1, 1))
        frames = render_states(env, qpos, qvel, red_blue, width=160, height=120)
        assert frames.shape == (6, 120, 160, 3) and frames.dtype == np.uint8
        assert not np.array_equal(frames[0], frames[-1])  # the robot moved

        def strongly(frame, channel):  # pixels where one channel dominates
            f = frame.astype(int)
            others = np.delete(f, channel, axis=-1).max(-1)
            return (f[..., channel] > others + 80).sum()

        assert strongly(frames[0], 0) > 20 and strongly(frames[0], 2) > 20
        blue_red = red_blue[:, ::-1].copy()
        blue_red[..., 3] = 1
        swapped = render_states(env, qpos[:1], qvel[:1], blue_red[:1], width=160, height=120)[0]
        assert abs(strongly(swapped, 0) - strongly(frames[0], 2)) < 0.2 * strongly(frames[0], 2)
        with pytest.raises(EnvError, match="agent_rgba"):
            render_states(env, qpos, qvel, red_blue[:, :1])


def test_joint_identity_is_a_switch_of_the_learners_token_view():
    """``model.joint_identity``: the learners' joint tokens end in the identity features (the
    behaviour policies' view is unchanged); only families with joint tokens accept it."""
    from marl.config import ConfigError, load_config
    from marl.entity.mamujoco import IDENTITY_DIM, joint_identity
    from marl.nets import family_spec

    plain, identity = family_spec("mamujoco"), family_spec("mamujoco", joint_identity=True)
    assert identity.obs_dims == (ROOT_DIM, JOINT_DIM + IDENTITY_DIM)
    assert plain.obs_dims == (ROOT_DIM, JOINT_DIM)
    with MaMuJoCoEnv("HalfCheetah-3x2", num_envs=2) as env:
        view = parse_mujoco_obs(torch.from_numpy(env.reset().obs), env.layout)
    tokens = identity.obs_tokens(view).groups[1]
    assert torch.equal(tokens[..., :JOINT_DIM], plain.obs_tokens(view).groups[1])
    assert torch.equal(tokens[..., JOINT_DIM:], joint_identity(view))
    assert identity.state_tokens(None, view).groups[1].shape[-1] == JOINT_DIM + IDENTITY_DIM
    with pytest.raises(ValueError, match="joint tokens, not 'smac'"):
        family_spec("smac", joint_identity=True)
    with pytest.raises(ConfigError, match="joint_identity=true is for task families with joint"):
        load_config(None, ["data.taskset=marine-easy", "model.joint_identity=true"])
    load_config(None, ["data.taskset=mujoco-partitions", "model.joint_identity=true"])
