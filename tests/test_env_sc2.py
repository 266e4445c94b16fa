"""Real-StarCraft-II backend (envs.sc2) without StarCraft II.

smacv2's vectors are built here the way its source builds them (``get_obs_agent``,
``get_state_dict``, ``get_avail_agent_actions`` in oxwhirl/smacv2 starcraft2.py), SMACv1's the way
``envs.smac`` documents them, from the same battle; the conversion must turn the first into the
second exactly. A small stand-in for the smacv2 package then drives ``SC2Env`` end to end.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import envs
from envs.core import BackendUnavailableError, EnvError
from envs.sc2 import (
    SMACV1_LIKE_KWARGS,
    TEAM_DISTRIBUTION_KEY,
    FixedTeamsDistribution,
    SC2Env,
    Smacv2Format,
    build_indices,
    capability_config,
    convert_actions,
    convert_avail,
    convert_obs,
    convert_state,
    route_for,
)
from envs.smac import SmacLayout, parse_map

SIGHT, SHOOT, MAP = 9.0, 6.0, 32.0  # smacv2 without use_unit_ranges; 32x32 10gen arena
# smacv2 get_unit_type_id for the 10gen maps (allies and enemies alike)
SMACV2_TYPE_ORDER = {"marine": ("marine", "marauder", "medivac"),
                     "stalker": ("stalker", "zealot", "colossus"),
                     "zealot": ("stalker", "zealot", "colossus")}
N_FOV = 12
EXTRA_FLAGS = {"obs_pathing_grid": True, "obs_terrain_height": True, "obs_own_pos": True,
               "conic_fov": True, "num_fov_actions": N_FOV, "obs_last_action": True,
               "obs_timestep_number": True, "state_timestep_number": True}
PATHING, HEIGHT, TIMESTEP = 0.25, 0.75, 0.5  # filler values of slots SMACv1 lacks


@dataclass
class Battle:
    """One moment of a battle: what both writers turn into vectors."""

    ally_types: tuple[str, ...]
    enemy_types: tuple[str, ...]
    ally_pos: np.ndarray  # [n_a, 2] map coordinates
    enemy_pos: np.ndarray
    ally_health: np.ndarray  # fraction, 0 = dead
    enemy_health: np.ndarray
    ally_shield: np.ndarray  # fraction
    enemy_shield: np.ndarray
    ally_cooldown: np.ndarray
    can_move: np.ndarray  # [n_a, 4] bool: north, south, east, west
    last_actions: np.ndarray  # [n_a] SMACv1 action ids


def random_battle(layout: SmacLayout, rng: np.random.Generator, spread: float = 14.0) -> Battle:
    n_a, n_e = layout.n_agents, layout.n_enemies

    def health(n: int) -> np.ndarray:
        h = rng.uniform(0.1, 1.0, n) * (rng.random(n) > 0.25)
        h[0] = max(h[0], 0.5)  # someone is alive to look around
        return h

    ally_health, enemy_health = health(n_a), health(n_e)
    return Battle(
        ally_types=layout.ally_types, enemy_types=layout.enemy_types,
        ally_pos=rng.uniform(9.0, 9.0 + spread, (n_a, 2)),
        enemy_pos=rng.uniform(9.0, 9.0 + spread, (n_e, 2)),
        ally_health=ally_health, enemy_health=enemy_health,
        ally_shield=rng.uniform(0, 1, n_a) * (ally_health > 0),
        enemy_shield=rng.uniform(0, 1, n_e) * (enemy_health > 0),
        ally_cooldown=rng.uniform(0, 1, n_a) * (ally_health > 0),
        can_move=rng.random((n_a, 4)) > 0.3,
        last_actions=rng.integers(0, layout.n_actions, n_a),
    )


def one_hot(names: tuple[str, ...], name: str) -> list[float]:
    return [float(n == name) for n in names]


def geometry(b: Battle, i: int, others: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = others - b.ally_pos[i]
    return d, np.hypot(d[:, 0], d[:, 1])


# ---------------------------------------------------------------------- SMACv1 (envs.smac layout)
def smacv1_vectors(b: Battle, lay: SmacLayout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n_a, n_e = lay.n_agents, lay.n_enemies
    obs = np.zeros((n_a, lay.obs_dim), np.float32)
    avail = np.zeros((n_a, lay.n_actions), bool)
    for i in range(n_a):
        if b.ally_health[i] == 0:
            avail[i, 0] = True
            continue
        feats = list(b.can_move[i].astype(float))
        d, dist = geometry(b, i, b.enemy_pos)
        for j in range(n_e):
            f = [0.0] * lay.nf_en
            if b.enemy_health[j] > 0 and dist[j] < SIGHT:
                f = [float(dist[j] <= SHOOT), dist[j] / SIGHT, d[j, 0] / SIGHT, d[j, 1] / SIGHT,
                     b.enemy_health[j]] + [b.enemy_shield[j]] * lay.shield_bits_enemy \
                    + one_hot(lay.enemy_type_bits, b.enemy_types[j])
            feats += f
        d, dist = geometry(b, i, b.ally_pos)
        for k in (k for k in range(n_a) if k != i):
            f = [0.0] * lay.nf_al
            if b.ally_health[k] > 0 and dist[k] < SIGHT:
                f = [1.0, dist[k] / SIGHT, d[k, 0] / SIGHT, d[k, 1] / SIGHT, b.ally_health[k]] \
                    + [b.ally_shield[k]] * lay.shield_bits_ally \
                    + one_hot(lay.ally_type_bits, b.ally_types[k])
            feats += f
        feats += [b.ally_health[i]] + [b.ally_shield[i]] * lay.shield_bits_ally \
            + one_hot(lay.ally_type_bits, b.ally_types[i])
        obs[i] = feats
        _, dist = geometry(b, i, b.enemy_pos)
        avail[i] = [False, True, *b.can_move[i], *((b.enemy_health > 0) & (dist <= SHOOT))]
    state: list[float] = []
    for k in range(n_a):
        rel = (b.ally_pos[k] - MAP / 2) / MAP
        row = [b.ally_health[k], b.ally_cooldown[k], rel[0], rel[1]] \
            + [b.ally_shield[k]] * lay.shield_bits_ally \
            + one_hot(lay.ally_type_bits, b.ally_types[k])
        state += row if b.ally_health[k] > 0 else [0.0] * lay.state_nf_al
    for j in range(n_e):
        rel = (b.enemy_pos[j] - MAP / 2) / MAP
        row = [b.enemy_health[j], rel[0], rel[1]] + [b.enemy_shield[j]] * lay.shield_bits_enemy \
            + one_hot(lay.enemy_type_bits, b.enemy_types[j])
        state += row if b.enemy_health[j] > 0 else [0.0] * lay.state_nf_en
    state += np.eye(lay.n_actions)[b.last_actions].ravel().tolist()
    return obs, np.asarray(state, np.float32), avail


# ---------------------------------------------------------------------- smacv2 (its source order)
def smacv2_n_actions(b: Battle, flags: dict[str, Any]) -> tuple[int, int]:
    """(n_actions_no_attack, n_actions) as StarCraft2Env.__init__ computes them."""
    n_a, n_e = len(b.ally_types), len(b.enemy_types)
    no_attack = 6 + (flags.get("num_fov_actions", 12) if flags.get("conic_fov") else 0)
    terran_gen = b.ally_types[0] == "marine"
    return no_attack, no_attack + (n_a if terran_gen and n_a > n_e else n_e)


def smacv2_vectors(b: Battle, flags: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """get_obs(), get_state(), get_avail_actions() of smacv2 on a 10gen map with ``flags``."""
    n_a, n_e = len(b.ally_types), len(b.enemy_types)
    types = SMACV2_TYPE_ORDER[b.ally_types[0]]
    shield = int(types[0] == "stalker")  # same race on both sides
    no_attack, n_actions = smacv2_n_actions(b, flags)
    n_fov = no_attack - 6
    v2_last = np.zeros((n_a, n_actions))
    v2_last[np.arange(n_a), np.where(b.last_actions < 6, b.last_actions,
                                     b.last_actions - 6 + no_attack)] = 1.0

    avail = np.zeros((n_a, n_actions), np.int64)
    for i in range(n_a):
        if b.ally_health[i] == 0:
            avail[i, 0] = 1
            continue
        _, dist = geometry(b, i, b.enemy_pos)
        avail[i, 1] = 1
        avail[i, 2:6] = b.can_move[i]
        avail[i, 6:6 + n_fov] = 1
        avail[i, no_attack:no_attack + n_e] = (b.enemy_health > 0) & (dist <= SHOOT)

    nf_en = 4 + 1 + shield + 3
    nf_al = 4 + 1 + shield + 3 + n_actions * bool(flags.get("obs_last_action"))
    obs = []
    for i in range(n_a):
        move = list(b.can_move[i].astype(float)) if b.ally_health[i] > 0 else [0.0] * 4
        move += [PATHING] * 8 * bool(flags.get("obs_pathing_grid"))
        move += [HEIGHT] * 9 * bool(flags.get("obs_terrain_height"))
        enemy = np.zeros((n_e, nf_en))
        ally = np.zeros((n_a - 1, nf_al))
        own: list[float] = []
        if b.ally_health[i] > 0:
            d, dist = geometry(b, i, b.enemy_pos)
            for j in range(n_e):
                if b.enemy_health[j] > 0 and dist[j] < SIGHT:
                    enemy[j] = [avail[i, no_attack + j], dist[j] / SIGHT, d[j, 0] / SIGHT,
                                d[j, 1] / SIGHT, b.enemy_health[j]] \
                        + [b.enemy_shield[j]] * shield + one_hot(types, b.enemy_types[j])
            d, dist = geometry(b, i, b.ally_pos)
            for row, k in enumerate(k for k in range(n_a) if k != i):
                if b.ally_health[k] > 0 and dist[k] < SIGHT:
                    last = list(v2_last[k]) if flags.get("obs_last_action") else []
                    ally[row] = [1.0, dist[k] / SIGHT, d[k, 0] / SIGHT, d[k, 1] / SIGHT,
                                 b.ally_health[k]] + [b.ally_shield[k]] * shield \
                        + one_hot(types, b.ally_types[k]) + last
            own = [b.ally_health[i]] + [b.ally_shield[i]] * shield
            own += list(b.ally_pos[i] / MAP) * bool(flags.get("obs_own_pos"))
            own += [0.6, 0.8] * bool(flags.get("conic_fov"))  # fov direction
            own += one_hot(types, b.ally_types[i])
        else:
            own = [0.0] * (1 + shield + 2 * bool(flags.get("obs_own_pos"))
                           + 2 * bool(flags.get("conic_fov")) + 3)
        agent = move + enemy.ravel().tolist() + ally.ravel().tolist() + own
        agent += [TIMESTEP] * bool(flags.get("obs_timestep_number"))
        obs.append(np.asarray(agent, np.float32))

    state: list[float] = []
    fov = 2 * bool(flags.get("conic_fov"))
    for k in range(n_a):
        rel = (b.ally_pos[k] - MAP / 2) / MAP
        row = [b.ally_health[k], b.ally_cooldown[k], rel[0], rel[1]] + [b.ally_shield[k]] * shield \
            + [0.6, 0.8][:fov] + one_hot(types, b.ally_types[k])
        state += row if b.ally_health[k] > 0 else [0.0] * len(row)
    for j in range(n_e):
        rel = (b.enemy_pos[j] - MAP / 2) / MAP
        row = [b.enemy_health[j], rel[0], rel[1]] + [b.enemy_shield[j]] * shield \
            + one_hot(types, b.enemy_types[j])
        state += row if b.enemy_health[j] > 0 else [0.0] * len(row)
    state += v2_last.ravel().tolist() * flags.get("state_last_action", True)
    state += [TIMESTEP] * bool(flags.get("state_timestep_number"))
    return np.stack(obs), np.asarray(state, np.float32), avail


def format_for(layout: SmacLayout, flags: dict[str, Any]) -> Smacv2Format:
    return Smacv2Format.from_kwargs(route_for(layout), layout.n_agents, layout.n_enemies, flags)


# ---------------------------------------------------------------------- conversion
@pytest.mark.parametrize("name, obs_dim, state_dim", [
    ("3m", 30, 48), ("5m_vs_6m", 55, 98), ("2s3z", 80, 120), ("3s5z", 128, 216)])
def test_converted_sizes_are_smacs(name: str, obs_dim: int, state_dim: int) -> None:
    layout = parse_map(name)
    fmt = format_for(layout, SMACV1_LIKE_KWARGS)
    idx = build_indices(layout, fmt)
    b = random_battle(layout, np.random.default_rng(0))
    obs, state, avail = smacv2_vectors(b, SMACV1_LIKE_KWARGS)
    assert convert_obs(obs, idx).shape == (layout.n_agents, obs_dim)
    assert convert_state(state, idx).shape == (state_dim,)
    assert convert_avail(avail, idx).shape == (layout.n_agents, layout.n_actions)


@pytest.mark.parametrize("name", ["3m", "5m_vs_6m", "5m_vs_3m", "2s3z", "3s5z", "1s4z_vs_2s2z"])
@pytest.mark.parametrize("flags", [SMACV1_LIKE_KWARGS, EXTRA_FLAGS], ids=["smacv1_like", "extras"])
def test_format_sizes_match_smacv2(name: str, flags: dict[str, Any]) -> None:
    layout = parse_map(name)
    fmt = format_for(layout, flags)
    obs, state, avail = smacv2_vectors(random_battle(layout, np.random.default_rng(1)), flags)
    assert (fmt.obs_size, fmt.state_size, fmt.n_actions) == (obs.shape[1], state.size,
                                                            avail.shape[1])


def test_format_matches_smacv2_reference_configs() -> None:
    """SMACv2's published 5 vs 5 sizes (sc2_gen_*.yaml: obs_own_pos on): protoss obs 92 /
    state 130, terran obs 82 / state 120."""
    for name, sizes in (("5s0z", (92, 130)), ("5m", (82, 120))):
        fmt = format_for(parse_map(name), {"obs_own_pos": True})
        assert (fmt.obs_size, fmt.state_size) == sizes


@pytest.mark.parametrize("name", ["3m", "5m_vs_6m", "5m_vs_3m", "2s3z", "3s5z", "1s4z_vs_2s2z"])
@pytest.mark.parametrize("flags", [SMACV1_LIKE_KWARGS, EXTRA_FLAGS], ids=["smacv1_like", "extras"])
def test_conversion_puts_every_value_in_its_smacv1_slot(name: str, flags: dict[str, Any]) -> None:
    layout = parse_map(name)
    idx = build_indices(layout, format_for(layout, flags))
    rng = np.random.default_rng(2)
    battles = [random_battle(layout, rng) for _ in range(4)]
    v2 = [smacv2_vectors(b, flags) for b in battles]
    v1 = [smacv1_vectors(b, layout) for b in battles]
    for (obs2, state2, avail2), (obs1, state1, avail1) in zip(v2, v1):
        np.testing.assert_allclose(convert_obs(obs2, idx), obs1, rtol=0, atol=1e-6)
        np.testing.assert_allclose(convert_state(state2, idx), state1, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(convert_avail(avail2, idx), avail1)
    # Batched input [N, n_agents, d] converts in one call.
    batched = convert_obs(np.stack([v[0] for v in v2]), idx)
    np.testing.assert_allclose(batched, np.stack([v[0] for v in v1]), rtol=0, atol=1e-6)
    # The filler of slots SMACv1 lacks never leaks through.
    assert not np.isin(convert_obs(np.stack([v[0] for v in v2]), idx), [PATHING, HEIGHT]).any()


def test_type_bits_follow_smacv1_quirk() -> None:
    """2s3z: smacv2 numbers stalker 0, zealot 1, colossus 2 on both sides; SMACv1 numbers allies
    (stalker, zealot) and enemies (zealot, stalker)."""
    layout = parse_map("2s3z")
    idx = build_indices(layout, format_for(layout, SMACV1_LIKE_KWARGS))
    b = random_battle(layout, np.random.default_rng(3), spread=0.5)  # everyone in sight
    b.ally_health[:], b.enemy_health[:] = 1.0, 1.0
    obs = convert_obs(smacv2_vectors(b, SMACV1_LIKE_KWARGS)[0], idx)
    nf_en, nf_al = layout.nf_en, layout.nf_al  # 8: ..., health, shield, bit 0, bit 1
    enemy = obs[0, 4:4 + 5 * nf_en].reshape(5, nf_en)
    np.testing.assert_array_equal(enemy[:, 6:], [[0, 1]] * 2 + [[1, 0]] * 3)  # s, s, z, z, z
    ally = obs[0, 4 + 5 * nf_en:-layout.own_dim].reshape(4, nf_al)
    np.testing.assert_array_equal(ally[:, 6:], [[1, 0]] + [[0, 1]] * 3)  # s, z, z, z
    np.testing.assert_array_equal(obs[0, -2:], [1, 0])  # agent 0 is a stalker
    np.testing.assert_array_equal(obs[4, -2:], [0, 1])  # agent 4 is a zealot


def test_action_ids() -> None:
    # With look actions, SMACv1's attack j is smacv2's 6 + 12 + j; moves keep their ids.
    layout = parse_map("3m")
    idx = build_indices(layout, format_for(layout, EXTRA_FLAGS))
    np.testing.assert_array_equal(convert_actions(np.array([[0, 1, 5], [6, 7, 8]]), idx),
                                  [[0, 1, 5], [18, 19, 20]])
    # Marines outnumbering the enemy: smacv2's target block is n_agents wide; SMACv1 keeps
    # only the enemies.
    layout = parse_map("5m_vs_3m")
    fmt = format_for(layout, SMACV1_LIKE_KWARGS)
    assert (fmt.n_actions, layout.n_actions) == (11, 9)
    idx = build_indices(layout, fmt)
    np.testing.assert_array_equal(idx.actions, np.arange(9))


# ---------------------------------------------------------------------- teams and routes
@pytest.mark.parametrize("name, smacv2_map, allies, enemies", [
    ("3m", "10gen_terran", ["marine"] * 3, ["marine"] * 3),
    ("5m_vs_6m", "10gen_terran", ["marine"] * 5, ["marine"] * 6),
    ("2s3z", "10gen_protoss", ["stalker"] * 2 + ["zealot"] * 3, ["stalker"] * 2 + ["zealot"] * 3),
    ("3s5z_vs_3s6z", "10gen_protoss", ["stalker"] * 3 + ["zealot"] * 5,
     ["stalker"] * 3 + ["zealot"] * 6),
])
def test_fixed_team_distribution(name: str, smacv2_map: str, allies: list[str],
                                 enemies: list[str]) -> None:
    layout = parse_map(name)
    assert route_for(layout).smacv2_map == smacv2_map
    config = capability_config(layout)
    assert (config["n_units"], config["n_enemies"]) == (len(allies), len(enemies))
    assert "start_positions" not in config  # smacv2's fixed spawn points
    team_gen = dict(config["team_gen"])
    assert team_gen["dist_type"] == TEAM_DISTRIBUTION_KEY and team_gen["observe"] is True
    # What smacv2's wrapper adds before building a distribution from its config.
    team_gen.update(env_key="team_gen", n_units=config["n_units"], n_enemies=config["n_enemies"])
    dist = FixedTeamsDistribution(team_gen)
    episode_config = dist.generate()
    assert episode_config == {"team_gen": {"ally_team": allies, "enemy_team": enemies, "id": 0}}
    episode_config["team_gen"]["ally_team"].clear()  # smacv2 must not alter later episodes
    assert dist.generate()["team_gen"]["ally_team"] == allies


def test_team_size_mismatch_and_start_positions() -> None:
    layout = parse_map("3m")
    team_gen = dict(capability_config(layout)["team_gen"], env_key="team_gen", n_units=4,
                    n_enemies=3)
    with pytest.raises(EnvError, match="n_units=4"):
        FixedTeamsDistribution(team_gen)
    assert capability_config(layout, "reflect")["start_positions"]["dist_type"] == \
        "reflect_position"
    assert capability_config(layout, "surrounded_and_reflect")["start_positions"] == {
        "dist_type": "surrounded_and_reflect", "p": 0.5, "map_x": 32, "map_y": 32}


# ---------------------------------------------------------------------- without smacv2
def test_backend_unavailable_message() -> None:
    for build in (lambda: SC2Env("3m"), lambda: envs.make("smac:3m", backend="sc2", num_envs=2)):
        with pytest.raises(BackendUnavailableError) as err:
            build()
        message = str(err.value)
        for part in ("pip install git+https://github.com/oxwhirl/smacv2.git", "marl[sc2]",
                     "protobuf<3.21", "jax", "SC2PATH", "4.10"):
            assert part in message
        assert isinstance(err.value, EnvError) and isinstance(err.value, ImportError)


def test_user_errors_come_before_the_import() -> None:
    with pytest.raises(EnvError, match="not understood") as err:
        SC2Env("3z_vs_3m")
    assert not isinstance(err.value, BackendUnavailableError)
    with pytest.raises(EnvError, match=r"unknown option.*enemy_attack_mode.*difficulty"):
        SC2Env("3m", enemy_attack_mode="closest")
    with pytest.raises(EnvError, match="difficulty"):
        SC2Env("3m", difficulty="hard")
    with pytest.raises(EnvError, match="start_positions"):
        SC2Env("3m", start_positions="random")


# ---------------------------------------------------------------------- a stand-in smacv2
class FakeStarCraft2Env:
    """Behaves like smacv2's StarCraft2Env as far as SC2Env can tell: vectors from
    ``smacv2_vectors``, an attack by anyone wins the battle (reward 20), time-outs set
    ``info["episode_limit"]`` because ``continuing_episode`` is on."""

    def __init__(self, map_name: str, capability_config: dict, seed: int, **kwargs: Any):
        self.kwargs, self.map_name, self.seed = kwargs, map_name, seed
        self.capability_config = capability_config
        self.episode_limit = 200
        self.rng = np.random.default_rng(seed)
        self.received: list[list[int]] = []

    def _battle(self, team: dict) -> Battle:
        lay = SmacLayout(map_name="fake", ally_types=tuple(team["ally_team"]),
                         enemy_types=tuple(team["enemy_team"]), ally_type_bits=(),
                         enemy_type_bits=(), shield_bits_ally=0, shield_bits_enemy=0)
        b = random_battle(lay, self.rng, spread=3.0)  # everyone within shooting range
        b.ally_health[:] = 1.0
        b.enemy_health[:] = 1.0
        b.last_actions[:] = 1
        return b

    def reset(self, episode_config: dict) -> None:
        self.team = episode_config["team_gen"]
        self.battle, self.steps = self._battle(self.team), 0

    def step(self, actions: list[int]) -> tuple[float, bool, dict]:
        avail = self.get_avail_actions()
        assert all(avail[i][a] for i, a in enumerate(actions)), "unavailable action"
        self.received.append(list(actions))
        self.steps += 1
        won = any(a >= 6 for a in actions)  # no look actions: 6+ are attacks
        self.battle.enemy_health[:] = 0.0 if won else 0.9
        self.battle.last_actions = np.asarray(actions)  # = SMACv1 ids without look actions
        if won:
            return 20.0, True, {"battle_won": True, "dead_allies": 0, "dead_enemies": 3}
        if self.steps >= self.episode_limit:
            return 0.0, True, {"battle_won": False, "episode_limit": True}
        return 0.0, False, {"battle_won": False}

    def get_obs(self) -> list[np.ndarray]:
        return list(smacv2_vectors(self.battle, self.kwargs)[0])

    def get_state(self) -> np.ndarray:
        return smacv2_vectors(self.battle, self.kwargs)[1]

    def get_avail_actions(self) -> list[list[int]]:
        return smacv2_vectors(self.battle, self.kwargs)[2].tolist()

    def close(self) -> None:
        pass


def install_fake_smacv2(monkeypatch: pytest.MonkeyPatch, tmp_path, *, sc2: bool = True,
                        maps: bool = True, extra_obs: int = 0) -> list[Any]:
    """Put a stand-in smacv2 package on sys.modules; return the list of wrappers it builds."""
    built: list[Any] = []
    registry: dict[str, type] = {}

    class Wrapper:  # smacv2.env.starcraft2.wrapper.StarCraftCapabilityEnvWrapper, trimmed
        def __init__(self, **kwargs: Any):
            self.distribution_config = kwargs["capability_config"]
            self.distributions = []
            for env_key, config in self.distribution_config.items():
                if env_key in ("n_units", "n_enemies"):
                    continue
                config.update(env_key=env_key, n_units=self.distribution_config["n_units"],
                              n_enemies=self.distribution_config["n_enemies"])
                self.distributions.append(registry[config["dist_type"]](config))
            self.env = FakeStarCraft2Env(**kwargs)
            built.append(self)

        def reset(self) -> None:
            reset_config: dict = {}
            for distribution in self.distributions:
                reset_config = {**reset_config, **distribution.generate()}
            self.env.reset(reset_config)

        def get_obs_size(self) -> int:
            team = self.distribution_config["team_gen"]
            self.env.reset({"team_gen": team})
            return len(self.env.get_obs()[0]) + extra_obs

        def get_state_size(self) -> int:
            return len(self.env.get_state())

        def get_total_actions(self) -> int:
            return len(self.env.get_avail_actions()[0])

        def __getattr__(self, name: str) -> Any:
            return getattr(self.env, name)

    def module(name: str, **attrs: Any) -> types.ModuleType:
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, mod)
        return mod

    module("smacv2")
    module("smacv2.env")
    module("smacv2.env.starcraft2")
    module("smacv2.env.starcraft2.distributions",
           register_distribution=lambda key, cls: registry.__setitem__(key, cls))
    module("smacv2.env.starcraft2.maps",
           get_map_params=lambda name: {"map_name": "32x32_flat", "unit_type_bits": 3})
    module("smacv2.env.starcraft2.wrapper", StarCraftCapabilityEnvWrapper=Wrapper)
    root = tmp_path / "StarCraftII"
    if sc2:
        (root / "Versions").mkdir(parents=True)
    if maps:
        (root / "Maps" / "SMAC_Maps").mkdir(parents=True)
        (root / "Maps" / "SMAC_Maps" / "32x32_flat.SC2Map").write_bytes(b"")
    monkeypatch.setenv("SC2PATH", str(root))
    return built


def test_sc2path_checks(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    install_fake_smacv2(monkeypatch, tmp_path, sc2=False, maps=False)
    with pytest.raises(BackendUnavailableError, match=r"SC2PATH=.*no Versions folder.*4\.10"):
        SC2Env("3m")
    (tmp_path / "StarCraftII" / "Versions").mkdir(parents=True)
    with pytest.raises(BackendUnavailableError, match=r"32x32_flat\.SC2Map.*missing"):
        SC2Env("3m")


def test_size_drift_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    install_fake_smacv2(monkeypatch, tmp_path, extra_obs=2)
    with pytest.raises(EnvError, match="sizes"):
        SC2Env("3m")


@pytest.mark.parametrize("name", ["3m", "2s3z"])
def test_sc2env_with_stand_in_smacv2(monkeypatch: pytest.MonkeyPatch, tmp_path, name: str) -> None:
    built = install_fake_smacv2(monkeypatch, tmp_path)
    env = SC2Env(name, num_envs=2, seed=10, episode_limit=3)
    layout = env.info.layout
    n_a = layout.n_agents
    assert (env.info.backend, env.info.obs_dim, env.info.state_dim) == (
        "sc2", layout.obs_dim, layout.state_dim)
    assert env.info.options["smacv2_map"] == route_for(layout).smacv2_map
    # Each copy: its own seed, SMAC-like flags, the fixed teams and the overridden limit.
    assert [w.env.seed for w in built] == [10, 11]
    assert all(w.env.episode_limit == 3 and w.env.kwargs["continuing_episode"] for w in built)
    assert built[0].env.team == {"ally_team": list(layout.ally_types),
                                 "enemy_team": list(layout.enemy_types), "id": 0}
    ts = env.reset()
    assert ts.obs.shape == (2, n_a, layout.obs_dim) and ts.state.shape == (2, layout.state_dim)
    expected = smacv1_vectors(built[1].env.battle, layout)
    np.testing.assert_allclose(ts.obs[1], expected[0], atol=1e-6)
    np.testing.assert_allclose(ts.state[1], expected[1], atol=1e-6)
    np.testing.assert_array_equal(ts.avail_actions[1], expected[2])

    # Copy 0 attacks (wins at once), copy 1 stops until its time limit.
    attack = np.full((2, n_a), 1)
    attack[0] = 6
    ts = env.step(attack)
    assert built[0].env.received[-1] == [6] * n_a  # no look actions: ids unchanged
    np.testing.assert_array_equal(ts.terminated, [True, False])
    np.testing.assert_array_equal(ts.truncated, [False, False])
    np.testing.assert_array_equal(ts.info["battle_won"], [True, False])
    np.testing.assert_array_equal(ts.reward, [20.0, 0.0])
    np.testing.assert_array_equal(ts.info["episode_return"], [20.0, 0.0])
    # Final obs: the battle that ended (no enemy alive); obs: the new episode (enemies back).
    enemies = slice(4, 4 + layout.n_enemies * layout.nf_en)
    assert not ts.info["final_obs"][0, :, enemies].any()
    assert ts.obs[0, 0, enemies].any()
    np.testing.assert_array_equal(ts.info["final_obs"][1], ts.obs[1])
    last_action_block = ts.info["final_state"][0, -n_a * layout.n_actions:]
    np.testing.assert_array_equal(last_action_block.reshape(n_a, -1).argmax(-1), 6)

    stop = np.ones((2, n_a), np.int64)
    for _ in range(2):
        ts = env.step(stop)
    np.testing.assert_array_equal(ts.truncated, [False, True])
    np.testing.assert_array_equal(ts.terminated, [False, False])
    np.testing.assert_array_equal(ts.info["episode_length"], [2, 3])
    with pytest.raises(EnvError, match="unavailable action 0"):
        env.step(np.zeros((2, n_a), np.int64))  # no-op is for dead agents only
    env.close()
