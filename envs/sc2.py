"""SMAC on real StarCraft II through smacv2 (oxwhirl/smacv2), emitting SMACv1's vectors.

smacv2 is not on PyPI and needs the StarCraft II binary, so it is imported only when an
``SC2Env`` is built; without it the constructor raises ``BackendUnavailableError`` saying how to
install it. Everything else in this module (the conversion to SMACv1's layout, the team
distribution) is plain numpy and is tested without StarCraft II.

Route. smacv2 cannot load the classic SMAC maps, nor ODIS's custom ones (4m, 12m, 1s3z, ...), so
every task runs on one of smacv2's generated-unit maps (32x32 flat arena, units spawned by debug
commands each episode) with a fixed team that marl registers as a smacv2 ``team_gen``
distribution:

=============================================  =============  =================================
task names                                     smacv2 map     teams (every episode)
=============================================  =============  =================================
``Nm`` / ``Nm_vs_Mm`` (3m, 5m_vs_6m, ...)      10gen_terran   N marines vs N (or M) marines
``XsYz`` / ``XsYz_vs_PsQz`` (2s3z, 3s5z, ...)  10gen_protoss  X stalkers + Y zealots vs the
                                                              same (or P stalkers + Q zealots)
=============================================  =============  =================================

smacv2 runs with the flags that keep its vectors closest to SMACv1 (``SMACV1_LIKE_KWARGS``: no
own position, no conic field of view, no pathing/height grids, ``obs_last_action`` off,
``state_last_action`` on, sight 9 / shoot 6 for every unit, ``action_mask`` on,
``prob_obs_enemy`` 1.0, SMAC's reward with ``reward_scale``, so a won battle returns about 20).
Its arrays are then gathered into ``envs.smac.SmacLayout``: the 10gen maps carry 3 type bits per
race (terran: marine, marauder, medivac; protoss: stalker, zealot, colossus, for allies and
enemies alike); marine maps drop them (SMACv1's marine maps have none) and s/z maps keep
stalker/zealot in SMACv1's order, whose enemy bits are swapped (zealot, stalker). The offsets come
from ``Smacv2Format``, which recomputes smacv2's own size logic from the flags; the live sizes are
checked against it when the environment is built.

Start positions (option ``start_positions``): "opposite" (default) configures no smacv2 position
distribution, so smacv2 spawns the allies around (8, 16) and the enemies around (24, 16), two
groups facing each other out of sight as on SMACv1's maps; "reflect" and "surrounded_and_reflect"
use smacv2's random SMACv2-style positions.

What still differs from SMACv1 on its own maps:

* the arena (32x32, flat, no cliffs) and the spawn points are smacv2's, not the classic map's, so
  state positions (normalised by the playable area) and opening distances differ;
* allies are smacv2's RL copies of the units, created by debug commands; enemies are standard SC2
  units driven by the built-in AI (difficulty option, "7" as in SMAC and ODIS);
* enemy visibility goes through smacv2's spotting bookkeeping: an enemy is shown only within the
  agent's own sight range *and* once some agent has spotted it (``prob_obs_enemy`` 1.0 then
  shares it with everyone). In the smacv2 source read (``get_obs_agent``), an enemy the agent is
  not cleared to see (nobody has spotted it yet, its spotter died, or it died out of everyone's
  sight) also resets the enemy features filled before it in that step, so earlier enemies
  vanish from the observation too; SMACv1 shows every enemy within sight. This is smacv2's
  behaviour and is passed through unchanged;
* agent order matches SMACv1 (smacv2 sorts allies by unit type id, and the 10gen stalker id is
  below the zealot's); enemies come in SC2's unit-list order, as in SMACv1;
* episode limits are SMAC's per-map ones (``envs.smac.EPISODE_LIMITS``), set on each smacv2 env
  instead of the 10gen maps' 200;
* runs are not bit-reproducible: ``seed`` + i seeds copy i's game, but smacv2 also shuffles agents
  with Python's global ``random`` and draws random start positions from unseeded generators.

Written against oxwhirl/smacv2 ``smacv2/env/starcraft2/starcraft2.py`` at 9dabb98 and
``distributions.py`` at ae2c9f2 (see ../shared/research/environments.md §4).

Why this file is long (about 550 lines): the conversion from smacv2's vectors to SMACv1's layout
(observation, state, available actions and actions, each tested on arrays built to smacv2's
formats) and the batched env that launches the games belong to one backend.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from envs.core import BackendUnavailableError, EnvError, EpisodeStats, LoopedEnv, TimeStep, \
    check_num_envs
from envs.smac import N_ACTIONS_NO_ATTACK, N_MOVE_FEATS, SmacLayout, parse_map, smac_env_info

INSTALL_HELP = (
    "the real StarCraft II backend needs smacv2 and StarCraft II 4.10. In a separate Python "
    "environment (smacv2's protobuf<3.21 pin clashes with jax), run "
    "`pip install git+https://github.com/oxwhirl/smacv2.git` and `pip install 'marl[sc2]'`, "
    "install StarCraft II 4.10 (Linux: SC2.4.10 from Blizzard's s2client-proto downloads) with "
    "smacv2's SMAC_Maps copied into its Maps folder, and set SC2PATH to that install"
)
SMACV2_SOURCE = "oxwhirl/smacv2 starcraft2.py at 9dabb98"
TEAM_DISTRIBUTION_KEY = "marl_fixed_teams"
SC2_DIFFICULTIES = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "A")
START_POSITIONS = ("opposite", "reflect", "surrounded_and_reflect")
MAP_SIZE = 32  # the 10gen maps' arena
OPTIONS = {
    "difficulty": f"built-in AI level, one of {SC2_DIFFICULTIES} (default '7', SMAC's)",
    "start_positions": f"one of {START_POSITIONS} (default 'opposite', SMACv1-like)",
    "episode_limit": "positive int overriding SMAC's per-map limit",
    "check_actions": "bool, validate actions before stepping (default True)",
}

# smacv2 settings that make its vectors SMACv1's plus type bits (flag names are smacv2's).
SMACV1_LIKE_KWARGS: dict[str, Any] = {
    "step_mul": 8,
    "move_amount": 2,
    "obs_all_health": True,
    "obs_own_health": True,
    "obs_last_action": False,
    "obs_pathing_grid": False,
    "obs_terrain_height": False,
    "obs_instead_of_state": False,
    "obs_timestep_number": False,
    "obs_own_pos": False,
    "obs_starcraft": True,
    "conic_fov": False,
    "state_last_action": True,
    "state_timestep_number": False,
    "use_unit_ranges": False,  # sight 9 and shoot range 6 for every unit, as in SMACv1
    "action_mask": True,  # attack only enemies within shoot range
    "prob_obs_enemy": 1.0,  # a spotted enemy is shared with every agent
    "fully_observable": False,
    "heuristic_ai": False,
    "reward_sparse": False,
    "reward_only_positive": True,
    "reward_death_value": 10,
    "reward_win": 200,
    "reward_defeat": 0,
    "reward_scale": True,
    "reward_scale_rate": 20,
    # Only adds info["episode_limit"] on time-outs, which tells truncation from termination.
    "continuing_episode": True,
}


@dataclass(frozen=True)
class Route:
    """Which smacv2 map a race's tasks run on, and that map's type-bit order."""

    smacv2_map: str
    map_type: str
    unit_types: tuple[str, ...]  # smacv2's get_unit_type_id order (same for allies and enemies)
    shield_bits: int  # 10gen maps put the same race on both sides


ROUTES = (
    Route("10gen_terran", "terran_gen", ("marine", "marauder", "medivac"), 0),
    Route("10gen_protoss", "protoss_gen", ("stalker", "zealot", "colossus"), 1),
)


def route_for(layout: SmacLayout) -> Route:
    units = set(layout.ally_types) | set(layout.enemy_types)
    for route in ROUTES:
        if units <= set(route.unit_types):
            return route
    raise EnvError(f"smac/sc2: no smacv2 map hosts the units {sorted(units)} of "
                   f"{layout.map_name!r}; routes: {[(r.smacv2_map, r.unit_types) for r in ROUTES]}")


@dataclass(frozen=True)
class Smacv2Format:
    """Sizes and offsets of smacv2's obs/state/action vectors for one set of flags, following
    ``StarCraft2Env.get_obs_*_size``, ``get_state_size`` and ``build_*_feature_names``:

    obs   = [move 4 (+8 pathing)(+9 height) | n_enemies x (shootable, dist, dx, dy, health,
             [shield], type bits) | (n_agents-1) x (visible, dist, dx, dy, health, [shield],
             type bits, [last action]) | own (health, [shield], [x, y], [fov x, y], type bits)
             | [timestep]]
    state = [n_agents x (health, cooldown, x, y, [shield], [fov x, y], type bits)
             | n_enemies x (health, x, y, [shield], type bits)
             | [n_agents x n_actions last actions] | [timestep]]
    actions = no-op, stop, 4 moves, [n_fov look directions], then one per target

    Type bits are always present: ``team_gen`` is configured with ``observe: True``.
    """

    n_agents: int
    n_enemies: int
    unit_types: tuple[str, ...]
    shield_bits_ally: int
    shield_bits_enemy: int
    heal_targets: bool  # terran_gen: the target block is n_agents wide if that is larger
    obs_pathing_grid: bool = False
    obs_terrain_height: bool = False
    obs_own_pos: bool = False
    conic_fov: bool = False
    num_fov_actions: int = 12
    obs_last_action: bool = False
    obs_timestep_number: bool = False
    state_last_action: bool = True
    state_timestep_number: bool = False

    @classmethod
    def from_kwargs(cls, route: Route, n_agents: int, n_enemies: int,
                    env_kwargs: dict[str, Any]) -> "Smacv2Format":
        """The format smacv2 produces on ``route`` when built with ``env_kwargs`` (missing flags
        take smacv2's defaults, which are this class's)."""
        flags = {name: env_kwargs[name] for name in (
            "obs_pathing_grid", "obs_terrain_height", "obs_own_pos", "conic_fov",
            "num_fov_actions", "obs_last_action", "obs_timestep_number", "state_last_action",
            "state_timestep_number") if name in env_kwargs}
        return cls(n_agents=n_agents, n_enemies=n_enemies, unit_types=route.unit_types,
                   shield_bits_ally=route.shield_bits, shield_bits_enemy=route.shield_bits,
                   heal_targets=route.map_type == "terran_gen", **flags)

    @property
    def unit_type_bits(self) -> int:
        return len(self.unit_types)

    @property
    def n_actions_no_attack(self) -> int:
        return N_ACTIONS_NO_ATTACK + (self.num_fov_actions if self.conic_fov else 0)

    @property
    def n_actions(self) -> int:
        n_targets = self.n_enemies
        if self.heal_targets and self.n_agents > self.n_enemies:
            n_targets = self.n_agents  # medivacs heal allies through the same block
        return self.n_actions_no_attack + n_targets

    @property
    def move_feats(self) -> int:
        return N_MOVE_FEATS + 8 * self.obs_pathing_grid + 9 * self.obs_terrain_height

    @property
    def enemy_feats(self) -> int:
        return 4 + 1 + self.shield_bits_enemy + self.unit_type_bits

    @property
    def ally_feats(self) -> int:
        return (4 + 1 + self.shield_bits_ally + self.unit_type_bits
                + self.n_actions * self.obs_last_action)

    @property
    def own_type_start(self) -> int:
        return 1 + self.shield_bits_ally + 2 * self.obs_own_pos + 2 * self.conic_fov

    @property
    def own_feats(self) -> int:
        return self.own_type_start + self.unit_type_bits

    @property
    def obs_size(self) -> int:
        return (self.move_feats + self.n_enemies * self.enemy_feats
                + (self.n_agents - 1) * self.ally_feats + self.own_feats
                + self.obs_timestep_number)

    @property
    def state_ally_feats(self) -> int:
        return 4 + self.shield_bits_ally + 2 * self.conic_fov + self.unit_type_bits

    @property
    def state_enemy_feats(self) -> int:
        return 3 + self.shield_bits_enemy + self.unit_type_bits

    @property
    def state_last_action_start(self) -> int:
        return self.n_agents * self.state_ally_feats + self.n_enemies * self.state_enemy_feats

    @property
    def state_size(self) -> int:
        return (self.state_last_action_start
                + self.n_agents * self.n_actions * self.state_last_action
                + self.state_timestep_number)


@dataclass(frozen=True)
class Smacv2Indices:
    """Precomputed gathers from smacv2's vectors to SMACv1's (``SmacLayout``) vectors."""

    obs: np.ndarray  # [layout.obs_dim] positions in a smacv2 observation
    state: np.ndarray  # [layout.state_dim] positions in a smacv2 state
    actions: np.ndarray  # [layout.n_actions] smacv2 action id of each SMACv1 action id


def _entity_block(start: int, n_entities: int, stride: int, feats: list[int]) -> np.ndarray:
    """Flat positions of ``feats`` of ``n_entities`` records laid out every ``stride`` floats."""
    rows = start + stride * np.arange(n_entities)[:, None]
    return (rows + np.asarray(feats, dtype=np.int64)[None, :]).ravel()


def _type_bit_sources(bit_names: tuple[str, ...], fmt: Smacv2Format, first: int) -> list[int]:
    """Positions (from ``first``) of smacv2's bits for SMACv1's bit order ``bit_names``."""
    missing = [name for name in bit_names if name not in fmt.unit_types]
    if missing:
        raise EnvError(f"smac/sc2: smacv2's type bits {fmt.unit_types} have no {missing}")
    return [first + fmt.unit_types.index(name) for name in bit_names]


def build_indices(layout: SmacLayout, fmt: Smacv2Format) -> Smacv2Indices:
    """Index arrays taking ``fmt``'s vectors to ``layout``'s, computed once per environment."""
    if (fmt.n_agents, fmt.n_enemies) != (layout.n_agents, layout.n_enemies):
        raise EnvError(f"smac/sc2: smacv2 is set up for {fmt.n_agents} vs {fmt.n_enemies} units, "
                       f"{layout.map_name} needs {layout.n_agents} vs {layout.n_enemies}")
    if layout.shield_bits_ally > fmt.shield_bits_ally or \
            layout.shield_bits_enemy > fmt.shield_bits_enemy:
        raise EnvError(f"smac/sc2: {layout.map_name} needs shields that smacv2's race lacks")
    if not fmt.state_last_action:
        raise EnvError("smac/sc2: SMACv1's state holds last actions; smacv2 needs "
                       "state_last_action=True")
    sh_al, sh_en = [5] * layout.shield_bits_ally, [5] * layout.shield_bits_enemy
    enemy = [0, 1, 2, 3, 4] + sh_en + _type_bit_sources(
        layout.enemy_type_bits, fmt, 5 + fmt.shield_bits_enemy)
    ally = [0, 1, 2, 3, 4] + sh_al + _type_bit_sources(
        layout.ally_type_bits, fmt, 5 + fmt.shield_bits_ally)
    own = [0] + [1] * layout.shield_bits_ally + _type_bit_sources(
        layout.ally_type_bits, fmt, fmt.own_type_start)
    allies_start = fmt.move_feats + layout.n_enemies * fmt.enemy_feats
    own_start = allies_start + (layout.n_agents - 1) * fmt.ally_feats
    obs = np.concatenate([
        np.arange(N_MOVE_FEATS),
        _entity_block(fmt.move_feats, layout.n_enemies, fmt.enemy_feats, enemy),
        _entity_block(allies_start, layout.n_agents - 1, fmt.ally_feats, ally),
        own_start + np.asarray(own),
    ])

    # SMACv1 action a -> smacv2 action: moves keep their ids, attack j skips the look actions.
    actions = np.concatenate([np.arange(N_ACTIONS_NO_ATTACK),
                              fmt.n_actions_no_attack + np.arange(layout.n_enemies)])
    state_ally = [0, 1, 2, 3] + [4] * layout.shield_bits_ally + _type_bit_sources(
        layout.ally_type_bits, fmt, fmt.state_ally_feats - fmt.unit_type_bits)
    state_enemy = [0, 1, 2] + [3] * layout.shield_bits_enemy + _type_bit_sources(
        layout.enemy_type_bits, fmt, fmt.state_enemy_feats - fmt.unit_type_bits)
    state = np.concatenate([
        _entity_block(0, layout.n_agents, fmt.state_ally_feats, state_ally),
        _entity_block(layout.n_agents * fmt.state_ally_feats, layout.n_enemies,
                      fmt.state_enemy_feats, state_enemy),
        _entity_block(fmt.state_last_action_start, layout.n_agents, fmt.n_actions,
                      actions.tolist()),
    ])
    assert obs.size == layout.obs_dim and state.size == layout.state_dim
    return Smacv2Indices(obs=obs, state=state, actions=actions)


def convert_obs(smacv2_obs: np.ndarray, idx: Smacv2Indices) -> np.ndarray:
    """smacv2 observations ``[..., n_agents, fmt.obs_size]`` -> SMACv1 ``[..., layout.obs_dim]``."""
    return np.take(smacv2_obs, idx.obs, axis=-1)


def convert_state(smacv2_state: np.ndarray, idx: Smacv2Indices) -> np.ndarray:
    """smacv2 states ``[..., fmt.state_size]`` -> SMACv1 ``[..., layout.state_dim]``."""
    return np.take(smacv2_state, idx.state, axis=-1)


def convert_avail(smacv2_avail: np.ndarray, idx: Smacv2Indices) -> np.ndarray:
    """smacv2's 0/1 available actions ``[..., fmt.n_actions]`` -> bool ``[..., layout.n_actions]``
    (look directions and heal-only targets dropped)."""
    return np.take(smacv2_avail, idx.actions, axis=-1).astype(bool)


def convert_actions(actions: np.ndarray, idx: Smacv2Indices) -> np.ndarray:
    """SMACv1 action ids (any shape) -> smacv2 action ids."""
    return idx.actions[actions]


class FixedTeamsDistribution:
    """A smacv2 ``team_gen`` distribution that returns the same two teams every episode.

    smacv2's wrapper builds it with the ``team_gen`` config plus ``env_key``, ``n_units`` and
    ``n_enemies``; ``StarCraft2Env.reset`` reads ``episode_config["team_gen"]["ally_team"]`` and
    ``["enemy_team"]`` (lists of unit names). smacv2's own ``fixed`` distribution returns
    ``item`` instead, which team generation does not read.
    """

    def __init__(self, config: dict[str, Any]):
        self.env_key = config["env_key"]
        self.ally_team = list(config["ally_team"])
        self.enemy_team = list(config["enemy_team"])
        # smacv2 sizes its unit bookkeeping from n_units / n_enemies and waits for that many.
        if (len(self.ally_team), len(self.enemy_team)) != (config["n_units"],
                                                           config["n_enemies"]):
            raise EnvError(f"smac/sc2: teams of {len(self.ally_team)} and {len(self.enemy_team)} "
                           f"units do not match n_units={config['n_units']}, "
                           f"n_enemies={config['n_enemies']}")

    def generate(self) -> dict[str, dict[str, Any]]:
        # Fresh lists each episode: smacv2 must not be able to alter the next episode's teams.
        return {self.env_key: {"ally_team": list(self.ally_team),
                               "enemy_team": list(self.enemy_team), "id": 0}}

    @property
    def n_tasks(self) -> int:
        return 1


def capability_config(layout: SmacLayout, start_positions: str = "opposite") -> dict[str, Any]:
    """smacv2 ``capability_config`` for ``layout``'s fixed teams."""
    config: dict[str, Any] = {
        "n_units": layout.n_agents,
        "n_enemies": layout.n_enemies,
        "team_gen": {
            "dist_type": TEAM_DISTRIBUTION_KEY,
            "ally_team": list(layout.ally_types),
            "enemy_team": list(layout.enemy_types),
            "observe": True,  # type bits of teammates in the observation
        },
    }
    if start_positions == "reflect":
        config["start_positions"] = {"dist_type": "reflect_position",
                                     "map_x": MAP_SIZE, "map_y": MAP_SIZE}
    elif start_positions == "surrounded_and_reflect":
        config["start_positions"] = {"dist_type": "surrounded_and_reflect", "p": 0.5,
                                     "map_x": MAP_SIZE, "map_y": MAP_SIZE}
    return config


def _sc2_install_problem(map_filename: str) -> str | None:
    """Why StarCraft II cannot be started, or None. pysc2 uses SC2PATH, else ~/StarCraftII."""
    root = os.path.expanduser(os.environ.get("SC2PATH", "~/StarCraftII"))
    where = f"SC2PATH={os.environ['SC2PATH']!r}" if "SC2PATH" in os.environ else \
        f"SC2PATH is not set and {root!r}"
    if not os.path.isdir(os.path.join(root, "Versions")):
        return f"{where} is not a StarCraft II install (no Versions folder)"
    map_path = os.path.join(root, "Maps", "SMAC_Maps", f"{map_filename}.SC2Map")
    if not os.path.isfile(map_path):
        return f"smacv2's map {map_path!r} is missing"
    return None


class SC2Env(LoopedEnv):
    """``num_envs`` auto-resetting StarCraft II battles of one SMAC task, via smacv2, in SMACv1's
    layout (see the module docstring for the route and its differences)."""

    outcome_keys = ("battle_won",)

    def __init__(self, map_name: str, num_envs: int = 1, seed: int = 0, difficulty: str = "7",
                 start_positions: str = "opposite", episode_limit: int | None = None,
                 check_actions: bool = True, **unknown: Any):
        if unknown:
            raise EnvError(f"smac/sc2: unknown option(s) {sorted(unknown)}; accepted: {OPTIONS}")
        layout = parse_map(map_name)
        if difficulty not in SC2_DIFFICULTIES:
            raise EnvError(f"smac/sc2: difficulty={difficulty!r}; accepted: {SC2_DIFFICULTIES}")
        if start_positions not in START_POSITIONS:
            raise EnvError(f"smac/sc2: start_positions={start_positions!r}; "
                           f"accepted: {START_POSITIONS}")
        self.info = smac_env_info(
            layout, "sc2", episode_limit,
            options={"difficulty": difficulty, "start_positions": start_positions,
                     "smacv2_map": route_for(layout).smacv2_map,
                     "simulator": "StarCraft II via smacv2"})
        self.num_envs = check_num_envs(num_envs)
        self._stats = EpisodeStats(self.num_envs)
        self.check_actions = check_actions
        self.route = route_for(layout)
        try:
            from smacv2.env.starcraft2.distributions import register_distribution
            from smacv2.env.starcraft2.maps import get_map_params
            from smacv2.env.starcraft2.wrapper import StarCraftCapabilityEnvWrapper
        # TypeError: protobuf too new for s2clientprotocol's generated modules.
        except (ImportError, TypeError) as exc:
            raise BackendUnavailableError(
                f"smac/sc2: importing smacv2 failed ({exc}); {INSTALL_HELP}") from None
        problem = _sc2_install_problem(get_map_params(self.route.smacv2_map)["map_name"])
        if problem:
            raise BackendUnavailableError(f"smac/sc2: {problem}; {INSTALL_HELP}")
        register_distribution(TEAM_DISTRIBUTION_KEY, FixedTeamsDistribution)

        self._wrapper_cls = StarCraftCapabilityEnvWrapper
        self._capability_config = capability_config(layout, start_positions)
        self._env_kwargs = {**SMACV1_LIKE_KWARGS, "difficulty": difficulty}
        self._episode_limit = self.info.episode_limit
        self.format = Smacv2Format.from_kwargs(self.route, layout.n_agents, layout.n_enemies,
                                               self._env_kwargs)
        self.indices = build_indices(layout, self.format)
        self._envs: list[Any] = []
        self._built_seed: int | None = None
        self._seed = seed
        self.reset(seed)

    # ------------------------------------------------------------------ smacv2 instances
    def _build_envs(self, seed: int) -> None:
        self.close()
        for i in range(self.num_envs):
            try:
                # The wrapper writes into its capability config: one copy per instance.
                env = self._wrapper_cls(capability_config=copy.deepcopy(self._capability_config),
                                        map_name=self.route.smacv2_map, seed=seed + i,
                                        **self._env_kwargs)
            except TypeError as exc:  # a flag this smacv2 does not know
                raise EnvError(f"smac/sc2: the installed smacv2 does not accept marl's settings "
                               f"({exc}); marl targets {SMACV2_SOURCE} or later") from None
            # SMAC's per-map limit instead of the 10gen maps' 200 (smacv2 reads this attribute).
            env.env.episode_limit = self._episode_limit
            self._check_sizes(env)
            self._envs.append(env)
        self._built_seed = seed

    def _check_sizes(self, env: Any) -> None:
        got = (env.get_obs_size(), env.get_state_size(), env.get_total_actions())
        want = (self.format.obs_size, self.format.state_size, self.format.n_actions)
        if got != want:
            raise EnvError(f"smac/sc2: the installed smacv2 produces (obs, state, actions) sizes "
                           f"{got} where marl's conversion expects {want}; marl targets "
                           f"{SMACV2_SOURCE}")

    def _raw_vectors(self, env: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (np.asarray(env.get_obs(), dtype=np.float32),
                np.asarray(env.get_state(), dtype=np.float32),
                np.asarray(env.get_avail_actions()))

    def _convert(self, obs: np.ndarray, state: np.ndarray,
                 avail: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (convert_obs(obs, self.indices), convert_state(state, self.indices),
                convert_avail(avail, self.indices))

    # ------------------------------------------------------------------ batched API
    def reset(self, seed: int | None = None) -> TimeStep:
        if seed is not None:
            self._seed = seed
        if self._seed != self._built_seed:
            self._build_envs(self._seed)  # SC2 takes its seed when the game is launched
        return self._started([self._restart_copy(i) for i in range(self.num_envs)])

    # ------------------------------------------------------------------ LoopedEnv's hooks
    def _copy_actions(self, actions: np.ndarray) -> list:
        if self.check_actions:
            actions = self._check_discrete_actions(actions, self._avail)
        return convert_actions(np.asarray(actions, dtype=np.int64), self.indices).tolist()

    def _step_copy(self, i: int, action: list) -> tuple[tuple, float, bool, bool, dict]:
        env = self._envs[i]
        reward, done, info = env.step(action)
        limit = bool(done and info.get("episode_limit", False))
        return (self._raw_vectors(env), reward, bool(done) and not limit, limit,
                {"battle_won": bool(done and info.get("battle_won", False))})

    def _restart_copy(self, i: int) -> tuple:
        self._envs[i].reset()  # smacv2's wrapper may return None (after a retry): read the vectors
        return self._raw_vectors(self._envs[i])

    def _arrays(self, raws: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self._convert(*(np.stack(parts) for parts in zip(*raws)))

    def close(self) -> None:
        for env in self._envs:
            env.close()
        self._envs = []
        self._built_seed = None  # a later reset launches fresh games
