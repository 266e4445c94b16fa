"""The jax behaviour trainer (``marl.behavior.jax_ppo``): its tokens and networks are the torch
ones (so its snapshots load and act through the collection path), resume is exact, IPPO runs,
and bad settings fail clearly. The learning test is ``test_behavior.py``'s shared 3m run."""

import jax
import numpy as np
import pytest
import torch

import envs
from envs.core import random_actions
from marl.behavior import jax_ppo as bj
from marl.behavior import BehaviorConfig, act, family_adapter, load_policy, make_actor, save_snapshot, train
from marl.checkpoint import load as load_checkpoint
from marl.collect import list_snapshots
from marl.entity.smac import parse_smac_obs, parse_smac_state

SMALL = dict(num_envs=8, rollout_steps=16, minibatches=2, epochs=2, snapshot_every=1,
             eval_episodes=8, seed=0)


def battle_vectors(task, steps=6, num_envs=8):
    """Observations, states and masks of real battles in progress (random play)."""
    env = envs.make(task, num_envs=num_envs, seed=3)
    ts, rng, seen = env.reset(), np.random.default_rng(0), []
    for _ in range(steps):
        seen.append((ts.obs, ts.state, ts.avail_actions))
        ts = env.step(random_actions(ts.avail_actions, rng))
    obs, state, avail = (np.concatenate(x) for x in zip(*seen))
    return env, obs, state, avail


@pytest.mark.parametrize("task", ["smac:3m", "smac:2s3z", "smac:5m_vs_6m"])
def test_tokens_equal_the_torch_parser(task):
    """Shields, type bits, dead and unseen units: every token feature agrees exactly."""
    env, obs, state, _ = battle_vectors(task)
    tokens = bj.Tokens(env.info.layout)
    own, allies, enemies = (np.asarray(x) for x in tokens.obs(jax.numpy.asarray(obs)))
    view = parse_smac_obs(torch.from_numpy(obs), env.info.layout)
    np.testing.assert_array_equal(own, view.own.numpy())
    np.testing.assert_array_equal(allies, view.allies.numpy())
    np.testing.assert_array_equal(enemies, view.enemies.numpy())
    s_allies, s_enemies = (np.asarray(x) for x in tokens.state(jax.numpy.asarray(state)))
    s_view = parse_smac_state(torch.from_numpy(state), env.info.layout)
    np.testing.assert_array_equal(s_allies, s_view.allies.numpy())
    np.testing.assert_array_equal(s_enemies, s_view.enemies.numpy())
    assert (enemies[..., 0] == 0).any() and (enemies[..., 0] == 1).any()  # some seen, some not


def test_exported_actor_is_the_torch_actor_and_acts_the_same(tmp_path):
    """Parameters named and shaped as EntityActor's state_dict: same logits, and a snapshot
    written from them loads through load_policy and picks the same greedy actions."""
    env, obs, _, avail = battle_vectors("smac:3m")
    params = bj.actor_init(jax.random.PRNGKey(1), hidden=16)
    # scale the near-zero heads up so that the comparison is not between near-uniform logits
    params = {k: v * (50.0 if "head" in k else 1.0) for k, v in params.items()}
    weights = bj.export_params(params)
    torch_actor = make_actor(env.info, 16)
    assert set(weights) == set(torch_actor.state_dict())
    torch_actor.load_state_dict(weights)
    fam = family_adapter(env.info)
    with torch.no_grad():
        expected = torch_actor(fam.obs(torch.from_numpy(obs))).numpy()
    got = np.asarray(bj.actor_logits(params, *bj.Tokens(env.info.layout).obs(jax.numpy.asarray(obs)))[0])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert expected.std() > 0.1
    path = tmp_path / "p.safetensors"
    save_snapshot(weights, path, {"config": {"hidden": 16, "task": "smac:3m"}})
    actions, _ = act(load_policy(path, env.info), fam, obs, avail, greedy=True)
    jax_actions = np.asarray(bj.masked_log_probs(jax.numpy.asarray(got), jax.numpy.asarray(avail)).argmax(-1))
    np.testing.assert_array_equal(actions, jax_actions)


def run_state(out):
    ckpt = load_checkpoint(out / "checkpoint.pt")
    return ckpt, [t.numpy() for t in ckpt["state"]]


@pytest.mark.parametrize("algo, recurrent", [("mappo", False), ("ippo", False), ("mappo", True)])
def test_resume_continues_with_identical_parameters(algo, recurrent, tmp_path):
    """Two updates in one go, or one, a stop and a resume: the same parameters, optimiser
    state, battles in progress, recurrent states and random keys, to the bit."""
    cfg = dict(task="smac:3m", engine="jax", algo=algo, recurrent=recurrent, **SMALL)
    steps = SMALL["num_envs"] * SMALL["rollout_steps"]
    whole = train(BehaviorConfig(total_env_steps=2 * steps, **cfg), tmp_path / "whole", log=lambda *a: None)
    train(BehaviorConfig(total_env_steps=steps, **cfg), tmp_path / "split", log=lambda *a: None)
    lines = []
    split = train(BehaviorConfig(total_env_steps=2 * steps, **cfg), tmp_path / "split", log=lines.append)
    assert lines[0].startswith("resuming smac:3m from update 1")
    (a, state_a), (b, state_b) = run_state(tmp_path / "whole"), run_state(tmp_path / "split")
    assert a["update"] == b["update"] == 2 and len(state_a) == len(state_b)
    for x, y in zip(state_a, state_b):
        np.testing.assert_array_equal(x, y)
    assert whole["greedy"] == split["greedy"] and np.isfinite(whole["sampled"]["return"])
    assert [s.metadata["update"] for s in list_snapshots(tmp_path / "split")] == [1, 2]
    assert a["config"]["algo"] == algo and a["config"]["engine"] == "jax"


def test_bad_settings_fail_with_one_clear_error(tmp_path):
    steps = SMALL["num_envs"] * SMALL["rollout_steps"]
    with pytest.raises(envs.EnvError, match="algo='ippo' needs --engine jax"):
        train(BehaviorConfig(task="mpe:spread-2", algo="ippo"), tmp_path / "a")
    with pytest.raises(envs.EnvError, match="runs SMAC maps on SMAX, not mpe:spread-2"):
        train(BehaviorConfig(task="mpe:spread-2", engine="jax"), tmp_path / "b")
    with pytest.raises(envs.EnvError, match="engine='tpu'"):
        train(BehaviorConfig(task="smac:3m", engine="tpu"), tmp_path / "c")
    with pytest.raises(envs.EnvError, match="the jax trainer has"):
        train(BehaviorConfig(task="smac:3m", engine="jax", algo="qmix", **SMALL), tmp_path / "d")
    cfg = dict(task="smac:3m", engine="jax", total_env_steps=steps, **SMALL)
    train(BehaviorConfig(**cfg), tmp_path / "e", log=lambda *a: None)
    with pytest.raises(envs.EnvError, match="is a run with num_envs=8, not 16"):
        train(BehaviorConfig(**dict(cfg, num_envs=16, total_env_steps=4 * steps)), tmp_path / "e")
    with pytest.raises(envs.EnvError, match="is a run with algo='mappo', not 'ippo'"):
        train(BehaviorConfig(**dict(cfg, algo="ippo", total_env_steps=4 * steps)), tmp_path / "e")


def sharp_weights(hidden=16, seed=1):
    """Random actor parameters with sharpened heads, so that greedy choices are never near-ties."""
    params = bj.actor_init(jax.random.PRNGKey(seed), hidden=hidden)
    return bj.export_params({k: v * (50.0 if "head" in k else 1.0) for k, v in params.items()})


def test_compiled_recording_equals_the_host_recorder():
    """Greedy play inside the compiled program records the same episodes, step for step, as
    the torch actor stepping SmaxEnv on the host, in the same order."""
    from marl.data.episodes import record_episodes

    weights = sharp_weights()
    env = envs.make("smac:3m", num_envs=8, seed=5)
    actor = make_actor(env.info, 16)
    actor.load_state_dict(weights)
    fam = family_adapter(env.info)
    host, host_won = record_episodes(
        env, lambda ts: act(actor, fam, ts.obs, ts.avail_actions, True)[0], 20, seed=11)
    compiled, won = bj.Recorder(env, 8, "greedy", chunk=16).record(
        {k: v.numpy() for k, v in weights.items()}, 20, seed=11, act_seed=0)
    assert set(compiled) == set(host)
    for key in host:
        np.testing.assert_allclose(compiled[key], host[key], atol=1e-6, err_msg=key)
    np.testing.assert_array_equal(won, host_won)
    lengths = host["filled"][..., 0].sum(1)
    assert lengths.min() >= 2 and len(set(lengths.tolist())) > 1  # real, varied episodes


def test_sampling_changes_what_is_recorded_and_is_written_to_the_file(tmp_path):
    from marl.collect import collect
    from marl.data.card import dataset_card
    from marl.data.format import read_dataset

    folder = tmp_path / "policy"
    folder.mkdir()
    scores = {"return": 10.0, "win_rate": 0.5, "episodes": 8}
    save_snapshot(sharp_weights(), folder / "000001.safetensors",
                  {"task": "smac:3m", "update": 1, "env_steps": 1, "greedy": scores, "sampled": scores,
                   "config": {"task": "smac:3m", "hidden": 16, "seed": 0}, "env_options": {}})
    env = envs.make("smac:3m", num_envs=2, seed=0)
    actor = load_policy(folder / "000001.safetensors", env.info)
    agreement = {}
    for spec in ("greedy", "sampled", "epsilon:0.5"):
        path = collect("smac:3m", folder, "expert", 64, tmp_path / f"{spec}.h5", num_envs=16,
                       show_progress=False, sampling=spec)
        data = read_dataset(path)
        assert data.attrs["behavior_policy"]["sampling"] == spec
        assert f"actions:         {spec}" in dataset_card(path)
        filled = data.arrays["filled"][..., 0]
        # steps that were acted on: filled, before the post-terminal placeholder
        live = np.arange(filled.shape[1]) < (filled.sum(1, keepdims=True) - 1)
        obs, avail = data.arrays["obs"][live], data.arrays["avail_actions"][live].astype(bool)
        greedy, _ = act(actor, family_adapter(env.info), obs, avail, True)
        alive = avail[..., 1:].any(-1)
        agreement[spec] = float((greedy == data.arrays["actions"][live][..., 0])[alive].mean())
    assert agreement["greedy"] == 1.0
    assert 0.4 < agreement["epsilon:0.5"] < 0.8 and agreement["sampled"] < 0.99, agreement
    with pytest.raises(envs.EnvError, match="holds actions chosen by sampling='greedy', not 'sampled'"):
        collect("smac:3m", folder, "expert", 64, tmp_path / "greedy.h5", sampling="sampled")
    with pytest.raises(envs.EnvError, match="sampling='epsilon:2'"):
        collect("smac:3m", folder, "expert", 64, tmp_path / "x.h5", sampling="epsilon:2")


def test_a_policy_of_another_family_or_a_broken_file_is_refused_clearly(tmp_path):
    info = envs.make("smac:3m", num_envs=1).info
    path = tmp_path / "p.safetensors"
    save_snapshot(sharp_weights(), path, {"config": {"hidden": 16, "task": "mpe:spread-2"}})
    with pytest.raises(envs.EnvError, match="is a policy for mpe:spread-2 .* cannot act on smac:3m"):
        load_policy(path, info)
    save_snapshot(sharp_weights(), path, {"config": {"hidden": 32, "task": "smac:5m"}})
    with pytest.raises(envs.EnvError, match="do not fit the smac actor of width 32"):
        load_policy(path, info)
    path.write_bytes(b"\x00" * 40)
    with pytest.raises(envs.EnvError, match="is not a marl behaviour policy"):
        load_policy(path, info)


def test_episodes_crossing_chunks_are_cut_as_in_one_stream():
    """Cutting the stream chunk by chunk (each with the previous one, keeping what ends in the
    new one: how the trainer records its rollouts) gives the episodes of cutting it at once."""
    env = envs.make("smac:3m", num_envs=1, seed=0)
    rec = bj.Recorder(env, 8, "sampled", chunk=64)
    actor = {k: jax.numpy.asarray(v.numpy()) for k, v in sharp_weights().items()}
    env_key, reset_key = jax.random.split(jax.random.PRNGKey(3))
    carry, vectors = rec.reset(reset_key, 8)
    chunks = []
    h = jax.numpy.zeros((8, 3, 0))
    for i in range(3):
        env_key, carry, vectors, h, rows = rec.play(actor, env_key, carry, vectors, h, jax.random.PRNGKey(i), 0.0)
        chunks.append(jax.device_get(rows))
    whole, whole_won = bj.episodes_from_stream(
        {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}, None, env.info)
    parts = [bj.episodes_from_stream(chunks[0], None, env.info)]
    for prev, new in zip(chunks, chunks[1:]):
        window = {k: np.concatenate([prev[k], new[k]]) for k in new}
        parts.append(bj.episodes_from_stream(window, None, env.info, first_end=64))
    pieced = {k: np.concatenate([p[0][k] for p in parts]) for k in whole}
    assert len(whole_won) > 16
    for key in whole:
        np.testing.assert_array_equal(pieced[key], whole[key], err_msg=key)
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), whole_won)


def test_training_rollouts_become_medium_replay(tmp_path):
    from marl.collect import collect
    from marl.data.format import read_dataset

    cfg = BehaviorConfig(task="smac:3m", engine="jax", total_env_steps=3 * 8 * 64, num_envs=8,
                         rollout_steps=64, minibatches=2, epochs=1, snapshot_every=1,
                         eval_episodes=8, record_replay=10**6)
    run = tmp_path / "run"
    train(cfg, run, log=lambda *a: None)
    files = sorted((run / "replay").glob("*.h5"))
    assert [int(f.stem) for f in files] == [512, 1024, 1536]
    recorded = [read_dataset(f) for f in files]
    for data in recorded:
        assert data.attrs["behavior_policy"]["sampling"] == "sampled" and data.n_episodes > 0
        lengths = data.arrays["filled"][..., 0].sum(1)
        assert lengths.max() <= 61 and lengths.min() >= 2
    # a snapshot past the medium band stops the recording
    replay = bj.Replay(cfg, envs.make("smac:3m", num_envs=1).info, run)
    assert replay.active(2048)
    replay.snapshot_scored(0.7, 2048)
    assert not replay.active(2048)
    # medium-replay of this run comes from its rollouts up to the medium snapshot
    out = collect("smac:3m", run, "medium-replay", 10, tmp_path / "mr.h5", show_progress=False)
    data = read_dataset(out)
    policy = data.attrs["behavior_policy"]
    assert policy["source"] == "the behaviour run's training rollouts" and policy["sampling"] == "sampled"
    assert data.n_episodes == min(10, policy["episodes_recorded"])
    pool = np.concatenate([d.arrays["obs"][:, 0] for d in recorded][: policy["files"]])
    assert all((pool == o).all(-1).all(-1).any() for o in data.arrays["obs"][:, 0])
    with pytest.raises(envs.EnvError, match="--record-replay needs rollouts at least as long"):
        train(BehaviorConfig(task="smac:3m", engine="jax", record_replay=1000, **SMALL), tmp_path / "x")


def test_recurrent_actor_is_torch_grucell_and_its_state_steers_collection(tmp_path):
    """The GRU actor's logits and state equal torch's EntityActor with nn.GRUCell; a recurrent
    snapshot collects through the compiled recorder with its state carried (greedy actions
    differ from those of a zero state), and act() without a state refuses it clearly."""
    from marl.collect import collect
    from marl.data.format import read_dataset

    env, obs, _, avail = battle_vectors("smac:3m")
    params = bj.actor_init(jax.random.PRNGKey(2), hidden=16, recurrent=True)
    params = {k: v * (50.0 if "head" in k else 1.0) for k, v in params.items()}
    h = np.random.default_rng(0).normal(size=obs.shape[:-1] + (16,)).astype(np.float32)
    logits, h_next = bj.actor_logits(params, *bj.Tokens(env.info.layout).obs(jax.numpy.asarray(obs)),
                                     jax.numpy.asarray(h))
    weights = bj.export_params(params)
    torch_actor = make_actor(env.info, 16, recurrent=True)
    torch_actor.load_state_dict(weights)
    with torch.no_grad():
        t_logits, t_h = torch_actor(family_adapter(env.info).obs(torch.from_numpy(obs)), torch.from_numpy(h))
    np.testing.assert_allclose(np.asarray(logits), t_logits.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(h_next), t_h.numpy(), rtol=1e-5, atol=1e-5)

    folder = tmp_path / "policy"
    folder.mkdir()
    scores = {"return": 10.0, "win_rate": 0.5, "episodes": 8}
    save_snapshot(weights, folder / "000001.safetensors",
                  {"task": "smac:3m", "update": 1, "env_steps": 1, "greedy": scores, "sampled": scores,
                   "config": {"task": "smac:3m", "hidden": 16, "seed": 0, "recurrent": True},
                   "env_options": {}})
    data = read_dataset(collect("smac:3m", folder, "expert", 16, tmp_path / "r.h5", num_envs=8,
                                show_progress=False))
    filled = data.arrays["filled"][..., 0]
    live = np.arange(filled.shape[1]) < (filled.sum(1, keepdims=True) - 1)
    o, av = data.arrays["obs"][live], data.arrays["avail_actions"][live].astype(bool)
    stateless = np.asarray(bj.masked_log_probs(bj.actor_logits(
        params, *bj.Tokens(env.info.layout).obs(jax.numpy.asarray(o)), jax.numpy.zeros(o.shape[:-1] + (16,)))[0],
        jax.numpy.asarray(av)).argmax(-1))
    assert (stateless != data.arrays["actions"][live][..., 0]).mean() > 0.05
    actor = load_policy(folder / "000001.safetensors", env.info)
    with pytest.raises(envs.EnvError, match="needs its state"):
        act(actor, family_adapter(env.info), obs, avail, True)
