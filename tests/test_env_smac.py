"""SMAC on the embedded SMAX simulator: SMAC's sizes, limits, rewards and a real game."""

import numpy as np
import pytest

import envs
from envs import EnvError
from envs.core import random_actions
from envs.smac import EPISODE_LIMITS, focus_fire_actions, focus_fire_win_rate, parse_map
from envs.tasksets import load_taskset


@pytest.mark.parametrize("map_name, obs_dim, state_dim, n_actions", [
    ("3m", 30, 48, 9), ("5m_vs_6m", 55, 98, 12), ("2s3z", 80, 120, 11), ("3s5z", 128, 216, 14),
])
def test_layout_sizes_equal_smac(map_name, obs_dim, state_dim, n_actions):
    # SMAC's own sizes (ODIS data: 3m obs 30, state 48 = 12 + 9 + 27 last actions).
    lay = parse_map(map_name)
    assert (lay.obs_dim, lay.state_dim, lay.n_actions) == (obs_dim, state_dim, n_actions)


def test_every_taskset_map_parses_with_smac_episode_limits():
    for name in ("marine-easy", "marine-hard", "stalker-zealot"):
        ts = load_taskset(name)
        for task in ts.train_tasks + ts.test_tasks:
            lay = parse_map(task.split(":")[1])
            assert lay.episode_limit == EPISODE_LIMITS[lay.map_name]
    assert parse_map("13m_vs_15m").episode_limit == 160
    assert parse_map("4s6z").episode_limit == 170


def test_general_names_and_type_bits():
    lay = parse_map("3s5z_vs_3s6z")
    assert (lay.n_agents, lay.n_enemies) == (8, 9)
    assert lay.ally_types[:3] == ("stalker",) * 3 and lay.enemy_types[-6:] == ("zealot",) * 6
    # SMAC's quirk: allies number types from the smallest unit id, enemies by SC2 id.
    assert lay.ally_type_bits == ("stalker", "zealot")
    assert lay.enemy_type_bits == ("zealot", "stalker")
    assert parse_map("20m_vs_24m").episode_limit == 200  # outside the table: grows with size
    assert parse_map("1m").n_agents == 1


@pytest.mark.parametrize("bad", ["3x", "m3", "3m_vs_", "2s3z_vs_3m", "0m", "3m_vs_40m", "", "3M"])
def test_bad_map_names_are_rejected_with_the_grammar(bad):
    with pytest.raises(EnvError, match="accepted|1..32|family:map"):
        envs.make(f"smac:{bad}")


def test_bad_backend_and_option():
    with pytest.raises(EnvError, match="available: \\['sc2', 'smax'\\]"):
        envs.make("smac:3m", backend="starcraft")
    with pytest.raises(EnvError, match="enemy_attack_mode"):
        envs.make("smac:3m", enemy_attack_mode="weakest")
    with pytest.raises(EnvError, match="unknown option"):
        envs.make("smac:3m", difficulty=7)
    with pytest.raises(EnvError, match="num_envs"):
        envs.make("smac:3m", num_envs=0)


@pytest.fixture(scope="module")
def env3m():
    return envs.make("smac:3m", num_envs=64, seed=0)


def test_unavailable_and_malformed_actions_name_the_culprit(env3m):
    ts = env3m.reset(seed=0)
    actions = random_actions(ts.avail_actions, np.random.default_rng(0))
    actions[5, 2] = 6  # attack enemy 0: out of range at the start of a battle
    with pytest.raises(EnvError, match=r"env 5 agent 2 chose unavailable action 6; available actions are \[1, 2, 3, 4, 5\]"):
        env3m.step(actions)
    with pytest.raises(EnvError, match="shape"):
        env3m.step(actions[:, :2])
    with pytest.raises(EnvError, match="outside 0..8"):
        env3m.step(np.full((64, 3), 9))


def test_initial_avail_and_dead_agents(env3m):
    ts = env3m.reset(seed=0)
    # alive at the start: stop and all four moves, no no-op, enemies out of range
    assert (ts.avail_actions[..., :6] == [False, True, True, True, True, True]).all()
    assert not ts.avail_actions[..., 6:].any()
    assert (ts.state[:, -27:] == 0).all()  # no last actions yet
    rng = np.random.default_rng(1)
    for _ in range(40):
        ts = env3m.step(random_actions(ts.avail_actions, rng))
        final = ts.info["final_obs"]
        dead = ~final.any(-1)  # SMAC zeroes a dead agent's whole observation
        avail = ts.info["final_avail_actions"]
        assert (avail[dead][:, 0]).all() and not avail[dead][:, 1:].any()  # only no-op
        assert not avail[~dead][:, 0].any()


def test_focus_fire_beats_random_on_3m(env3m):
    """The game is real: a scripted focus-fire policy wins clearly more than random play."""
    results = {}
    for name in ("focus", "random"):
        rng = np.random.default_rng(0)
        ts = env3m.reset(seed=3)
        wins, returns = [], []
        while len(wins) < 128:
            if name == "focus":
                actions = focus_fire_actions(ts.obs, ts.avail_actions, env3m.info.layout)
            else:
                actions = random_actions(ts.avail_actions, rng)
            ts = env3m.step(actions)
            wins += ts.info["battle_won"][ts.done].tolist()
            returns += ts.info["episode_return"][ts.done].tolist()
        results[name] = (np.mean(wins), np.array(returns), np.array(wins))
    focus_win, focus_ret, focus_won = results["focus"]
    random_win, random_ret, _ = results["random"]
    assert focus_win > 0.4 and random_win < 0.1 and focus_win > random_win + 0.3
    # SMAC's reward scale: a won battle returns exactly 20, a lost one less
    np.testing.assert_allclose(focus_ret[focus_won], 20.0, rtol=1e-5)
    assert (focus_ret[~focus_won] < 20.0).all() and (random_ret >= 0).all()


def test_enemy_reaction_delay_weakens_the_opponent():
    """enemy_reaction < 1 makes the enemies repeat stale actions: on 5m_vs_6m scripted focus
    fire goes from hopeless (0 % of 256 battles measured) to clearly winnable (76 % at 0.5)."""
    from jaxmarl.environments.smax import HeuristicEnemySMAX

    default = envs.make("smac:5m_vs_6m", num_envs=64, seed=1)
    delayed = envs.make("smac:5m_vs_6m", num_envs=64, seed=1, enemy_reaction=0.5)
    assert type(default._program.sim) is HeuristicEnemySMAX  # 1: SMAX's opponent, untouched
    assert default.info.options["enemy_reaction"] == 1.0
    assert delayed.info.options["enemy_reaction"] == 0.5
    assert focus_fire_win_rate(default, seed=1) < 0.1
    assert focus_fire_win_rate(delayed, seed=1) > 0.4


def _enemy_targets(attack_mode: str, last_target: list[int]) -> list[int]:
    """The allies (index) the enemies of a hand-built 3m battle shoot: every marine of each team
    in reach of every enemy, ally 0 closest to all of them; ``last_target`` is each enemy's
    remembered target (-1: none). SMAX lists the allies to an enemy in reverse, so its attack m
    and its memory m mean ally 2 - m."""
    import jax
    import jax.numpy as jnp

    env = envs.make("smac:3m", num_envs=1, seed=0, enemy_attack_mode=attack_mode)
    sim = env._program.sim
    world = jax.tree.map(lambda x: x[0], env._carry[0].state)
    positions = jnp.array([[16.0, 16.0], [15.0, 15.0], [17.0, 15.0],
                           [15.5, 18.0], [16.0, 18.0], [16.5, 18.0]])
    world = world.replace(unit_positions=positions)
    obs = sim._env.get_obs_unit_list(world)
    enemy_obs = jnp.stack([obs[agent] for agent in sim.enemy_agents])
    state = sim.get_enemy_policy_initial_state(jax.random.PRNGKey(0))
    scripted = isinstance(state, tuple)  # ours: (heuristic memory, previous actions)
    memory = (state[0] if scripted else state).replace(
        last_attacked_enemy=jnp.array([-1 if t < 0 else 2 - t for t in last_target]))
    actions, new_memory = sim.get_enemy_actions(
        jax.random.PRNGKey(1), (memory, state[1]) if scripted else memory, enemy_obs)
    new_memory = new_memory[0] if scripted else new_memory
    n_move = sim._env.num_movement_actions
    targets = [2 - (int(actions[agent]) - n_move) for agent in sim.enemy_agents]
    assert [2 - int(m) for m in np.asarray(new_memory.last_attacked_enemy)] == targets
    return targets


def test_spreading_enemy_shares_its_fire_out_over_the_team():
    """enemy_attack_mode="spread": enemies needing a target take the ally fewest of them are
    already shooting, then the closest; a target still in reach is kept. SMAX's "closest" puts
    every new target on the closest marine."""
    assert _enemy_targets("closest", [-1, -1, -1]) == [0, 0, 0]
    assert sorted(_enemy_targets("spread", [-1, -1, -1])) == [0, 1, 2]
    assert _enemy_targets("spread", [-1, -1, -1])[0] == 0  # the first to choose: the closest
    # enemy 2 keeps ally 0, so the others spread over the two marines nobody shoots
    kept = _enemy_targets("spread", [-1, -1, 0])
    assert kept[2] == 0 and sorted(kept[:2]) == [1, 2]
    # two enemies already on ally 1: the third takes the closest free marine, ally 0
    assert _enemy_targets("spread", [1, 1, -1]) == [1, 1, 0]
    with pytest.raises(EnvError, match="enemy_attack_mode"):
        envs.make("smac:3m", enemy_attack_mode="focus")


def test_spread_targets_count_what_the_team_already_shoots():
    """``spread_targets`` on hand-built reach: a held target (kept, or an attack repeated by an
    enemy that does not react) counts, one out of reach does not, and an ally beyond reach is
    never chosen, however free it is."""
    import jax.numpy as jnp

    from envs.smax import spread_targets

    in_reach = jnp.array([[True, True, False], [True, True, False], [True, True, False],
                          [False, True, True]])
    distance = jnp.array([[1.0, 2.0, 9.0], [1.0, 2.0, 9.0], [1.0, 2.0, 9.0], [9.0, 3.0, 1.0]])
    # enemy 0 holds ally 0; enemy 1 needs a target: the free ally 1, though ally 0 is closer
    held, choose = jnp.array([0, -1, -1, -1]), jnp.array([False, True, False, False])
    assert int(spread_targets(in_reach, distance, held, choose)[1]) == 1
    # a held target out of reach (stale) counts nothing: enemy 1 takes the closest, ally 0
    held = jnp.array([2, -1, -1, -1])
    assert int(spread_targets(in_reach, distance, held, choose)[1]) == 0
    # allies 0 and 1 each held once: enemy 2 may not take the free ally 2 (beyond its reach)
    held, choose = jnp.array([0, 1, -1, -1]), jnp.array([False, False, True, True])
    out = spread_targets(in_reach, distance, held, choose)
    assert int(out[2]) == 0 and int(out[3]) == 2  # enemy 3 reaches ally 2, which nobody shoots


@pytest.mark.parametrize("reaction", [1.0, 0.8])
def test_spreading_enemy_plays_compiled_battles(reaction):
    """The spreading opponent runs inside the compiled step, alone and under the reaction
    delay, and scripted focus fire still wins some battles of 3m against it and loses some."""
    env = envs.make("smac:3m", num_envs=64, seed=3, enemy_attack_mode="spread",
                    enemy_reaction=reaction)
    assert env.info.options["enemy_attack_mode"] == "spread"
    assert 0.0 < focus_fire_win_rate(env, seed=3) < 1.0


def test_sc2_calibration_moves_and_shoots_at_starcraft_speed():
    """calibration="sc2-4.10": a step is 8 game loops at 22.4 per second, so a marine moving
    north covers 3.15 * 8 / 22.4 = 1.125 map units (SMAX's own: 3.15 * 8 / 16 = 1.575), and a
    hit takes 6 of a marine's 45 hit points (SMAX's own: 9)."""
    north = np.full((8, 4), 2)
    moved = {}
    for calibration in ("smax", "sc2-4.10"):  # 4m: random starts, no formation to push apart
        env = envs.make("smac:4m", num_envs=8, seed=0, calibration=calibration)
        env.reset(0)
        before = env.unit_snapshot()["positions"][:, :4]
        env.step(north)
        after = env.unit_snapshot()["positions"][:, :4]
        moved[calibration] = np.linalg.norm(after - before, axis=-1)
        hits = np.asarray(env._program.sim._env.unit_type_attacks)[0]
        assert hits == {"smax": 9.0, "sc2-4.10": 6.0}[calibration]
    np.testing.assert_allclose(moved["smax"], 1.575, atol=1e-4)
    np.testing.assert_allclose(moved["sc2-4.10"], 1.125, atol=1e-4)
    assert env.info.options["calibration"] == "sc2-4.10"
    assert "calibration" not in envs.make("smac:3m").info.options  # SMAX's own: not recorded


def test_sc2_calibration_starts_3m_in_starcraft_iis_formation():
    """3m's allies start in the three cells ODIS's StarCraft II file shows, 14 units from the
    enemies' (shuffled among their three cells) on a 28-wide arena; SMAX's own start is random."""
    from envs.smax import SC2_STARTS

    env = envs.make("smac:3m", num_envs=64, seed=0, calibration="sc2-4.10")
    units = env.unit_snapshot()["positions"].astype(np.float64) - 14.0
    allies, enemies = SC2_STARTS["3m"]
    np.testing.assert_allclose(units[:, :3], np.broadcast_to(allies, (64, 3, 2)), atol=1e-5)
    cells = {tuple(np.round(e, 2)) for e in enemies}
    assert all({tuple(np.round(u, 2)) for u in battle[3:]} == cells for battle in units)
    assert len({tuple(np.round(b[3:], 2).ravel()) for b in units}) > 1  # shuffled
    # the state divides offsets from the centre by the arena's width, as SMAC does
    state = env.reset(0).state
    np.testing.assert_allclose(state[0, 2:4], np.array(allies[0]) / 28.0, atol=1e-5)
    smax = envs.make("smac:3m", num_envs=64, seed=0).unit_snapshot()["positions"][:, :3]
    assert np.abs(smax - smax[:1]).max() > 0.5  # SMAX's own starts vary


def test_calibration_refuses_what_it_does_not_cover():
    import inspect

    from jaxmarl.environments.smax import SMAX

    from envs.smax import calibration_kwargs

    defaults = {k: p.default for k, p in inspect.signature(SMAX.__init__).parameters.items()}
    with pytest.raises(EnvError, match=r"covers unit types \['marine', 'stalker', 'zealot'\], "
                                       r"not \['hydralisk'\]"):
        calibration_kwargs("sc2-4.10", ("marine", "hydralisk"), defaults)
    with pytest.raises(EnvError, match="calibration='sc2'; accepted"):
        envs.make("smac:3m", calibration="sc2")


def test_sc2_calibration_of_stalkers_and_zealots():
    """2s3z under "sc2-4.10": Legacy of the Void's statistics at the "faster" speed (stalker
    cooldown 1.34 s where SMAX keeps the "normal" speed's 1.87, a zealot's two blows of 8 as one
    attack of 16), and StarCraft II's edge-to-edge reach made centre to centre with the
    attacker's radius and the mean radius of the map's units."""
    env = envs.make("smac:2s3z", num_envs=4, seed=0, calibration="sc2-4.10")
    sim = env._program.sim._env
    stalker, zealot = 2, 3  # SMAX's type ids
    mean_radius = (2 * 0.625 + 3 * 0.5) / 5
    np.testing.assert_allclose(np.asarray(sim.unit_type_weapon_cooldowns)[[stalker, zealot]],
                               [1.34, 0.86])
    np.testing.assert_allclose(np.asarray(sim.unit_type_attacks)[[stalker, zealot]], [13, 16])
    np.testing.assert_allclose(np.asarray(sim.unit_type_health)[[stalker, zealot]], [160, 150])
    np.testing.assert_allclose(np.asarray(sim.unit_type_velocities)[[stalker, zealot]],
                               [4.13, 3.15])
    np.testing.assert_allclose(np.asarray(sim.unit_type_attack_ranges)[[stalker, zealot]],
                               [6 + 0.625 + mean_radius, 0.1 + 0.5 + mean_radius], rtol=1e-6)
    # SMAC's availability range for every unit, zealots included
    np.testing.assert_allclose(np.asarray(env._program.attack_range), 6.0)
    ts = env.reset(0)
    assert ts.obs.shape == (4, 5, env.info.obs_dim) and np.isfinite(ts.obs).all()


def test_sc2_calibration_walks_an_attacker_into_reach():
    """StarCraft II's attack order: a zealot ordered to attack an enemy 4 units away (available:
    SMAC's shoot range is 6) steps towards it instead of standing still, and once within reach
    deals its damage. SMAX's own mode keeps a 2-unit availability range and no walking."""
    env = envs.make("smac:1s1z", num_envs=1, seed=0, calibration="sc2-4.10")
    prog = env._program
    sim_state = env._carry[0]
    world = sim_state.state
    pos = np.array([[10.0, 14.0], [8.0, 8.0], [14.0, 14.0], [20.0, 20.0]], np.float32)
    world = world.replace(unit_positions=np.asarray(pos))
    walk = prog._walk_to_attack(world, np.array([0, 7], np.int32), np.array([4, 6], np.int32))
    # the zealot (agent 1, at (8, 8)) attacks enemy 1 (a zealot at (20, 20)), far beyond reach:
    # it steps along its longer axis, here a tie broken east; the stalker's no-op is untouched
    assert walk.tolist() == [4, 1]
    far_north = world.replace(unit_positions=np.asarray(
        np.array([[10.0, 14.0], [8.0, 8.0], [14.0, 14.0], [9.0, 20.0]], np.float32)))
    assert prog._walk_to_attack(far_north, np.array([0, 7], np.int32), np.array([4, 6], np.int32)).tolist() == [4, 0]
    near = world.replace(unit_positions=np.asarray(
        np.array([[10.0, 14.0], [8.0, 8.0], [14.0, 14.0], [8.9, 8.0]], np.float32)))
    assert prog._walk_to_attack(near, np.array([0, 7], np.int32), np.array([4, 6], np.int32)).tolist() == [4, 6]
    smax = envs.make("smac:1s1z", num_envs=1, seed=0)
    assert not smax._program.walk_to_attack
    np.testing.assert_allclose(np.asarray(smax._program.attack_range), [6.0, 2.0])


def test_calibration_counts_the_enemies_shots_from_hit_points():
    """``experiments/sc2_calibration.py`` reads how the enemies fire from the allies' hit points:
    two shots on one marine are focus fire, on two marines spread fire; a killing shot that takes
    less than 6 counts as one; uniformly random targets among three live marines would put two
    shots on two of them with probability 2/3."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "experiments" / "sc2_calibration.py"
    spec = importlib.util.spec_from_file_location("sc2_calibration", path)
    calibration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(calibration)
    shot = 6.0 / 45.0

    def state(health):  # SMAC's 3m state: (health, cooldown, x, y) per ally, then the rest
        s = np.zeros(48, np.float32)
        s[0:12:4] = health
        return s

    last = 3.0 / 45.0
    start = [last + 2 * shot, 1.0, 1.0]
    focus = [last, 1.0, 1.0]                   # two shots on marine 0
    spread = [last, 1.0 - shot, 1.0 - shot]    # one shot on each of marines 1 and 2
    kill = [0.0, 1.0 - shot, 1.0 - shot]       # marine 0's last 3 hit points: one shot
    states = np.stack([state(h) for h in (start, focus, spread, kill)])[None]
    valid = np.ones((1, 4), bool)
    out = calibration.shots_landed(states, valid, shot)
    # hit steps: 2 shots on one, 2 shots on two, 1 (partial) shot: several shots on 2 of 3
    assert out["several_shots"] == pytest.approx(2 / 3)
    assert out["steps_with_several"] == 2
    assert out["spread_given_several"] == pytest.approx(0.5)
    assert out["spread_if_uniform"] == pytest.approx(2 / 3)
    # the last step is not a transition: nothing is counted across it
    assert calibration.shots_landed(states, np.array([[True, True, True, False]]), shot)[
        "steps_with_several"] == 2


@pytest.mark.parametrize("bad", [0, 0.0, -0.5, 1.5, "fast", None])
def test_bad_enemy_reaction_is_rejected(bad):
    with pytest.raises(EnvError, match="enemy_reaction"):
        envs.make("smac:3m", enemy_reaction=bad)


def test_option_defaults_come_from_the_backend():
    assert envs.option_defaults("smac:3m") == {
        "enemy_attack_mode": "closest", "enemy_reaction": 1.0, "episode_limit": None,
        "calibration": "smax"}
    assert set(envs.option_defaults("smac:3m", "sc2")) >= {"difficulty", "episode_limit"}
    with pytest.raises(EnvError, match="backend"):
        envs.option_defaults("smac:3m", "sc3")


def test_episode_limit_truncates_and_auto_resets():
    env = envs.make("smac:3m", num_envs=4, seed=0, episode_limit=5)
    ts = env.reset()
    stop = np.ones((4, 3), int)  # enemies start ~16 units away and cannot engage in 5 steps
    for step in range(1, 6):
        ts = env.step(stop)
        assert ts.done.any() == (step == 5)
    assert ts.truncated.all() and not ts.terminated.any()
    assert (ts.info["episode_length"] == 5).all() and not ts.info["battle_won"].any()
    # auto-reset: returned vectors are a fresh battle's, final ones the finished battle's
    assert (ts.state[:, -27:] == 0).all() and (ts.info["final_state"][:, -27:] != 0).any()
    ts = env.step(stop)
    assert not ts.done.any()


def test_same_seed_same_battles_different_seed_differs():
    def rollout(seed):
        env = envs.make("smac:2s3z", num_envs=3, seed=seed)
        ts, rng, obs = env.reset(), np.random.default_rng(0), []
        for _ in range(15):
            ts = env.step(random_actions(ts.avail_actions, rng))
            obs.append(ts.obs)
        return np.stack(obs)

    a, b, c = rollout(7), rollout(7), rollout(8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_shields_fill_on_protoss_maps():
    env = envs.make("smac:2s3z", num_envs=2, seed=0)
    ts = env.reset()
    lay = env.info.layout
    own = ts.obs[..., -lay.own_dim:]
    np.testing.assert_allclose(own[..., :2], 1.0)  # full health and full shield
    # own type bits: the 2 stalkers first (bit 0), then 3 zealots (bit 1)
    np.testing.assert_array_equal(own[0, :, 2:], [[1, 0], [1, 0], [0, 1], [0, 1], [0, 1]])


def test_step_compiles_once_per_map_and_batch_size():
    """Reset and step hand the step function identical types: no recompilation on the second
    call (SMAX's own reset/step pair recompiles), nor after a reset or a new env object."""
    env = envs.make("smac:4m", num_envs=2, seed=0)
    rng = np.random.default_rng(0)
    ts = env.step(random_actions(env.reset().avail_actions, rng))
    compiled = env._program.step._cache_size()
    for _ in range(3):
        ts = env.step(random_actions(ts.avail_actions, rng))
    ts = env.reset(seed=1)
    again = envs.make("smac:4m", num_envs=2, seed=5)
    again.step(random_actions(again.reset().avail_actions, rng))
    env.step(random_actions(ts.avail_actions, rng))
    assert env._program is again._program and env._program.step._cache_size() == compiled


def test_every_taskset_map_builds_and_plays():
    """All 30 maps of marine-easy, marine-hard and stalker-zealot build on SMAX with their task
    set's options and play a few steps of focus fire in SMAC's layout."""
    runs = sorted({(t.split(":")[1], tuple(sorted(ts.env_options.items())))
                   for ts in map(load_taskset, ("marine-easy", "marine-hard", "stalker-zealot"))
                   for t in ts.test_tasks})
    assert len({m for m, _ in runs}) == 30
    for map_name, options in runs:
        env = envs.make(f"smac:{map_name}", num_envs=2, seed=0, **dict(options))
        lay = env.info.layout
        ts = env.reset()
        for _ in range(3):
            ts = env.step(focus_fire_actions(ts.obs, ts.avail_actions, lay))
        assert ts.obs.shape == (2, lay.n_agents, lay.obs_dim), map_name
        assert ts.avail_actions.shape == (2, lay.n_agents, 6 + lay.n_enemies), map_name
        assert env.info.episode_limit == EPISODE_LIMITS[map_name]
