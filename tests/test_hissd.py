"""HiSSD on real SMAX data: losses, masking, acting on unseen team sizes, ablations, mixer."""

from __future__ import annotations

import copy
from dataclasses import replace

from pathlib import Path

import numpy as np
import pytest
import torch

import envs

from helpers import fit
from marl.algos.hissd import HiSSD, HissdConfig, flat_rows
from marl.rollout import evaluate_task
from marl.nets import EntityTransformer, TransformerMixer, Tokens, family_spec
from marl.nets.transformer import distinct_rows

TINY = HissdConfig(dim=16, ffn_mult=2, hidden=32, skill_dim=16, mixer_dim=8,
                   contrastive_samples=16, steps_per_episode=4)


def _batches(ds, gen, batch_size=8):
    return [ds.sample(batch_size, task=t, generator=gen) for t in ds.tasks]


def test_every_loss_term_is_finite_and_decreases(dataset):
    torch.manual_seed(0)
    model = HiSSD(family_spec("smac"), TINY)
    history = fit(model, _batches(dataset, torch.Generator().manual_seed(0)), 60)
    for key in ("bc", "value", "prediction", "contrastive", "loss"):
        values = [h[key] for h in history]
        assert all(torch.isfinite(torch.tensor(values))), key
        first, last = sum(values[:5]) / 5, sum(values[-5:]) / 5
        assert last < 0.7 * first, f"{key} went from {first:.4f} to {last:.4f}"


def test_recompute_gives_the_same_loss_and_gradients(dataset):
    """Activation checkpointing trades memory for compute and changes no number."""
    torch.manual_seed(0)
    plain = HiSSD(family_spec("smac"), replace(TINY, steps_per_episode=0))
    recomputed = HiSSD(family_spec("smac"), replace(TINY, steps_per_episode=0, recompute=True))
    recomputed.load_state_dict(plain.state_dict())
    batches = _batches(dataset, torch.Generator().manual_seed(1), batch_size=4)
    grads = []
    for model in (plain, recomputed):
        loss, stats = model.loss(batches, torch.Generator().manual_seed(2))
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()
                      if p.grad is not None})
        grads[-1]["loss"] = loss.detach()
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 20
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-5, atol=1e-6,
                                   msg=name)


@pytest.mark.parametrize("tasks", ["both", "one"])
def test_per_task_backward_gives_the_same_loss_and_gradients(dataset, tasks):
    """Back-propagating one task's graph at a time (the InfoNCE gradient cached first) saves
    memory and changes no number: same stats, same gradients, same generator state after."""
    torch.manual_seed(0)
    whole = HiSSD(family_spec("smac"), TINY)
    split = HiSSD(family_spec("smac"), replace(TINY, per_task_backward=True))
    split.load_state_dict(whole.state_dict())
    batches = _batches(dataset, torch.Generator().manual_seed(1))[:2 if tasks == "both" else 1]
    grads, stats, gens = [], [], []
    for model in (whole, split):
        gen = torch.Generator().manual_seed(2)
        stats.append(model.backward(batches, gen))
        gens.append(gen.get_state())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()
                      if p.grad is not None})
    assert stats[0].keys() == stats[1].keys() and "contrastive" in stats[0]
    for key in stats[0]:
        assert stats[1][key] == pytest.approx(stats[0][key], rel=1e-5, abs=1e-6), key
    assert torch.equal(gens[0], gens[1])
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 20
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-4, atol=1e-6,
                                   msg=name)


def test_padding_does_not_change_the_loss(dataset):
    """A padded multi-task batch: junk in padded steps, agents and enemy slots changes
    nothing, for sampled steps and for whole episodes."""
    for steps in (4, 0):
        model = HiSSD(family_spec("smac"), replace(TINY, steps_per_episode=steps))
        batch = dataset.sample(6, generator=torch.Generator().manual_seed(3))
        junk = copy.deepcopy(batch)
        g = torch.Generator().manual_seed(4)

        def scramble(x, pad):
            noise = torch.randn(x.shape, generator=g).to(x.dtype) * 5
            return torch.where(pad, noise, x)

        step_pad = batch.filled == 0  # [B, T]
        agent_pad = ~batch.agent_mask[:, None, :]  # [B, 1, A]
        pad_agents = step_pad[..., None] | agent_pad
        o = junk.obs
        o.own = scramble(o.own, pad_agents[..., None])
        o.allies = scramble(o.allies, pad_agents[..., None, None] | ~o.ally_mask[..., None])
        o.enemies = scramble(o.enemies, pad_agents[..., None, None] | ~o.enemy_mask[..., None])
        s = junk.state
        s.allies = scramble(s.allies, step_pad[..., None, None] | ~s.ally_mask[..., None])
        s.enemies = scramble(s.enemies, step_pad[..., None, None] | ~s.enemy_mask[..., None])
        junk.reward = scramble(junk.reward, step_pad)
        assert not torch.equal(junk.obs.enemies, batch.obs.enemies)
        a, sa = model.loss(batch, torch.Generator().manual_seed(5))
        b, sb = model.loss(junk, torch.Generator().manual_seed(5))
        for key in sa:
            assert sa[key] == pytest.approx(sb[key], rel=1e-5, abs=1e-6), (steps, key)


def test_trained_on_3m_and_5m_vs_6m_acts_on_12m_and_13m_vs_15m(dataset):
    model = HiSSD(family_spec("smac"), TINY)
    gen = torch.Generator().manual_seed(0)
    optim = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(3):
        loss, _ = model.loss(_batches(dataset, gen), gen)
        optim.zero_grad()
        loss.backward()
        optim.step()
    for task, n_actions in (("smac:12m", 18), ("smac:13m_vs_15m", 21)):
        result = evaluate_task(model, task, episodes=2, seed=0)
        assert result["episodes"] == 2 and 0.0 <= result["win_rate"] <= 1.0
        assert result["length_mean"] > 0
        import envs
        from marl.entity.smac import parse_smac_obs

        env = envs.make(task, num_envs=2, seed=0)
        ts = env.reset()
        actions = model.act(parse_smac_obs(torch.from_numpy(ts.obs), env.info.layout),
                            torch.from_numpy(ts.avail_actions).bool())
        assert actions.shape == (2, env.info.n_agents)
        assert env.info.n_actions == n_actions
        assert bool(torch.from_numpy(ts.avail_actions).gather(-1, actions[..., None]).all())
        env.close()


@pytest.mark.parametrize("switch", ["common_skills", "task_skills", "advantage_weighting",
                                    "contrastive"])
def test_ablation_switches_train(dataset, switch):
    cfg = replace(TINY, **{switch: False})
    model = HiSSD(family_spec("smac"), cfg)
    gen = torch.Generator().manual_seed(0)
    loss, stats = model.loss(_batches(dataset, gen), gen)
    loss.backward()
    assert torch.isfinite(loss)
    if switch == "common_skills":
        assert not hasattr(model, "planner") and "prediction" not in stats
    if switch == "task_skills":
        assert not hasattr(model, "task_encoder") and "contrastive" not in stats
    if switch == "advantage_weighting":
        assert not hasattr(model, "value") and "value" not in stats
        assert "prediction" in stats
    if switch == "contrastive":
        assert hasattr(model, "task_encoder") and "contrastive" not in stats


def test_single_task_trains_without_negatives(dataset, tiny_data):
    """The released code crashes on one training task; here the contrastive term is zero."""
    model = HiSSD(family_spec("smac"), TINY)
    gen = torch.Generator().manual_seed(0)
    loss, stats = model.loss([dataset.sample(8, task="smac:3m", generator=gen)], gen)
    loss.backward()
    assert stats["contrastive"] == 0.0 and torch.isfinite(loss)


def test_contrastive_separates_tasks(dataset):
    """After training on the InfoNCE term alone, which acts on a projection of z, a task's
    skills z are closer to each other than to the other task's."""
    torch.manual_seed(0)
    model = HiSSD(family_spec("smac"), TINY)
    params = list(model.task_encoder.parameters()) + list(model.task_head.parameters()) \
        + list(model.contrast_head.parameters()) + [model.contrast_w]
    optim = torch.optim.Adam(params, lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(30):
        pairs = []
        for batch in _batches(dataset, gen):
            view = batch.obs.map(lambda x: x[:, :4])
            z = model._contrast_features(model.spec.obs_tokens(view))
            valid = batch.agent_mask[:, None, :].expand(-1, 4, -1)
            pairs += [(flat_rows(z, a), flat_rows(z, b), task)
                      for a, b, task in model._contrastive_pairs(valid, batch.task_id, gen)]
        loss = model._info_nce(pairs)
        optim.zero_grad()
        loss.backward()
        optim.step()
    assert loss.item() < 0.5
    with torch.no_grad():
        z = [torch.nn.functional.normalize(a, dim=-1) for a, _, _ in pairs]
        within = (z[0] @ z[0].T).mean()
        across = (z[0] @ z[1].T).mean()
    assert within > across + 0.2


def test_mixer_is_monotonic_and_fits_any_team():
    torch.manual_seed(0)
    mixer = TransformerMixer((6, 5), dim=8, mixing_dim=8)
    for n_agents, n_others in ((3, 3), (13, 15)):
        values = torch.randn(4, n_agents, requires_grad=True)
        state = Tokens([torch.randn(4, n_agents, 6), torch.randn(4, n_others, 5)],
                       [torch.ones(4, n_agents, dtype=torch.bool),
                        torch.ones(4, n_others, dtype=torch.bool)])
        v_tot = mixer(values, state)
        assert v_tot.shape == (4,)
        (grad,) = torch.autograd.grad(v_tot.sum(), values)
        assert bool((grad >= 0).all()) and bool((grad > 0).any())
    # a padded agent is ignored: its value does not move V_tot
    values = torch.randn(2, 4, requires_grad=True)
    mask = torch.tensor([[True, True, True, False]] * 2)
    state = Tokens([torch.randn(2, 4, 6), torch.randn(2, 2, 5)],
                   [mask, torch.ones(2, 2, dtype=torch.bool)])
    (grad,) = torch.autograd.grad(mixer(values, state).sum(), values)
    assert bool((grad[:, 3] == 0).all())


@pytest.mark.parametrize("heads,depth", [(1, 1), (2, 2)])
def test_entity_transformer_is_torchs_layer_with_shared_rows_and_asked_outputs(heads, depth):
    torch.manual_seed(0)
    net = EntityTransformer((5, 7, 6), 16, heads, depth)
    net.SHARE_MIN_ROWS = 0  # share rows even in a batch this small
    tokens = [torch.randn(4, 3, 1, 5), torch.randn(4, 3, 2, 7), torch.randn(4, 3, 4, 6)]
    masks = [torch.ones(4, 3, 1, dtype=torch.bool), torch.rand(4, 3, 2) > 0.3,
             torch.rand(4, 3, 4) > 0.3]
    for m in masks:  # one row entirely padding (a padded agent)
        m[0, 0] = False
    for g in (tokens, masks):  # rows computed once: copies of another row, all-zero rows
        for x in g:
            x[1, 2] = x[3, 1]
            x[2, 0] = x[2, 1] = x[0, 2] = 0 if x.dtype != torch.bool else True
    first, position = distinct_rows([x.reshape(12, -1) for x in (*tokens, *masks)])
    assert len(first) == 9 and position.shape == (12,)
    full = torch.cat(net(tokens, masks), dim=-2)
    # the same function as torch's own encoder over the parameters it holds
    x = torch.cat([e(t) + net.group[i] for i, (e, t) in enumerate(zip(net.embed, tokens))], -2)
    valid = torch.cat(masks, -1)
    valid[0, 0, 0] = True  # the padded row attends to its first token
    ref = net.blocks(x.reshape(12, 7, 16), src_key_padding_mask=~valid.reshape(12, 7))
    ref = ref.reshape(4, 3, 7, 16)
    assert torch.allclose(full, ref, atol=1e-5)
    net.SHARE_MIN_ROWS = 13  # a batch under the threshold computes every row: the same outputs
    assert torch.allclose(torch.cat(net(tokens, masks), dim=-2), full, atol=1e-6)
    net.SHARE_MIN_ROWS = 0
    grads = [torch.autograd.grad((y[..., 0, :] ** 2).sum(), list(net.parameters()),
                                 retain_graph=True) for y in (full, ref)]
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(*grads))
    # asking for some groups gives those outputs, in the asked order, and the same gradients
    enemies, own = net(tokens, masks, outputs=(2, 0))
    assert enemies.shape == (4, 3, 4, 16) and own.shape == (4, 3, 1, 16)
    assert torch.allclose(enemies, full[..., 3:, :], atol=1e-5)
    assert torch.allclose(own, full[..., :1, :], atol=1e-5)
    grads = [torch.autograd.grad((y ** 2).sum(), list(net.parameters()))
             for y in (full[..., :1, :], own)]
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(*grads))
    own_token, entities = net.own_and_entities(tokens, masks, entity_group=2)
    assert torch.allclose(own_token, full[..., 0, :], atol=1e-5)
    assert torch.allclose(entities, full[..., 3:, :], atol=1e-5)


def test_distinct_rows_keeps_rows_apart_when_their_hashes_collide(monkeypatch):
    rows = torch.tensor([[1, 2], [2, 1], [1, 2], [3, 0]])
    first, position = distinct_rows([rows])
    assert len(first) == 3 and bool((rows[first][position] == rows).all())
    # with every hash weight 1, a row's key is its sum: all four rows collide on 3
    monkeypatch.setattr(torch, "randint", lambda *a, **k: torch.ones(a[2], dtype=torch.int64))
    first, position = distinct_rows([rows])
    assert len(first) == 3 and bool((rows[first][position] == rows).all())
    assert distinct_rows([torch.tensor([[1, 2], [2, 1]])]) is None


@pytest.mark.parametrize("tasks,unseen", [
    (("mpe:spread-2", "mpe:spread-3"), "mpe:spread-4"),
    (("mamujoco:Hopper-3x1", "mamujoco:Walker2d-2x3"), "mamujoco:HalfCheetah-2x3"),
], ids=["mpe", "mamujoco"])
def test_other_families_learn_and_act_on_unseen_tasks(tmp_path, tasks, unseen):
    """MPE (discrete, landmark tokens) and MuJoCo (per-joint Gaussian heads) on random-action
    data: the action loss falls, and the model acts on a task it never saw."""
    from helpers import write_random
    from marl.data.loader import MultiTaskDataset

    ds = MultiTaskDataset({t: [write_random(tmp_path / f"{i}.h5", t, episodes=6, seed=i)]
                           for i, t in enumerate(tasks)})
    family = ds.family
    torch.manual_seed(0)
    model = HiSSD(family_spec(family), TINY)
    history = fit(model, _batches(ds, torch.Generator().manual_seed(0), batch_size=4), 40)
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in history)
    assert history[-1]["bc"] < history[0]["bc"] - 0.05
    assert history[-1]["prediction"] < history[0]["prediction"]
    result = evaluate_task(model, unseen, episodes=2, seed=0)
    assert result["episodes"] == 2 and np.isfinite(result["return_mean"])


def test_earlier_setting_builds_marls_previous_hissd(dataset):
    """``EARLIER`` (the ablation row and benchmark setting) is a valid set of overrides that
    builds the earlier networks: bootstrapped value with targets, state-conditioned predictor,
    z trained by BC alone, and its loss runs."""
    from marl.algos.hissd import EARLIER
    from marl.config import load_config, model_config

    cfg = model_config(load_config(None, [f"model.{k}={v}" for k, v in EARLIER.items()]))
    assert {k: getattr(cfg, k) for k in EARLIER} == EARLIER
    model = HiSSD(family_spec("smac"), replace(cfg, **{k: getattr(TINY, k) for k in (
        "dim", "ffn_mult", "hidden", "skill_dim", "mixer_dim", "contrastive_samples",
        "steps_per_episode")}))
    assert hasattr(model, "target") and not hasattr(model, "predict_actions")
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in model.task_head)
    gen = torch.Generator().manual_seed(0)
    loss, stats = model.loss([dataset.sample(4, task=t, generator=gen) for t in dataset.tasks], gen)
    loss.backward()
    assert torch.isfinite(loss) and "prediction_action" not in stats and "prediction_state" in stats


def test_bad_switch_values_are_one_config_error():
    from marl.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="model.value_target must be one of 'monte_carlo', "
                                          "'td_expectile', got 'mc'"):
        load_config(None, ["model.value_target=mc"])


def test_hissd_trained_on_two_partitions_runs_an_unseen_third(tmp_path):
    """Issue 17's transfer, small: HiSSD with joint identity, trained on HalfCheetah-2x3 and
    6x1 expert data (collected by the shipped 2x3 expert through the partition bridge), plays
    the unseen 3x2 partition: it runs forward, where uniformly random joint actions on the same
    starts lose their control cost."""
    from marl import SHIPPED_POLICIES
    from marl.collect import collect
    from marl.data.loader import MultiTaskDataset

    policy = Path(SHIPPED_POLICIES) / "mamujoco_HalfCheetah-2x3"
    ds = MultiTaskDataset({f"mamujoco:HalfCheetah-{p}": [
        collect(f"mamujoco:HalfCheetah-{p}", policy, "expert", 4, tmp_path / f"{p}.h5",
                num_envs=4, show_progress=False)] for p in ("2x3", "6x1")})
    torch.manual_seed(0)
    model = HiSSD(family_spec("mamujoco", joint_identity=True),
                  replace(TINY, joint_identity=True, steps_per_episode=16))
    optim = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen, bc = torch.Generator().manual_seed(0), []
    for update in range(1, 601):  # fresh transitions each update, as training draws them
        loss, stats = model.loss(_batches(ds, gen, batch_size=4), gen)
        optim.zero_grad()
        loss.backward()
        optim.step()
        model.after_update(update)
        bc.append(float(stats["bc"]))
    assert np.mean(bc[-20:]) < np.mean(bc[:20]) - 0.5
    unseen = "mamujoco:HalfCheetah-3x2"
    learned = evaluate_task(model, unseen, episodes=2, seed=0)["return_mean"]
    env = envs.make(unseen, num_envs=2, seed=0)
    rng = np.random.default_rng(0)
    shape = (2, env.info.n_agents, env.info.n_actions)
    random = envs.play(env, lambda ts: rng.uniform(-1, 1, shape).astype(np.float32), seed=0)
    # random joint actions pay their control cost (about -420 here); a cheetah that stands still
    # scores about 0; this one runs (1144 when written; 66 after 400 updates)
    assert random.returns.mean() < -200 and learned > 300, (learned, random.returns.mean())


def test_contrast_by_robot_counts_the_partitions_of_one_robot_as_one_task(tmp_path):
    """With ``contrast_by="robot"`` the InfoNCE labels are robots: two HalfCheetah partitions
    have no negatives for each other (the term is zero, as for one task), where per task they
    are pushed apart; a task set of another family is refused by name."""
    from marl import SHIPPED_POLICIES
    from marl.collect import collect
    from marl.data.loader import MultiTaskDataset

    policy = Path(SHIPPED_POLICIES) / "mamujoco_HalfCheetah-2x3"
    tasks = [f"mamujoco:HalfCheetah-{p}" for p in ("2x3", "6x1")]
    ds = MultiTaskDataset({t: [collect(t, policy, "expert", 2, tmp_path / f"{i}.h5", num_envs=2,
                                       show_progress=False)] for i, t in enumerate(tasks)})
    terms = {}
    for by in ("task", "robot"):
        torch.manual_seed(0)
        model = HiSSD(family_spec("mamujoco"), replace(TINY, contrast_by=by))
        model.use_tasks(ds.tasks)
        gen = torch.Generator().manual_seed(0)
        terms[by] = model.loss(_batches(ds, gen, batch_size=2), gen)[1]["contrastive"]
    assert terms["robot"] == 0.0 and terms["task"] > 0.1, terms

    model.use_tasks(["mamujoco:HalfCheetah-2x3", "mamujoco:Ant-2x4", "mamujoco:HalfCheetah-6x1"])
    assert model.contrast_label.tolist() == [1, 0, 1]
    with pytest.raises(ValueError, match="contrast_by=robot.*'smac:3m' is not a mamujoco task"):
        model.use_tasks(["smac:3m", "mamujoco:Ant-2x4"])
