"""SMAC on the embedded SMAX simulator (jaxmarl 0.2.0 ``HeuristicEnemySMAX``).

One jit-compiled, vmapped function steps every copy of a map, converts SMAX's world into SMAC's
vectors (``envs.smac`` layout), computes SMAC's reward and resets finished copies, so each
``step`` is a single XLA call. Compiled programs are cached per map in the process and on disk
(JAX's persistent compilation cache, ``$MARL_JAX_CACHE`` or ``~/.cache/marl/jax``).

Where SMAX differs from StarCraft II and what this adapter does about it:

* Units: SMAX pools hit points and shields (stalker 160 = 80 + 80, zealot 150 = 100 + 50). The
  adapter splits them back, shields absorbing damage first, so the shield slot is filled as in
  SC2 (shields do not regenerate in SMAX).
* Walls: SMAX kills units that touch the map edge by default; SMAC's walls only block. We run
  with ``walls_cause_death=False`` (SMAX then clamps positions) and, as SMAC does, mark a move
  unavailable when the point one unit ahead is off the map.
* Team composition is passed as a fixed unit list per map, which avoids SMAX's SMACv2-style
  unit-type generator and its bug (extra enemies always marines).
* Ranges: visibility uses each unit type's SMAX sight range and attack availability its SMAX
  attack range (SMACv1 uses 9 and 6 for every unit); distances are normalised by the observer's
  sight range as in SMAC.
* Opponent: SMAX's scripted heuristic, with ``enemy_attack_mode`` "closest" (default, JaxMARL's
  setting), "random" or "spread" (new targets chosen for the team, to the least-shot ally, as
  StarCraft II's AI spreads its fire), and ``enemy_reaction``: the probability that an enemy unit takes a fresh
  decision on a step (1, the default, is SMAX's heuristic as it is: it re-decides every step with
  full information; below 1 a unit otherwise repeats its last action, a reaction delay of
  1 / p steps on average, as StarCraft II's built-in AI does not respond instantly). Both are
  recorded in ``env.info.options``.
* Time and unit statistics: ``calibration="smax"`` (the default) is SMAX's own: an env step is
  8 world steps of 1/16 s, and a marine deals 9 damage. ``calibration="sc2-4.10"``
  (``CALIBRATIONS``) makes a step SMAC's: 8 game loops at StarCraft II's "faster" speed, 22.4
  loops per second (so 0.357 s, the time base of the unit statistics below), with the Legacy of
  the Void statistics of marines, stalkers and zealots (the marine's
  damage 6, cooldown 0.61 s, range 5 edge to edge, speed 3.15, 45 hit points), SMAC's attack
  availability range (6) with StarCraft II's walk-into-range attack order, a 28-wide arena
  (``ARENA``) and, on 3m, StarCraft II's start formation (``SC2_STARTS``).
  docs/environments.md lists every number and its source.
* Reward: SMAC's ``reward_only_positive`` convention (damage dealt + 10 per kill + 200 for a win,
  scaled so that a won battle returns exactly 20). A win needs every enemy dead and an ally alive.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from typing import Any

import numpy as np

from envs.core import BatchedEnv, EnvError, TimeStep, check_num_envs
from envs.smac import MAX_SHIELD, N_ACTIONS_NO_ATTACK, SmacLayout, parse_map, smac_env_info

# SMAX unit type ids (jaxmarl smax_env.SMAX.unit_type_names order)
SMAX_TYPE_ID = {"marine": 0, "marauder": 1, "stalker": 2, "zealot": 3, "zergling": 4,
                "hydralisk": 5}
MAP_SIZE = 32.0  # SMAX's default arena, 32 x 32 like SMAC's marine maps
MOVE_LOOKAHEAD = 1.0  # SMAC's can_move looks half a 2-unit move ahead
REWARD_DEATH_VALUE, REWARD_WIN, REWARD_SCALE_RATE = 10.0, 200.0, 20.0
# SMAC action -> SMAX action: 0 no-op/1 stop -> 4 stop; N, S, E, W -> 0, 2, 1, 3; attack j -> 5+j
_SMAC_TO_SMAX_MOVES = np.array([4, 4, 0, 2, 1, 3], dtype=np.int32)
SMAX_STOP = 4
# SMAC move feature order (north, south, east, west) as unit vectors
_MOVE_DIRECTIONS = np.array([[0, 1], [0, -1], [1, 0], [-1, 0]], dtype=np.float32)
# how the scripted enemy picks a new target among the allies in its reach (it keeps a target
# while it stays in reach): SMAX's "closest" and "random", or "spread" (ours): the ally fewest
# enemies are already shooting, then the closest, decided for the team at once
ENEMY_ATTACK_MODES = ("closest", "random", "spread")
# the arena's side per calibration: SMAX's 32, or 3m's playable width in StarCraft II, 28,
# which SMAC's state divides positions by (starcraft2.py: max_distance_x); 28 is what ODIS's 3m
# file shows (a marine's step, 1.125 map units, spans 1.286 / 32 of it) and places the teams
# 14 apart, as in the file (docs/datasets.md)
ARENA = {"smax": MAP_SIZE, "sc2-4.10": 28.0}
# StarCraft II's start formations (offsets from the arena's centre, allies then enemies), read
# from ODIS's 3m file: the same three cells every battle, the enemies shuffled among theirs.
# With "sc2-4.10" a map listed here starts in its formation; others keep SMAX's random start.
SC2_STARTS = {"3m": (((-7.0, -0.69), (-7.0, 0.0), (-6.31, 0.0)),
                     ((6.86, -0.69), (7.55, 0.0), (6.86, 0.0)))}
# calibration -> (seconds per world step, {unit type: {statistic: value}}); a step is 8 world
# steps. "sc2-4.10": SMAC's 8 game loops at "faster" speed (22.4 loops per second), and the
# Legacy of the Void statistics, at that speed, of the unit types of SMAC's marine and
# stalker-zealot maps: Liquipedia's unit
# pages, the same figures as smaclite's unit files (uoe-agents/smaclite, units/*.json). Shields
# are pooled into health, as SMAX does (hit points + shields). "attack" is one attack's damage
# (a zealot's two blows of 8 are one attack of 16); armour and bonus damage are not modelled,
# SMAX having one damage per attacker. "reach": StarCraft II's weapon range, edge to edge (melee
# 0.1). docs/datasets.md measures the match of the marine against ODIS's StarCraft II 3m file;
# the other types are as documented, with no recorded data here to check them against.
_SC2_LOTV_FASTER = {
    "marine": {"health": 45.0, "attack": 6.0, "weapon_cooldown": 0.61, "reach": 5.0,
               "sight_range": 9.0, "velocity": 3.15},
    "stalker": {"health": 160.0, "attack": 13.0, "weapon_cooldown": 1.34, "reach": 6.0,
                "sight_range": 10.0, "velocity": 4.13},
    "zealot": {"health": 150.0, "attack": 16.0, "weapon_cooldown": 0.86, "reach": 0.1,
               "sight_range": 9.0, "velocity": 3.15},
}
CALIBRATIONS: dict[str, tuple[float, dict[str, dict[str, float]]]] = {
    "smax": (1.0 / 16, {}),
    "sc2-4.10": (1.0 / 22.4, _SC2_LOTV_FASTER),
}
# Where SMAC makes an attack available and flags an enemy attackable: 6 for every unit
# (SMACv1's unit_shoot_range). With a calibration, an attack ordered on an enemy beyond the
# attacker's reach walks the attacker towards it, as StarCraft II's attack order does.
SMAC_SHOOT_RANGE = 6.0
OPTIONS = {
    "enemy_attack_mode": f"one of {ENEMY_ATTACK_MODES}: how the scripted enemy picks targets",
    "enemy_reaction": "float in (0, 1]: probability that an enemy unit re-decides on a step",
    "episode_limit": "positive int overriding SMAC's per-map limit",
    "calibration": f"one of {tuple(CALIBRATIONS)}: SMAX's own time step and unit statistics, "
                   "or StarCraft II's as SMAC runs it",
}


def calibration_kwargs(calibration: str, unit_types: tuple[str, ...], defaults: dict) -> dict:
    """SMAX constructor arguments of a calibration for a map whose units (allies then enemies)
    are ``unit_types``: the time per world step and the per-type statistic arrays (SMAX's own
    where the calibration does not set them: ``defaults``, SMAX's constructor defaults).
    SMAX's attack range is centre to centre and one number per attacker type, so a type's
    StarCraft II reach becomes reach + its radius + the mean radius of the map's units (exact
    on one-type maps such as the marines'; within 0.08 of every pair on stalker-zealot maps).
    EnvError naming the unit types a calibration does not cover."""
    import jax.numpy as jnp

    if calibration not in CALIBRATIONS:
        raise EnvError(f"smac/smax: calibration={calibration!r}; accepted: {tuple(CALIBRATIONS)}")
    time_per_step, stats = CALIBRATIONS[calibration]
    if calibration == "smax":
        return {}
    uncovered = sorted(set(unit_types) - set(stats))
    if uncovered:
        raise EnvError(f"smac/smax: calibration {calibration!r} covers unit types "
                       f"{sorted(stats)}, not {uncovered} on this map")
    radius = np.asarray(defaults["unit_type_radiuses"], np.float32)
    mean_radius = float(np.mean([radius[SMAX_TYPE_ID[t]] for t in unit_types]))
    out = {"time_per_step": time_per_step}
    attrs = {"attack": "unit_type_attacks", "weapon_cooldown": "unit_type_weapon_cooldowns",
             "reach": "unit_type_attack_ranges", "sight_range": "unit_type_sight_ranges",
             "velocity": "unit_type_velocities", "health": "unit_type_health"}
    for name, attr in attrs.items():
        values = np.asarray(defaults[attr], np.float32).copy()
        for unit, unit_stats in stats.items():
            values[SMAX_TYPE_ID[unit]] = unit_stats[name]
            if name == "reach":
                values[SMAX_TYPE_ID[unit]] += radius[SMAX_TYPE_ID[unit]] + mean_radius
        out[attr] = jnp.asarray(values)
    return out


def _enable_persistent_cache() -> None:
    import jax

    cache_dir = os.environ.get("MARL_JAX_CACHE", os.path.expanduser("~/.cache/marl/jax"))
    os.makedirs(cache_dir, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", cache_dir)
    # SMAX programs compile in seconds: cache all of them, however small or quick.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@contextlib.contextmanager
def _quiet_stdout():
    """Silence file descriptor 1 for the block. ``contextlib.redirect_stdout`` is not enough
    for jaxmarl's import: something it imports rebinds ``sys.stdout`` and ``sys.stderr`` to the
    process's streams, so both are put back afterwards (a caller capturing them keeps them)."""
    sys.stdout.flush()
    saved, streams = os.dup(1), (sys.stdout, sys.stderr)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        sys.stdout, sys.stderr = streams


class _SmaxProgram:
    """The jitted reset/step of one (map, opponent, limit): built once per process."""

    def __init__(self, layout: SmacLayout, enemy_attack_mode: str, enemy_reaction: float,
                 episode_limit: int, calibration: str = "smax"):
        import inspect

        import jax
        import jax.numpy as jnp

        with _quiet_stdout():  # jaxmarl prints about optional environments it lacks
            from jaxmarl.environments.smax import SMAX, HeuristicEnemySMAX, Scenario
        _enable_persistent_cache()
        self.layout, self.episode_limit = layout, episode_limit
        n_a, n_e = layout.n_agents, layout.n_enemies
        unit_names = layout.ally_types + layout.enemy_types
        type_ids = np.array([SMAX_TYPE_ID[t] for t in unit_names], dtype=np.uint8)
        defaults = {k: p.default for k, p in inspect.signature(SMAX.__init__).parameters.items()}
        calibrated = calibration_kwargs(calibration, unit_names, defaults)
        spread = enemy_attack_mode == "spread"
        scripted = {"reaction": enemy_reaction, "spread": spread}
        if enemy_reaction == 1.0 and not spread:  # SMAX's class itself: the same random numbers
            scripted = {}
        self.sim = (_scripted_enemy_class(HeuristicEnemySMAX) if scripted else HeuristicEnemySMAX)(
            **scripted,
            scenario=Scenario(jnp.asarray(type_ids), n_a, n_e, False, False),
            max_steps=episode_limit,
            walls_cause_death=False,
            # "spread" reassigns the new targets of SMAX's "closest" heuristic
            attack_mode="closest" if enemy_attack_mode == "spread" else enemy_attack_mode,
            see_enemy_actions=True,
            map_width=int(ARENA[calibration]),
            map_height=int(ARENA[calibration]),
            **calibrated,
        )
        self.arena = ARENA[calibration]
        start = SC2_STARTS.get(layout.map_name) if calibration != "smax" else None
        self.start = None if start is None else (
            jnp.asarray(np.array(start[0], np.float32) + self.arena / 2),
            jnp.asarray(np.array(start[1], np.float32) + self.arena / 2))
        sim = self.sim._env
        pooled = np.asarray(sim.unit_type_health)[type_ids].astype(np.float32)
        shield_max = np.array([MAX_SHIELD.get(t, 0.0) for t in unit_names], np.float32)
        # Per-unit constants, fixed by the map's unit list.
        self.hp_max = jnp.asarray(pooled - shield_max)
        self.shield_max = jnp.asarray(shield_max)
        self.sight = jnp.asarray(np.asarray(sim.unit_type_sight_ranges)[type_ids][:n_a])
        # where an attack reaches (SMAX's attack range), and where it is available and an enemy
        # flagged attackable: the same, or with a calibration SMAC's shoot range, attacks beyond
        # the reach walking the attacker in (_step_one)
        self.reach = jnp.asarray(np.asarray(sim.unit_type_attack_ranges)[type_ids][:n_a])
        self.walk_to_attack = calibration != "smax"
        self.attack_range = (jnp.full(n_a, SMAC_SHOOT_RANGE, jnp.float32) if self.walk_to_attack
                             else self.reach)
        self.cooldown_max = jnp.asarray(np.asarray(sim.unit_type_weapon_cooldowns)[type_ids][:n_a])
        self.ally_bits = jnp.asarray(_type_bits(layout.ally_types, layout.ally_type_bits))
        self.enemy_bits = jnp.asarray(_type_bits(layout.enemy_types, layout.enemy_type_bits))
        # others[i] = the allies agent i observes, in index order without itself
        self.others = jnp.asarray(
            np.array([[k for k in range(n_a) if k != i] for i in range(n_a)], np.int32)
            .reshape(n_a, n_a - 1))
        self.max_reward = float(pooled[n_a:].sum() + REWARD_DEATH_VALUE * n_e + REWARD_WIN)
        self.reset = jax.jit(self._reset_batch, static_argnums=1)
        self.step = jax.jit(self._step_batch)

    # ------------------------------------------------------------------ SMAC vectors
    def _health_shield(self, health):
        """Split SMAX's pooled health into SMAC's health and shield fractions."""
        jnp = self._jnp
        hp = jnp.minimum(health, self.hp_max) / self.hp_max
        shield = jnp.clip(health - self.hp_max, 0.0, self.shield_max) / jnp.maximum(
            self.shield_max, 1.0)
        return hp, shield

    def _vectors(self, world, last_action):
        """SMAC obs [n_a, obs_dim], state [state_dim] and avail [n_a, n_actions] of one battle."""
        import jax

        jnp, lay = self._jnp, self.layout
        n_a = lay.n_agents
        pos, alive = world.unit_positions, world.unit_alive
        hp, shield = self._health_shield(world.unit_health)
        a_pos, e_pos, a_alive, e_alive = pos[:n_a], pos[n_a:], alive[:n_a], alive[n_a:]
        sight = self.sight[:, None]

        def with_extras(base, hp_, shield_, bits, shield_bits):
            parts = [base, hp_[..., None]]
            if shield_bits:
                parts.append(shield_[..., None])
            if bits.shape[-1]:
                parts.append(jnp.broadcast_to(bits, hp_.shape + bits.shape[-1:]))
            return jnp.concatenate(parts, axis=-1)

        # enemies seen by each agent: [n_a, n_e, nf_en]
        d = e_pos[None] - a_pos[:, None]
        dist = jnp.linalg.norm(d, axis=-1)
        both_alive = a_alive[:, None] & e_alive[None]
        attackable = both_alive & (dist < self.attack_range[:, None])
        visible = both_alive & (dist < sight)
        base = jnp.concatenate([attackable[..., None], (dist / sight)[..., None], d / sight[..., None]], -1)
        enemy = with_extras(base, jnp.broadcast_to(hp[n_a:], dist.shape),
                            jnp.broadcast_to(shield[n_a:], dist.shape), self.enemy_bits,
                            lay.shield_bits_enemy) * visible[..., None]
        # other allies seen by each agent: [n_a, n_a - 1, nf_al]
        d = a_pos[self.others] - a_pos[:, None]
        dist = jnp.linalg.norm(d, axis=-1)
        visible = a_alive[:, None] & a_alive[self.others] & (dist < sight)
        base = jnp.concatenate([jnp.ones_like(dist)[..., None], (dist / sight)[..., None], d / sight[..., None]], -1)
        ally = with_extras(base, hp[:n_a][self.others], shield[:n_a][self.others],
                           self.ally_bits[self.others], lay.shield_bits_ally) * visible[..., None]
        own = with_extras(jnp.zeros((n_a, 0)), hp[:n_a], shield[:n_a], self.ally_bits,
                          lay.shield_bits_ally) * a_alive[:, None]
        ahead = a_pos[:, None] + MOVE_LOOKAHEAD * jnp.asarray(_MOVE_DIRECTIONS)[None]
        can_move = a_alive[:, None] & jnp.all((ahead > 0) & (ahead < self.arena), axis=-1)
        obs = jnp.concatenate([can_move, enemy.reshape(n_a, -1), ally.reshape(n_a, -1), own], -1)

        rel = (pos - self.arena / 2) / self.arena
        cooldown = jnp.clip(world.unit_weapon_cooldowns[:n_a] / self.cooldown_max, 0.0, 1.0)
        ally_state = with_extras(jnp.stack([cooldown, rel[:n_a, 0], rel[:n_a, 1]], -1), hp[:n_a],
                                 shield[:n_a], self.ally_bits, lay.shield_bits_ally)
        # SMAC puts health first: move it in front of cooldown and position.
        ally_state = jnp.concatenate([ally_state[:, 3:4], ally_state[:, :3], ally_state[:, 4:]], -1)
        enemy_state = with_extras(rel[n_a:], hp[n_a:], shield[n_a:], self.enemy_bits,
                                  lay.shield_bits_enemy)
        enemy_state = jnp.concatenate([enemy_state[:, 2:3], enemy_state[:, :2], enemy_state[:, 3:]], -1)
        last = jax.nn.one_hot(last_action, lay.n_actions, dtype=jnp.float32)
        state = jnp.concatenate([(ally_state * a_alive[:, None]).ravel(),
                                 (enemy_state * e_alive[:, None]).ravel(), last.ravel()])

        avail_alive = jnp.concatenate(
            [jnp.zeros((n_a, 1), bool), jnp.ones((n_a, 1), bool), can_move, attackable], -1)
        dead_row = jnp.zeros(lay.n_actions, bool).at[0].set(True)
        avail = jnp.where(a_alive[:, None], avail_alive, dead_row[None])
        return obs.astype(jnp.float32), state.astype(jnp.float32), avail

    # ------------------------------------------------------------------ reset / step
    def _reset_one(self, key):
        jnp = self._jnp
        import jax

        if self.start is not None:  # (SMAX's own start draws from the key untouched)
            key, key_shuffle = jax.random.split(key)
        _, sim_state = self.sim.reset(key)
        if self.start is not None:  # StarCraft II's formation, enemies shuffled among its cells
            allies, enemies = self.start
            enemies = enemies[jax.random.permutation(key_shuffle, enemies.shape[0])]
            world = sim_state.state.replace(unit_positions=jnp.concatenate([allies, enemies]))
            sim_state = sim_state.replace(state=world)
        # The heuristic enemy's initial state is weakly typed; make it strong so that reset and
        # step hand the same types to the step function, which then compiles once, not twice.
        sim_state = jax.tree.map(lambda x: jnp.asarray(x, dtype=x.dtype), sim_state)
        last_action = jnp.full(self.layout.n_agents, -1, jnp.int32)  # none yet: all-zero one-hot
        carry = (sim_state, last_action, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32))
        return carry, self._vectors(sim_state.state, last_action)

    def _reset_batch(self, key, num_envs: int):
        import jax

        return jax.vmap(self._reset_one)(jax.random.split(key, num_envs))

    def _step_one(self, key, carry, actions):
        jnp = self._jnp
        import jax

        sim_state, _, ep_return, ep_len = carry
        n_a = self.layout.n_agents
        key_step, key_reset = jax.random.split(key)
        smax_actions = jnp.where(actions < N_ACTIONS_NO_ATTACK,
                                 jnp.asarray(_SMAC_TO_SMAX_MOVES)[jnp.minimum(actions, 5)],
                                 actions - 1)
        if self.walk_to_attack:
            smax_actions = self._walk_to_attack(sim_state.state, actions, smax_actions)
        _, next_state, _, _, _ = self.sim.step_env(
            key_step, sim_state, {agent: smax_actions[i] for i, agent in enumerate(self.sim.agents)})
        before, after = sim_state.state, next_state.state
        e_before, e_after = before.unit_alive[n_a:], after.unit_alive[n_a:]
        damage = jnp.sum(jnp.maximum(before.unit_health[n_a:] - after.unit_health[n_a:], 0.0))
        kills = jnp.sum(e_before & ~e_after)
        allies_left, enemies_left = jnp.any(after.unit_alive[:n_a]), jnp.any(e_after)
        won = allies_left & ~enemies_left
        reward = (damage + REWARD_DEATH_VALUE * kills + REWARD_WIN * won) * (
            REWARD_SCALE_RATE / self.max_reward)
        ep_return, ep_len = ep_return + reward, ep_len + 1
        terminated = ~allies_left | ~enemies_left
        truncated = (ep_len >= self.episode_limit) & ~terminated
        done = terminated | truncated
        final = self._vectors(after, actions.astype(jnp.int32))
        next_carry = (next_state, actions.astype(jnp.int32), ep_return, ep_len)
        reset_carry, reset_vectors = self._reset_one(key_reset)
        pick = functools.partial(jax.tree.map, lambda r, n: jnp.where(done, r, n))
        out = {
            "vectors": pick(reset_vectors, final),
            "final": final,
            "reward": reward.astype(jnp.float32),
            "terminated": terminated,
            "truncated": truncated,
            "battle_won": won,
            "episode_return": ep_return,
            "episode_length": ep_len,
        }
        return pick(reset_carry, next_carry), out

    def _walk_to_attack(self, world, actions, smax_actions):
        """An attack on an enemy beyond the attacker's reach becomes a step towards it, along
        the axis it is farther away on (SMAX moves in four directions): StarCraft II's attack
        order walks the unit into range before it fires."""
        jnp, n_a = self._jnp, self.layout.n_agents
        target = jnp.clip(actions - N_ACTIONS_NO_ATTACK, 0, self.layout.n_enemies - 1)
        offset = world.unit_positions[n_a + target] - world.unit_positions[:n_a]  # [n_a, 2]
        out_of_reach = (actions >= N_ACTIONS_NO_ATTACK) & (
            jnp.linalg.norm(offset, axis=-1) >= self.reach)
        east_west = jnp.abs(offset[:, 0]) >= jnp.abs(offset[:, 1])
        toward = jnp.where(east_west, jnp.where(offset[:, 0] > 0, 1, 3),  # SMAX: 1 E, 3 W
                           jnp.where(offset[:, 1] > 0, 0, 2))  # 0 N, 2 S
        return jnp.where(out_of_reach, toward, smax_actions).astype(smax_actions.dtype)

    def _step_batch(self, key, carry, actions):
        import jax

        key, step_key = jax.random.split(key)
        keys = jax.random.split(step_key, actions.shape[0])
        carry, out = jax.vmap(self._step_one)(keys, carry, actions)
        return key, carry, out

    @property
    def _jnp(self):
        import jax.numpy as jnp

        return jnp


def _type_bits(unit_types: tuple[str, ...], bit_names: tuple[str, ...]) -> np.ndarray:
    """One-hot type rows [n_units, len(bit_names)] in SMAC's bit order for that team."""
    out = np.zeros((len(unit_types), len(bit_names)), np.float32)
    for row, unit in enumerate(unit_types):
        if bit_names:
            out[row, bit_names.index(unit)] = 1.0
    return out


def spread_targets(in_reach, distance, held, choose):
    """The allies that enemies choosing a new target take, spreading their fire (``enemy_attack_mode``
    "spread"), as jax arrays in each enemy's own ally order. ``in_reach`` ``[E, A]``: which allies
    each enemy could shoot; ``distance`` ``[E, A]``; ``held`` ``[E]``: the ally an enemy keeps
    shooting this step (its kept target, or the attack it repeats while not reacting), -1 for
    none; ``choose`` ``[E]``: enemies that need a new target. In index order each chooser takes
    the ally in its reach with the fewest enemies already on it, the closest among those.
    Returns ``[E]`` (meaningful where ``choose``)."""
    import jax
    import jax.numpy as jnp

    n_allies = in_reach.shape[1]
    holds = (held >= 0) & jnp.take_along_axis(in_reach, jnp.clip(held, 0)[:, None], 1)[:, 0]
    load = jnp.zeros(n_allies).at[jnp.clip(held, 0)].add(holds)

    def assign(load, k):
        target = jnp.argmin(jnp.where(in_reach[k], load * 1e4 + distance[k], jnp.inf))
        return load.at[target].add(choose[k]), target

    return jax.lax.scan(assign, load, jnp.arange(in_reach.shape[0]))[1]


@functools.lru_cache(maxsize=None)
def _scripted_enemy_class(heuristic_enemy_smax: type) -> type:
    """SMAX's heuristic enemy (built lazily: jaxmarl is imported late) where each unit takes the
    heuristic's fresh decision with probability ``reaction`` on a step and otherwise repeats its
    previous action and memory; with ``spread``, the reacting units that need a new target share
    the allies out (``spread_targets``), as StarCraft II's AI spreads its fire, which SMAX's
    per-unit rule cannot see (docs/datasets.md)."""
    import jax
    import jax.numpy as jnp

    class ScriptedEnemySMAX(heuristic_enemy_smax):
        def __init__(self, reaction: float = 1.0, spread: bool = False, **kwargs):
            super().__init__(**kwargs)
            self.reaction, self.spread = reaction, spread

        def get_enemy_policy_initial_state(self, key):
            stop = jnp.full(self.num_enemies, SMAX_STOP, jnp.int32)
            return super().get_enemy_policy_initial_state(key), stop

        def get_enemy_actions(self, key, policy_state, enemy_obs):
            memory, previous = policy_state
            key, key_react = jax.random.split(key)
            fresh, new_memory = super().get_enemy_actions(key, memory, enemy_obs)
            fresh = jnp.stack([fresh[agent] for agent in self.enemy_agents]).astype(jnp.int32)
            react = jax.random.uniform(key_react, (self.num_enemies,)) < self.reaction
            if self.spread:
                fresh, new_memory = self._spread(fresh, memory, new_memory, enemy_obs, react,
                                                 previous)
            actions = jnp.where(react, fresh, previous)
            memory = jax.tree.map(
                lambda new, old: jnp.where(react.reshape((-1,) + (1,) * (new.ndim - 1)), new, old),
                new_memory, memory)
            return {agent: actions[i] for i, agent in enumerate(self.enemy_agents)}, (memory, actions)

        def _spread(self, fresh, memory, new_memory, enemy_obs, react, previous):
            sim, n_e, n_a = self._env, self.num_enemies, self.num_agents
            n_feat, n_move = len(sim.unit_features), sim.num_movement_actions
            # each enemy's view of the allies, parsed as the heuristic parses it: health > 0
            # where seen, positions relative to the enemy over its sight range
            unit_type = jnp.argmax(enemy_obs[:, -sim.unit_type_bits:], axis=-1)
            allies = enemy_obs[:, (n_e - 1) * n_feat:(n_e - 1 + n_a) * n_feat]
            allies = allies.reshape(n_e, n_a, n_feat)
            sight = sim.unit_type_sight_ranges[unit_type][:, None, None]
            distance = jnp.linalg.norm(allies[..., 1:3] * sight, axis=-1)
            in_reach = (distance < sim.unit_type_attack_ranges[unit_type][:, None]) & (
                allies[..., 0] > 0)
            kept_target = memory.last_attacked_enemy
            kept = (kept_target >= 0) & jnp.take_along_axis(
                in_reach, jnp.clip(kept_target, 0)[:, None], 1)[:, 0]
            attacking = fresh >= n_move
            held = jnp.where(react, jnp.where(kept & attacking, kept_target, -1),
                             jnp.where(previous >= n_move, previous - n_move, -1))
            choose = react & attacking & ~kept & in_reach.any(-1)
            target = spread_targets(in_reach, distance, held, choose)
            fresh = jnp.where(choose, n_move + target, fresh)
            return fresh, new_memory.replace(last_attacked_enemy=jnp.where(
                choose, target, new_memory.last_attacked_enemy))

    return ScriptedEnemySMAX


@functools.lru_cache(maxsize=None)
def _program(map_name: str, enemy_attack_mode: str, enemy_reaction: float,
             episode_limit: int, calibration: str = "smax") -> _SmaxProgram:
    return _SmaxProgram(parse_map(map_name), enemy_attack_mode, enemy_reaction, episode_limit,
                        calibration)


class SmaxEnv(BatchedEnv):
    """``num_envs`` auto-resetting SMAX battles of one SMAC map, in SMAC's layout."""

    def __init__(self, map_name: str, num_envs: int = 1, seed: int = 0,
                 enemy_attack_mode: str = "closest", enemy_reaction: float = 1.0,
                 episode_limit: int | None = None, calibration: str = "smax",
                 check_actions: bool = True, **unknown: Any):
        if unknown:
            raise EnvError(f"smac/smax: unknown option(s) {sorted(unknown)}; accepted: {OPTIONS}")
        layout = parse_map(map_name)
        if calibration not in CALIBRATIONS:
            raise EnvError(f"smac/smax: calibration={calibration!r}; accepted: {tuple(CALIBRATIONS)}")
        if enemy_attack_mode not in ENEMY_ATTACK_MODES:
            raise EnvError(f"smac/smax: enemy_attack_mode={enemy_attack_mode!r}; "
                           f"accepted: {ENEMY_ATTACK_MODES}")
        if (isinstance(enemy_reaction, bool) or not isinstance(enemy_reaction, (int, float))
                or not 0.0 < enemy_reaction <= 1.0):
            raise EnvError(f"smac/smax: enemy_reaction={enemy_reaction!r}; expected a probability "
                           "in (0, 1] (1: the heuristic re-decides every step)")
        self.info = smac_env_info(
            layout, "smax", episode_limit,
            options={"enemy_attack_mode": enemy_attack_mode,
                     "enemy_reaction": float(enemy_reaction), "walls_cause_death": False,
                     "simulator": "jaxmarl-0.2.0 HeuristicEnemySMAX",
                     # recorded where it is not SMAX's own, so default files stay as they were
                     **({"calibration": calibration} if calibration != "smax" else {})})
        self.num_envs = check_num_envs(num_envs)
        self.check_actions = check_actions
        self._program = _program(map_name, enemy_attack_mode, float(enemy_reaction),
                                 self.info.episode_limit, calibration)
        self._seed = seed
        self.reset(seed)

    def reset(self, seed: int | None = None) -> TimeStep:
        import jax

        if seed is not None:
            self._seed = seed
        self._key, reset_key = jax.random.split(jax.random.PRNGKey(self._seed))
        self._carry, (obs, state, avail) = self._program.reset(reset_key, self.num_envs)
        self._avail = np.array(avail)
        return self._first_timestep(np.array(obs), np.array(state), self._avail, ("battle_won",))

    def step(self, actions: np.ndarray) -> TimeStep:
        if self.check_actions:
            actions = self._check_discrete_actions(actions, self._avail)
        self._key, self._carry, out = self._program.step(
            self._key, self._carry, np.asarray(actions, np.int32))
        # np.array copies: JAX's host buffers are read-only, and users (and torch) expect to own
        # what they are given; the copies cost microseconds at these sizes.
        obs, state, avail = (np.array(x) for x in out["vectors"])
        final_obs, final_state, final_avail = (np.array(x) for x in out["final"])
        self._avail = avail
        info = {k: np.array(out[k]) for k in ("battle_won", "episode_return", "episode_length")}
        info.update(final_obs=final_obs, final_state=final_state, final_avail_actions=final_avail)
        return TimeStep(obs=obs, state=state, avail_actions=avail,
                        reward=np.array(out["reward"]), terminated=np.array(out["terminated"]),
                        truncated=np.array(out["truncated"]), info=info)

    # ------------------------------------------------------------------ introspection
    def unit_snapshot(self) -> dict[str, np.ndarray]:
        """Positions [N, units, 2], health fraction, alive flags and unit type names of every
        battle, allies first (for replays and scripted policies)."""
        world = self._carry[0].state
        pooled = np.asarray(self._program.hp_max + self._program.shield_max)
        return {
            "positions": np.asarray(world.unit_positions),
            "health": np.asarray(world.unit_health) / pooled,
            "alive": np.asarray(world.unit_alive),
            "unit_types": np.array(self.info.layout.ally_types + self.info.layout.enemy_types),
        }
