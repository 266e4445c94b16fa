"""The SMAC entity parser on hand-built SMACv1 vectors and on real SMAX battles."""

import numpy as np
import pytest
import torch

import envs
from envs.smac import UNIT_VOCAB, parse_map
from marl.entity.smac import F_ENTITY, F_OWN, F_STATE, parse_smac_obs, parse_smac_state


def smac_obs_by_hand(move, enemies, allies, own):
    """Write one agent's SMACv1 observation from named values, following starcraft2.py's
    get_obs_agent: move | per enemy (attackable, dist, dx, dy, health[, shield][, bits]) |
    per ally (visible, dist, dx, dy, health[, shield][, bits]) | own (health[, shield][, bits])."""
    vec = list(move)
    for e in enemies:
        vec += [e["attackable"], e["dist"], e["dx"], e["dy"], e["health"], *e.get("extra", [])]
    for a in allies:
        vec += [a["visible"], a["dist"], a["dx"], a["dy"], a["health"], *a.get("extra", [])]
    vec += [own["health"], *own.get("extra", [])]
    return np.array(vec, np.float32)


def one_hot(name):
    return [float(name == t) for t in UNIT_VOCAB]


def test_marine_obs_tokens_hold_the_hand_placed_values():
    lay = parse_map("3m")
    obs = smac_obs_by_hand(
        move=[1, 0, 1, 1],
        enemies=[dict(attackable=1, dist=0.5, dx=0.3, dy=-0.4, health=0.8),
                 dict(attackable=0, dist=0.0, dx=0.0, dy=0.0, health=0.0),  # unseen
                 dict(attackable=0, dist=0.9, dx=-0.1, dy=0.89, health=0.2)],
        allies=[dict(visible=1, dist=0.2, dx=0.2, dy=0.0, health=1.0),
                dict(visible=0, dist=0, dx=0, dy=0, health=0)],
        own=dict(health=0.6))
    assert obs.shape == (lay.obs_dim,)
    view = parse_smac_obs(torch.from_numpy(obs), lay)
    marine = one_hot("marine")
    torch.testing.assert_close(view.own, torch.tensor([0.6, 0.0, *marine, 1, 0, 1, 1]))
    torch.testing.assert_close(view.enemies, torch.tensor([
        [1, 1, 0.5, 0.3, -0.4, 0.8, 0, *marine],
        [0] * F_ENTITY,
        [1, 0, 0.9, -0.1, 0.89, 0.2, 0, *marine]]))
    torch.testing.assert_close(view.allies, torch.tensor([
        [1, 0, 0.2, 0.2, 0.0, 1.0, 0, *marine], [0] * F_ENTITY]))
    assert view.ally_mask.all() and view.enemy_mask.all()


def test_stalker_zealot_tokens_resolve_smacs_swapped_enemy_type_bits():
    lay = parse_map("1s2z")  # allies/enemies: stalker, zealot, zealot
    # enemy bits are (zealot, stalker); ally bits are (stalker, zealot)
    obs = smac_obs_by_hand(
        move=[0, 0, 0, 0],
        enemies=[dict(attackable=1, dist=0.1, dx=0.1, dy=0, health=0.5, extra=[0.25, 0, 1]),
                 dict(attackable=0, dist=0.3, dx=0, dy=0.3, health=1.0, extra=[1.0, 1, 0]),
                 dict(attackable=0, dist=0, dx=0, dy=0, health=0, extra=[0, 0, 0])],
        allies=[dict(visible=1, dist=0.4, dx=-0.4, dy=0, health=0.7, extra=[0.0, 0, 1]),
                dict(visible=1, dist=0.5, dx=0, dy=-0.5, health=1.0, extra=[0.5, 0, 1])],
        own=dict(health=0.9, extra=[0.3, 1, 0]))
    assert obs.shape == (lay.obs_dim,) == (4 + 3 * 8 + 2 * 8 + 4,)
    view = parse_smac_obs(torch.from_numpy(obs)[None, None], lay)  # any leading batch dims
    assert view.enemies.shape == (1, 1, 3, F_ENTITY) and view.own.shape == (1, 1, F_OWN)
    s, z = one_hot("stalker"), one_hot("zealot")
    torch.testing.assert_close(view.enemies[0, 0], torch.tensor([
        [1, 1, 0.1, 0.1, 0, 0.5, 0.25, *s],
        [1, 0, 0.3, 0, 0.3, 1.0, 1.0, *z],
        [0] * F_ENTITY]))
    torch.testing.assert_close(view.allies[0, 0, :, 7:], torch.tensor([z, z]))
    torch.testing.assert_close(view.own[0, 0], torch.tensor([0.9, 0.3, *s, 0, 0, 0, 0]))


def test_state_tokens_by_hand():
    lay = parse_map("2m_vs_3m")  # n_actions = 9
    allies = [[1.0, 0.5, 0.1, -0.2], [0, 0, 0, 0]]  # health, cooldown, x, y; agent 1 dead
    enemies = [[0.4, 0.3, 0.1], [1.0, 0.2, 0.0], [0, 0, 0]]  # health, x, y
    last = np.zeros((2, 9), np.float32)
    last[0, 7] = 1  # agent 0 attacked enemy 1
    last[1, 0] = 1  # dead agent 1 no-op
    state = np.concatenate([np.ravel(allies), np.ravel(enemies), last.ravel()]).astype(np.float32)
    view = parse_smac_state(torch.from_numpy(state), lay)
    m = one_hot("marine")
    assert view.allies.shape == (2, F_STATE) and view.enemies.shape == (3, F_STATE)
    torch.testing.assert_close(view.allies, torch.tensor([
        [1, 1.0, 0, 0.5, 0.1, -0.2, *m, 0, 0, 0, 0, 0, 0, 1],
        [0, 0, 0, 0, 0, 0, *[0] * len(m), 1, 0, 0, 0, 0, 0, 0]]))
    torch.testing.assert_close(view.enemies, torch.tensor([
        [1, 0.4, 0, 0, 0.3, 0.1, *m, 0, 0, 0, 0, 0, 0, 0],
        [1, 1.0, 0, 0, 0.2, 0.0, *m, 0, 0, 0, 0, 0, 0, 1],
        [0] * F_STATE]))


def test_wrong_width_is_rejected():
    with pytest.raises(ValueError, match="smac:3m observation has 31 features, expected 30"):
        parse_smac_obs(torch.zeros(31), parse_map("3m"))
    with pytest.raises(ValueError, match="state has 47 features, expected 48"):
        parse_smac_state(torch.zeros(47), parse_map("3m"))


def test_one_model_width_for_marine_and_protoss_maps_and_padding():
    a = parse_smac_obs(torch.zeros(4, 3, 30), parse_map("3m"))
    b = parse_smac_obs(torch.zeros(4, 8, 128), parse_map("3s5z"))
    assert a.enemies.shape[-1] == b.enemies.shape[-1] == F_ENTITY
    assert a.own.shape[-1] == b.own.shape[-1] == F_OWN
    padded = a.pad(n_allies=7, n_enemies=8)
    assert padded.enemies.shape == (4, 3, 8, F_ENTITY)
    assert padded.enemy_mask[..., :3].all() and not padded.enemy_mask[..., 3:].any()
    assert (padded.enemies[..., 3:, :] == 0).all()


def test_real_battle_tokens_agree_with_unit_snapshot():
    """On SMAX, tokens carry what the simulator holds: visible enemies' health equals the
    snapshot's, and the own token's health matches each agent's unit."""
    env = envs.make("smac:2s3z", num_envs=4, seed=0)
    ts = env.reset()
    from envs.smac import focus_fire_actions
    for _ in range(20):
        ts = env.step(focus_fire_actions(ts.obs, ts.avail_actions, env.info.layout))
    snap = env.unit_snapshot()
    view = parse_smac_obs(torch.from_numpy(ts.obs), env.info.layout)
    state = parse_smac_state(torch.from_numpy(ts.state), env.info.layout)
    n_a = env.info.n_agents
    # pooled (health + shield) fraction from the state tokens equals the simulator's
    hp_max = np.array([80.0, 80, 100, 100, 100])
    sh_max = np.array([80.0, 80, 50, 50, 50])
    pooled = (state.allies[..., 1].numpy() * hp_max + state.allies[..., 2].numpy() * sh_max)
    np.testing.assert_allclose(pooled / (hp_max + sh_max), snap["health"][:, :n_a], atol=1e-5)
    alive = snap["alive"][:, :n_a]
    np.testing.assert_array_equal(state.allies[..., 0].numpy() > 0, alive)
    np.testing.assert_array_equal(view.own[..., 0].numpy() > 0, alive)
