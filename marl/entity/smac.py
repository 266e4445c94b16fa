"""SMAC vectors (``envs.smac`` layout, from SMAX or StarCraft II) -> canonical entity tokens.

Canonical features, identical for every SMAC map, so marine and stalker/zealot maps share one
model (SMAC's own vectors change width with the map: marine maps have no shield slot and no type
bits, and enemies number their type bits differently from allies):

* entity token (allies and enemies, ``F_ENTITY``)::

      visible, attackable, distance, dx, dy, health, shield, unit type one-hot over UNIT_VOCAB

* own token (``F_OWN``)::

      health, shield, unit type one-hot, can move north/south/east/west

* state token (``F_STATE``, allies and enemies)::

      alive, health, shield, weapon cooldown, x, y, unit type one-hot,
      last action one-hot over no-op/stop/N/S/E/W, attacked (ally: it attacked last step;
      enemy: some ally attacked it last step)

Values are copied, never rescaled, so the tokens mean exactly what SMAC's features mean.
Available actions need no parsing: SMAC's ``[..., 6 + n_enemies]`` mask already has one entry
per own action and one per enemy token.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from envs.smac import N_ACTIONS_NO_ATTACK, N_MOVE_FEATS, UNIT_VOCAB, SmacLayout
import torch.nn.functional as F

from marl.entity import EntityObs, EntityState, FamilySpec, Tokens, own_tokens

N_TYPES = len(UNIT_VOCAB)
F_ENTITY = 7 + N_TYPES
F_OWN = 2 + N_TYPES + N_MOVE_FEATS
F_STATE = 6 + N_TYPES + N_ACTIONS_NO_ATTACK + 1


class _Tables:
    """Index tables of one layout: where each canonical feature sits in SMAC's vectors."""

    def __init__(self, lay: SmacLayout):
        n_a, n_e = lay.n_agents, lay.n_enemies
        self.enemy_start = N_MOVE_FEATS
        self.ally_start = self.enemy_start + n_e * lay.nf_en
        self.own_start = self.ally_start + (n_a - 1) * lay.nf_al
        self.enemy_types = _type_matrix(lay.enemy_type_bits, lay.enemy_types)
        self.ally_types = _type_matrix(lay.ally_type_bits, lay.ally_types)
        self.state_enemy_start = n_a * lay.state_nf_al
        self.state_actions_start = self.state_enemy_start + n_e * lay.state_nf_en


def _type_matrix(bit_names: tuple[str, ...], team: tuple[str, ...]) -> torch.Tensor:
    """SMAC type bits -> canonical one-hot, as a matrix [n_bits, N_TYPES]. Marine maps carry no
    bits; their whole team is one type, returned as a single row [1, N_TYPES] to broadcast."""
    if bit_names:
        m = np.zeros((len(bit_names), N_TYPES), np.float32)
        m[np.arange(len(bit_names)), [UNIT_VOCAB.index(t) for t in bit_names]] = 1.0
    else:
        if len(set(team)) != 1:
            raise ValueError(f"a team of several unit types {sorted(set(team))} needs type bits")
        m = np.zeros((1, N_TYPES), np.float32)
        m[0, UNIT_VOCAB.index(team[0])] = 1.0
    return torch.from_numpy(m)


@functools.lru_cache(maxsize=None)
def _tables(layout: SmacLayout) -> _Tables:
    return _Tables(layout)


def _canonical_types(bits: torch.Tensor, matrix: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """One-hot over UNIT_VOCAB from SMAC's type bits (or the team's single type where the map
    carries no bits), zero where the unit is absent (dead or out of sight)."""
    matrix = matrix.to(bits)
    if bits.shape[-1]:
        return bits @ matrix
    return matrix[0].expand(*present.shape, N_TYPES) * present[..., None]


def _unit_block(block: torch.Tensor, shield_bits: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split ``[health, (shield), (type bits)]`` into health, shield (zeros if absent), bits."""
    health = block[..., 0]
    shield = block[..., 1] if shield_bits else torch.zeros_like(health)
    return health, shield, block[..., 1 + shield_bits:]


def _check(x: torch.Tensor, size: int, what: str, lay: SmacLayout) -> None:
    if x.shape[-1] != size:
        raise ValueError(f"smac:{lay.map_name} {what} has {x.shape[-1]} features, expected {size}")


def parse_smac_obs(obs: torch.Tensor, layout: SmacLayout) -> EntityObs:
    """``obs [..., obs_dim]`` in SMAC's layout -> tokens (own, n_agents-1 allies, n_enemies enemies)."""
    lay, t = layout, _tables(layout)
    _check(obs, lay.obs_dim, "observation", lay)
    n_a, n_e = lay.n_agents, lay.n_enemies
    batch = obs.shape[:-1]

    enemy = obs[..., t.enemy_start:t.ally_start].reshape(*batch, n_e, lay.nf_en)
    e_health, e_shield, e_bits = _unit_block(enemy[..., 4:], lay.shield_bits_enemy)
    e_visible = (e_health > 0).to(obs.dtype)  # SMAC has no visibility flag for enemies
    enemies = torch.cat([
        e_visible[..., None], enemy[..., 0:4], e_health[..., None], e_shield[..., None],
        _canonical_types(e_bits, t.enemy_types, e_visible),
    ], dim=-1)

    ally = obs[..., t.ally_start:t.own_start].reshape(*batch, n_a - 1, lay.nf_al)
    a_health, a_shield, a_bits = _unit_block(ally[..., 4:], lay.shield_bits_ally)
    a_visible = ally[..., 0]
    allies = torch.cat([
        a_visible[..., None], torch.zeros_like(a_visible)[..., None], ally[..., 1:4],
        a_health[..., None], a_shield[..., None], _canonical_types(a_bits, t.ally_types, a_visible),
    ], dim=-1)

    o_health, o_shield, o_bits = _unit_block(obs[..., t.own_start:], lay.shield_bits_ally)
    alive = (o_health > 0).to(obs.dtype)
    own = torch.cat([
        o_health[..., None], o_shield[..., None], _canonical_types(o_bits, t.ally_types, alive),
        obs[..., :N_MOVE_FEATS],
    ], dim=-1)
    ones = functools.partial(torch.ones, dtype=torch.bool, device=obs.device)
    return EntityObs(own, allies, enemies, ones(*batch, n_a - 1), ones(*batch, n_e))


def parse_smac_state(state: torch.Tensor, layout: SmacLayout) -> EntityState:
    """``state [..., state_dim]`` in SMAC's layout -> ally and enemy state tokens."""
    lay, t = layout, _tables(layout)
    _check(state, lay.state_dim, "state", lay)
    n_a, n_e = lay.n_agents, lay.n_enemies
    batch = state.shape[:-1]

    ally = state[..., :t.state_enemy_start].reshape(*batch, n_a, lay.state_nf_al)
    a_health, a_shield, a_bits = _unit_block(
        torch.cat([ally[..., :1], ally[..., 4:]], dim=-1), lay.shield_bits_ally)
    a_alive = (a_health > 0).to(state.dtype)
    last = state[..., t.state_actions_start:].reshape(*batch, n_a, lay.n_actions)
    allies = torch.cat([
        a_alive[..., None], a_health[..., None], a_shield[..., None], ally[..., 1:2],  # cooldown
        ally[..., 2:4], _canonical_types(a_bits, t.ally_types, a_alive),
        last[..., :N_ACTIONS_NO_ATTACK], last[..., N_ACTIONS_NO_ATTACK:].sum(-1, keepdim=True),
    ], dim=-1)

    enemy = state[..., t.state_enemy_start:t.state_actions_start].reshape(*batch, n_e, lay.state_nf_en)
    e_health, e_shield, e_bits = _unit_block(
        torch.cat([enemy[..., :1], enemy[..., 3:]], dim=-1), lay.shield_bits_enemy)
    e_alive = (e_health > 0).to(state.dtype)
    attacked = (last[..., N_ACTIONS_NO_ATTACK:].sum(-2) > 0).to(state.dtype)  # [..., n_e]
    zeros = torch.zeros_like(e_health)
    enemies = torch.cat([
        e_alive[..., None], e_health[..., None], e_shield[..., None], zeros[..., None],
        enemy[..., 1:3], _canonical_types(e_bits, t.enemy_types, e_alive),
        zeros[..., None].expand(*batch, n_e, N_ACTIONS_NO_ATTACK), attacked[..., None],
    ], dim=-1)
    ones = functools.partial(torch.ones, dtype=torch.bool, device=state.device)
    return EntityState(allies, enemies, ones(*batch, n_a), ones(*batch, n_e))


# ------------------------------------------------------------------------- the token view
def _smac_last_action(last: torch.Tensor, view) -> list:
    """Own: one-hot of no-op/stop/move (6) and "attacked" (1); enemies: "I attacked it"."""
    n_enemies = view.enemies.shape[-2]
    some = last >= 0
    move = F.one_hot(last.clamp(0, 5), 6) * ((last < 6) & some)[..., None]
    attack = last - 6
    attacked = F.one_hot(attack.clamp(0, max(n_enemies - 1, 0)), max(n_enemies, 1))
    attacked = attacked[..., :n_enemies] * (attack >= 0)[..., None]
    return [torch.cat([move, (attack >= 0)[..., None]], -1)[..., None, :], None,
            attacked[..., None]]


def _smac_state(state, view) -> Tokens:
    return Tokens([state.allies, state.enemies], [state.ally_mask, state.enemy_mask])


SPEC = FamilySpec("smac", (F_OWN, F_ENTITY, F_ENTITY), (F_STATE, F_STATE), True, 6, 2,
                  own_tokens, _smac_state, last_action_dims=(7, 0, 1),
                  last_action_features=_smac_last_action)
