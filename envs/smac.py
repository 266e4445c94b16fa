"""SMAC maps as data: name grammar, unit teams, episode limits, and the SMACv1 vector layout.

Both SMAC backends (the embedded SMAX simulator and real StarCraft II) emit observations, states
and available actions in exactly this layout, so one dataset format, one parser and one model
serve both. The layout is SMACv1's (``smac/env/starcraft2/starcraft2.py``) with the settings the
ODIS/HiSSD datasets were recorded with: ``obs_all_health``, ``obs_own_health`` and
``state_last_action`` on; ``obs_last_action``, pathing grid and terrain height off.

Per-agent observation::

    [ move(4) | n_enemies x enemy(nf_en) | (n_agents-1) x ally(nf_al) | own(own_dim) ]
    move  : available move north, south, east, west
    enemy : attackable, dist/sight, dx/sight, dy/sight, health, [shield], [type bits]
    ally  : visible, dist/sight, dx/sight, dy/sight, health, [shield], [type bits]
    own   : health, [shield], [type bits]

Global state::

    [ n_agents x (health, cooldown, x, y, [shield], [type bits])
    | n_enemies x (health, x, y, [shield], [type bits])
    | n_agents x n_actions (last actions, one-hot) ]

Actions: ``0 no-op (dead agents only), 1 stop, 2 north, 3 south, 4 east, 5 west, 6+j attack j``.

Type bits follow SMAC, quirk included: allies number their types from the smallest SC2 unit id
on the map (stalker 0, zealot 1), while enemies use SC2's own ids (zealot 73 -> 0,
stalker 74 -> 1). ``SmacLayout.ally_type_bits`` / ``enemy_type_bits`` record each order so that
the parser can map both onto one canonical vocabulary.
"""

from __future__ import annotations

import numbers
import re
from dataclasses import dataclass

from envs.core import EnvError, EnvInfo, play

N_MOVE_FEATS = 4
N_ACTIONS_NO_ATTACK = 6  # no-op, stop, north, south, east, west
ACTION_NAMES = ("no-op", "stop", "north", "south", "east", "west")

# Canonical unit vocabulary shared by every SMAC map (parser one-hot order).
UNIT_VOCAB = ("marine", "marauder", "medivac", "stalker", "zealot", "colossus",
              "zergling", "hydralisk", "baneling")
PROTOSS = frozenset({"stalker", "zealot", "colossus"})
# SC2 shield maxima (SMAC's unit_max_shield); the embedded simulator pools hp + shield.
MAX_SHIELD = {"stalker": 80.0, "zealot": 50.0, "colossus": 150.0}

# SMAC's per-map episode limits for every map of the ODIS/HiSSD task sets
# (smac_patch/smac_maps.py, ../shared/research/hissd-reference.md §3).
EPISODE_LIMITS = {
    "3m": 60, "4m": 75, "5m": 90, "6m": 100, "7m": 110, "8m": 120, "9m": 120, "10m": 120,
    "11m": 150, "12m": 150, "25m": 150, "27m_vs_30m": 180,
    "5m_vs_6m": 70, "7m_vs_8m": 90, "8m_vs_9m": 120, "9m_vs_10m": 140, "10m_vs_11m": 150,
    "10m_vs_12m": 160, "13m_vs_15m": 160,
    "1s3z": 120, "1s4z": 130, "1s5z": 140, "2s3z": 120, "2s4z": 130, "2s5z": 150,
    "3s3z": 140, "3s4z": 140, "3s5z": 150, "4s3z": 150, "4s4z": 150, "4s5z": 160, "4s6z": 170,
    "3s5z_vs_3s6z": 170,
}

_MARINES = re.compile(r"^(\d+)m(?:_vs_(\d+)m)?$")
_STALKERS_ZEALOTS = re.compile(r"^(\d+)s(\d+)z(?:_vs_(\d+)s(\d+)z)?$")
MAX_UNITS_PER_TEAM = 32  # the 32x32 arena gets crowded beyond this
MAP_GRAMMAR = "Nm, Nm_vs_Mm, XsYz or XsYz_vs_XsYz (e.g. 3m, 5m_vs_6m, 2s3z, 3s5z_vs_3s6z)"


def default_episode_limit(n_agents: int, n_enemies: int) -> int:
    """Limit for maps outside SMAC's table: grows with team size like the table does
    (3 units 60 steps ... 13-15 units 160-180), clipped to [60, 200]."""
    return int(min(200, max(60, 30 + 10 * max(n_agents, n_enemies))))


@dataclass(frozen=True)
class SmacLayout:
    """Everything about a SMAC map's vectors: team composition, feature sizes and type-bit order."""

    map_name: str
    ally_types: tuple[str, ...]  # unit type of each agent, in agent order
    enemy_types: tuple[str, ...]
    ally_type_bits: tuple[str, ...]  # unit type named by each ally type bit (empty: no bits)
    enemy_type_bits: tuple[str, ...]
    shield_bits_ally: int
    shield_bits_enemy: int

    @property
    def n_agents(self) -> int:
        return len(self.ally_types)

    @property
    def n_enemies(self) -> int:
        return len(self.enemy_types)

    @property
    def unit_type_bits(self) -> int:
        return len(self.ally_type_bits)

    @property
    def n_actions(self) -> int:
        return N_ACTIONS_NO_ATTACK + self.n_enemies

    @property
    def nf_en(self) -> int:
        return 4 + 1 + self.shield_bits_enemy + self.unit_type_bits

    @property
    def nf_al(self) -> int:
        return 4 + 1 + self.shield_bits_ally + self.unit_type_bits

    @property
    def own_dim(self) -> int:
        return 1 + self.shield_bits_ally + self.unit_type_bits

    @property
    def obs_dim(self) -> int:
        return (N_MOVE_FEATS + self.n_enemies * self.nf_en
                + (self.n_agents - 1) * self.nf_al + self.own_dim)

    @property
    def state_nf_al(self) -> int:
        return 4 + self.shield_bits_ally + self.unit_type_bits

    @property
    def state_nf_en(self) -> int:
        return 3 + self.shield_bits_enemy + self.unit_type_bits

    @property
    def state_dim(self) -> int:
        return (self.n_agents * self.state_nf_al + self.n_enemies * self.state_nf_en
                + self.n_agents * self.n_actions)

    @property
    def episode_limit(self) -> int:
        return EPISODE_LIMITS.get(self.map_name,
                                  default_episode_limit(self.n_agents, self.n_enemies))

    def summary(self) -> dict:
        return {
            "n_agents": self.n_agents,
            "n_enemies": self.n_enemies,
            "ally_types": ",".join(self.ally_types),
            "enemy_types": ",".join(self.enemy_types),
            "unit_type_bits": self.unit_type_bits,
            "shield_bits_ally": self.shield_bits_ally,
            "shield_bits_enemy": self.shield_bits_enemy,
            "nf_en": self.nf_en,
            "nf_al": self.nf_al,
            "own_dim": self.own_dim,
            "state_nf_al": self.state_nf_al,
            "state_nf_en": self.state_nf_en,
        }


def smac_env_info(layout: SmacLayout, backend: str, episode_limit, options: dict) -> EnvInfo:
    """The EnvInfo every SMAC backend reports; ``episode_limit`` None means SMAC's per-map limit."""
    limit = layout.episode_limit if episode_limit is None else episode_limit
    if isinstance(limit, bool) or not isinstance(limit, numbers.Integral) or limit < 1:
        raise EnvError(f"smac/{backend}: episode_limit must be a positive int, got {episode_limit!r}")
    return EnvInfo(
        task=f"smac:{layout.map_name}", family="smac", map_name=layout.map_name, backend=backend,
        n_agents=layout.n_agents, n_enemies=layout.n_enemies, obs_dim=layout.obs_dim,
        state_dim=layout.state_dim, action_type="discrete", n_actions=layout.n_actions,
        episode_limit=int(limit), layout=layout, options=options)


def layout_from_name(map_name: str, options: dict) -> dict:
    """What a dataset records about a SMAC task, from its name (``episode_limit`` may be
    overridden by the options)."""
    lay = parse_map(map_name)
    out = dict(lay.summary())
    out.update(n_agents=lay.n_agents, n_enemies=lay.n_enemies, obs_dim=lay.obs_dim,
               state_dim=lay.state_dim, n_actions=lay.n_actions, action_type="discrete",
               episode_limit=int(options.get("episode_limit") or lay.episode_limit))
    return out


def check_values(map_name: str, key: str, values):
    """Recorded ``obs`` or ``state`` rows (``[..., features]``) outside SMAC's ranges: every
    feature of the layout above is a flag, a fraction (health, shield, cooldown, distance over
    sight range) or an offset over the sight range or the map size, so all lie in [-1, 1].
    (bool mask over the leading axes, what was expected), or None."""
    import numpy as np

    bad = (np.abs(values) > 1.0 + 1e-5).any(-1)
    if not bad.any():
        return None
    at = tuple(int(i) for i in np.argwhere(bad)[0])
    feature = int(np.argmax(np.abs(values[at]) > 1.0 + 1e-5))
    where = (f"{key} of agent {at[2]}, feature {feature}," if len(at) > 2  # obs: [e, t, agent]
             else f"{key} feature {feature}")
    return bad, (f"{where} is {float(values[at][feature]):.6g}, but "
                 f"every SMAC feature of {map_name} (flags, fractions, offsets over the sight "
                 "range or map size) lies in [-1, 1]")


def parse_map(map_name: str) -> SmacLayout:
    """Layout of a SMAC map name, or EnvError saying what names are accepted."""
    if not isinstance(map_name, str):
        raise EnvError(f"SMAC map name must be a string, got {map_name!r}")
    if m := _MARINES.match(map_name):
        n_al = int(m.group(1))
        n_en = int(m.group(2)) if m.group(2) else n_al
        allies, enemies = ("marine",) * n_al, ("marine",) * n_en
        ally_bits = enemy_bits = ()  # SMAC's marine maps carry no type bits
    elif m := _STALKERS_ZEALOTS.match(map_name):
        s, z = int(m.group(1)), int(m.group(2))
        es, ez = (int(m.group(3)), int(m.group(4))) if m.group(3) else (s, z)
        # SMAC sorts allies by unit type: stalkers (lower SC2 id) come first.
        allies = ("stalker",) * s + ("zealot",) * z
        enemies = ("stalker",) * es + ("zealot",) * ez
        ally_bits, enemy_bits = ("stalker", "zealot"), ("zealot", "stalker")
    else:
        raise EnvError(f"SMAC map name {map_name!r} is not understood; accepted: {MAP_GRAMMAR}")
    if not (1 <= len(allies) <= MAX_UNITS_PER_TEAM and 1 <= len(enemies) <= MAX_UNITS_PER_TEAM):
        raise EnvError(
            f"SMAC map {map_name!r} has {len(allies)} allies and {len(enemies)} enemies; "
            f"each team needs 1..{MAX_UNITS_PER_TEAM} units"
        )
    return SmacLayout(
        map_name=map_name,
        ally_types=allies,
        enemy_types=enemies,
        ally_type_bits=ally_bits,
        enemy_type_bits=enemy_bits,
        shield_bits_ally=int(any(t in PROTOSS for t in allies)),
        shield_bits_enemy=int(any(t in PROTOSS for t in enemies)),
    )


def focus_fire_actions(obs, avail_actions, layout: SmacLayout):
    """A scripted SMAC policy from observations alone, vectorised over ``[N, n_agents]``.

    Every agent attacks the weakest enemy it can shoot (all agents see the same health, so they
    focus the same target), otherwise walks east, where SMAX and SMAC put the enemy team.
    It wins symmetric maps far more often than random play: a check that battles are real."""
    import numpy as np

    n_en, nf = layout.n_enemies, layout.nf_en
    enemies = obs[..., N_MOVE_FEATS:N_MOVE_FEATS + n_en * nf].reshape(*obs.shape[:-1], n_en, nf)
    shootable = avail_actions[..., N_ACTIONS_NO_ATTACK:]
    weakest = np.where(shootable, enemies[..., 4], np.inf).argmin(-1)
    east = ACTION_NAMES.index("east")
    walk = np.where(avail_actions[..., east], east, ACTION_NAMES.index("stop"))
    actions = np.where(shootable.any(-1), N_ACTIONS_NO_ATTACK + weakest, walk)
    return np.where(avail_actions[..., 0], 0, actions)  # the dead may only no-op


def focus_fire_win_rate(env, seed: int = 0) -> float:
    """Win rate of ``focus_fire_actions`` over the first battle of each of ``env``'s copies (a
    yardstick of how hard a map and its opponent are)."""
    outcomes = play(env, lambda ts: focus_fire_actions(ts.obs, ts.avail_actions, env.info.layout),
                    seed)
    return float(outcomes.wins.mean())
